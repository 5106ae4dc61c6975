"""Generations on a fixed, seeded set of eval prompts, and KL(pi || pi_ref) measured on them.

The rewards DPO reports are implicit; what users want to see is how far the policy drifted and what it
writes now. At each evaluation the policy samples a completion for the same prompts, the samples are
stored with their step, and the KL to the reference (the adapter disabled) is estimated on the policy's
own samples (Schulman 2020, "Approximating KL Divergence"): with r = log ref - log pi per sampled token,
k1 = -r (unbiased, noisy, can be negative) and k3 = exp(r) - 1 - r (unbiased and never negative).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from studio.core import metrics as M
from studio.train import generation
from studio.train.logps import sequence_logps


@dataclass
class EvalPrompt:
    prompt_id: int
    text: str
    ids: list[int]


def pick_prompts(candidates: list[EvalPrompt], n: int, seed: int) -> list[EvalPrompt]:
    """The same n prompts for the whole run (distinct prompts, chosen by seed)."""
    unique = list({p.prompt_id: p for p in candidates}.values())
    unique.sort(key=lambda p: p.prompt_id)
    random.Random(seed).shuffle(unique)
    return unique[:n]


def distinct_2(sequences: list[list[int]]) -> float:
    """Share of distinct token bigrams among all bigrams of the generations (1.0 = no repetition)."""
    bigrams = [tuple(s[i:i + 2]) for s in sequences for i in range(len(s) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r = ref_logp - logp
    return torch.expm1(r) - r


@torch.no_grad()
def sample_and_measure(model, tokenizer, prompts: list[EvalPrompt], max_new_tokens: int, seed: int,
                       device: torch.device) -> tuple[dict[str, float], list[dict]]:
    """Sample one completion per prompt from the policy; return eval metrics and rows for `add_samples`."""
    if not prompts:
        return {}, []
    was_training = model.training
    settings = generation.SamplingSettings(max_new_tokens=max_new_tokens)
    gens = generation.generate(model, tokenizer, [p.ids for p in prompts], settings, seed, device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    full, full_attn, comp = generation.pack(gens.prompt_ids, gens.completion_ids, pad, device)
    model.eval()
    pol = sequence_logps(model, full, full_attn, comp, per_token=True)
    with model.disable_adapter():
        ref = sequence_logps(model, full, full_attn, comp, per_token=True)
    if was_training:
        model.train()
    per_token = k3(pol.token_logps, ref.token_logps)
    per_token_k1 = pol.token_logps - ref.token_logps
    counts = pol.tokens.long().tolist()
    seq_kl = [float(x.sum()) for x in torch.split(per_token, counts)]
    seq_k1 = [float(x.sum()) for x in torch.split(per_token_k1, counts)]

    n_tokens = sum(counts)
    metrics = {
        M.EVAL_KL: float(per_token.sum()) / max(1, n_tokens),
        M.EVAL_KL_SEQ: sum(seq_kl) / len(seq_kl),
        M.EVAL_KL_K1: float(per_token_k1.sum()) / max(1, n_tokens),
        M.EVAL_KL_K1_SEQ: sum(seq_k1) / len(seq_k1),
        M.EVAL_SAMPLE_LENGTH: n_tokens / len(counts),
        M.EVAL_DISTINCT_2: distinct_2(gens.completion_ids),
    }
    rows = []
    for p, g, done, kl in zip(prompts, gens.completion_ids, gens.finished, seq_kl, strict=True):
        text = tokenizer.decode(g, skip_special_tokens=True)
        rows.append({"prompt_id": p.prompt_id, "prompt_text": p.text, "text": text,
                     "meta": {"tokens": len(g), "kl_seq": kl, "finished": done}})
    return metrics, rows
