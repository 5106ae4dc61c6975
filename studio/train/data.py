"""From a run's snapshot rows to token batches: chat templates, EOS, truncation, completion masks; and
passes over rows that a stop can cut short (`StoppablePass`), longest first when asked (`by_length`).

Chosen and rejected of a batch go into ONE tensor (chosen rows first, then rejected rows) so the model
runs one forward pass per micro-batch; the caller splits the per-sequence results in half afterwards.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from studio.core.configs import batches_per_epoch
from studio.train.logps import HeadRows

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
    """A micro-batch of B pairs in one of two layouts; sequences 0..B-1 are the chosen ones, B..2B-1 the rejected.

    Padded (`collate`, TRL's layout): rows 0..B-1 prompt+chosen, rows B..2B-1 prompt+rejected, right-padded.
    Packed (`pack`, see packing.py): each prompt once with both completions after it, pairs sharing rows,
    with position ids and segment / branch ids from which the attention mask is built.
    Either way `head` says which hidden states the lm_head scores (laid out here, on the host)."""

    input_ids: torch.Tensor  # [rows, T]
    attention_mask: torch.Tensor  # [rows, T], 1 on real tokens
    completion_mask: torch.Tensor  # [rows, T], 1 on completion tokens
    pair_ids: list[int] = field(default_factory=list)
    head: HeadRows | None = None
    position_ids: torch.Tensor | None = None  # packed: positions restart per pair, rejected after the prompt
    segments: torch.Tensor | None = None  # packed: [rows, T] pair index within its row, -1 on padding
    branches: torch.Tensor | None = None  # packed: [rows, T] packing.PROMPT / CHOSEN / REJECTED / PADDING
    n_tokens: int = 0  # tokens of the pairs' sequences, each prompt counted with both completions (as TRL)

    @property
    def n_pairs(self) -> int:
        return self.head.n_seqs // 2 if self.head is not None else self.input_ids.shape[0] // 2

    @property
    def packed(self) -> bool:
        return self.segments is not None

    def to(self, device: torch.device | str) -> Batch:
        def move(t):
            return None if t is None else to_device(t, device)

        return Batch(move(self.input_ids), move(self.attention_mask), move(self.completion_mask), self.pair_ids,
                     None if self.head is None else self.head.to(device, to_device), move(self.position_ids),
                     move(self.segments), move(self.branches), self.n_tokens)


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


def prompt_and_completion_ids(tokenizer, prompt: str, messages: list[dict] | None,
                              completion: str) -> tuple[list[int], list[int]]:
    """The prompt's ids and the completion's, split as training splits them (`PairTokenizer`): the completion
    is what prompt + completion has beyond the tokenized prompt, from where the two diverge."""
    ids = prompt_token_ids(tokenizer, prompt, messages)
    full = full_token_ids(tokenizer, prompt, messages, completion)
    n = common_prefix_length(ids, full)
    return ids[:n], full[n:]


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


LAYOUTS = ("padded", "packed")


def collate(examples: list[Example], pad_id: int, pad_to_multiple_of: int = 1) -> Batch:
    """Right-pad prompt+chosen and prompt+rejected sequences into one [2B, T] batch (TRL's layout)."""
    seqs = [e.prompt_ids + e.chosen_ids for e in examples] + [e.prompt_ids + e.rejected_ids for e in examples]
    prompts = [len(e.prompt_ids) for e in examples] * 2
    width = max(len(s) for s in seqs)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    completion = torch.zeros((n, width), dtype=torch.long)
    index: list[int] = []
    targets: list[int] = []
    seq: list[int] = []
    for i, (s, p) in enumerate(zip(seqs, prompts, strict=True)):
        input_ids[i, :len(s)] = torch.tensor(s)
        attention[i, :len(s)] = 1
        completion[i, p:len(s)] = 1
        # position t - 1 predicts completion token t (a completion at position 0 has no predictor)
        first = max(p, 1)
        index.extend(range(i * width + first - 1, i * width + len(s) - 1))
        targets.extend(s[first:])
        seq.extend([i] * (len(s) - first))
    head = HeadRows.from_lists(index, targets, seq, n)
    return Batch(input_ids, attention, completion, [e.pair_id for e in examples], head,
                 n_tokens=sum(e.n_tokens for e in examples))


def pack(examples: list[Example], pad_id: int, pad_to_multiple_of: int = 1) -> Batch:
    """The packed layout (packing.py): per pair one segment prompt + chosen + rejected, segments first-fit into
    rows as wide as the longest, position ids that put both completions right after their prompt."""
    from studio.train import packing

    lengths = [len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples]
    width = -(-max(lengths) // pad_to_multiple_of) * pad_to_multiple_of
    rows = packing.segment_order(lengths, width)
    B = len(examples)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    branches = torch.full((len(rows), width), packing.PADDING, dtype=torch.long)
    per_seq: list[tuple[list[int], list[int]]] = [([], []) for _ in range(2 * B)]  # (index, targets) per sequence
    for r, members in enumerate(rows):
        offset = r * width
        at = 0
        for k, j in enumerate(members):
            e = examples[j]
            p, c, rj = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
            end = at + lengths[j]
            input_ids[r, at:end] = torch.tensor(e.prompt_ids + e.chosen_ids + e.rejected_ids)
            attention[r, at:end] = 1
            completion[r, at + p:end] = 1
            positions[r, at:end] = torch.cat([torch.arange(p + c), torch.arange(p, p + rj)])
            segments[r, at:end] = k
            branches[r, at:end] = torch.tensor([packing.PROMPT] * p + [packing.CHOSEN] * c + [packing.REJECTED] * rj)
            last_prompt = [offset + at + p - 1] if p else []  # predicts the first token of both completions
            chosen_from = (last_prompt + list(range(offset + at + p, offset + at + p + c - 1))) if c else []
            rejected_from = (last_prompt + list(range(offset + at + p + c, offset + end - 1))) if rj else []
            per_seq[j] = (chosen_from, e.chosen_ids[len(e.chosen_ids) - len(chosen_from):])
            per_seq[B + j] = (rejected_from, e.rejected_ids[len(e.rejected_ids) - len(rejected_from):])
            at = end
    index = [i for idx, _ in per_seq for i in idx]
    targets = [t for _, tg in per_seq for t in tg]
    seq = [s for s, (idx, _) in enumerate(per_seq) for _ in idx]
    head = HeadRows.from_lists(index, targets, seq, 2 * B)
    return Batch(input_ids, attention, completion, [e.pair_id for e in examples], head, positions, segments,
                 branches, n_tokens=sum(e.n_tokens for e in examples))


def make_batch(examples: list[Example], pad_id: int, layout: str = "padded") -> Batch:
    """The micro-batch of `examples` in `layout` ('padded' or 'packed', see LAYOUTS)."""
    return pack(examples, pad_id) if layout == "packed" else collate(examples, pad_id)


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


def row_chars(row: dict) -> int:
    """A snapshot row's characters (prompt or chat turns, both completions): its size without tokenizing it."""
    messages = row.get("messages")
    prompt = sum(len(str(m.get("content") or "")) for m in messages) if messages else len(row["prompt"])
    return prompt + len(row["chosen"]) + len(row["rejected"])


def shard(rows: Sequence, processes: int, rank: int) -> list:
    """Process `rank`'s share of `rows` for a pass over all of them (evaluation, reference log-probs): every
    processes-th row, so no row is seen twice and the shares differ in length by one row at most."""
    return list(rows[rank::processes])


def by_length(rows: Sequence[dict]) -> list[dict]:
    """`rows` longest first, by their characters (`row_chars`): pairs of about one length share a batch
    (little padding), and the longest batch comes first, so a memory error shows at once. Characters, not
    tokens: sorting by tokens would tokenize every pair before the pass, the minutes lazy tokenization saves."""
    return sorted(rows, key=row_chars, reverse=True)


class StoppablePass:
    """This process's share of `rows` (`shard`), tokenized and put on the device one batch at a time,
    until a stop is requested (a pass over a large dataset takes minutes); `stopped` says whether one came.

    The stop check is collective, so every process goes through the same number of batches: a process whose
    share is shorter gets None for its last one. Batches are laid out in `layout` (`make_batch`).
    `progress(done, total)` hears of the rows done on this process."""

    def __init__(self, rows: Sequence[dict], tokenize: PairTokenizer, batch_size: int, pad_id: int, device,
                 should_stop: Callable[[], bool], processes: int = 1, rank: int = 0,
                 progress: Callable[[int, int], None] | None = None, layout: str = "padded"):
        self.rows = shard(rows, processes, rank)
        self.n_batches = batches_per_epoch(len(rows), batch_size, processes)
        self.tokenize, self.batch_size, self.pad_id, self.device = tokenize, batch_size, pad_id, device
        self.should_stop, self.progress, self.layout = should_stop, progress, layout
        self.stopped = False

    def __iter__(self) -> Iterator[Batch | None]:
        for k in range(self.n_batches):
            if self.should_stop():
                self.stopped = True
                return
            rows = self.rows[k * self.batch_size:(k + 1) * self.batch_size]
            yield make_batch(self.tokenize.rows(rows), self.pad_id, self.layout).to(self.device) if rows else None
            if self.progress:
                self.progress(min(len(self.rows), (k + 1) * self.batch_size), len(self.rows))
