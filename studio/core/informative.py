"""Which pair to label next: the informative score of a pair, as pure functions, and the plan of a rank job.

A pair is worth an annotator's time when the models are unsure about it or disagree about it, and when the
people who labeled it disagree. Each signal is a number in [0, 1]:

- uncertainty U = 1 - |2 sigma(m) - 1| of the reward model's margin m = r(A) - r(B): 1 when the model gives
  each side even odds (m = 0), near 0 when it is sure (|m| large); without a reward model, the margin of the
  DPO policy's implicit reward stands in;
- checkpoint disagreement C = max - min of sigma(m_k) over the reward models k (two or more): how far apart
  their probabilities that A is better are;
- policy disagreement P = |sigma(m_reward) - sigma(m_policy)|, m_policy = beta * [(log pi(A) - log pi_ref(A)) -
  (log pi(B) - log pi_ref(B))], the DPO policy's implicit reward margin (Rafailov et al. 2023);
- label disagreement L = min(1, 2 (1 - largest share of one verdict)) over the pair's current verdicts (skips
  left out), 0 with fewer than two: 1 for an even split between two verdicts, 2/3 for a 2-1 split.

    informative = LABEL_WEIGHT * L + (U + C + P) / (1 + n)

n being the pair's current verdicts: what the models are unsure about matters less once people have answered
it, and a split vote (which a run's snapshot leaves out) always comes first. A term with no model behind it
is 0 for every pair; a pair a model has not scored (added since, or beyond the job's share) takes the mean of
that term over the scored pairs, so it sits among them instead of behind them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: this module loads with the window, numpy is
    import numpy as np  # about 135 ms of its start (studio bench gui checks that the start loads none)

from studio.core.errors import ConfigError

RANK = "rank"
"""The run method of a rank job: scores pairs with models, then ranks them."""

LABEL_WEIGHT = 3.0
"""Weight of label disagreement: above the most the three model terms can add up to (3), so a pair whose
labels split evenly comes before any pair only the models are unsure about."""

REWARD, POLICY = "reward", "policy"
"""Scorer kinds: a reward run (its margin r(A) - r(B)) or a DPO run (its implicit reward margin)."""

PARTS = ("uncertainty", "checkpoints", "policy", "labels")
"""The parts of the score, in the order `InformativeScores` and the store keep them."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def uncertainty(margin: np.ndarray) -> np.ndarray:
    """1 - |2 sigma(m) - 1| = 1 - |tanh(m / 2)|: 1 at m = 0, towards 0 as |m| grows; NaN stays NaN."""
    import numpy as np
    return 1.0 - np.abs(np.tanh(0.5 * np.asarray(margin, dtype=np.float64)))


def checkpoint_disagreement(margins: np.ndarray) -> np.ndarray:
    """max - min over the models (rows) of sigma(margin), per pair (columns); NaN where fewer than two scored."""
    import numpy as np
    p = sigmoid(np.atleast_2d(margins))
    spread = np.fmax.reduce(p, axis=0) - np.fmin.reduce(p, axis=0)  # fmax/fmin pass NaN over
    return np.where(np.isfinite(p).sum(axis=0) >= 2, spread, np.nan)


def policy_disagreement(reward_margin: np.ndarray, policy_margin: np.ndarray) -> np.ndarray:
    """|sigma(m_reward) - sigma(m_policy)|: how differently the reward model and the policy's implicit reward
    judge the pair; NaN where either did not score it."""
    import numpy as np
    return np.abs(sigmoid(reward_margin) - sigmoid(policy_margin))


def label_disagreement(counts: np.ndarray) -> np.ndarray:
    """min(1, 2 (1 - max share)) of each row of verdict counts (a, b, tie, both bad); 0 below two verdicts."""
    import numpy as np
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, counts.max(axis=1) / np.where(total > 0, total, 1), 1.0)
    return np.where(total >= 2, np.minimum(1.0, 2.0 * (1.0 - share)), 0.0)


@dataclass
class InformativeScores:
    """Per pair: the score and its parts (NaN where a model term was imputed or has no model), and the order."""

    score: np.ndarray
    uncertainty: np.ndarray
    checkpoints: np.ndarray
    policy: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    """Indices of the pairs, most informative first (ties: the order they were given in)."""


def _filled(term: np.ndarray | None, n: int) -> np.ndarray:
    """A model term with its missing values replaced by the mean of the scored pairs; 0 without a model or
    without any scored pair."""
    import numpy as np
    if term is None:
        return np.zeros(n)
    scored = np.isfinite(term)
    mean = float(term[scored].mean()) if scored.any() else 0.0
    return np.where(scored, term, mean)


