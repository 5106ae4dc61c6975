"""The numpy buffers behind the live charts and the health rules: EMA, growth, resumed runs, grouping."""

from __future__ import annotations

import numpy as np

from studio.core.series import RunSeries, Series, ema


def reference_ema(x, w):
    out, s = [], x[0]
    for v in x:
        s = w * s + (1 - w) * v
        out.append(s)
    return np.array(out)


def test_ema_matches_the_recurrence_across_chunks():
    x = np.random.default_rng(0).normal(size=1000)
    for w in (0.0, 0.3, 0.9, 0.99):
        np.testing.assert_allclose(ema(x, w), x if w == 0 else reference_ema(x, w), atol=1e-9)


def test_ema_is_exact_over_many_blocks_at_any_weight():
    # long enough that the blocks' carries are themselves solved in blocks (for small weights)
    x = np.random.default_rng(2).normal(size=30_000) * 100 + 50
    for w in (0.01, 0.5, 0.95, 0.999):
        np.testing.assert_allclose(ema(x, w), reference_ema(x, w), rtol=1e-9, atol=1e-7)
        np.testing.assert_allclose(ema(x[:777], w, start=3.0)[0], w * 3.0 + (1 - w) * x[0])


def test_ema_carries_missing_values_and_incremental_smoothing_equals_full():
    x = np.array([1.0, np.nan, 3.0, 4.0])
    np.testing.assert_allclose(ema(x, 0.5), reference_ema(np.array([1.0, 1.0, 3.0, 4.0]), 0.5))
    s = Series(capacity=4)
    values = np.random.default_rng(1).normal(size=500)
    for lo in range(0, 500, 37):  # arrives in uneven batches, smoothed after each as the monitor does
        chunk = values[lo:lo + 37]
        s.extend(np.arange(lo, lo + chunk.size), np.zeros(chunk.size), chunk)
        s.smoothed(0.9)
    np.testing.assert_allclose(s.smoothed(0.9), reference_ema(values, 0.9), atol=1e-9)
    assert s.step.size >= 500 and len(s) == 500


def test_a_resumed_run_replaces_the_steps_it_logs_again():
    s = Series()
    s.extend([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], [10, 20, 30, 40, 50])
    s.extend([4, 5, 6], [9, 10, 11], [41, 51, 61])  # resumed from a checkpoint at step 3
    assert s.step[: s.n].tolist() == [1, 2, 3, 4, 5, 6]
    assert s.y.tolist() == [10, 20, 30, 41, 51, 61]
    assert s.value_at(4.4) == (4.0, 41.0)


def test_value_range_and_minutes_follow_appends_and_resumes():
    s = Series(capacity=2)
    s.extend([1, 2, 3], [60, 120, 180], [5.0, np.nan, -1.0])
    assert not s.all_finite and s.value_range() == (-1.0, 5.0)
    assert s.x("time", t0=60).tolist() == [0, 1, 2]
    s.extend([4], [240], [9.0])
    assert s.value_range() == (-1.0, 9.0) and s.x("time", t0=60).tolist() == [0, 1, 2, 3]
    s.extend([2, 3], [300, 360], [0.5, 0.25])  # resumed at step 2: the old extremes are gone
    assert s.value_range() == (0.25, 5.0)
    assert s.x("time", t0=60).tolist() == [0, 4, 5]
    v = s.version
    s.extend([], [], [])
    assert s.version == v  # nothing new: the monitor will not redraw it


def test_rows_are_grouped_per_metric_in_logging_order_across_chunks():
    rs = RunSeries()
    rows = [(1, 1, 0.7, 100.0, "loss"), (2, 1, 0.5, 100.0, "acc"), (3, 2, 0.6, 101.0, "loss"),
            (4, 2, None, 101.0, "acc"), (5, 3, 0.4, 102.0, "loss")]
    assert rs.add_rows(rows[:3]) == {"loss", "acc"}
    assert rs.add_rows(rows[3:]) == {"loss", "acc"}
    assert rs.add_rows([]) == set() and rs.last_metric_id == 5 and rs.t0 == 100.0
    loss, acc = rs.series["loss"], rs.series["acc"]
    assert loss.step[: loss.n].tolist() == [1, 2, 3] and loss.y.tolist() == [0.7, 0.6, 0.4]
    assert acc.y[0] == 0.5 and np.isnan(acc.y[1]) and not acc.all_finite  # a NULL value is a gap
    assert loss.time[: loss.n].tolist() == [100.0, 101.0, 102.0]


def test_latest_samples_are_those_of_the_last_evaluation():
    rs = RunSeries()
    assert rs.latest_samples() == [] and not rs.add_samples([])
    assert rs.add_samples([{"id": 1, "step": 0, "text": "a"}, {"id": 2, "step": 0, "text": "b"}])
    rs.add_samples([{"id": 3, "step": 10, "text": "c"}, {"id": 4, "step": 10, "text": "d"}])
    assert [s["text"] for s in rs.latest_samples()] == ["c", "d"] and rs.last_sample_id == 4


def test_accuracy_points_where_every_margin_is_exactly_zero_are_not_defined():
    from studio.core import metrics as M
    from studio.core.series import RunSeries, untied

    rs = RunSeries()
    acc, margin = M.eval_name(M.REWARDS_ACCURACIES), M.eval_name(M.REWARDS_MARGINS)
    rows = [(0, acc, 0.0), (0, margin, 0.0), (10, acc, 0.75), (10, margin, 0.4), (20, acc, 0.5), (20, margin, -0.1)]
    rs.add_rows([(i, s, v, float(i), n) for i, (s, n, v) in enumerate(rows, 1)])
    assert rs.defined(acc).tolist() == [False, True, True]  # step 0: the reference ties every pair
    assert rs.defined(margin) is None and rs.defined(M.REWARDS_ACCURACIES) is None
    assert untied(np.array([1, 2]), np.array([1, 2]), np.array([0.3, 0.0])).tolist() == [True, False]
