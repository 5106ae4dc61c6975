"""Generations on a fixed, seeded set of eval prompts, and KL(pi || pi_ref) measured on them.

The rewards DPO reports are implicit; what users want to see is how far the policy drifted and what it
writes now. At each evaluation the policy samples a completion for the same prompts, the samples are
stored with their step, and the KL to the reference (the adapter disabled) is estimated on the policy's
own samples with the k3 estimator (Schulman 2020, "Approximating KL Divergence"): with r = log ref - log pi
per token, k3 = exp(r) - 1 - r, unbiased for KL(pi || ref) and never negative.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from studio.core import metrics as M
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
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    width = max(len(p.ids) for p in prompts)
    # left padding for generation, so every row continues right after its own prompt
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p.ids):] = torch.tensor(p.ids)
        attn[i, width - len(p.ids):] = 1
    devices = [device] if device.type == "cuda" else []
    # sampling must not move the training RNG, or a resumed run would diverge from an uninterrupted one
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                             pad_token_id=pad, eos_token_id=eos,
                             # training turns the cache off in the model config; without it every new
                             # token re-runs the whole prefix
                             use_cache=True)
    generated: list[list[int]] = []
    for row in out[:, width:].tolist():
        gen = []
        for t in row:
            gen.append(t)
            if t == eos:
                break
        if gen and gen[-1] == pad and pad != eos:
            gen = gen[:-1]
        generated.append(gen)

    # re-pack prompt + generation right-padded, the layout the training log-probs use
    seqs = [p.ids + g for p, g in zip(prompts, generated, strict=True)]
    T = max(len(s) for s in seqs)
    full = torch.full((len(seqs), T), pad, dtype=torch.long)
    full_attn = torch.zeros_like(full)
    comp = torch.zeros_like(full)
    for i, (p, s) in enumerate(zip(prompts, seqs, strict=True)):
        full[i, :len(s)] = torch.tensor(s)
        full_attn[i, :len(s)] = 1
        comp[i, len(p.ids):len(s)] = 1
    full, full_attn, comp = full.to(device), full_attn.to(device), comp.to(device)
    pol = sequence_logps(model, full, full_attn, comp, per_token=True)
    with model.disable_adapter():
        ref = sequence_logps(model, full, full_attn, comp, per_token=True)
    per_token = k3(pol.token_logps, ref.token_logps)
    counts = pol.tokens.long().tolist()
    per_seq = torch.split(per_token, counts)
    seq_kl = [float(x.sum()) for x in per_seq]
    if was_training:
        model.train()

    n_tokens = sum(counts)
    metrics = {
        M.EVAL_KL: float(per_token.sum()) / max(1, n_tokens),
        M.EVAL_KL_SEQ: sum(seq_kl) / len(seq_kl),
        M.EVAL_SAMPLE_LENGTH: n_tokens / len(counts),
        M.EVAL_DISTINCT_2: distinct_2(generated),
    }
    rows = []
    for p, g, kl in zip(prompts, generated, seq_kl, strict=True):
        text = tokenizer.decode(g, skip_special_tokens=True)
        rows.append({"prompt_id": p.prompt_id, "prompt_text": p.text, "text": text,
                     "meta": {"tokens": len(g), "kl_seq": kl, "finished": bool(g and g[-1] == eos)}})
    return metrics, rows
