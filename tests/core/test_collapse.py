"""Collapse measures against values worked out by hand."""

import math

import pytest

from studio.core import collapse


def test_distinct_n_counts_distinct_ngrams_over_all_samples():
    samples = [[1, 2, 3, 1, 2], [1, 2]]
    # bigrams (1,2) (2,3) (3,1) (1,2) | (1,2): 3 distinct of 5
    assert collapse.distinct_n(samples, 2) == pytest.approx(3 / 5)
    # unigrams: 1 2 3 of 7 tokens
    assert collapse.distinct_n(samples, 1) == pytest.approx(3 / 7)
    assert math.isnan(collapse.distinct_n([[1], []], 2))  # nothing to measure, not "no diversity"


def test_overlap_clips_counts_like_bleu():
    # sample bigrams: (1,2) x2, (2,1) x1; the others hold (1,2) at most once, (2,1) at most twice
    assert collapse.overlap([1, 2, 1, 2], [[1, 2, 3], [2, 1, 2, 1]], 2) == pytest.approx(2 / 3)
    assert collapse.overlap([1, 2], [[3, 4]], 2) == 0.0
    assert math.isnan(collapse.overlap([1], [[1, 2]], 2))


def test_self_similarity_averages_within_prompts_then_over_prompts():
    groups = [
        [[1, 2, 3], [1, 2, 3]],  # the same text twice: 1.0
        [[1, 2], [3, 4]],  # nothing shared: 0.0
        [[5, 6]],  # one sample: nothing to compare, left out
    ]
    assert collapse.self_similarity(groups) == pytest.approx(0.5)
    # three samples, one of them shares its one bigram with another: (1 + 1 + 0) / 3
    assert collapse.self_similarity([[[7, 8], [7, 8], [9, 9]]]) == pytest.approx(2 / 3)
    assert math.isnan(collapse.self_similarity([[[1, 2]]]))


def test_repetition_and_the_tokens_it_highlights():
    seq = [1, 2, 3, 1, 2, 3, 1]
    # trigrams (1,2,3) (2,3,1) (3,1,2) (1,2,3) (2,3,1): 3 distinct of 5
    assert collapse.repetition(seq, 3) == pytest.approx(1 - 3 / 5)
    assert collapse.repeated_mask(seq, 3) == [False, False, False, True, True, True, True]
    assert collapse.runs(collapse.repeated_mask(seq, 3)) == [(3, 7)]
    assert collapse.repetition([1, 2, 3, 4], 3) == 0.0 and collapse.repetition([1, 2], 3) == 0.0
    assert collapse.runs([True, False, True, True]) == [(0, 1), (2, 4)]


def test_length_summary_and_the_default_sampling_cap():
    assert collapse.length_summary([10, 20, 60]) == (30.0, 20.0)
    # the 95th percentile of 1..200 is 190.05 (linear interpolation), rounded up
    assert collapse.percentile_length(list(range(1, 201)), 95, 128) == 191
    assert collapse.percentile_length([10] * 19 + [200], 95, 128) == 128  # 19.5: the floor holds
    assert collapse.percentile_length([], 95, 128) == 128
