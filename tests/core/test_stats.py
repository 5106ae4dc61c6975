"""Label statistics against hand-computed and textbook values."""

from __future__ import annotations

import math

import pytest

from studio.core import stats


def test_wilson_interval_matches_the_textbook_value():
    # 8 successes of 10 at 95%: (0.4902, 0.9433) (Wilson 1927; Newcombe 1998, Table I)
    lo, hi = stats.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert stats.wilson_interval(0, 0) is None
    lo, hi = stats.wilson_interval(0, 5)
    assert lo == 0.0 and 0 < hi < 1


def test_label_distribution_has_every_choice():
    d = stats.label_distribution({"a": 3, "b": 1})
    assert d["a"] == {"count": 3, "share": 0.75}
    assert d["skip"] == {"count": 0, "share": 0.0}
    assert stats.label_distribution({})["tie"]["share"] == 0.0


def test_position_bias():
    pb = stats.position_bias(left_won=8, decided=10)
    assert pb["share"] == 0.8 and pb["ci95"][0] == pytest.approx(0.4902, abs=1e-4)
    assert stats.position_bias(0, 0) == {"decided": 0, "left_won": 0, "share": None, "ci95": None}


def test_length_bias_share_and_median_ratio():
    lb = stats.length_bias([10, 30, 5, 8], [5, 10, 10, 8])
    # longer: 10>5, 30>10 (equal lengths do not count); ratios 2, 3, 0.5, 1 -> median 1.5
    assert (lb["decided_pairs"], lb["chosen_longer"], lb["share"], lb["median_ratio"]) == (4, 2, 0.5, 1.5)
    assert stats.length_bias([], [])["share"] is None


def test_majority_rule():
    assert stats.majority({"a": 2, "b": 1}) == "a"
    assert stats.majority({"a": 1, "b": 1}) is None
    assert stats.majority({"tie": 2, "a": 1, "skip": 5}) == "tie"
    assert stats.majority({"skip": 3}) is None


def test_cohens_kappa_textbook_example():
    # Wikipedia "Cohen's kappa": 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15:
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert stats.cohens_kappa(first, second) == pytest.approx(0.4)
    assert stats.cohens_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert stats.cohens_kappa(["a", "a"], ["a", "a"]) == 1.0
    assert stats.cohens_kappa([], []) is None


def test_cohens_kappa_three_categories_by_hand():
    # rater 1: a a b b c c ; rater 2: a b b b c a
    # p_o = 4/6; marginals r1 (2,2,2), r2 (2,3,1): p_e = (4 + 6 + 2) / 36 = 1/3; kappa = (2/3 - 1/3) / (2/3) = 0.5
    assert stats.cohens_kappa(list("aabbcc"), list("abbbca")) == pytest.approx(0.5)


def test_krippendorff_alpha_nominal_textbook_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 4 coders x 12 units example
    # with missing values: alpha (nominal) = 0.743
    coders = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3",
              ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."]
    units = [[v for v in col if v != "."] for col in zip(*(c.split() for c in coders), strict=True)]
    assert stats.krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_two_coders_by_hand():
    # units: (a,a) (a,b) (b,b) (b,b): n = 8 values, n_a = 3, n_b = 5
    # D_o: the (a,b) unit gives o_ab = o_ba = 1 -> 2 disagreeing pairs of 8 values
    # D_e: 2 * n_a * n_b / (n - 1) = 30 / 7 of 8; alpha = 1 - (n - 1) * 2 / (2 * 3 * 5) = 1 - 14/30 = 8/15
    assert stats.krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]) == pytest.approx(8 / 15)
    assert stats.krippendorff_alpha_nominal([["a"], ["b"]]) is None  # nothing pairable
    assert stats.krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) == 1.0


def test_percent_agreement_counts_units_where_all_agree():
    assert stats.percent_agreement([["a", "a"], ["a", "b"], ["b", "b", "b"], ["a", "a", "b"], ["x"]]) == 0.5
    assert stats.percent_agreement([["x"]]) is None


def test_agreement_from_triples_gives_kappa_only_for_two_annotators():
    two = [(1, "al", "a"), (1, "bo", "a"), (2, "al", "a"), (2, "bo", "b"), (3, "al", "b"), (3, "bo", "b"),
           (4, "al", "b")]  # unit 4 has one rating: left out
    ag = stats.agreement(two)
    assert (ag["pairs"], ag["annotators"], ag["percent"]) == (3, 2, pytest.approx(2 / 3))
    assert ag["cohens_kappa"] == pytest.approx(stats.cohens_kappa(["a", "a", "b"], ["a", "b", "b"]))
    three = [*two, (1, "cy", "a")]
    ag3 = stats.agreement(three)
    assert ag3["annotators"] == 3 and ag3["cohens_kappa"] is None
    assert ag3["krippendorff_alpha"] == pytest.approx(stats.krippendorff_alpha_nominal(
        [["a", "a", "a"], ["a", "b"], ["b", "b"]]))


def test_bias_warnings_in_words():
    biased = {
        "length_bias": stats.length_bias([100] * 78 + [10] * 22, [50] * 100),
        "position_bias": stats.position_bias(70, 100),
        "agreement": {"pairs": 40, "krippendorff_alpha": 0.21},
        "resolved": {"preferences": 60},
    }
    warnings = stats.bias_warnings(biased)
    assert warnings[0].startswith("78% of chosen responses are longer: DPO will learn length")
    assert any("shown on the left 70%" in w for w in warnings)
    assert any("alpha 0.21" in w for w in warnings)
    assert any("Only 60 resolved preferences" in w for w in warnings)
    fair = {"length_bias": stats.length_bias([10] * 50 + [1] * 50, [5] * 100),
            "position_bias": stats.position_bias(52, 100),
            "agreement": {"pairs": 40, "krippendorff_alpha": 0.8}, "resolved": {"preferences": 500}}
    assert stats.bias_warnings(fair) == []
    assert stats.bias_warnings({}) == []


def test_wilson_is_symmetric():
    lo, hi = stats.wilson_interval(3, 10)
    lo2, hi2 = stats.wilson_interval(7, 10)
    assert math.isclose(lo, 1 - hi2) and math.isclose(hi, 1 - lo2)
