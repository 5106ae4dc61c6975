"""Run-health rules: warnings in words when a run's metrics show a known failure of preference training.

Each rule reads a RunSeries and returns its warning (what happened, with the numbers, then what to do)
or None. The monitor shows them above the charts; `studio runs` and `studio metrics` print them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from studio.core import metrics as M
from studio.core.series import RunSeries

MIN_STEPS = 10
"""Steps a train metric needs before a rule judges it (fewer are noise)."""
DISPLACEMENT_PER_TOKEN = 0.02
"""The chosen responses' mean per-token log-ratio to the reference (logratio/chosen) below -this, clearly
(two standard errors) below 0 over the recent steps, is likelihood displacement."""
DISPLACEMENT_NATS = 0.5
"""Without logratio/chosen (old runs): both summed log-probs falling by more than this, and by more than
their batch-to-batch noise, triggers the warning."""


def _window(y: np.ndarray) -> int:
    return max(5, len(y) // 10)


def _mean_se(y: np.ndarray) -> tuple[float, float]:
    y = y[np.isfinite(y)]
    if y.size < 2:
        return (float(y[0]) if y.size else math.nan), math.inf
    return float(y.mean()), float(y.std(ddof=1) / math.sqrt(y.size))


def likelihood_displacement(rs: RunSeries) -> str | None:
    """The warning in words when training made the chosen responses less likely, not only the rejected.

    Judged on logratio/chosen, the per-token log pi - log pi_ref on the same batch: a noisy summed log-prob
    moves with each batch's lengths (hundreds of nats on a tiny model), so comparing its start with
    its end warned on healthy runs. Without logratio/chosen, the log-probs' fall must exceed their noise."""
    advice = ("The margin can grow while the model moves probability to responses outside your data; "
              "consider a lower learning rate, a higher beta, or DPO + NLL.")
    kl = rs.series.get(M.LOGRATIO_CHOSEN)
    if kl is not None and len(kl) >= MIN_STEPS:
        y = kl.y
        k = _window(y)
        mean, se = _mean_se(y[-k:])
        if not (mean < -DISPLACEMENT_PER_TOKEN and mean + 2 * se < 0):
            return None
        rej = rs.series.get(M.LOGRATIO_REJECTED)
        rej_text = ""
        if rej is not None and len(rej) >= k:
            rej_text = f" (rejected: {_mean_se(rej.y[-k:])[0]:+.3f})"
        return (f"Likelihood displacement: the chosen responses became less likely than under the reference "
                f"model (log-ratio {mean:+.3f} per token over the last {k} steps{rej_text}), not only the "
                f"rejected ones. " + advice)
    chosen, rejected = rs.series.get(M.LOGPS_CHOSEN), rs.series.get(M.LOGPS_REJECTED)
    if chosen is None or rejected is None or min(len(chosen), len(rejected)) < 2 * MIN_STEPS:
        return None

    def fall(series) -> tuple[float, float, bool]:
        y = series.y
        k = _window(y)
        (m0, se0), (m1, se1) = _mean_se(y[:k]), _mean_se(y[-k:])
        return m0, m1, m0 - m1 > max(DISPLACEMENT_NATS, 2 * math.hypot(se0, se1))

    c0, c1, c_fell = fall(chosen)
    r0, r1, r_fell = fall(rejected)
    if c_fell and r_fell:
        return (f"Likelihood displacement: the chosen responses' log-prob fell too ({c0:.1f} → {c1:.1f}), "
                f"not only the rejected ones' ({r0:.1f} → {r1:.1f}). " + advice)
    return None


def divergence(rs: RunSeries) -> str | None:
    """The warning in words when the loss stopped being a number: nothing after that step is training."""
    loss = rs.series.get(M.LOSS)
    if loss is None or loss.all_finite:
        return None
    bad = np.flatnonzero(~np.isfinite(loss.y))
    if not bad.size:
        return None
    step = int(loss.step[bad[0]])
    return (f"The loss became {loss.y[bad[0]]} at step {step}: training diverged. Lower the learning rate, "
            f"keep gradient clipping on (max grad norm), or use fp32/bf16 instead of fp16.")


OVERFIT_TRAIN_ACCURACY = 0.95
"""Recent train accuracy at or above this while the eval accuracy trails it by OVERFIT_GAP or more."""
OVERFIT_GAP = 0.25
LENGTH_GROWTH = 1.5
"""Sampled generations this many times longer than at the first evaluation: DPO is learning length."""
DIVERSITY_DROP = 0.6
"""distinct-2 of the samples below this share of its first value: generations are collapsing."""


