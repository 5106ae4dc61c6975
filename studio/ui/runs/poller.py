"""Reads new metric and sample rows of watched runs from the project database on one QTimer."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from studio.ui.runs.series import Series


class RunData:
    """Everything the monitor draws for one run, filled incrementally by metric row id."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.series: dict[str, Series] = {}
        self.last_metric_id = 0
        self.last_sample_id = 0
        self.samples: list[dict] = []
        self.t0: float | None = None  # wall time of the first metric: time axis origin

    def poll(self, project) -> set[str]:
        """Read rows newer than what we have; returns the names of the metrics that changed."""
        rows = project.metrics(self.run_id, since_id=self.last_metric_id)
        changed: set[str] = set()
        if rows:
            self.last_metric_id = rows[-1][0]
            if self.t0 is None:
                self.t0 = float(rows[0][4])
            grouped: dict[str, list[tuple]] = defaultdict(list)
            for _id, step, name, value, t in rows:
                grouped[name].append((step, t, np.nan if value is None else value))
            for name, pts in grouped.items():
                arr = np.asarray(pts, dtype=np.float64)
                series = self.series.get(name)
                if series is None:
                    series = self.series[name] = Series(max(256, len(pts)))
                series.extend(arr[:, 0], arr[:, 1], arr[:, 2])
                changed.add(name)
        new_samples = project.samples(self.run_id, since_id=self.last_sample_id)
        if new_samples:
            self.last_sample_id = new_samples[-1]["id"]
            self.samples.extend(new_samples)
            changed.add("samples")
        return changed

    def latest_samples(self) -> list[dict]:
        """The generations of the most recent evaluation step, one per eval prompt."""
        if not self.samples:
            return []
        step = self.samples[-1]["step"]
        return [s for s in self.samples if s["step"] == step]


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
            rd.poll(self.project)
        return rd

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
        try:
            self._tick()
        except sqlite3.ProgrammingError:
            self.timer.stop()  # the project was closed under us (the window is going away)

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
            changed = rd.poll(self.project)
            if changed:
                self.data_changed.emit(run_id, changed)

    def refresh_runs(self) -> None:
        """Force a runs_changed emission now (after a user action changed a run)."""
        self._runs_key = None
        self.tick()
