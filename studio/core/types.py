"""Domain vocabulary shared by every layer: choices, strengths, splits, run states."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Choice(enum.StrEnum):
    """An annotator's verdict on a pair, always in terms of the pair's own A and B (not screen sides)."""

    A = "a"
    B = "b"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    SKIP = "skip"

    @property
    def decided(self) -> bool:
        """True when the label prefers one response."""
        return self in (Choice.A, Choice.B)


class Strength(enum.StrEnum):
    SLIGHT = "slight"
    CLEAR = "clear"
    DECISIVE = "decisive"


class LabelState(enum.StrEnum):
    """A label row's place in its history: only one `current` per annotator and pair."""

    CURRENT = "current"
    REPLACED = "replaced"
    UNDONE = "undone"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.STOPPING)


ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str
    """Plain text; for a chat, the turns rendered as `role: content` lines (for search and display)."""
    messages: list[dict] | None
    """The chat as a list of {"role", "content"} dicts, or None for a plain prompt."""
    split: str
    source: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Response:
    id: int
    prompt_id: int
    text: str
    model: str | None = None


@dataclass(frozen=True)
class Pair:
    id: int
    prompt: Prompt
    a: Response
    b: Response
    source: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Label:
    id: int
    pair_id: int
    annotator: str
    choice: Choice
    strength: Strength | None
    rationale: str | None
    shown_left: str
    """Which of the pair's responses ('a' or 'b') was on the left when the label was made."""
    seconds: float | None
    created_at: str
    state: LabelState


@dataclass(frozen=True)
class Flag:
    """A pair marked for review by an annotator, with what they noted."""

    id: int
    pair_id: int
    annotator: str
    note: str | None
    created_at: str
    cleared_at: str | None = None


@dataclass(frozen=True)
class Preference:
    """A resolved preference: the majority verdict across annotators on one pair."""

    pair_id: int
    prompt_id: int
    chosen_id: int
    rejected_id: int
    split: str
    votes_for: int
    votes_total: int
