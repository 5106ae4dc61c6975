"""Where a recipe's metrics go: the `MetricSink` protocol, the writer that buffers rows into the project in a
few transactions per second at most, and the sink of processes that write nothing.

The GUI polls the metrics table while annotators keep labeling in the same file, so the worker must not
take the write lock for every scalar: rows are buffered and flushed together with the run's `step` and
`heartbeat_at`, in one short transaction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Protocol

from studio.store import Project
from studio.store.project import ProjectBusy, now_iso

FINAL_FLUSH_TRIES = 8  # each try already waits the store's busy timeout (15 s) for the write lock


class MetricSink(Protocol):
    """What a recipe writes its metrics to, the same on every process."""

    def add(self, step: int, values: Mapping[str, float]) -> None:
        """Queue one step's metrics by name."""

    def set_step(self, step: int) -> None:
        """The optimizer steps done."""

    def flush(self, wait: bool = False) -> bool:
        """Write what is queued; with `wait` (a run's last flush) keep trying. True when written."""


def metric_sink(project: Project, run_id: int, main_process: bool) -> MetricSink:
    """The project's writer on the main process; under `accelerate launch` the others write nothing."""
    return MetricsWriter(project, run_id) if main_process else NoMetrics()


class NoMetrics:
    """The sink of processes other than the main one: their metrics are not written."""

    def add(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def set_step(self, step: int) -> None:
        pass

    def flush(self, wait: bool = False) -> bool:
        return True


class MetricsWriter:
    """The main process's sink: buffers rows and writes them to the project at most every `min_interval` s."""

    def __init__(self, project: Project, run_id: int, min_interval: float = 0.5):
        self.project = project
        self.run_id = run_id
        self.min_interval = min_interval
        self._rows: list[tuple[int, str, float]] = []
        self._step: int | None = None
        self._last_flush = 0.0

    def add(self, step: int, values: Mapping[str, float]) -> None:
        """Queue one step's metrics; non-finite values are stored as NULL so charts show a gap."""
        for name, v in values.items():
            v = float(v)
            self._rows.append((step, name, v if math.isfinite(v) else None))
        self.maybe_flush()

    def set_step(self, step: int) -> None:
        """The optimizer steps done, written with the next flush (and so is the heartbeat)."""
        self._step = step
        self.maybe_flush()

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.min_interval:
            self.flush()

    def flush(self, wait: bool = False) -> bool:
        """Write the buffered rows. When another process holds the write lock past the busy timeout (a
        very large import), the rows stay buffered for the next flush instead of being lost and failing
        the run; with `wait` (the last flush of a run) it keeps trying. Returns True when written."""
        tries = FINAL_FLUSH_TRIES if wait else 1
        for attempt in range(1, tries + 1):
            try:
                with self.project.transaction():
                    self.project.log_metrics(self.run_id, self._rows)
                    fields = {"heartbeat_at": now_iso()}
                    if self._step is not None:
                        fields["step"] = self._step
                    self.project.update_run(self.run_id, **fields)
            except ProjectBusy:
                self._last_flush = time.monotonic()
                if wait and attempt == tries:
                    raise
                continue
            self._rows = []
            self._last_flush = time.monotonic()
            return True
        return False
