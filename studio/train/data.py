"""From a run's snapshot rows to token batches: chat templates, EOS, truncation, completion masks.

Chosen and rejected of a batch go into ONE tensor (chosen rows first, then rejected rows) so the model
runs one forward pass per micro-batch; the caller splits the per-sequence results in half afterwards.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
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
    """A chat prompt goes through the tokenizer's chat template when it has one; without one (a base model) it
    is rendered as plain text (`render_plain_chat`) and then handled like any plain prompt."""
    return messages is not None and bool(getattr(tokenizer, "chat_template", None))


def render_plain_chat(messages: list[dict]) -> str:
    """The fallback for a tokenizer without a chat template: 'role: content' turns, ending with 'assistant:'."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"


# What the fallback puts between 'assistant:' and the reply, as a chat template would write its turn header.
PLAIN_CHAT_REPLY_PREFIX = " "


def chat_token_ids(tokenizer, messages: list[dict], completion: str | None) -> list[int]:
    """The chat through the tokenizer's template. Without a completion: the prompt with the generation prompt
    (the assistant turn header), or, when the chat already ends in an assistant turn, that turn left open to be
    continued (as TRL does). With one: the whole conversation with the completion as the assistant's turn, so
    the completion ends with whatever the template closes a turn with (<|im_end|>, <end_of_turn>, <|end|>, ...)."""
    continues = messages[-1]["role"] == "assistant"
    if completion is None:
        flag = {"continue_final_message": True} if continues else {"add_generation_prompt": True}
        chat = messages
    else:
        flag = {}
        last = messages[-1]
        chat = ([*messages[:-1], {**last, "content": last["content"] + completion}] if continues
                else [*messages, {"role": "assistant", "content": completion}])
    # the template writes any BOS it wants; tokenizing adds no special tokens (apply_chat_template's rule)
    return list(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True, **flag)["input_ids"])


def prompt_token_ids(tokenizer, prompt: str, messages: list[dict] | None) -> list[int]:
    """The prompt as the model sees it at inference: a chat through the chat template with the generation prompt,
    a plain prompt tokenized as is (with BOS if the tokenizer adds one)."""
    if uses_chat_template(tokenizer, messages):
        return chat_token_ids(tokenizer, messages, None)
    text = render_plain_chat(messages) if messages is not None else prompt
    return list(tokenizer(text).input_ids)


def full_token_ids(tokenizer, prompt: str, messages: list[dict] | None, completion: str) -> list[int]:
    """Prompt and completion as one training sequence, the way TRL builds it: a chat rendered whole through its
    template; plain text as prompt + completion + EOS, concatenated exactly as written (no space inserted)."""
    if uses_chat_template(tokenizer, messages):
        return chat_token_ids(tokenizer, messages, completion)
    if messages is not None:
        prompt, completion = render_plain_chat(messages), PLAIN_CHAT_REPLY_PREFIX + completion
    eos = tokenizer.eos_token
    if eos and not completion.endswith(eos):
        completion += eos  # as text: the tokenizer maps it to the EOS id
    return list(tokenizer(prompt + completion).input_ids)


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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


class PairTokenizer:
    """Snapshot rows (`Project.run_snapshot`) -> truncated examples, one row at a time, so a run tokenizes only
    the pairs it trains on, when it reaches them.

    The completion is what the tokenized prompt + completion has beyond the tokenized prompt (TRL's rule). Where
    the two differ before the prompt's end (tokens merged across the boundary, or a template that renders the
    generation prompt differently from a finished turn), the completion starts where they diverge."""

    def __init__(self, tokenizer, max_length: int, max_prompt_length: int, truncation: str = "keep_end"):
        self.tokenizer = tokenizer
        self.max_length, self.max_prompt_length, self.truncation = max_length, max_prompt_length, truncation
        self.bos_id = getattr(tokenizer, "bos_token_id", None)
        self._warned: set[str] = set()

    def warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def __call__(self, row: dict) -> Example:
        tok, messages = self.tokenizer, row.get("messages")
        if messages is not None and not uses_chat_template(tok, messages):
            self.warn_once("template", "the tokenizer has no chat template: chat prompts are rendered as plain "
                           "'role: content' text ending in 'assistant:' (use an instruct model's tokenizer to "
                           "train on its template)")
        prompt = prompt_token_ids(tok, row["prompt"], messages)
        full_chosen = full_token_ids(tok, row["prompt"], messages, row["chosen"])
        full_rejected = full_token_ids(tok, row["prompt"], messages, row["rejected"])
        n = min(common_prefix_length(prompt, full_chosen), common_prefix_length(prompt, full_rejected))
        if n < len(prompt):
            self.warn_once("prefix", "pair %s: the tokenized prompt is not a prefix of prompt + completion (tokens "
                           "merged across the boundary, or the chat template renders the prompt differently "
                           "alone); the completion starts where they diverge and the prompt's tail %r is left out "
                           "(shown once)", row["pair_id"], tok.decode(prompt[n:]))
        prompt, chosen, rejected = truncate(prompt[:n], full_chosen[n:], full_rejected[n:], self.max_length,
                                            self.max_prompt_length, self.truncation, bos_id=self.bos_id)
        return Example(int(row["pair_id"]), int(row["prompt_id"]), prompt, chosen, rejected,
                       prompt_text=row["prompt"], messages=messages)

    def rows(self, rows: Sequence[dict]) -> list[Example]:
        return [self(r) for r in rows]


def tokenize_rows(rows: Sequence[dict], tokenizer, max_length: int, max_prompt_length: int,
                  truncation: str = "keep_end") -> list[Example]:
    """Snapshot rows -> truncated examples (`PairTokenizer` on each row)."""
    return PairTokenizer(tokenizer, max_length, max_prompt_length, truncation).rows(rows)


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


def batches_per_epoch(n: int, batch_size: int, processes: int = 1) -> int:
    """Micro-batches each process runs per epoch over n examples (the same number on every process)."""
    return -(-n // (batch_size * processes))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, processes: int = 1,
                  rank: int = 0) -> list[list[int]]:
    """This process's micro-batches of one epoch, as indices into the n examples in the epoch's shuffled order.

    Each global batch of processes x batch_size examples is split among the processes, process `rank` taking
    the rank-th share, so the global batches are those one process with processes x batch_size would train on.
    With several processes the last global batch is filled up from the epoch's start, so that every process runs
    the same number of steps (as accelerate's even_batches does); alone, the last batch may be smaller."""
    order = epoch_order(n, seed, epoch)
    if processes == 1:
        return [order[k:k + batch_size] for k in range(0, n, batch_size)]
    width = batch_size * processes
    return [[order[i % n] for i in range(k * width + rank * batch_size, k * width + (rank + 1) * batch_size)]
            for k in range(batches_per_epoch(n, batch_size, processes))]


def shard(rows: Sequence, processes: int, rank: int) -> list:
    """Process `rank`'s share of `rows` for a pass over all of them (evaluation, reference log-probs): every
    processes-th row, so no row is seen twice and the shares differ in length by one row at most."""
    return list(rows[rank::processes])
