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


# ---------------------------------------------------------------------------------------------- annotator audit


def test_firth_logistic_on_two_groups_is_the_log_odds_ratio_with_half_a_count_added():
    from studio.core.stats import firth_logistic

    # x = +1: 8 of 10 chose A; x = -1: 3 of 10. Firth adds 0.5 to each cell: logits log(8.5/2.5), log(3.5/7.5)
    x = [1.0] * 10 + [-1.0] * 10
    y = [1] * 8 + [0] * 2 + [1] * 3 + [0] * 7
    intercept, slope = firth_logistic(x, y)
    hi, lo = math.log(8.5 / 2.5), math.log(3.5 / 7.5)
    assert slope == pytest.approx((hi - lo) / 2, abs=1e-8)
    assert intercept == pytest.approx((hi + lo) / 2, abs=1e-8)
    # complete separation (plain maximum likelihood diverges): 10 of 10 against 0 of 10 stays finite
    assert firth_logistic(x, [1] * 10 + [0] * 10)[1] == pytest.approx(math.log(10.5 / 0.5), abs=1e-8)
    assert firth_logistic([2.0, 2.0, 2.0], [1, 0, 1]) is None  # x does not vary: no slope to fit


def crafted_labels() -> list[tuple]:
    """20 pairs: A has 100 + 10 i characters, B 200 (A shorter for i < 10, equal at 10, longer after); A is
    shown on the left on even i. lefty always picks the left side, longy the longer response (B when equal),
    carol always A; an import picked A everywhere."""
    rows = []
    for i in range(20):
        len_a, len_b, shown = 100 + 10 * i, 200, "a" if i % 2 == 0 else "b"
        longer = "a" if len_a > len_b else "b"
        rows += [("lefty", i, shown, shown, 1.0, len_a, len_b), ("longy", i, longer, shown, 10.0, len_a, len_b),
                 ("carol", i, "a", shown, None if i < 5 else 6.0, len_a, len_b),
                 ("import:hh.jsonl", i, "a", "a", None, len_a, len_b)]
    return rows


def test_annotator_audit_on_a_crafted_label_set():
    from studio.core.stats import annotator_audit, annotator_warnings, wilson_interval

    audit = annotator_audit(crafted_labels())
    people = {a["name"]: a for a in audit["people"]}
    assert list(people) == ["carol", "lefty", "longy"]
    assert [a["name"] for a in audit["imported"]] == ["import:hh.jsonl"]  # reported apart from people

    lefty, longy, carol = people["lefty"], people["longy"], people["carol"]
    assert lefty["left"] == {"share": 1.0, "ci95": list(wilson_interval(20, 20)), "n": 20}
    # lefty picks the longer one when the longer is on the left: B (shorter A) on odd i < 10, A on even i > 10
    assert lefty["longer"] == {"share": 9 / 19, "ci95": list(wilson_interval(9, 19)), "n": 19}
    # longy's picks were on the left on odd i <= 10 (B shown left) and even i > 10: 5 + 4
    assert longy["left"]["share"] == 9 / 20
    assert longy["longer"] == {"share": 1.0, "ci95": list(wilson_interval(19, 19)), "n": 19}
    assert carol["left"]["share"] == 0.5 and carol["longer"]["share"] == 9 / 19

    # choosing A against log2(len A / len B): longy follows length all the way, lefty's sides alternate
    assert longy["length_coefficient"] > 2
    assert abs(lefty["length_coefficient"]) < 0.5

    # every lefty label took 1 s (under the 3 s floor); carol's first five were not timed
    assert lefty["median_seconds"] == 1.0 and lefty["fast_labels"]["share"] == 1.0
    assert longy["fast_labels"] == {"share": 0.0, "ci95": list(wilson_interval(0, 20)), "n": 20}
    assert carol["median_seconds"] == 6.0 and carol["fast_labels"]["n"] == 15

    # lefty's others are longy and carol: they agree (A) only on i > 10; lefty picked A there on even i
    assert lefty["majority_agreement"] == {"share": 4 / 9, "ci95": list(wilson_interval(4, 9)), "n": 9}
    # carol's others (lefty, longy) agree on A for even i > 10 and on B for odd i < 10: A matches 4 of 9
    assert carol["majority_agreement"]["n"] == 9 and carol["majority_agreement"]["share"] == 4 / 9
    imported = audit["imported"][0]
    assert imported["left"] is None and imported["median_seconds"] is None and imported["fast_labels"] is None
    # the import (A everywhere) against the people's majority: B on odd i < 10 (lefty and longy), A elsewhere
    assert imported["majority_agreement"] == {"share": 15 / 20, "ci95": list(wilson_interval(15, 20)), "n": 20}

    warnings = annotator_warnings(audit)
    assert warnings[0] == ("lefty chose the response shown on the left in 100% of 20 decisions (left: 95% 84%-100%): "
                           "their labels follow screen position; review them, or leave them out of the next run.")
    assert any(w.startswith("lefty gave 20 of 20 timed labels (100%) in under 3 seconds") for w in warnings)
    # longy decided only 19 pairs of unequal length, under the 20 a warning needs; carol is unremarkable
    assert len(warnings) == 2
    many = annotator_warnings(annotator_audit([(n, i + 20 * k, *rest) for k in range(2)
                                               for n, i, *rest in crafted_labels()]))
    assert any(w.startswith("longy chose the longer response in 100% of 38 decisions (longer: 95% 91%-100%)")
               for w in many)
