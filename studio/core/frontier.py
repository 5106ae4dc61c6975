"""The reward/KL frontier as data: the plan of a frontier job and the maths of its points.

A point is one policy (a run's adapter at a step, or the base model itself) measured on samples for fixed
prompts: the mean reward a chosen reward model gives the samples, against the mean KL(policy || reference) of
the same samples, the reference being the base model (Rafailov et al. 2023, figure 2: the better method reaches
more reward for the same KL). The KL of a sample is summed over its tokens, with r = log ref - log pi per token:
k3 = exp(r) - 1 - r (never negative, the one charted) and k1 = -r (unbiased, noisier), in nats (Schulman 2020).
Samples are drawn at temperature 1, so the KL is the policy's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: this module loads with the window, numpy is
    import numpy as np  # about 135 ms of its start (studio bench gui checks that the start loads none)

from studio.core.errors import ConfigError
from studio.core.generations import BASE, Source, plan_from_dict

FRONTIER = "frontier"
"""The run method of a frontier job."""

TEMPERATURE = 1.0
"""Samples are the policy's own distribution: at another temperature the KL would be of another policy."""


@dataclass
class FrontierPlan:
    """What a frontier job measures (stored as the job's config): the policies, the reward model, the prompts and
    how many samples each gets."""

    reward_model: str
    """The reward: a reward run's id, a sequence-classification folder, or rule:NAME (as a PPO run's setting)."""
    reward_name: str
    """The reward in words ('reward run 3')."""
    sources: list[Source]
    """The policies: the base model first (its point has KL 0), then runs' adapters, all on one base model."""
    prompt_ids: list[int]
    samples: int = 4
    """Samples per prompt and policy."""
    max_new_tokens: int = 128
    max_prompt_tokens: int = 1024
    seed: int = 0
    batch_size: int = 32
    """Sampled responses scored and measured at once."""
    method: str = field(default=FRONTIER, init=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("runs: none to measure")
        if len({s.model for s in self.sources}) > 1:
            raise ConfigError("runs: the policies must share one base model (the reference of their KL): "
                              + ", ".join(sorted({s.model for s in self.sources})))
        if not self.prompt_ids:
            raise ConfigError("prompts: none to sample for")
        if self.samples < 1:
            raise ConfigError("samples: must be at least 1")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be at least 1")

    @property
    def model(self) -> str:
        return self.sources[0].model

    def measure(self) -> str:
        """What makes points comparable, as a key: points of the same measure were taken with the same reward
        model, base model, prompts, samples, sampling and seed, so a later job only adds the missing ones."""
        what = {"reward": self.reward_model, "model": self.model, "prompts": self.prompt_ids, "samples": self.samples,
                "max_new_tokens": self.max_new_tokens, "max_prompt_tokens": self.max_prompt_tokens,
                "seed": self.seed, "temperature": TEMPERATURE}
        return hashlib.blake2b(json.dumps(what, sort_keys=True).encode(), digest_size=8).hexdigest()

    def describe(self) -> str:
        return (f"{self.reward_name} on {len(self.prompt_ids)} prompts x {self.samples} samples (at most "
                f"{self.max_new_tokens} new tokens, temperature {TEMPERATURE:g}, seed {self.seed})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # the sources too, as dicts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontierPlan:
        return plan_from_dict(cls, d, "frontier plan")


def policy_key(source: Source) -> str:
    """How points name a policy: 'base', or 'run N'."""
    return BASE if source.adapter_run is None else f"run {source.adapter_run}"


def _mean_stderr(x: np.ndarray) -> tuple[float, float]:
    import numpy as np
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def summarize_point(rewards: Sequence[float], kl_k3: Sequence[float], kl_k1: Sequence[float],
                    tokens: Sequence[int], finished: Sequence[bool]) -> dict[str, float]:
    """A point from its samples: mean reward and mean per-sample KL (k3, also k1) with standard errors, the
    mean sampled length and the share of samples that ended."""
    import numpy as np
    reward, reward_se = _mean_stderr(np.asarray(rewards))
    kl, kl_se = _mean_stderr(np.asarray(kl_k3))
    return {"samples": len(rewards), "reward": reward, "reward_stderr": reward_se, "kl": kl, "kl_stderr": kl_se,
            "kl_k1": float(np.mean(kl_k1)) if len(kl_k1) else math.nan,
            "response_tokens": float(np.mean(tokens)) if len(tokens) else math.nan,
            "finished": float(np.mean(finished)) if len(finished) else math.nan}


def on_frontier(points: Sequence[dict[str, Any]]) -> list[bool]:
    """Whether each point is on the frontier: no other point has at least its reward at no more KL (and is
    better in one of the two)."""
    out = []
    for p in points:
        dominated = any(q is not p and q["kl"] <= p["kl"] and q["reward"] >= p["reward"]
                        and (q["kl"] < p["kl"] or q["reward"] > p["reward"]) for q in points)
        out.append(not dominated)
    return out
