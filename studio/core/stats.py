"""Label statistics as pure functions: distribution, position and length bias, inter-annotator agreement."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: this module loads with the window, numpy is
    import numpy as np  # about 135 ms of its start (studio bench gui checks that the start loads none)

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
    import numpy as np
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
    import numpy as np
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


# ---------------------------------------------------------------------------------------------- annotators

TIME_FLOOR_SECONDS = 3.0
"""A label given faster than this (seconds on the pair) is flagged: two responses cannot be read in that time."""


def share_with_interval(successes: int, n: int) -> dict[str, Any]:
    """{"share", "ci95", "n"}: a proportion with its Wilson 95% interval (share and ci95 None when n is 0)."""
    ci = wilson_interval(successes, n)
    return {"share": successes / n if n else None, "ci95": list(ci) if ci else None, "n": int(n)}


def firth_logistic(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float],
                   iterations: int = 50) -> tuple[float, float] | None:
    """(intercept, slope) of a logistic regression of y (0/1) on x, by Firth's penalised likelihood (Firth
    1993, "Bias reduction of maximum likelihood estimates"): finite where plain maximum likelihood runs off
    to infinity, as it does for an annotator who always picks the longer response (complete separation).
    With a two-valued x it gives the log odds ratio with 0.5 added to each cell. None when x does not vary
    or there are fewer than two observations."""
    import numpy as np
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        return None
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (X @ beta)))  # the logistic function, without exp's overflow
        w = p * (1 - p)
        info = X.T @ (X * w[:, None])
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            return None
        h = w * np.einsum("ij,jk,ik->i", X, cov, X)  # the hat matrix's diagonal
        step = cov @ (X.T @ (y - p + h * (0.5 - p)))  # Newton step on Firth's modified score
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


CHOICE_CODES = {c: i for i, c in enumerate(CHOICES)}
"""A choice's index in CHOICES; the first four are VERDICTS in order."""


@dataclass
class LabelTable:
    """Current labels as numeric columns, one row per label: what the per-annotator audit reads."""

    names: list[str]
    """Annotator names; `annotator` holds indices into it."""
    annotator: np.ndarray
    pair: np.ndarray
    choice: np.ndarray
    """Index in CHOICES."""
    left: np.ndarray
    """Whether the choice was the response shown on the left."""
    seconds: np.ndarray
    """Seconds on the pair, NaN when not timed."""
    len_a: np.ndarray
    len_b: np.ndarray

    @classmethod
    def from_columns(cls, names: Mapping[int, str], columns: np.ndarray) -> LabelTable:
        """From an [n, 7] float array (annotator id, pair id, choice index, chose left, seconds or NaN, length
        of A, length of B), as the store selects it, and the annotators' names by id (those without a label
        here are left out)."""
        import numpy as np
        columns = np.asarray(columns, dtype=float).reshape(-1, 7)
        present, codes = np.unique(columns[:, 0].astype(np.int64), return_inverse=True)
        order = np.argsort([names[int(i)] for i in present], kind="stable")  # by name
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return cls([names[int(present[k])] for k in order], rank[codes], columns[:, 1].astype(np.int64),
                   columns[:, 2].astype(np.int64), columns[:, 3] == 1, columns[:, 4], columns[:, 5], columns[:, 6])

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> LabelTable:
        """From (annotator, pair_id, choice, shown_left, seconds, len_a, len_b) tuples, as written by hand."""
        import numpy as np
        rows = list(rows)
        ids = {name: i for i, name in enumerate(sorted({r[0] for r in rows}))}
        columns = [(ids[r[0]], r[1], CHOICE_CODES[r[2]], float(r[2] == r[3]), np.nan if r[4] is None else r[4],
                    r[5], r[6]) for r in rows]
        return cls.from_columns({i: name for name, i in ids.items()}, np.array(columns, dtype=float))


