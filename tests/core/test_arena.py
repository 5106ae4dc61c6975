"""Arena statistics against known values: win-rate intervals, Bradley-Terry, length-controlled win rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studio.core import arena as A


def test_win_rate_counts_ties_half_with_wilsons_interval():
    # 81 points of 263: Wilson's 95% interval is 0.2553 to 0.3662 (Newcombe 1998, example 1)
    scores = [1.0] * 79 + [0.5] * 4 + [0.0] * 180
    r = A.win_rate(scores)
    assert (r["wins"], r["ties"], r["losses"], r["n"]) == (79, 4, 180, 263)
    assert r["win_rate"] == pytest.approx(81 / 263)
    assert r["ci95"] == pytest.approx([0.2553, 0.3662], abs=1e-4)
    assert A.win_rate([])["ci95"] is None


def test_a_label_becomes_a_judgement_between_sources():
    j = A.judgement("b", "base", "dpo", 10, 20, "ann", 1)
    assert (j.first, j.second, j.score) == ("base", "dpo", 0.0)
    assert A.judgement("both_bad", "base", "dpo", 1, 1, "ann", 1).score == 0.5
    assert A.judgement("skip", "base", "dpo", 1, 1, "ann", 1) is None
    # turned round: dpo won
    (t,) = A.oriented([j], "dpo", "base")
    assert (t.first, t.score, t.first_chars, t.second_chars) == ("dpo", 1.0, 20, 10)


def test_bradley_terry_two_sources_is_the_odds_ratio():
    # 3 wins to 1: s_a / s_b = 3, log-strengths +-ln(3)/2
    ls = A.bradley_terry(np.array([[0, 3], [1, 0]]))
    assert ls == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-9)


def test_bradley_terry_on_a_chain_matches_the_closed_form():
    # a-b 3:1 and b-c 2:2, no a-c games: without a cycle the maximum-likelihood ratios are each pair's own
    ls = A.bradley_terry(np.array([[0, 3, 0], [1, 0, 2], [0, 2, 0]]))
    assert ls[0] - ls[1] == pytest.approx(math.log(3), abs=1e-9)
    assert ls[1] - ls[2] == pytest.approx(0.0, abs=1e-9)
    assert ls.sum() == pytest.approx(0.0, abs=1e-9)


def test_bradley_terry_fits_the_likelihood_equations():
    # at the maximum, each source's expected wins equal its actual wins (Zermelo 1929)
    wins = np.array([[0, 7, 4, 9], [3, 0, 6, 2], [6, 4, 0, 5], [1, 8, 5, 0]], dtype=float)
    s = np.exp(A.bradley_terry(wins))
    games = wins + wins.T
    expected = (games * s[:, None] / (s[:, None] + s[None, :])).sum(axis=1)
    assert expected == pytest.approx(wins.sum(axis=1), rel=1e-8)


def test_bradley_terry_fits_bootstrap_rounds_at_once():
    one = np.array([[0, 3], [1, 0]])
    both = A.bradley_terry(np.stack([one, one.T]))
    assert both[0] == pytest.approx(-both[1])


def _judgements(pairs: list[tuple[str, str, float]], prompt_of=lambda i: i) -> list[A.Judgement]:
    return [A.Judgement(a, b, s, 100, 100, "ann", prompt_of(i)) for i, (a, b, s) in enumerate(pairs)]


def test_bradley_terry_scores_rank_sources_with_intervals():
    js = _judgements([("good", "base", 1.0)] * 30 + [("good", "base", 0.0)] * 10
                     + [("good", "mid", 1.0)] * 20 + [("good", "mid", 0.0)] * 20
                     + [("mid", "base", 1.0)] * 30 + [("mid", "base", 0.0)] * 10)
    rows = A.bradley_terry_scores(js, ["base", "mid", "good"], rounds=300, seed=1)
    assert [r["source"] for r in rows][-1] == "base"
    for r in rows:
        lo, hi = r["ci95"]
        assert lo <= r["score"] <= hi
    assert np.mean([r["score"] for r in rows]) == pytest.approx(A.ELO_CENTRE, abs=1e-6)
    # seeded: the same intervals again
    assert A.bradley_terry_scores(js, ["base", "mid", "good"], rounds=300, seed=1) == rows


def test_a_source_that_never_wins_gets_a_finite_score():
    js = _judgements([("good", "base", 1.0)] * 10 + [("good", "mid", 1.0)] * 10 + [("mid", "base", 0.5)] * 4)
    rows = {r["source"]: r for r in A.bradley_terry_scores(js, ["base", "mid", "good"], rounds=50)}
    assert all(np.isfinite(r["score"]) and np.isfinite(r["ci95"]).all() for r in rows.values())
    assert rows["good"]["score"] > rows["mid"]["score"]


def _longer_always_wins(n: int, share_first_longer: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    first_longer = rng.random(n) < share_first_longer
    delta = rng.integers(5, 400, n) * np.where(first_longer, 1, -1)
    return first_longer.astype(float), 300 + np.maximum(delta, 0), 300 + np.maximum(-delta, 0)


@pytest.mark.parametrize("share", [0.5, 0.8, 0.95])
def test_length_controlled_win_rate_is_even_when_the_longer_response_always_wins(share):
    scores, first_chars, second_chars = _longer_always_wins(200, share)
    raw = A.win_rate(scores)["win_rate"]
    lc = A.length_controlled_win_rate(scores, first_chars, second_chars, rounds=200)
    assert lc["win_rate"] == pytest.approx(0.5, abs=0.03)
    assert lc["length_slope"] > 10
    assert raw == pytest.approx(share, abs=0.1)  # the raw rate is the share of pairs where the first is longer
    lo, hi = lc["ci95"]
    assert lo < 0.55 and hi > 0.5


def test_length_controlled_win_rate_recovers_the_win_rate_at_equal_length():
    # outcomes drawn from P(first wins) = sigmoid(1 + 2 * length feature): at equal length, sigmoid(1) = 0.731
    rng = np.random.default_rng(3)
    n = 3000
    first = 500 + rng.normal(60, 100, n)
    second = np.full(n, 500.0)
    x = A.length_feature(first, second)
    scores = (rng.random(n) < 1 / (1 + np.exp(-(1 + 2 * x)))).astype(float)
    lc = A.length_controlled_win_rate(scores, first, second, rounds=0)
    assert lc["win_rate"] == pytest.approx(1 / (1 + math.exp(-1)), abs=0.02)
    assert lc["length_slope"] == pytest.approx(2.0, abs=0.3)
    assert scores.mean() > lc["win_rate"] + 0.03  # the first source is longer, so its raw rate is higher


def test_arena_results_report_matchups_scores_and_annotators():
    js = [A.Judgement("dpo", "base", 1.0, 120, 100, "ann", i) for i in range(6)]
    js += [A.Judgement("base", "dpo", 1.0, 100, 90, "bob", 10 + i) for i in range(2)]
    js += [A.Judgement("rloo", "dpo", 0.5, 100, 100, "bob", 20)]
    r = A.arena_results(js, ["base", "dpo", "rloo"], rounds=50)
    m = {(row["source"], row["against"]): row for row in r["matchups"]}
    assert set(m) == {("dpo", "base"), ("rloo", "base"), ("rloo", "dpo")}
    assert (m[("dpo", "base")]["wins"], m[("dpo", "base")]["losses"]) == (6, 2)
    assert m[("rloo", "base")]["n"] == 0 and m[("rloo", "base")]["win_rate"] is None
    assert m[("rloo", "dpo")]["ties"] == 1
    assert r["bradley_terry"] is not None and len(r["bradley_terry"]) == 3
    by_name = {a["name"]: a for a in r["annotators"]}
    bob = {(row["source"], row["against"]): row for row in by_name["bob"]["matchups"]}
    assert (bob[("dpo", "base")]["wins"], bob[("dpo", "base")]["losses"]) == (0, 2)
    assert A.arena_results(js[:6], ["base", "dpo"], rounds=10)["bradley_terry"] is None
