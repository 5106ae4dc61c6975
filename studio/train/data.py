"""From a run's snapshot rows to token batches: chat templates, EOS, truncation, completion masks.

Chosen and rejected of a batch go into ONE tensor (chosen rows first, then rejected rows) so the model
runs one forward pass per micro-batch; the caller splits the per-sequence results in half afterwards.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import torch

log = logging.getLogger("studio.train")


@dataclass
class Example:
    """One tokenized preference pair, already truncated."""

    pair_id: int
    prompt_id: int
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_text: str = ""
    messages: list[dict] | None = None

    @property
    def n_tokens(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class Batch:
    """A padded micro-batch: rows 0..B-1 are prompt+chosen, rows B..2B-1 prompt+rejected (right-padded)."""

    input_ids: torch.Tensor  # [2B, T]
    attention_mask: torch.Tensor  # [2B, T]
    completion_mask: torch.Tensor  # [2B, T], 1 on completion tokens (the targets whose log-prob counts)
    pair_ids: list[int] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    def to(self, device: torch.device | str) -> Batch:
        return Batch(to_device(self.input_ids, device), to_device(self.attention_mask, device),
                     to_device(self.completion_mask, device), self.pair_ids)


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a host tensor to the device without stalling the host: a copy from pageable memory makes CUDA
    wait for the stream to drain first, so the next step's kernels could not be queued ahead."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def uses_chat_template(tokenizer, messages: list[dict] | None) -> bool:
    """A chat prompt goes through the template when the tokenizer has one; without one (a base model) it is
    rendered as plain text (`render_plain_chat`) and then handled like any plain prompt."""
    return messages is not None and bool(getattr(tokenizer, "chat_template", None))


def render_plain_chat(messages: list[dict]) -> str:
    """The fallback for a tokenizer without a chat template: 'role: content' turns, ending with 'assistant:'."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"


def prompt_token_ids(tokenizer, prompt: str, messages: list[dict] | None) -> list[int]:
    """A chat goes through the tokenizer's chat template with the generation prompt (the assistant turn
    header), a plain prompt is tokenized as is (with BOS if the tokenizer adds one)."""
    if messages is not None:
        if not uses_chat_template(tokenizer, messages):
            return list(tokenizer(render_plain_chat(messages)).input_ids)
        if messages[-1]["role"] == "assistant":
            # the prompt already opens the assistant's reply: the completion continues it (as TRL does),
            # rather than starting a new assistant turn after it
            text = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        else:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # the rendered template already holds any BOS it wants
        return list(tokenizer(text, add_special_tokens=False).input_ids)
    return list(tokenizer(prompt).input_ids)


def completion_token_ids(tokenizer, text: str, prompt_is_chat: bool = False) -> list[int]:
    """The completion's tokens followed by EOS, so the model learns to stop."""
    if not prompt_is_chat and text and not text[0].isspace():
        # plain prompts are concatenated; a space keeps the first word a word of its own
        text = " " + text
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def truncate(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int, max_prompt_length: int,
             mode: str = "keep_end", bos_id: int | None = None) -> tuple[list[int], list[int], list[int]]:
    """Fit prompt + completion into max_length without ever dropping a whole completion.

    The prompt is cut to max_prompt_length first (keeping its end, next to the completion, with 'keep_end').
    If a completion still does not fit, it keeps its start, but never fewer than min(its length,
    max_length // 2) tokens: the prompt is shortened further to make room. With 'keep_end' a leading BOS
    (`bos_id`) stays in front of the kept end: models trained with BOS drift without it."""
    def cut_prompt(ids: list[int], n: int) -> list[int]:
        n = max(n, 0)
        if len(ids) <= n:
            return ids
        if mode != "keep_end":
            return ids[:n]
        if n > 1 and bos_id is not None and ids and ids[0] == bos_id:
            return ids[:1] + ids[len(ids) - (n - 1):]
        return ids[len(ids) - n:]

    prompt = cut_prompt(prompt, max_prompt_length)
    longest = max(len(chosen), len(rejected))
    reserved = min(longest, max_length // 2)
    prompt = cut_prompt(prompt, max_length - reserved)
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


def tokenize_rows(rows: list[dict], tokenizer, max_length: int, max_prompt_length: int,
                  truncation: str = "keep_end") -> list[Example]:
    """Snapshot rows (`Project.run_snapshot`) -> truncated examples."""
    out = []
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if not getattr(tokenizer, "chat_template", None) and any(r.get("messages") is not None for r in rows):
        log.warning("the tokenizer has no chat template: chat prompts are rendered as plain 'role: content' "
                    "text ending in 'assistant:' (use an instruct model's tokenizer to train on its template)")
    for r in rows:
        # a chat rendered without a template is a plain prompt: its completion needs the separating space
        is_chat = uses_chat_template(tokenizer, r.get("messages"))
        prompt = prompt_token_ids(tokenizer, r["prompt"], r.get("messages"))
        chosen = completion_token_ids(tokenizer, r["chosen"], is_chat)
        rejected = completion_token_ids(tokenizer, r["rejected"], is_chat)
        prompt, chosen, rejected = truncate(prompt, chosen, rejected, max_length, max_prompt_length, truncation,
                                            bos_id=bos_id)
        out.append(Example(int(r["pair_id"]), int(r["prompt_id"]), prompt, chosen, rejected,
                           prompt_text=r["prompt"], messages=r.get("messages")))
    return out


def collate(examples: list[Example], pad_id: int, pad_to_multiple_of: int = 1) -> Batch:
    """Right-pad prompt+chosen and prompt+rejected sequences into one [2B, T] batch."""
    seqs = [e.prompt_ids + e.chosen_ids for e in examples] + [e.prompt_ids + e.rejected_ids for e in examples]
    comp = [[0] * len(e.prompt_ids) + [1] * len(e.chosen_ids) for e in examples] + \
           [[0] * len(e.prompt_ids) + [1] * len(e.rejected_ids) for e in examples]
    width = max(len(s) for s in seqs)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    completion = torch.zeros((n, width), dtype=torch.long)
    for i, (s, c) in enumerate(zip(seqs, comp, strict=True)):
        input_ids[i, :len(s)] = torch.tensor(s)
        attention[i, :len(s)] = 1
        completion[i, :len(c)] = torch.tensor(c)
    return Batch(input_ids, attention, completion, [e.pair_id for e in examples])


def split_eval(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Train and eval rows: the snapshot's own eval split when it has one, else a seeded held-out share."""
    train = [r for r in rows if r.get("split", "train") == "train"]
    evals = [r for r in rows if r.get("split") == "eval"]
    if evals or eval_fraction <= 0 or len(train) < 2:
        return train, evals
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(train) * eval_fraction))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(train) if i not in held], [r for i, r in enumerate(train) if i in held]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch; a pure function of (seed, epoch), so resume can rebuild it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def epoch_batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """One epoch's micro-batches in shuffled order (the last one may be smaller)."""
    order = epoch_order(len(examples), seed, epoch)
    return [[examples[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