def _annotator_audit(t: LabelTable, own: np.ndarray, people_votes: np.ndarray, pair_index: np.ndarray,
                     person: bool, floor: float) -> dict[str, Any]:
    """The audit of one annotator: `own` selects their labels from the table (see annotator_audit)."""
    import numpy as np
    choice, pair_index, left = t.choice[own], pair_index[own], t.left[own]
    decided = choice <= 1  # a or b
    chose_a = choice[decided] == 0
    la, lb = t.len_a[own][decided], t.len_b[own][decided]
    differ = la != lb
    chose_longer = (chose_a == (la > lb))[differ]
    fit = firth_logistic(np.log2(np.maximum(la, 1) / np.maximum(lb, 1)), chose_a)
    timed = t.seconds[own][np.isfinite(t.seconds[own])]
    # agreement with the majority of the other people who gave the pair a verdict (skips are not votes)
    verdict = choice < len(VERDICTS)
    others = people_votes[pair_index[verdict]].copy()
    if person:  # their own vote is among the people's: take it out
        others[np.arange(len(others)), choice[verdict]] -= 1
    majority = resolve_votes(others)
    has_majority = majority >= 0
    agree = int((majority[has_majority] == choice[verdict][has_majority]).sum())
    counts = np.bincount(choice, minlength=len(CHOICES))
    return {
        "labels": int(choice.size), "decided": int(decided.sum()), "ties": int(counts[CHOICE_CODES["tie"]]),
        "both_bad": int(counts[CHOICE_CODES["both_bad"]]), "skips": int(counts[CHOICE_CODES["skip"]]),
        "left": share_with_interval(int(left[decided].sum()), int(decided.sum())) if person else None,
        "longer": share_with_interval(int(chose_longer.sum()), int(chose_longer.size)),
        "length_coefficient": None if fit is None else fit[1],
        "median_seconds": float(np.median(timed)) if person and timed.size else None,
        "fast_labels": share_with_interval(int((timed < floor).sum()), int(timed.size)) if person else None,
        "majority_agreement": share_with_interval(agree, int(has_majority.sum())),
    }


def annotator_audit(labels: LabelTable | Iterable[tuple], imported_prefix: str = "import:",
                    floor: float = TIME_FLOOR_SECONDS) -> dict[str, Any]:
    """Per annotator, from their current labels (a LabelTable, or (annotator, pair_id, choice, shown_left,
    seconds, len_a, len_b) tuples):

    - `left`: share of decided labels (a or b) for the response shown on the left, with its Wilson 95% interval;
    - `longer`: share of decided labels, on pairs of unequal length, for the longer response, with its interval;
    - `length_coefficient`: the slope of a logistic regression (Firth) of choosing A on log2(len A / len B):
      how much the log-odds of choosing a response rise per doubling of its length relative to the other's
      (0: length plays no part; 1: doubling the length multiplies the odds by e);
    - `median_seconds` and `fast_labels`: labels given in under `floor` seconds, among those timed;
    - `majority_agreement`: on pairs where the other people's verdicts have a majority, the share agreeing.

    People and imported labels (annotators named `imported_prefix...`) are reported apart: an import had no
    screen sides and took no time, and it is not one of the people whose majority is asked. Vectorised over
    the labels (a few numpy passes per annotator)."""
    import numpy as np
    t = labels if isinstance(labels, LabelTable) else LabelTable.from_rows(labels)
    audit: dict[str, Any] = {"time_floor_seconds": floor, "people": [], "imported": []}
    if not len(t.pair):
        return audit
    imported = np.array([name.startswith(imported_prefix) for name in t.names])
    pair_index = np.unique(t.pair, return_inverse=True)[1]
    voted = ~imported[t.annotator] & (t.choice < len(VERDICTS))
    people_votes = np.zeros((int(pair_index.max()) + 1, len(VERDICTS)), dtype=np.int64)
    np.add.at(people_votes, (pair_index[voted], t.choice[voted]), 1)
    for i, name in enumerate(t.names):  # sorted by name
        entry = {"name": name, **_annotator_audit(t, t.annotator == i, people_votes, pair_index, not imported[i],
                                                  floor)}
        audit["imported" if imported[i] else "people"].append(entry)
    return audit


def _interval(ci: Sequence[float]) -> str:
    return f"95% {_pct(ci[0])}-{_pct(ci[1])}"


def _lopsided(entry: Mapping[str, Any] | None, at_least: float) -> bool:
    """A share on at least MIN_DECIDED decisions, at or beyond `at_least` (or 1 - it), whose 95% interval
    leaves one half out."""
    if not entry or (entry.get("n") or 0) < MIN_DECIDED or not entry.get("ci95"):
        return False
    share, (lo, hi) = entry["share"], entry["ci95"]
    return (share >= at_least or share <= 1 - at_least) and (lo > 0.5 or hi < 0.5)


