"""Label statistics as pure functions: distribution, position and length bias, inter-annotator agreement."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

CHOICES = ("a", "b", "tie", "both_bad", "skip")
VERDICTS = ("a", "b", "tie", "both_bad")
"""Choices that count as a verdict; a skip says nothing about the pair."""


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (95% by default); None when n is 0.

    Preferred over the normal approximation because it stays inside [0, 1] and behaves at small n
    and near 0 or 1, which is where a biased annotator puts it."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def label_distribution(counts: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """Count and share of each choice (every choice present, zero when unused)."""
    total = sum(int(counts.get(c, 0)) for c in CHOICES)
    return {c: {"count": int(counts.get(c, 0)), "share": (int(counts.get(c, 0)) / total) if total else 0.0}
            for c in CHOICES}


def position_bias(left_won: int, decided: int) -> dict[str, Any]:
    """Share of decided labels (a or b) where the response shown on the left won, with its 95% interval.

    Without bias the share is about 0.5 because sides are randomised per annotator and pair."""
    ci = wilson_interval(left_won, decided)
    return {"decided": int(decided), "left_won": int(left_won),
            "share": left_won / decided if decided else None, "ci95": list(ci) if ci else None}


def length_bias(chosen_lengths: Sequence[float] | np.ndarray,
                rejected_lengths: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Share of decided pairs whose chosen response is longer, and the median length ratio chosen/rejected.

    Pairs of equal length count as not longer. DPO rewards whatever separates chosen from rejected,
    so a share far from 0.5 means the model will learn length along with quality."""
    chosen = np.asarray(chosen_lengths, dtype=float)
    rejected = np.asarray(rejected_lengths, dtype=float)
    n = int(chosen.size)
    if n == 0:
        return {"decided_pairs": 0, "chosen_longer": 0, "share": None, "ci95": None, "median_ratio": None}
    longer = int(np.count_nonzero(chosen > rejected))
    ratio = float(np.median(chosen / np.maximum(rejected, 1.0)))
    ci = wilson_interval(longer, n)
    return {"decided_pairs": n, "chosen_longer": longer, "share": longer / n, "ci95": list(ci) if ci else None,
            "median_ratio": ratio}


NO_VOTES = -1
"""`resolve_votes` code of a pair whose current labels are all skips."""
SPLIT_VOTE = -2
"""`resolve_votes` code of a pair whose most-voted verdicts are tied (no majority)."""


