"""The policy's own samples at evaluations: K samples for each of a fixed, seeded set of probe prompts, the
collapse measures on them, and KL(pi || pi_ref) estimated on them.

The rewards DPO reports are implicit; what users want to see is how far the policy drifted and what it
writes now. At each evaluation the policy samples K completions for the same probe prompts with the same
seed (step 0 is the base model: the adapter starts at zero), so a prompt's samples can be set side by
side across steps. The samples are stored with per-sample measures in their meta; the evaluation's
metrics are the collapse measures of studio/core/collapse.py over all of them, the policy's entropy on its
own tokens, and the KL to the reference (the adapter disabled) estimated on them (Schulman 2020,
"Approximating KL Divergence"): with r = log ref - log pi per sampled token, k1 = -r (unbiased, noisy,
can be negative) and k3 = exp(r) - 1 - r (unbiased and never negative).

Sampling is the lens's cost, so it is kept to a budget: all samples go through the model in one batch,
and a mid-run evaluation skips its sampling when the share of the run's wall time spent sampling would
go over `sample_budget` (the first and the last evaluation always sample).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from studio.core import collapse
from studio.core import metrics as M
from studio.train import generation
from studio.train.data import Example
from studio.train.logps import sequence_logps
from studio.train.preflight import TrainingError, probe_ids

log = logging.getLogger("studio.train")

GENERATION_BATCH = 64
"""Samples generated together: the defaults' 16 prompts x 4 samples in one batch."""
MEASURE_ROWS = 32
"""Samples per log-prob pass (policy, then reference) when measuring."""
CAP_PERCENTILE, CAP_AT_LEAST = 95, 128
"""The default sampling cap: the 95th percentile of the chosen responses' token lengths, at least 128."""
CAP_SAMPLE_ROWS = 1000
"""Train pairs at most whose chosen responses are tokenized for the default cap (drawn by seed when there are
more): one standard error of the estimate is 0.7 percentile points (sqrt(0.95 * 0.05 / 1000)); tokenizing them
took 0.8 s on the 2-core dev machine (tiny model's tokenizer, the startup benchmark's pairs)."""


@dataclass
class EvalPrompt:
    prompt_id: int
    text: str
    ids: list[int]


def pick_prompt_ids(candidates: Sequence[int], n: int, seed: int, fallback: Sequence[int] = (),
                    chosen: Sequence[int] = ()) -> list[int]:
    """The probe prompts of a run, by prompt id: the `chosen` ids in their order, else n distinct ids drawn by
    seed from the candidates (the eval split's), topped up from `fallback` (train's) when there are too few.
    Ids alone: a run picks them from its snapshot's rows before tokenizing any."""
    if chosen:
        known = {*candidates, *fallback}
        missing = [i for i in chosen if i not in known]
        if missing:
            raise TrainingError(f"probe_prompt_ids: prompt(s) {', '.join(map(str, missing))} are not in this "
                                f"run's data; pick ids of prompts with resolved preferences")
        return list(chosen)

    def drawn(ids: Sequence[int]) -> list[int]:
        unique = sorted(set(ids))
        random.Random(seed).shuffle(unique)
        return unique

    picked = drawn(candidates)[:n]
    seen = set(picked)
    picked += [i for i in drawn(fallback) if i not in seen][:n - len(picked)]
    return picked


def pick_prompts(candidates: list[EvalPrompt], n: int, seed: int, fallback: Sequence[EvalPrompt] = (),
                 chosen: Sequence[int] = ()) -> list[EvalPrompt]:
    """`pick_prompt_ids` on prompts: the probe prompts themselves."""
    by_id = {p.prompt_id: p for p in [*fallback, *candidates]}
    ids = pick_prompt_ids([p.prompt_id for p in candidates], n, seed, [p.prompt_id for p in fallback], chosen)
    return [by_id[i] for i in ids]