def annotator_findings(audit: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(annotator, audit field, warning in words) for what stands out in people's labels (an
    `annotator_audit` result): the review dashboard marks those cells, the warnings list says them."""
    out: list[tuple[str, str, str]] = []
    floor = audit.get("time_floor_seconds", TIME_FLOOR_SECONDS)
    for a in audit.get("people", []):
        name, left, longer = a["name"], a.get("left"), a.get("longer")
        if _lopsided(left, 0.65):
            side, share = ("left", left["share"]) if left["share"] > 0.5 else ("right", 1 - left["share"])
            out.append((name, "left", f"{name} chose the response shown on the {side} in {_pct(share)} of "
                                      f"{left['n']} decisions (left: {_interval(left['ci95'])}): their labels follow "
                                      f"screen position; review them, or leave them out of the next run."))
        if _lopsided(longer, 0.7):
            which, share = ("longer", longer["share"]) if longer["share"] > 0.5 else ("shorter", 1 - longer["share"])
            out.append((name, "longer", f"{name} chose the {which} response in {_pct(share)} of {longer['n']} "
                                        f"decisions (longer: {_interval(longer['ci95'])}): their labels teach length; "
                                        f"compare a few of their pairs with another annotator's verdicts."))
        fast = a.get("fast_labels") or {}
        if (fast.get("n") or 0) >= 10 and fast.get("share") is not None and fast["share"] >= 0.2:
            out.append((name, "fast_labels", f"{name} gave {round(fast['share'] * fast['n'])} of {fast['n']} timed "
                                             f"labels ({_pct(fast['share'])}) in under {floor:g} seconds, too fast "
                                             f"to read both responses; check those labels (Data: filter by "
                                             f"annotator)."))
        agree = a.get("majority_agreement") or {}
        if (agree.get("n") or 0) >= MIN_DECIDED and agree.get("ci95") and agree["ci95"][1] < 0.5:
            out.append((name, "majority_agreement",
                        f"{name} agrees with the majority of the other annotators on only {_pct(agree['share'])} "
                        f"of {agree['n']} pairs ({_interval(agree['ci95'])}): their guidelines may differ from "
                        f"the others'."))
    return out


def annotator_warnings(audit: Mapping[str, Any]) -> list[str]:
    """Warnings in words about individual people's labels (an `annotator_audit` result)."""
    return [warning for _name, _field, warning in annotator_findings(audit)]


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
                       f"(median chosen/rejected length ratio {length['median_ratio']:.2f}). Label pairs where the "
                       f"shorter answer is better, or try a length-normalised loss (SimPO).")
        elif ci[1] < 0.5 and share <= 0.4:
            out.append(f"Only {_pct(share)} of chosen responses are longer: DPO will learn to be brief. Label pairs "
                       f"where the longer answer is better if brevity is not what you want.")
    position = stats.get("position_bias") or {}
    ci = position.get("ci95")
    if (position.get("decided") or 0) >= MIN_DECIDED and ci and (ci[0] > 0.5 or ci[1] < 0.5):
        side = "left" if ci[0] > 0.5 else "right"
        share = position["share"] if side == "left" else 1 - position["share"]
        out.append(f"Annotators chose the response shown on the {side} {_pct(share)} of the time "
                   f"(95% interval {_pct(ci[0])}-{_pct(ci[1])} for left): labels depend on screen position. "
                   f"Data ▸ Review shows which annotators.")
    agree = stats.get("agreement") or {}
    alpha = agree.get("krippendorff_alpha")
    if alpha is not None and (agree.get("pairs") or 0) >= 10 and alpha < 0.4:
        out.append(f"Annotators agree little (Krippendorff's alpha {alpha:.2f} on {agree['pairs']} shared pairs): "
                   "the preferences are noisy; consider clearer guidelines or a robust loss.")
    out += annotator_warnings(stats.get("annotator_audit") or {})
    resolved = stats.get("resolved") or {}
    prefs = resolved.get("preferences")
    if prefs is not None and 0 < prefs < 100:
        out.append(f"Only {prefs} resolved preferences: too few for DPO to learn much beyond the style of "
                   "the chosen responses. Label more pairs (a few hundred is a start).")
    return out
