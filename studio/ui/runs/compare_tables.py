"""Compare's tables, one column per compared run or seed group: the settings that differ, and the final metrics
followed by each run's cost (a group's cells: mean ± std over its finished runs). The numbers come from
studio.core.comparison, the same code as `studio compare` and the report."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

from studio.core.comparison import Comparison, Entry, RunSummary, cell_text
from studio.core.costs import COST_ROWS, RunUsage, run_cost
from studio.core.seed_bands import MeanStd
from studio.core.series import RunSeries
from studio.store.comparison import run_usage


class UsageCache:
    """What each run logged about its cost, read again only when the run moved on."""

    def __init__(self, project):
        self.project = project
        self._cache: dict[int, tuple[tuple, RunUsage]] = {}

    def get(self, run: dict) -> RunUsage:
        key = (run["status"], run["step"], run.get("ended_at"))
        hit = self._cache.get(run["id"])
        if hit is None or hit[0] != key:
            hit = self._cache[run["id"]] = (key, run_usage(self.project, run["id"]))
        return hit[1]


def gui_comparison(runs: Sequence[dict], entries: list[Entry], data: Mapping[int, RunSeries], metrics: Sequence[str],
                   usage: UsageCache, price: float | None) -> Comparison:
    """The comparison the tables show, from the runs' rows and the series the poller holds."""
    summaries = []
    for r in runs:
        rd = data.get(r["id"])
        final = {}
        for m in metrics:
            s = rd.series.get(m) if rd is not None else None
            if s is not None and len(s):
                final[m] = s.last()
        summaries.append(RunSummary(r, final, run_cost(r, usage.get(r), price)))
    return Comparison(project="", created_at="", runs=summaries, entries=entries, series={},
                      price_per_gpu_hour=price)


def _fill(t: QTableWidget, header: list[str], rows: list[tuple[str, list[str]]]) -> None:
    t.clear()
    t.setColumnCount(len(header))
    t.setHorizontalHeaderLabels(header)
    t.setRowCount(len(rows))
    t.setVerticalHeaderLabels([label for label, _ in rows])
    for row, (_label, cells) in enumerate(rows):
        for col, text in enumerate(cells):
            t.setItem(row, col, QTableWidgetItem(text))


def fill_settings_table(t: QTableWidget, c: Comparison) -> None:
    """Rows: the settings on which the compared runs or groups differ (a group's seeds joined)."""
    labels = [e.label for e in c.entries]
    fields = c.differing_fields()
    configs = c.entry_configs()
    rows = [(f, ["–" if f not in cfg else str(cfg[f]) for cfg in configs]) for f in fields]
    if len(c.entries) > 1 and not fields:
        rows = [("", ["All settings are the same."])]
    _fill(t, labels, rows)


FIXED_ROWS = ("status", "step")


def fill_final_table(t: QTableWidget, c: Comparison, metrics: Sequence[str],
                     title: Callable[[str], str] = str, better: Callable[[str], str | None] = lambda _m: None,
                     mark: str | None = None) -> None:
    """Rows: status, step, the final value of each metric (named by `title`, the metric's name in the row's
    tooltip), then the cost fields. With two columns or more, the best final value of a metric whose `better`
    is "higher" or "lower" is bold, on the `mark` colour (a group is judged by its mean)."""
    def joined(e: Entry, key: str) -> str:
        return ", ".join(dict.fromkeys(str(s.run[key]) for s in c.entry_runs(e)))

    rows = [(key, [joined(e, key) for e in c.entries]) for key in FIXED_ROWS]
    rows += [(title(m), [cell_text(c.final(e, m), of=len(e.run_ids), digits=3) for e in c.entries]) for m in metrics]
    price = "" if c.price_per_gpu_hour is None else f" (at {c.price_per_gpu_hour:g}/GPU-h)"
    rows += [(label + (price if field == "money" else ""),
              [cell_text(c.cost(e, field), field, of=len(e.run_ids)) for e in c.entries]) for field, label in COST_ROWS]
    _fill(t, [e.label for e in c.entries], rows)
    for row, m in enumerate(metrics, start=len(FIXED_ROWS)):
        t.verticalHeaderItem(row).setToolTip(m)
        finals = [_centre(c.final(e, m)) for e in c.entries]
        best = best_of(finals, better(m)) if len(c.entries) > 1 else None
        for col, value in enumerate(finals):
            item = t.item(row, col)
            if best is not None and value == best and item is not None:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
                if mark:
                    item.setBackground(QBrush(QColor(mark)))
                item.setToolTip(f"best final {title(m).lower()} ({better(m)} is better)")
    # row headers as wide as their longest name, so none is clipped
    heads = [label for label, _ in rows]
    t.verticalHeader().setMinimumWidth(max((t.fontMetrics().horizontalAdvance(h) for h in heads), default=0) + 16)


def _centre(value: float | MeanStd | None) -> float | None:
    return value.mean if isinstance(value, MeanStd) else value


def best_of(values: Sequence[float | None], better: str | None) -> float | None:
    """The best of the final values by the metric's direction ("higher" or "lower"); None when the metric has
    no direction or fewer than two values compare."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or better not in ("higher", "lower"):  # one run's value is no better than nothing
        return None
    return max(finite) if better == "higher" else min(finite)
