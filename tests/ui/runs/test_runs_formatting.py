"""Text shown for runs in the table and the monitor header."""

from __future__ import annotations

import datetime as dt

from studio.ui.runs.formatting import fmt_elapsed, training_seconds


def test_elapsed_is_training_time_not_the_pause_between_stop_and_resume():
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


def test_eta_is_the_time_per_step_so_far_times_the_steps_left():
    from studio.ui.runs.formatting import fmt_eta

    run = {"status": "done", "started_at": "2026-01-01T00:00:00+00:00", "active_seconds": 120.0, "step": 40,
           "total_steps": 100}
    assert fmt_eta(run) == ""  # only while it trains
    run.update(status="running", resumed_at=None)
    assert fmt_eta(run) == " · ETA 3m 00s"  # 3 s a step, 60 steps to go
    assert fmt_eta({**run, "step": 0}) == "" and fmt_eta({**run, "step": 100}) == ""
