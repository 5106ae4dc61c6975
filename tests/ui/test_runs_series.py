"""The numpy buffers behind the live charts: EMA smoothing, growth, and resumed runs."""

from __future__ import annotations

import numpy as np

from studio.ui.runs.series import Series, ema


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


def test_elapsed_is_training_time_not_the_pause_between_stop_and_resume():
    import datetime as dt

    from studio.ui.runs.formatting import fmt_elapsed, training_seconds

    done = {"status": "done", "started_at": "2026-01-01T10:00:00+00:00", "ended_at": "2026-01-01T12:00:00+00:00",
            "active_seconds": 75.0, "resumed_at": None}
    assert fmt_elapsed(done) == "1m 15s"  # two hours of wall time, 75 s of it training
    now = dt.datetime.now(dt.UTC)
    running = {**done, "status": "running", "ended_at": None,
               "resumed_at": (now - dt.timedelta(seconds=30)).isoformat()}
    assert 104 <= training_seconds(running) <= 110
    old = {"status": "done", "started_at": "2026-01-01T10:00:00+00:00", "ended_at": "2026-01-01T10:02:05+00:00"}
    assert fmt_elapsed(old) == "2m 05s"  # runs from before training time was recorded
    assert fmt_elapsed({"status": "queued", "started_at": None}) == "–"
