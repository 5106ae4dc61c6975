"""Reads a run's metric rows in chunks into the core RunSeries: how the CLI judges a run's health."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from studio.core.series import RunSeries
from studio.store.project import Project

CHUNK_ROWS = 40_000
"""Rows per read: a run of 100k steps (about 1.4M rows) is never held as Python tuples all at once."""


def metric_chunks(project: Project, run_id: int, names: Sequence[str] | None = None,
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[list[tuple]]:
    """A run's metric rows (id, step, value, time, name) as Project.metrics_since returns them, oldest
    first, `chunk_rows` at a time; only those of the metrics `names` when given."""
    after = 0
    while True:
        rows = project.metrics_since(run_id, after, chunk_rows, names)
        if rows:
            yield rows
        if len(rows) < chunk_rows:
            return
        after = rows[-1][0]


def read_run_series(project: Project, run_id: int, names: Sequence[str] | None = None) -> RunSeries:
    """A run's metrics (only `names` when given) grouped into series, as the monitor holds them."""
    rs = RunSeries()
    for rows in metric_chunks(project, run_id, names):
        rs.add_rows(rows)
    return rs