def informative_scores(n_pairs: int, verdicts: np.ndarray, reward_margins: np.ndarray | None = None,
                       policy_margins: np.ndarray | None = None) -> InformativeScores:
    """The informative score of `n_pairs` pairs (see the module docstring).

    verdicts: [n, 4] current verdict counts (a, b, tie, both bad) per pair; reward_margins: [k, n] r(A) - r(B)
    of k reward models, the first one giving the uncertainty (NaN: not scored); policy_margins: [n] the DPO
    policy's implicit reward margin (NaN: not scored)."""
    import numpy as np
    verdicts = np.asarray(verdicts, dtype=np.float64).reshape(n_pairs, 4)
    n = verdicts.sum(axis=1)
    labels = label_disagreement(verdicts) if n_pairs else np.zeros(0)
    rm = None if reward_margins is None else np.atleast_2d(np.asarray(reward_margins, dtype=np.float64))
    pm = None if policy_margins is None else np.asarray(policy_margins, dtype=np.float64)
    if (rm is not None and rm.shape[1] != n_pairs) or (pm is not None and pm.shape != (n_pairs,)):
        raise ValueError("informative_scores: one margin per pair is needed from every model")
    u = uncertainty(rm[0]) if rm is not None else uncertainty(pm) if pm is not None else None
    c = checkpoint_disagreement(rm) if rm is not None and len(rm) >= 2 else None
    p = policy_disagreement(rm[0], pm) if rm is not None and pm is not None else None
    model = _filled(u, n_pairs) + _filled(c, n_pairs) + _filled(p, n_pairs)
    score = LABEL_WEIGHT * labels + model / (1.0 + n)
    nan = np.full(n_pairs, np.nan)
    order = np.lexsort((np.arange(n_pairs), -score)) if n_pairs else np.zeros(0, dtype=np.int64)
    return InformativeScores(score, nan if u is None else u, nan if c is None else c, nan if p is None else p,
                             labels, order)


PART_WORDS = {"uncertainty": "how unsure the reward model is (1: even odds)",
              "checkpoints": "how far apart the reward models are",
              "policy": "how far the DPO policy's implicit reward is from the reward model",
              "labels": "how split the labels are"}


def model_terms(scorers: Sequence[Scorer]) -> set[str]:
    """The model terms a ranking with these scorers has (the others are 0 for every pair)."""
    rewards = sum(s.kind == REWARD for s in scorers)
    policy = any(s.kind == POLICY for s in scorers)
    return ({"uncertainty"} if rewards or policy else set()) | ({"checkpoints"} if rewards >= 2 else set()) | \
        ({"policy"} if rewards and policy else set())


def describe_parts(parts: dict[str, Any], terms: set[str]) -> list[str]:
    """A pair's score and its parts as lines a person reads (the Data view's tooltip, `studio rank --pair`).
    `parts`: score, n_labels and each part (None where a model term was not scored); `terms`: the model
    terms the ranking had (`model_terms`)."""
    lines = [f"informative {parts['score']:.3f} = {LABEL_WEIGHT:g} × labels + (uncertainty + checkpoints + "
             f"policy) / (1 + {parts['n_labels']} verdicts)"]
    for name in PARTS:
        value = parts.get(name)
        if name != "labels" and name not in terms:
            text = "0 (no model gives it)"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            text = "not scored: the mean of the scored pairs"
        else:
            text = f"{value:.3f}"
        lines.append(f"{name}: {text} — {PART_WORDS[name]}")
    return lines


# ---------------------------------------------------------------------------------------------- the job's plan


@dataclass(frozen=True)
class Scorer:
    """A model that scores pairs: a reward run (margin r(A) - r(B)) or a DPO run (implicit reward margin), at
    the step its adapter was saved."""

    run_id: int
    step: int
    kind: str

    def describe(self) -> str:
        return f"{'reward' if self.kind == REWARD else 'DPO'} run {self.run_id} (step {self.step})"


@dataclass
class RankPlan:
    """What a rank job scores and with what (stored as the job's config); it ranks every pair at its end."""

    model: str
    """The base model every scorer's adapter sits on."""
    scorers: list[Scorer] = field(default_factory=list)
    """Reward runs first (the first gives the uncertainty), then at most one DPO run."""
    max_pairs: int = 20_000
    """Pairs scored at most, drawn at random (seeded) among those still short of the overlap target; 0: all."""
    seed: int = 0
    batch_size: int = 16
    method: str = field(default=RANK, init=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        kinds = [s.kind for s in self.scorers]
        if any(k not in (REWARD, POLICY) for k in kinds):
            raise ConfigError(f"scorers: unknown kind in {kinds}; known: {REWARD}, {POLICY}")
        if kinds.count(POLICY) > 1:
            raise ConfigError("scorers: at most one DPO policy")
        if POLICY in kinds and kinds.index(POLICY) != len(kinds) - 1:
            raise ConfigError("scorers: reward runs come first, the DPO policy last")
        if self.max_pairs < 0:
            raise ConfigError("max_pairs: must be 0 (all) or more")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be at least 1")

    @property
    def reward_scorers(self) -> list[Scorer]:
        return [s for s in self.scorers if s.kind == REWARD]

    @property
    def policy_scorer(self) -> Scorer | None:
        return next((s for s in self.scorers if s.kind == POLICY), None)

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.scorers) or "labels only"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "scorers": [{"run_id": s.run_id, "step": s.step, "kind": s.kind}
                                                 for s in self.scorers],
                "max_pairs": self.max_pairs, "seed": self.seed, "batch_size": self.batch_size, "method": RANK}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankPlan:
        try:
            return cls(model=d["model"], scorers=[Scorer(**s) for s in d.get("scorers", [])],
                       max_pairs=int(d.get("max_pairs", 20_000)), seed=int(d.get("seed", 0)),
                       batch_size=int(d.get("batch_size", 16)))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"rank plan: not a valid plan ({e})") from None


def scorer_rows(scorers: Sequence[Scorer]) -> list[dict[str, Any]]:
    """Scorers as JSON-ready dicts (a ranking records which it used)."""
    return [{"run_id": s.run_id, "step": s.step, "kind": s.kind} for s in scorers]
