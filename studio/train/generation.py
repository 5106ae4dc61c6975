"""Sampling from a policy: the one generation routine behind eval samples, PPO/RLOO rollouts, the arena and
on-policy candidates.

What is sampled is the policy's own distribution at the requested temperature / top-k / top-p and
nothing else: a model folder's `generation_config.json` (repetition penalty, no-repeat n-grams, its own
temperature...) is set aside while sampling, because it would bias the sampled KL and the rollouts away
from the distribution the log-probs are computed on. Generation stops at EOS or the chat template's end
of turn (`stop_token_ids`), uses the KV cache, and never moves the caller's RNG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

# End-of-turn markers of common chat templates (ChatML, Gemma, Phi-3, Llama 3); generation stops at any
# that the tokenizer knows as a single token, as well as at EOS.
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|end|>", "<|eot_id|>", "<|endoftext|>")


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample: plain ancestral sampling at temperature 1 unless asked otherwise."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature: must be above 0 (sampling); use a small value for near-greedy")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens: must be at least 1")


@dataclass
class Generations:
    """Sampled completions, row i continuing prompt `prompt_index[i]`."""

    prompt_index: list[int]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # generated tokens, ending with the stop token when one was sampled
    finished: list[bool]  # ended with EOS / end of turn (False: cut at max_new_tokens)

    def __len__(self) -> int:
        return len(self.completion_ids)

    @property
    def hit_cap(self) -> list[bool]:
        return [not f for f in self.finished]


def stop_token_ids(tokenizer) -> list[int]:
    """EOS and the chat template's end-of-turn token(s) known to this tokenizer."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN:
        if tok in vocab and vocab[tok] not in ids:
            ids.append(int(vocab[tok]))
    return ids


def _unwrapped(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def policy_only(model) -> Iterator[None]:
    """Set the model's own generation config aside while sampling (see the module docstring)."""
    from transformers import GenerationConfig

    base = _unwrapped(model)
    saved = getattr(base, "generation_config", None)
    base.generation_config = GenerationConfig()
    try:
        yield
    finally:
        base.generation_config = saved


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Sequence[int]], settings: SamplingSettings, seed: int,
             device: torch.device | str, num_samples: int = 1, batch_size: int = 32) -> Generations:
    """`num_samples` completions for each prompt (token ids), batched and left-padded, seeded.

    Rows come out prompt by prompt (all samples of prompt 0, then prompt 1, ...). The caller's RNG is
    restored afterwards, so sampling in the middle of training does not change what training does next."""
    device = torch.device(device)
    stops = stop_token_ids(tokenizer)
    if not stops:
        raise ValueError("the tokenizer has no EOS token: generation could not stop")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    order = [i for i in range(len(prompts)) for _ in range(num_samples)]
    out = Generations([], [], [], [])
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), policy_only(model):
            torch.manual_seed(seed)
            for lo in range(0, len(order), batch_size):
                rows = order[lo:lo + batch_size]
                width = max(len(prompts[i]) for i in rows)
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                attn = torch.zeros_like(ids)
                for r, i in enumerate(rows):  # left padding: every row continues right after its own prompt
                    p = list(prompts[i])
                    ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
                    attn[r, width - len(p):] = 1
                gen = model.generate(
                    input_ids=ids.to(device), attention_mask=attn.to(device), do_sample=True,
                    temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                    max_new_tokens=settings.max_new_tokens, pad_token_id=pad, eos_token_id=stops,
                    # training turns the cache off in the model config; without it every new token
                    # re-runs the whole prefix
                    use_cache=True)
                for r, row in enumerate(gen[:, width:].tolist()):
                    completion, finished = [], False
                    for t in row:
                        completion.append(t)
                        if t in stops:
                            finished = True
                            break
                    out.prompt_index.append(rows[r])
                    out.prompt_ids.append(list(prompts[rows[r]]))
                    out.completion_ids.append(completion)
                    out.finished.append(finished)
    finally:
        if was_training:
            model.train()
    return out


def pack(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int,
         device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + completion rows right-padded, the layout `logps.sequence_logps` reads: (input_ids,
    attention_mask, completion_mask)."""
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    comp = torch.zeros_like(ids)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs, strict=True)):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, :len(s)] = 1
        comp[i, len(p):len(s)] = 1
    device = torch.device(device)
    return ids.to(device), attn.to(device), comp.to(device)
