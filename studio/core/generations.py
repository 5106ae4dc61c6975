"""A generation job as data: the sources it samples from (a base model, or a run's LoRA adapter on its base),
the prompts, the sampling settings and seed, and how the samples are paired for labeling.

Two kinds, both run as a run of their own (method `generate` or `arena`) by the training worker:
- `generate`: candidates to label: two samples of one source paired, or one sample of each of two sources;
  their provenance is shown after the annotator's choice.
- `arena`: each source answers the same prompts once, every two sources' answers to a prompt are paired, and
  the pairs are blind: which source wrote which response is never shown while labeling.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from studio.core.errors import ConfigError

GENERATE = "generate"
ARENA = "arena"
JOB_METHODS = (GENERATE, ARENA)
"""Run methods that generate responses instead of training (core.jobs.JOB_METHODS names every job method)."""
BASE = "base"
"""The name of the base model as a source (no adapter)."""


@dataclass(frozen=True)
class Source:
    """Something that writes responses: a base model, or a run's LoRA adapter on its base model."""

    name: str
    """What results and provenance call it: 'base', a run's name, or a model's folder name."""
    model: str
    """The base model: a local folder or a hub id in the local cache."""
    adapter_run: int | None = None
    """The run whose adapter (runs/<id>/adapter) is loaded on the model; None for the model alone."""
    adapter_step: int | None = None
    """That run's step when the job was created (its adapter is the one saved last)."""

    def describe(self) -> str:
        if self.adapter_run is None:
            return f"{self.name} ({self.model})" if self.name != self.model else self.model
        step = f", step {self.adapter_step}" if self.adapter_step is not None else ""
        return f"{self.name} (run {self.adapter_run}{step} on {self.model})"


@dataclass
class GenerationPlan:
    """What a generation job samples, from what, and how it pairs the samples (stored as the run's config)."""

    kind: str
    sources: list[Source]
    prompt_ids: list[int]
    samples: int = 2
    """Samples per prompt and source: `generate` with one source pairs them two by two; an arena takes 1."""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    split: str | None = None
    max_prompt_tokens: int = 1024
    """Longer prompts keep their end (the turns nearest the answer)."""
    prompts_per_batch: int = 8
    method: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.method = self.kind
        self.validate()

    def validate(self) -> None:
        if self.kind not in JOB_METHODS:
            raise ConfigError(f"kind: {self.kind!r} is not one of {', '.join(JOB_METHODS)}")
        if not self.sources:
            raise ConfigError("sources: none given")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"sources: named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        if self.kind == ARENA:
            if len(self.sources) < 2:
                raise ConfigError("sources: an arena needs at least two sources (for example base and a run)")
            if self.samples != 1:
                raise ConfigError("samples: an arena takes one sample per prompt and source")
        else:
            if len(self.sources) > 2:
                raise ConfigError("sources: candidates come from one source (two samples) or two (one each); "
                                  "use an arena for more")
            if len(self.sources) == 1 and self.samples < 2:
                raise ConfigError("samples: at least 2 per prompt to pair samples of one source")
        if self.samples < 1:
            raise ConfigError("samples: must be at least 1")
        if self.temperature <= 0:
            raise ConfigError("temperature: must be above 0 (sampling); use a small value for near-greedy")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens: must be at least 1")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p: must be in (0, 1]")
        if self.top_k < 0:
            raise ConfigError("top_k: must be 0 (off) or more")
        if not self.prompt_ids:
            raise ConfigError("prompts: none to generate for")

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # the sources too, as dicts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationPlan:
        """The plan stored on a run; a damaged or foreign config names the field."""
        return plan_from_dict(cls, d, "generation plan")


def plan_from_dict(cls: type, d: dict[str, Any], what: str) -> Any:
    """A job's plan (a dataclass with `sources: list[Source]`) from the dict `dataclasses.asdict` made of it; fields
    it does not know are left out, a damaged or foreign config raises ConfigError naming `what`."""
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        sources = [Source(**s) for s in d["sources"]]
        return cls(**{k: v for k, v in d.items() if k in known and k != "sources"}, sources=sources)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{what}: not a valid plan ({e})") from None


def sample_pairs(kind: str, n_sources: int, samples: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Which samples of one prompt are paired, as ((source, sample), (source, sample)) index pairs.

    arena: every two sources, one sample each; candidates from one source: samples 0-1, 2-3, ...; from two
    sources: sample i of the first with sample i of the second."""
    if kind == ARENA:
        return [((i, 0), (j, 0)) for i in range(n_sources) for j in range(i + 1, n_sources)]
    if n_sources == 1:
        return [((0, k), (0, k + 1)) for k in range(0, samples - 1, 2)]
    return [((0, k), (1, k)) for k in range(samples)]


def shuffled_pairs(pairs: list, rng: random.Random) -> list:
    """The pairs in random order with each one's sides swapped at random: which source is the pair's A says
    nothing, and the pairs of one prompt do not follow each other in the queue."""
    out = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in pairs]
    rng.shuffle(out)
    return out


def batch_seed(seed: int, batch: int, source: int) -> int:
    """The sampling seed of one batch of prompts for one source: distinct per batch and source, and the same
    again when an interrupted job resumes."""
    return (seed * 1_000_003 + batch * 1009 + source) % (2**63)