def _evals(rs: RunSeries, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    series = rs.series.get(name)
    if series is None:
        return None
    y = series.y
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    return series.step[: len(y)][ok], y[ok]


def overfitting(rs: RunSeries) -> str | None:
    """The warning in words when the training pairs are learned but held-out pairs are not."""
    train = rs.series.get(M.REWARDS_ACCURACIES)
    evals = _evals(rs, M.eval_name(M.REWARDS_ACCURACIES))
    if train is None or len(train) < MIN_STEPS or evals is None:
        return None
    recent, _ = _mean_se(train.y[-_window(train.y):])
    step, acc = int(evals[0][-1]), float(evals[1][-1])
    if recent < OVERFIT_TRAIN_ACCURACY or recent - acc < OVERFIT_GAP:
        return None
    return (f"Overfitting: train accuracy {recent:.0%} over the last steps, but {acc:.0%} on the eval split at "
            f"step {step}: the model is memorising the training pairs. More labeled pairs, fewer epochs or "
            f"steps, or a higher beta help; the best adapter may be an earlier one.")


def _first_and_last(rs: RunSeries, name: str) -> tuple[float, float, int] | None:
    """An eval metric at the first evaluation (the reference, at step 0) and the latest, with its step."""
    evals = _evals(rs, name)
    if evals is None or evals[1][0] <= 0:
        return None
    return float(evals[1][0]), float(evals[1][-1]), int(evals[0][-1])


def length_drift(rs: RunSeries) -> str | None:
    """The warning in words when the policy's own samples keep getting longer (length exploitation)."""
    seen = _first_and_last(rs, M.EVAL_SAMPLE_LENGTH)
    if seen is None or seen[1] < LENGTH_GROWTH * seen[0]:
        return None
    first, last, step = seen
    return (f"Length drift: sampled answers are {last / first:.1f}x as long as at the start "
            f"({first:.0f} → {last:.0f} tokens at step {step}). If your chosen responses are "
            f"mostly the longer ones (see Data ▸ Review), DPO is learning length, not quality: balance the "
            f"lengths of chosen and rejected, raise beta, or try a length-normalised loss (SimPO).")


AT_CAP = 0.5
"""More than this share of the latest evaluation's samples cut at the length cap: length cannot drift."""


def samples_at_cap(rs: RunSeries) -> str | None:
    """The warning in words when most samples stop at sample_max_new_tokens instead of ending: their length
    is the cap's, so it can neither show drift nor be compared across steps."""
    share = rs.series.get(M.EVAL_SAMPLE_HIT_CAP)
    if share is None or not len(share) or not np.isfinite(share.y[-1]) or share.y[-1] <= AT_CAP:
        return None
    step = int(share.step[share.n - 1])
    cap = rs.series.get(M.EVAL_SAMPLE_CAP)
    cap_text = f"the {cap.last():.0f}-token cap" if cap is not None and cap.last() is not None else "the length cap"
    return (f"Most samples hit the length cap: {share.y[-1]:.0%} of the samples at step {step} stopped at "
            f"{cap_text} instead of ending, so sample length cannot show drift. Raise sample_max_new_tokens, "
            f"or check that the model ends its answers (its EOS or end-of-turn token; a base model without a "
            f"chat template often never stops).")


SELF_SIMILARITY_RISE = 0.3
"""Self-similarity this much above its first value, and above SELF_SIMILARITY_HIGH: the samples of each
prompt are becoming the same text (the policy turned near-deterministic)."""
SELF_SIMILARITY_HIGH = 0.5


def diversity_collapse(rs: RunSeries) -> str | None:
    """The warning in words when the samples lose variety (mode collapse): distinct-2 over all samples fell
    below DIVERSITY_DROP of its first value, or the samples of each prompt became alike (self-similarity)."""
    distinct = _first_and_last(rs, M.EVAL_DISTINCT_2)
    similar = _evals(rs, M.EVAL_SELF_SIMILARITY)
    fell = distinct is not None and distinct[1] < DIVERSITY_DROP * distinct[0]
    alike = (similar is not None and similar[1][-1] >= SELF_SIMILARITY_HIGH
             and similar[1][-1] - similar[1][0] >= SELF_SIMILARITY_RISE)
    if not (fell or alike):
        return None
    found = []
    if distinct is not None:
        found.append(f"distinct-2 {distinct[0]:.2f} → {distinct[1]:.2f}")
    if similar is not None:
        found.append(f"self-similarity {similar[1][0]:.2f} → {similar[1][-1]:.2f}")
    repeats = _evals(rs, M.EVAL_REPETITION)
    if repeats is not None:
        found.append(f"repetition {repeats[1][0]:.2f} → {repeats[1][-1]:.2f}")
    step = int(distinct[2]) if fell and distinct is not None else int(similar[0][-1])
    return (f"Samples are getting repetitive: {', '.join(found)} by step {step} (mode collapse). Compare the "
            f"samples at step 0 with the latest (Samples tab); a higher beta, a lower learning rate or an "
            f"earlier checkpoint keeps more of the reference model's variety.")


def headline(warning: str) -> str:
    """The first sentence of a warning: what happened, with its numbers."""
    first, sep, _ = warning.partition(". ")
    return first + "." if sep else warning


@dataclass(frozen=True)
class Rule:
    """A health rule, the metrics it reads (the CLI reads only those rows) and its name, by which the
    monitor's health tiles take their colour from it."""

    name: str
    check: Callable[[RunSeries], str | None]
    metrics: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    Rule("divergence", divergence, (M.LOSS,)),
    Rule("likelihood_displacement", likelihood_displacement,
         (M.LOGRATIO_CHOSEN, M.LOGRATIO_REJECTED, M.LOGPS_CHOSEN, M.LOGPS_REJECTED)),
    Rule("overfitting", overfitting, (M.REWARDS_ACCURACIES, M.eval_name(M.REWARDS_ACCURACIES))),
    Rule("length_drift", length_drift, (M.EVAL_SAMPLE_LENGTH,)),
    Rule("samples_at_cap", samples_at_cap, (M.EVAL_SAMPLE_HIT_CAP, M.EVAL_SAMPLE_CAP)),
    Rule("diversity_collapse", diversity_collapse, (M.EVAL_DISTINCT_2, M.EVAL_SELF_SIMILARITY, M.EVAL_REPETITION)),
)

HEALTH_METRICS = tuple(dict.fromkeys(m for rule in RULES for m in rule.metrics))
"""Every metric the rules read: the CLI reads only these rows of a run to judge its health."""


def run_findings(rs: RunSeries) -> dict[str, str]:
    """The warning of each rule that applies to the run's data so far, by rule name, in RULES order."""
    found = {rule.name: rule.check(rs) for rule in RULES}
    return {name: w for name, w in found.items() if w}


def run_warnings(rs: RunSeries) -> list[str]:
    """Every warning in words that applies to the run's data so far."""
    return list(run_findings(rs).values())
