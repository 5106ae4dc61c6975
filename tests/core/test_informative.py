"""The informative score's maths, against values worked out by hand (ln 3 is the margin of 3:1 odds)."""

import math

import numpy as np
import pytest

from studio.core import informative as I
from studio.core.errors import ConfigError

LN3 = math.log(3)  # sigma(ln 3) = 0.75


def test_uncertainty_is_one_at_even_odds_and_falls_with_the_margin():
    u = I.uncertainty(np.array([0.0, LN3, -LN3, 50.0, np.nan]))
    assert u[:4] == pytest.approx([1.0, 0.5, 0.5, 0.0])  # 1 - |2 * 0.75 - 1| = 0.5
    assert math.isnan(u[4])


def test_checkpoint_disagreement_is_the_spread_of_the_probabilities():
    margins = np.array([[LN3, LN3, np.nan],
                        [0.0, LN3, 0.0],
                        [-LN3, np.nan, np.nan]])
    c = I.checkpoint_disagreement(margins)
    assert c[0] == pytest.approx(0.5)  # 0.75 - 0.25
    assert c[1] == pytest.approx(0.0)  # two models, the same odds
    assert math.isnan(c[2])  # one model scored it: nothing to disagree with


def test_policy_disagreement_compares_the_two_probabilities():
    d = I.policy_disagreement(np.array([LN3, 0.0, np.nan]), np.array([-LN3, 0.0, 1.0]))
    assert d[:2] == pytest.approx([0.5, 0.0])
    assert math.isnan(d[2])


def test_label_disagreement():
    counts = np.array([[1, 1, 0, 0], [2, 1, 0, 0], [3, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0],
                       [0, 1, 1, 0]])
    assert I.label_disagreement(counts) == pytest.approx([1.0, 2 / 3, 0.0, 0.0, 1.0, 0.0, 1.0])


def test_the_combined_score_by_hand():
    # pair 0: no verdicts; reward models at 3:1 and even odds, the policy at 1:3
    #   U = 0.5, C = 0.75 - 0.5 = 0.25, P = 0.75 - 0.25 = 0.5 -> 1.25 / (1 + 0)
    # pair 1: one verdict, both models at even odds, policy too: U = 1, C = 0, P = 0 -> 1 / 2
    # pair 2: a 1-1 split, every model sure of A (large margins): 3 * 1 + ~0 / 3
    s = I.informative_scores(3, np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]),
                             reward_margins=np.array([[LN3, 0.0, 40.0], [0.0, 0.0, 40.0]]),
                             policy_margins=np.array([-LN3, 0.0, 40.0]))
    assert s.score == pytest.approx([1.25, 0.5, 3.0])
    assert s.uncertainty[0] == pytest.approx(0.5) and s.checkpoints[0] == pytest.approx(0.25)
    assert s.policy[0] == pytest.approx(0.5) and s.labels[2] == 1.0
    assert s.order.tolist() == [2, 0, 1]


def test_without_models_split_votes_come_first_and_the_rest_keep_their_order():
    s = I.informative_scores(5, np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [2, 1, 0, 0], [0, 0, 0, 0]]))
    assert s.order.tolist() == [2, 3, 0, 1, 4]
    assert s.score == pytest.approx([0, 0, 3, 2, 0])
    assert np.isnan(s.uncertainty).all()


def test_a_pair_no_model_scored_takes_the_mean_of_the_scored_ones():
    s = I.informative_scores(3, np.zeros((3, 4)), reward_margins=np.array([[0.0, np.nan, LN3]]))
    assert s.score == pytest.approx([1.0, 0.75, 0.5])  # the mean of 1 and 0.5
    assert math.isnan(s.uncertainty[1])  # the part says it was not scored
    assert s.order.tolist() == [0, 1, 2]


def test_the_policy_alone_gives_the_uncertainty():
    s = I.informative_scores(2, np.zeros((2, 4)), policy_margins=np.array([LN3, 0.0]))
    assert s.score == pytest.approx([0.5, 1.0])
    assert np.isnan(s.policy).all() and np.isnan(s.checkpoints).all()


def test_model_terms_and_their_description():
    r1, r2, p = I.Scorer(1, 10, I.REWARD), I.Scorer(2, 10, I.REWARD), I.Scorer(3, 5, I.POLICY)
    assert I.model_terms([]) == set()
    assert I.model_terms([r1]) == {"uncertainty"}
    assert I.model_terms([p]) == {"uncertainty"}
    assert I.model_terms([r1, r2, p]) == {"uncertainty", "checkpoints", "policy"}
    lines = I.describe_parts({"score": 0.75, "n_labels": 1, "uncertainty": None, "checkpoints": None,
                              "policy": None, "labels": 0.0}, I.model_terms([r1]))
    assert lines[0].startswith("informative 0.750")
    assert "not scored" in lines[1] and "no model" in lines[2] and "no model" in lines[3]


def test_rank_plans_round_trip_and_refuse_what_cannot_be_scored():
    plan = I.RankPlan("m", [I.Scorer(1, 10, I.REWARD), I.Scorer(3, 5, I.POLICY)], max_pairs=100, seed=2)
    again = I.RankPlan.from_dict(plan.to_dict())
    assert again.scorers == plan.scorers and again.max_pairs == 100 and again.policy_scorer == plan.scorers[1]
    with pytest.raises(ConfigError, match="at most one DPO"):
        I.RankPlan("m", [I.Scorer(3, 5, I.POLICY), I.Scorer(4, 5, I.POLICY)])
    with pytest.raises(ConfigError, match="reward runs come first"):
        I.RankPlan("m", [I.Scorer(3, 5, I.POLICY), I.Scorer(1, 5, I.REWARD)])
    with pytest.raises(ConfigError, match="not a valid plan"):
        I.RankPlan.from_dict({"scorers": []})
