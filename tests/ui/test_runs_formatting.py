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
