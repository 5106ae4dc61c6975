"""Arena statistics as pure functions: win/tie/loss with 95% intervals, Bradley-Terry scores with bootstrap
intervals, and a length-controlled win rate.

A judgement is one label on an arena pair, put in terms of the two sources that wrote the responses:
`score` is 1 when the first source's response won, 0 when the second's did, 0.5 for a tie or "both bad"
(neither is preferred). Skips are not judgements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.core.stats import wilson_interval

SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
"""A label's choice as the score of the pair's response A (skips are left out)."""

ELO_SCALE = 400 / math.log(10)
"""Bradley-Terry log-strengths are shown on the Elo scale: 400 points = 10:1 odds, the mean source at 1000."""
ELO_CENTRE = 1000.0
BT_PRIOR_TIES = 0.1
"""Virtual ties added between every two sources before fitting Bradley-Terry: a source that never won (or
never lost), common in a bootstrap resample, would otherwise get an infinite score. Small next to any real
count of judgements."""
BOOTSTRAP_ROUNDS = 1000


@dataclass(frozen=True)
class Judgement:
    """One label on an arena pair, in terms of the sources: `score` is the first source's (1 won, 0 lost,
    0.5 tie or both bad)."""

    first: str
    second: str
    score: float
    first_chars: int
    second_chars: int
    annotator: str
    prompt_id: int


def judgement(choice: str, source_a: str, source_b: str, chars_a: int, chars_b: int, annotator: str,
              prompt_id: int) -> Judgement | None:
    """A label on a pair (choice in the pair's a/b terms) as a judgement between the sources; None for a skip."""
    if choice not in SCORES:
        return None
    return Judgement(source_a, source_b, SCORES[choice], chars_a, chars_b, annotator, prompt_id)


def oriented(judgements: Sequence[Judgement], first: str, second: str) -> list[Judgement]:
    """The judgements between two sources, each turned so that `first` is its first source."""
    out = []
    for j in judgements:
        if (j.first, j.second) == (first, second):
            out.append(j)
        elif (j.first, j.second) == (second, first):
            out.append(Judgement(first, second, 1.0 - j.score, j.second_chars, j.first_chars, j.annotator,
                                 j.prompt_id))
    return out


# ---------------------------------------------------------------------------------------------- win rate


def win_rate(scores: Sequence[float]) -> dict[str, Any]:
    """Wins, ties and losses of the first source, and its win rate with ties counted half.

    The 95% interval is Wilson's on that share. A judgement worth 0, 0.5 or 1 varies less than a coin flip
    with the same mean, so the interval is, if anything, a little wide when there are many ties."""
    s = np.asarray(scores, dtype=float)
    n = int(s.size)
    wins, ties = int(np.count_nonzero(s == 1.0)), int(np.count_nonzero(s == 0.5))
    losses = n - wins - ties
    points = wins + 0.5 * ties
    ci = wilson_interval(points, n)  # type: ignore[arg-type]
    return {"wins": wins, "ties": ties, "losses": losses, "n": n, "win_rate": points / n if n else None,
            "ci95": list(ci) if ci else None}


# ---------------------------------------------------------------------------------------------- Bradley-Terry


def bradley_terry(wins: np.ndarray, prior_ties: float = 0.0, max_iter: int = 100_000,
                  tol: float = 1e-12) -> np.ndarray:
    """Bradley-Terry log-strengths (mean 0) by Hunter's (2004) MM algorithm.

    wins[..., i, j] is how often i beat j (a tie adds 0.5 to both directions); leading axes are
    independent problems (bootstrap rounds) fitted at once. P(i beats j) = s_i / (s_i + s_j) with
    s = exp(returned value). `prior_ties` adds that many virtual ties between every two sources."""
    w = np.array(wins, dtype=float)
    k = w.shape[-1]
    off = 1.0 - np.eye(k)
    w = w + prior_ties / 2 * off
    games = w + np.swapaxes(w, -1, -2)
    won = w.sum(axis=-1)
    strength = np.ones(w.shape[:-1])
    for _ in range(max_iter):
        denom = (games / (strength[..., :, None] + strength[..., None, :])).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = won / denom
            new = new / np.exp(np.log(new).mean(axis=-1, keepdims=True))
        done = np.nanmax(np.abs(new - strength)) < tol
        strength = new
        if done:
            break
    with np.errstate(divide="ignore"):
        return np.log(strength)


def win_matrix(first: np.ndarray, second: np.ndarray, scores: np.ndarray, k: int,
               weights: np.ndarray | None = None) -> np.ndarray:
    """wins[..., i, j] from judgements given as source indices and first-source scores; `weights` [B, n]
    (bootstrap multiplicities) gives one matrix per row."""
    cells = np.concatenate([first * k + second, second * k + first])
    points = np.concatenate([scores, 1.0 - scores])
    if weights is None:
        return np.bincount(cells, points, minlength=k * k).reshape(k, k)
    w = np.concatenate([weights, weights], axis=-1) * points
    rounds = w.shape[0]
    flat = (np.arange(rounds)[:, None] * k * k + cells[None, :]).ravel()
    return np.bincount(flat, w.ravel(), minlength=rounds * k * k).reshape(rounds, k, k)


def cluster_weights(clusters: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """Bootstrap multiplicities [rounds, n] of n judgements that resample whole clusters (prompts): the
    judgements of one prompt share it, so they are drawn together."""
    ids, index = np.unique(clusters, return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=rounds)
    return counts[:, index].astype(float)


def elo(log_strength: np.ndarray) -> np.ndarray:
    return ELO_CENTRE + ELO_SCALE * np.asarray(log_strength)


def bradley_terry_scores(judgements: Sequence[Judgement], sources: Sequence[str], rounds: int = BOOTSTRAP_ROUNDS,
                         seed: int = 0) -> list[dict[str, Any]]:
    """Per source, its Bradley-Terry score on the Elo scale and a 95% bootstrap interval (prompts resampled,
    seeded), best first."""
    index = {s: i for i, s in enumerate(sources)}
    js = [j for j in judgements if j.first in index and j.second in index]
    k = len(sources)
    first = np.array([index[j.first] for j in js], dtype=np.int64)
    second = np.array([index[j.second] for j in js], dtype=np.int64)
    scores = np.array([j.score for j in js], dtype=float)
    point = elo(bradley_terry(win_matrix(first, second, scores, k), BT_PRIOR_TIES))
    lo = hi = np.full(k, np.nan)
    if js and rounds > 0:
        weights = cluster_weights(np.array([j.prompt_id for j in js]), rounds, seed)
        boot = elo(bradley_terry(win_matrix(first, second, scores, k, weights), BT_PRIOR_TIES))
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    rows = [{"source": s, "score": float(point[i]), "ci95": [float(lo[i]), float(hi[i])] if js else None,
             "judgements": int(np.count_nonzero((first == i) | (second == i)))} for i, s in enumerate(sources)]
    return sorted(rows, key=lambda r: -r["score"])


# ---------------------------------------------------------------------------------------------- length control

LC_SLOPE_PENALTY = 1e-6
"""L2 penalty on the length slope: keeps the fit finite when length decides every judgement, too small to
matter otherwise."""
LC_VIRTUAL_TIES = 1.0
"""Virtual ties at equal length added to the fit: when the longer response always wins, the data say nothing
about the outcome at equal length (any intercept fits), and this puts it at even; otherwise it moves the
result as one tie among the judgements would."""


def length_feature(first_chars: np.ndarray, second_chars: np.ndarray) -> np.ndarray:
    """The length difference as AlpacaEval's length control uses it: tanh of the difference over its spread,
    so a few very long responses do not dominate the fit. 0 means equal length."""
    delta = np.asarray(first_chars, dtype=float) - np.asarray(second_chars, dtype=float)
    spread = float(np.std(delta)) if delta.size > 1 else 0.0
    return np.tanh(delta / spread) if spread > 0 else np.zeros_like(delta)


def logistic_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                 max_iter: int = 2000) -> np.ndarray:
    """(intercept, slope) of P(y=1) = sigmoid(intercept + slope * x), y in [0, 1] (a tie is 0.5), by Newton's
    method on the log-likelihood with LC_VIRTUAL_TIES at x = 0 and the slope under LC_SLOPE_PENALTY.

    `weights` [..., n] fits one model per leading row at once (bootstrap rounds); the result is [..., 2]."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    # the virtual ties: one more row at x = 0, y = 0.5
    x, y = np.append(x, 0.0), np.append(y, 0.5)
    w = np.concatenate([w, np.full((*w.shape[:-1], 1), LC_VIRTUAL_TIES)], axis=-1)
    theta = np.zeros((*w.shape[:-1], 2))
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-np.clip(theta[..., :1] + theta[..., 1:] * x, -60, 60)))  # [..., n]
        r, c = w * (p - y), w * p * (1 - p)
        # Newton step on the 2x2 system, written out: gradient (g0, g1), Hessian [[h00, h01], [h01, h11]]
        g0, g1 = r.sum(-1), (r * x).sum(-1) + 2 * LC_SLOPE_PENALTY * theta[..., 1]
        h00, h01, h11 = c.sum(-1), (c * x).sum(-1), (c * x * x).sum(-1) + 2 * LC_SLOPE_PENALTY
        det = h00 * h11 - h01 * h01
        step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=-1)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta


def length_controlled_win_rate(scores: Sequence[float], first_chars: Sequence[int], second_chars: Sequence[int],
                               rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0,
                               clusters: Sequence[int] | None = None) -> dict[str, Any]:
    """The first source's win rate at equal length (the AlpacaEval idea): a logistic regression of the
    outcome on the length difference, read at a difference of zero; with a 95% bootstrap interval
    (clusters, the prompts, resampled together when given). When the longer response always wins, this is
    about 0.5 whatever the raw win rate."""
    y = np.asarray(scores, dtype=float)
    if y.size == 0:
        return {"win_rate": None, "ci95": None, "length_slope": None}
    x = length_feature(np.asarray(first_chars), np.asarray(second_chars))
    intercept, slope = logistic_fit(x, y)
    ci = None
    if rounds > 0 and y.size > 1:
        groups = np.asarray(clusters) if clusters is not None else np.arange(y.size)
        boot = logistic_fit(x, y, cluster_weights(groups, rounds, seed))[:, 0]
        lo, hi = np.percentile(1 / (1 + np.exp(-boot)), [2.5, 97.5])
        ci = [float(lo), float(hi)]
    return {"win_rate": 1 / (1 + math.exp(-intercept)), "ci95": ci, "length_slope": float(slope)}


# ---------------------------------------------------------------------------------------------- results


def fmt_share(x: float | None) -> str:
    """A win rate as the CLI and the Arena tab show it."""
    return "–" if x is None else f"{100 * x:.1f}%"


def fmt_interval(ci: Sequence[float] | None, share: bool = True) -> str:
    """A 95% interval of win rates (share) or of scores."""
    if not ci:
        return "–"
    return f"{fmt_share(ci[0])} – {fmt_share(ci[1])}" if share else f"{ci[0]:.0f} – {ci[1]:.0f}"


MATCHUP_COLUMNS = ("Matchup", "Wins", "Ties", "Losses", "Win rate", "95% interval", "Length-controlled",
                   "95% interval", "Identical")
"""The columns of `matchup_cells` (the CLI, the Arena tab and reports)."""


def matchup_cells(m: dict[str, Any]) -> list[str]:
    """A matchup as a table row (the CLI's and the Arena tab's): name, wins, ties, losses, win rate, interval,
    and when it has them the length-controlled win rate, its interval and the identical outputs."""
    cells = [f"{m['source']} vs {m['against']}", str(m["wins"]), str(m["ties"]), str(m["losses"]),
             fmt_share(m["win_rate"]), fmt_interval(m["ci95"])]
    if "length_controlled" in m:
        lc = m["length_controlled"]
        cells += [fmt_share(lc["win_rate"]), fmt_interval(lc["ci95"]), str(m.get("identical", 0))]
    return cells


def score_cells(b: dict[str, Any]) -> list[str]:
    """A Bradley-Terry row: source, score, interval, judgements."""
    return [b["source"], f"{b['score']:.0f}", fmt_interval(b["ci95"], share=False), str(b["judgements"])]


def matchups(judgements: Sequence[Judgement], sources: Sequence[str], rounds: int = BOOTSTRAP_ROUNDS,
             seed: int = 0, length_control: bool = True) -> list[dict[str, Any]]:
    """Per two sources (each later source against each earlier one, as listed), the later one's wins, ties
    and losses, win rate with its 95% interval, and length-controlled win rate."""
    out = []
    for i, baseline in enumerate(sources):
        for challenger in sources[i + 1:]:
            js = oriented(judgements, challenger, baseline)
            row = {"source": challenger, "against": baseline, **win_rate([j.score for j in js])}
            if length_control:
                lc = length_controlled_win_rate([j.score for j in js], [j.first_chars for j in js],
                                                [j.second_chars for j in js], rounds=rounds, seed=seed,
                                                clusters=[j.prompt_id for j in js])
                row["length_controlled"] = lc
            out.append(row)
    return out


def arena_results(judgements: Sequence[Judgement], sources: Sequence[str], rounds: int = BOOTSTRAP_ROUNDS,
                  seed: int = 0) -> dict[str, Any]:
    """Everything `studio arena --results` reports from an arena's judgements: the matchups, Bradley-Terry
    scores when there are more than two sources, and the matchups per annotator (without length control
    or scores: few judgements each)."""
    annotators = sorted({j.annotator for j in judgements})
    return {
        "judgements": len(judgements),
        "matchups": matchups(judgements, sources, rounds, seed),
        "bradley_terry": bradley_terry_scores(judgements, sources, rounds, seed) if len(sources) > 2 else None,
        "annotators": [{"name": a, "judgements": sum(1 for j in judgements if j.annotator == a),
                        "matchups": matchups([j for j in judgements if j.annotator == a], sources,
                                             length_control=False)}
                       for a in annotators],
    }