def default_max_new_tokens(chosen_lengths: Sequence[int]) -> int:
    """The sampling cap when the run sets none: long enough that the policy's usual answer ends before it,
    so a length that drifts up can show (a cap most samples hit would hold length flat)."""
    return collapse.percentile_length(chosen_lengths, CAP_PERCENTILE, CAP_AT_LEAST)


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r = ref_logp - logp
    return torch.expm1(r) - r


@dataclass
class _Measured:
    """Per sample: log-probs under the policy and the reference (per token), and the policy's entropy."""

    policy: list[torch.Tensor]
    ref: list[torch.Tensor]
    entropy: list[float]


def adapter_is_zero(model) -> bool:
    """Whether every LoRA B matrix is still zero (a fresh adapter before its first step): the policy is then
    exactly the reference, so sampling it needs neither the adapter's matmuls nor a second log-prob pass."""
    return all(not p.any() for name, p in model.named_parameters() if "lora_B" in name)


@torch.no_grad()
def _measure(model, gens: generation.Generations, pad: int, device, is_reference: bool) -> _Measured:
    """The policy pass (with entropy) and the reference pass (adapter off) over the samples, in chunks; one
    pass serves as both when the policy is the reference."""
    out = _Measured([], [], [])
    for lo in range(0, len(gens), MEASURE_ROWS):
        full, attn, comp = generation.pack(gens.prompt_ids[lo:lo + MEASURE_ROWS],
                                           gens.completion_ids[lo:lo + MEASURE_ROWS], pad, device)
        with model.disable_adapter() if is_reference else contextlib.nullcontext():
            pol = sequence_logps(model, full, attn, comp, stats=True, per_token=True)
        if is_reference:
            ref = pol
        else:
            with model.disable_adapter():
                ref = sequence_logps(model, full, attn, comp, per_token=True)
        counts = pol.tokens.long().tolist()
        out.policy += [t.float() for t in torch.split(pol.token_logps, counts)]
        out.ref += [t.float() for t in torch.split(ref.token_logps, counts)]
        out.entropy += [float(e) / max(1, n) for e, n in zip(pol.entropy_sum.tolist(), counts, strict=True)]
    return out


def content_tokens(completion: list[int], finished: bool) -> list[int]:
    """The sample's tokens without its closing stop token (the same token ends every finished sample)."""
    return completion[:-1] if finished else completion


def repeated_spans(tokenizer, tokens: list[int], text: str, n: int) -> list[list[int]]:
    """Character ranges of `text` covered by repeated n-grams of `tokens` (what the samples view marks)."""
    spans = []
    for start, end in collapse.runs(collapse.repeated_mask(tokens, n)):
        a = len(tokenizer.decode(tokens[:start], skip_special_tokens=True))
        b = len(tokenizer.decode(tokens[:end], skip_special_tokens=True))
        if min(a, len(text)) < min(b, len(text)):
            spans.append([min(a, len(text)), min(b, len(text))])
    return spans


