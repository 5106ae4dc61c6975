"""Reads new metric and sample rows of watched runs from the project database on one QTimer."""

from __future__ import annotations

import time
from collections import defaultdict

from PySide6.QtCore import QObject, QTimer, Signal

from studio.core.series import RunSeries

CHUNK_ROWS = 40_000
"""Metric rows read per step (about 30 ms): a run with 100k steps already logged loads in chunks
between which the event loop runs, so the window stays responsive and shows progress."""


class RunData(RunSeries):
    """One watched run's series (studio.core.series.RunSeries), read from the project incrementally by
    metric row id, in chunks while a long history catches up."""

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.rows_read = 0
        self.rows_expected = 0
        """Rows known to be waiting when catching up started (for progress); 0 when caught up."""
        self.behind = False
        """True while the last read hit CHUNK_ROWS: more rows are waiting."""

    @property
    def progress(self) -> float | None:
        """The fraction of the rows waiting at the start that have been read, None when caught up."""
        if not self.behind or not self.rows_expected:
            return None
        return min(0.99, self.rows_read / self.rows_expected)

    def poll(self, project, limit: int | None = None) -> set[str]:
        """Read up to `limit` (CHUNK_ROWS) rows newer than what we have; returns the names of the
        metrics that changed. Sets `behind` when more rows are waiting."""
        limit = limit or CHUNK_ROWS
        if not self.behind and self.last_metric_id == 0:
            self.rows_expected = project.metric_count(self.run_id)
        rows = project.metrics_since(self.run_id, self.last_metric_id, limit)
        self.behind = len(rows) >= limit
        if not self.behind:
            self.rows_expected = 0
        self.rows_read += len(rows)
        changed = self.add_rows(rows)
        if self.add_samples(project.samples(self.run_id, since_id=self.last_sample_id)):
            changed.add("samples")
        return changed


class Poller(QObject):
    """One timer for the whole Runs section: refreshes the runs table and the watched runs' data.

    The GUI holds no connection to the worker: everything comes from the database, which is why a
    run started from the CLI, or before the GUI was reopened, shows up live the same way."""

    runs_changed = Signal(object)
    """The runs (dicts from Project.runs) whenever any row changed."""
    data_changed = Signal(int, object)
    """(run id, names of the metrics that got new points; 'samples' for new generations)."""

    def __init__(self, project, interval_ms: int = 250, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.data: dict[int, RunData] = {}
        self.watchers: dict[int, int] = defaultdict(int)
        self._runs_key: object = None
        self._last_dead_check = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.catch_up_timer = QTimer(self)
        self.catch_up_timer.setSingleShot(True)
        self.catch_up_timer.setInterval(0)  # next chunk as soon as the events waiting are handled
        self.catch_up_timer.timeout.connect(self._catch_up)

    def start(self) -> None:
        """Read everything new now, then every interval (idempotent)."""
        if self.timer.isActive():
            return
        self._last_dead_check = 0.0
        self._runs_key = None
        self.tick()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def watch(self, run_id: int) -> RunData:
        """Start reading a run's metrics (reference-counted; call unwatch when done)."""
        self.watchers[run_id] += 1
        rd = self.data.get(run_id)
        if rd is None:
            rd = self.data[run_id] = RunData(run_id)
            rd.poll(self.project)  # the first chunk now; the rest follows in the event loop
            self._schedule_catch_up()
        return rd

    def finish_loading(self, run_id: int) -> None:
        """Read all of a watched run's waiting rows now (before an export or a screenshot)."""
        rd = self.data.get(run_id)
        changed: set[str] = set()
        while rd is not None and rd.behind:
            changed |= rd.poll(self.project)
        if changed:
            self.data_changed.emit(run_id, changed)

    def _schedule_catch_up(self) -> None:
        if any(rd.behind for rd in self.data.values()):
            self.catch_up_timer.start()

    def _catch_up(self) -> None:
        """One more chunk for each run that is behind, then back to the event loop."""
        if self.project.closed:
            return
        for run_id, rd in list(self.data.items()):
            if rd.behind:
                changed = rd.poll(self.project)
                self.data_changed.emit(run_id, changed)
        self._schedule_catch_up()

    def unwatch(self, run_id: int) -> None:
        self.watchers[run_id] -= 1
        if self.watchers[run_id] <= 0:
            self.watchers.pop(run_id, None)
            self.data.pop(run_id, None)

    def forget(self, run_id: int) -> None:
        """Drop a deleted run's data."""
        self.watchers.pop(run_id, None)
        self.data.pop(run_id, None)

    def tick(self) -> None:
        if self.project.closed:
            self.timer.stop()  # the project was closed under us (the window is going away)
            return
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_dead_check > 5.0:
            # a worker killed outright never says so; its pid tells us
            self._last_dead_check = now
            self.project.mark_dead_runs()
        runs = self.project.runs()
        key = [(r["id"], r["status"], r["step"], r["total_steps"], r["name"], r["error"], r["ended_at"])
               for r in runs]
        if key != self._runs_key:
            self._runs_key = key
            self.runs_changed.emit(runs)
        for run_id, rd in list(self.data.items()):
            if rd.behind:
                continue  # the catch-up timer is reading it
            changed = rd.poll(self.project)
            if changed:
                self.data_changed.emit(run_id, changed)
        self._schedule_catch_up()

    def refresh_runs(self) -> None:
        """Force a runs_changed emission now (after a user action changed a run)."""
        self._runs_key = None
        self.tick()