def resolve_votes(votes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """The majority rule, for many pairs at once: votes is [n, 4] counts of (a, b, tie, both_bad) per pair;
    returns per pair the index of the winning verdict in VERDICTS, NO_VOTES, or SPLIT_VOTE.

    Skips are not votes; a tie for first place has no majority. The store resolves preferences and the
    statistics count them with this one function."""
    v = np.asarray(votes, dtype=np.int64).reshape(-1, len(VERDICTS))
    if not len(v):
        return np.zeros(0, dtype=np.int64)
    best = v.max(axis=1)
    n_best = (v == best[:, None]).sum(axis=1)
    return np.where(best == 0, NO_VOTES, np.where(n_best > 1, SPLIT_VOTE, v.argmax(axis=1)))


def majority(votes: Mapping[str, int]) -> str | None:
    """The verdict with the most votes (a, b, tie or both_bad) of one pair, or None for a split vote or
    no votes (`resolve_votes` for a single pair)."""
    code = int(resolve_votes([[int(votes.get(c, 0)) for c in VERDICTS]])[0])
    return VERDICTS[code] if code >= 0 else None


# ---------------------------------------------------------------------------------------------- agreement


def percent_agreement(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Share of units (pairs) with two or more ratings on which every rating is the same."""
    rated = [u for u in units if len(u) >= 2]
    if not rated:
        return None
    return sum(1 for u in rated if len(set(u)) == 1) / len(rated)


def cohens_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa between two raters who rated the same items (first[i] and second[i] on item i).

    kappa = (p_o - p_e) / (1 - p_e). None when there are no items; 1.0 when both raters used a single
    and the same category throughout (p_e = 1, perfect agreement)."""
    if len(first) != len(second):
        raise ValueError("cohens_kappa: the two raters must rate the same items")
    n = len(first)
    if n == 0:
        return None
    p_o = sum(1 for x, y in zip(first, second, strict=True) if x == y) / n
    c1, c2 = Counter(first), Counter(second)
    p_e = sum(c1[k] * c2[k] for k in c1) / (n * n)
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else 0.0
    return (p_o - p_e) / (1 - p_e)


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the list of values it received (any number
    of raters, missing ratings simply absent). Units with fewer than two values are unpairable and left
    out. alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
    alpha-reliability"). None when fewer than two pairable values exist; 1.0 when only one category
    occurs (no disagreement is possible)."""
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = Counter(unit)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nk - 1) if c == k else nc * nk
                if pairs:
                    coincidence[(c, k)] += pairs / (m - 1)
    if not coincidence:
        return None
    n_c: Counter[Hashable] = Counter()
    for (c, _k), v in coincidence.items():
        n_c[c] += v
    n = sum(n_c.values())
    if n <= 1:
        return None
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = (n * n - sum(v * v for v in n_c.values())) / (n - 1)
    if expected == 0:
        return 1.0
    return 1.0 - observed / expected


def agreement(ratings: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict[str, Any]:
    """Agreement on units rated by two or more raters, from (unit, rater, value) triples.

    Cohen's kappa is given when exactly two raters share units (it is defined for two); Krippendorff's
    alpha (nominal) always, since it handles any number of raters and missing ratings."""
    by_unit: dict[Hashable, dict[Hashable, Hashable]] = {}
    for unit, rater, value in ratings:
        by_unit.setdefault(unit, {})[rater] = value
    shared = {u: r for u, r in by_unit.items() if len(r) >= 2}
    raters = sorted({rater for r in shared.values() for rater in r}, key=str)
    units = [list(r.values()) for r in shared.values()]
    kappa = None
    if len(raters) == 2:
        x, y = raters
        kappa = cohens_kappa([r[x] for r in shared.values()], [r[y] for r in shared.values()])
    return {"pairs": len(shared), "annotators": len(raters), "percent": percent_agreement(units),
            "cohens_kappa": kappa, "krippendorff_alpha": krippendorff_alpha_nominal(units)}


# ---------------------------------------------------------------------------------------------- warnings

MIN_DECIDED = 20
"""Below this many decided labels the shares are too noisy to warn about."""


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def bias_warnings(stats: Mapping[str, Any]) -> list[str]:
    """Plain-language warnings about the labels that will shape training, from a stats dict with the
    keys `position_bias`, `length_bias`, `agreement`, `resolved` (as `studio stats --json` gives)."""
    out: list[str] = []
    length = stats.get("length_bias") or {}
    n = length.get("decided_pairs") or 0
    ci = length.get("ci95")
    if n >= MIN_DECIDED and ci and length.get("share") is not None:
        share = length["share"]
        if ci[0] > 0.5 and share >= 0.6:
            out.append(f"{_pct(share)} of chosen responses are longer: DPO will learn length "
                       f"(median chosen/rejected length ratio {length['median_ratio']:.2f}).")
        elif ci[1] < 0.5 and share <= 0.4:
            out.append(f"Only {_pct(share)} of chosen responses are longer: DPO will learn to be brief.")
    position = stats.get("position_bias") or {}
    ci = position.get("ci95")
    if (position.get("decided") or 0) >= MIN_DECIDED and ci and (ci[0] > 0.5 or ci[1] < 0.5):
        side = "left" if ci[0] > 0.5 else "right"
        share = position["share"] if side == "left" else 1 - position["share"]
        out.append(f"Annotators chose the response shown on the {side} {_pct(share)} of the time "
                   f"(95% interval {_pct(ci[0])}-{_pct(ci[1])} for left): labels depend on screen position.")
    agree = stats.get("agreement") or {}
    alpha = agree.get("krippendorff_alpha")
    if alpha is not None and (agree.get("pairs") or 0) >= 10 and alpha < 0.4:
        out.append(f"Annotators agree little (Krippendorff's alpha {alpha:.2f} on {agree['pairs']} shared pairs): "
                   "the preferences are noisy; consider clearer guidelines or a robust loss.")
    resolved = stats.get("resolved") or {}
    prefs = resolved.get("preferences")
    if prefs is not None and 0 < prefs < 100:
        out.append(f"Only {prefs} resolved preferences: too few for DPO to learn much beyond the style of "
                   "the chosen responses.")
    return out