@torch.no_grad()
def sample_and_measure(model, tokenizer, prompts: list[EvalPrompt], max_new_tokens: int, seed: int,
                       device: torch.device, num_samples: int = 1) -> tuple[dict[str, float], list[dict]]:
    """`num_samples` completions per prompt from the policy; returns the evaluation's metrics and the rows
    for `add_samples` (one per sample, prompt by prompt, its measures in `meta`)."""
    if not prompts:
        return {}, []
    was_training = model.training
    settings = generation.SamplingSettings(max_new_tokens=max_new_tokens)
    # the base model at step 0: the same samples without the adapter's matmuls (its B matrices are zero)
    is_reference = adapter_is_zero(model)
    with model.disable_adapter() if is_reference else contextlib.nullcontext():
        gens = generation.generate(model, tokenizer, [p.ids for p in prompts], settings, seed, device,
                                   num_samples=num_samples, batch_size=GENERATION_BATCH)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    try:
        measured = _measure(model, gens, pad, device, is_reference)
    finally:
        if was_training:
            model.train()
    per_token = [k3(p, r) for p, r in zip(measured.policy, measured.ref, strict=True)]
    per_token_k1 = [p - r for p, r in zip(measured.policy, measured.ref, strict=True)]
    seq_kl = [float(x.sum()) for x in per_token]
    seq_k1 = [float(x.sum()) for x in per_token_k1]
    lengths = [len(c) for c in gens.completion_ids]
    content = [content_tokens(c, f) for c, f in zip(gens.completion_ids, gens.finished, strict=True)]
    by_prompt: dict[int, list[list[int]]] = {}
    for i, tokens in zip(gens.prompt_index, content, strict=True):
        by_prompt.setdefault(i, []).append(tokens)
    repetition = [collapse.repetition(t) for t in content]

    n_tokens = sum(lengths)
    mean_length, median_length = collapse.length_summary(lengths)
    finished = sum(gens.finished) / len(gens)
    metrics = {
        M.EVAL_KL: sum(seq_kl) / max(1, n_tokens),
        M.EVAL_KL_SEQ: sum(seq_kl) / len(seq_kl),
        M.EVAL_KL_K1: sum(seq_k1) / max(1, n_tokens),
        M.EVAL_KL_K1_SEQ: sum(seq_k1) / len(seq_k1),
        M.EVAL_SAMPLE_LENGTH: mean_length,
        M.EVAL_SAMPLE_LENGTH_MEDIAN: median_length,
        M.EVAL_SAMPLE_CAP: float(max_new_tokens),
        M.EVAL_SAMPLE_HIT_CAP: 1.0 - finished,
        M.EVAL_EOS_RATE: finished,
        M.EVAL_DISTINCT_1: collapse.distinct_n(content, 1),
        M.EVAL_DISTINCT_2: collapse.distinct_n(content, 2),
        M.EVAL_SELF_SIMILARITY: collapse.self_similarity(list(by_prompt.values())),
        M.EVAL_REPETITION: sum(repetition) / len(repetition),
        M.EVAL_SAMPLE_ENTROPY: sum(e * n for e, n in zip(measured.entropy, lengths, strict=True)) / max(1, n_tokens),
    }
    rows = []
    for row, (i, tokens) in enumerate(zip(gens.prompt_index, content, strict=True)):
        p = prompts[i]
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        rows.append({"prompt_id": p.prompt_id, "prompt_text": p.text, "text": text, "meta": {
            "sample": row % num_samples, "tokens": lengths[row], "finished": gens.finished[row],
            "hit_cap": not gens.finished[row], "cap": max_new_tokens, "kl_seq": seq_kl[row],
            "kl_k1_seq": seq_k1[row], "entropy": measured.entropy[row], "repetition": repetition[row],
            "repeated": repeated_spans(tokenizer, tokens, text, collapse.REPETITION_N)}})
    return metrics, rows


