"""Seed bands: a group's runs as a mean with +-1 sample std, aligned by step; final values as mean ± std."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studio.core.seed_bands import MeanStd, fmt_number, mean_std, seed_band


def curve(steps, values):
    return np.array(steps, dtype=float), np.array(values, dtype=float)


def test_the_band_is_the_mean_and_sample_std_of_the_runs_at_each_step():
    band = seed_band([curve([1, 2, 3], [1, 4, 0]), curve([1, 2, 3], [3, 4, 6]), curve([1, 2, 3], [5, 4, 3])])
    assert band.steps.tolist() == [1, 2, 3]
    assert band.mean.tolist() == [3, 4, 3]
    # (1-3)^2 + (3-3)^2 + (5-3)^2 = 8 over n-1 = 2 -> 2; step 3: 9 + 9 + 0 = 18 / 2 = 9
    assert band.std.tolist() == pytest.approx([2.0, 0.0, 3.0])
    assert band.lower.tolist() == pytest.approx([1, 4, 0]) and band.upper.tolist() == pytest.approx([5, 4, 6])
    assert band.n.tolist() == [3, 3, 3]


def test_runs_of_different_lengths_gaps_and_a_resumed_step():
    # run a stopped at step 2; run b has a missing value at step 2 and logged step 3 twice (a resume: the later wins)
    band = seed_band([curve([1, 2], [1, 3]), curve([1, 2, 3, 3, 4], [3, math.nan, 99, 5, 7])])
    assert band.steps.tolist() == [1, 2, 3, 4]
    assert band.mean.tolist() == [2, 3, 5, 7]
    assert band.n.tolist() == [2, 1, 1, 1]
    assert band.std[0] == pytest.approx(math.sqrt(2))
    assert np.isnan(band.std[1:]).all()  # one run: a mean, no band


def test_a_step_nobody_has_a_value_for_is_left_out_and_no_runs_make_an_empty_band():
    band = seed_band([curve([1, 2], [1, math.nan]), curve([1, 2], [3, math.nan])])
    assert band.steps.tolist() == [1]
    assert len(seed_band([])) == 0 and len(seed_band([curve([], [])])) == 0


def test_mean_std_of_final_values():
    m = mean_std([0.5, 0.7, 0.9])
    assert m == MeanStd(pytest.approx(0.7), pytest.approx(0.2), 3)
    assert m.text() == "0.7 ± 0.2 (n=3)" and m.text(of=3) == "0.7 ± 0.2"
    single = mean_std([None, 1.5, math.nan])
    assert single == MeanStd(1.5, None, 1) and single.text(of=3) == "1.5 (n=1)"
    assert mean_std([]) is None and mean_std([None, math.nan]) is None


def test_numbers_are_shown_without_an_exponent_when_a_table_can_show_them_whole():
    assert fmt_number(-1749.3, 3) == "-1749"
    assert fmt_number(0.0004567, 3) == "0.000457"
    assert fmt_number(2.5e-06) == "2.5e-06"