class ProbeSampler:
    """A run's probe prompts, how they are sampled, and the wall time sampling took against its budget."""

    def __init__(self, prompts: list[EvalPrompt], samples_per_prompt: int, max_new_tokens: int, seed: int,
                 budget: float, started: float | None = None):
        self.prompts, self.samples_per_prompt = prompts, samples_per_prompt
        self.max_new_tokens, self.seed, self.budget = max_new_tokens, seed, budget
        self.started = time.monotonic() if started is None else started
        """When the run (this worker session) started, on the time.monotonic() clock."""
        self.seconds = 0.0
        self.count = 0
        self.last_seconds: float | None = None
        self._first_step, self._first_cost, self._first_end = 0, 0.0, 0.0

    @classmethod
    def for_run(cls, config, eval_rows: Sequence[dict], train_rows: Sequence[dict],
                tokenize: Callable[[dict], Example], started: float | None = None) -> ProbeSampler:
        """The run's probes from its settings and its snapshot's rows (`data.split_eval`): eval_samples prompts
        (or probe_prompt_ids), K samples each, the cap from sample_max_new_tokens or the lengths of the chosen
        responses it trains on. Only the probe prompts' rows are tokenized, and for the cap at most
        CAP_SAMPLE_ROWS train rows drawn by seed (all of them when there are no more): a run tokenizes its
        pairs when it reaches them, and a snapshot of 300k pairs would cost minutes before the first step."""
        prompts: list[EvalPrompt] = []
        if config.eval_samples:
            ids = pick_prompt_ids([r["prompt_id"] for r in eval_rows], config.eval_samples, config.seed,
                                  fallback=[r["prompt_id"] for r in train_rows],
                                  chosen=probe_ids(config.probe_prompt_ids))
            wanted = set(ids)
            by_id = {r["prompt_id"]: r for r in [*train_rows, *eval_rows] if r["prompt_id"] in wanted}
            prompts = [EvalPrompt(i, by_id[i]["prompt"], tokenize(by_id[i]).prompt_ids) for i in ids]
        cap = config.sample_max_new_tokens
        if prompts and not cap:
            rows = train_rows if len(train_rows) <= CAP_SAMPLE_ROWS else \
                random.Random(config.seed).sample(list(train_rows), CAP_SAMPLE_ROWS)
            cap = default_max_new_tokens([len(tokenize(r).chosen_ids) for r in rows])
        if prompts:
            log.info("sampling %d probe prompts x %d at evaluations, at most %d new tokens%s", len(prompts),
                     config.samples_per_prompt, cap, "" if config.sample_max_new_tokens else
                     f" (the {CAP_PERCENTILE}th percentile of the chosen responses' lengths, at least {CAP_AT_LEAST}"
                     f"{'' if len(train_rows) <= CAP_SAMPLE_ROWS else f', of {CAP_SAMPLE_ROWS} pairs drawn by seed'})")
        return cls(prompts, config.samples_per_prompt, cap or CAP_AT_LEAST, config.seed, config.sample_budget,
                   started)

    def __bool__(self) -> bool:
        return bool(self.prompts)

    def due(self, step: int, total_steps: int) -> bool:
        """Whether the evaluation at `step` samples. The first of the session and the last of the run always
        do. Another does when the time spent sampling, with this one and the last one at the latest cost,
        stays within the budget share of the run's projected wall time (elapsed, plus the remaining steps at
        the pace trained since the first sampling): so the final one's cost is kept for, and a short
        interval between evaluations spaces samplings out further."""
        if not self.prompts:
            return False
        if self.last_seconds is None or step >= total_steps or self.budget >= 1.0:
            return True
        now = time.monotonic()
        cost = self.last_seconds
        trained = now - self._first_end - (self.seconds - self._first_cost)
        remaining = (total_steps - step) * trained / max(1, step - self._first_step)
        projected = now - self.started + remaining + 2 * cost
        return self.seconds + 2 * cost <= self.budget * projected

    def sample(self, model, tokenizer, device, step: int = 0) -> tuple[dict[str, float], list[dict]]:
        """Sample and measure (see `sample_and_measure`), timed: the metrics include its wall time."""
        t = time.perf_counter()
        values, rows = sample_and_measure(model, tokenizer, self.prompts, self.max_new_tokens, self.seed, device,
                                          num_samples=self.samples_per_prompt)
        took = time.perf_counter() - t
        if self.last_seconds is None:
            self._first_step, self._first_cost, self._first_end = step, took, time.monotonic()
        self.seconds += took
        self.count += 1
        self.last_seconds = took
        values[M.EVAL_SAMPLING_SECONDS] = took
        log.info("sampled %d completions in %.1fs (%.0f%% of the wall time so far)", len(rows), took,
                 100 * self.share())
        return values, rows

    def share(self) -> float:
        """Share of the wall time since the run started that went into sampling."""
        return self.seconds / max(1e-9, time.monotonic() - self.started)

    def summary(self) -> str:
        return (f"sampling: {self.count} evaluations, {self.seconds:.1f}s, {100 * self.share():.1f}% of the "
                f"run's wall time (budget {100 * self.budget:.0f}%)")
