"""The table of a project's runs: name, method, model, status, step, elapsed, best eval accuracy."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from studio.core import metrics as M
from studio.core.series import untied
from studio.store.run_queue import queue_places, status_with_place
from studio.ui.runs.formatting import fmt_elapsed

COLUMNS = ("Name", "Method", "Model", "Status", "Step", "Elapsed", "Best eval acc. (pairs)")
STATUS_COLORS = {"running": "#1f77b4", "stopping": "#ff7f0e", "queued": "#7f7f7f", "done": "#2ca02c",
                 "failed": "#d62728", "interrupted": "#8c564b"}
EVAL_ACCURACY = M.eval_name(M.REWARDS_ACCURACIES)
EVAL_ACCURACIES = (EVAL_ACCURACY, M.eval_name(M.ACCURACY))  # DPO's implicit reward's, a reward model's
EVAL_MARGIN = M.eval_name(M.REWARDS_MARGINS)


class BestEvalAccuracy:
    """Best eval accuracy per run and the pairs it is over, read incrementally by metric id (never rescans a
    run's metrics)."""

    NAMES = (*EVAL_ACCURACIES, EVAL_MARGIN, M.EVAL_PAIRS)

    def __init__(self, project):
        self.project = project
        self.best: dict[int, float] = {}
        self.last_id: dict[int, int] = {}
        self.margins: dict[int, list[tuple[int, float]]] = {}
        self.pairs: dict[int, int] = {}

    def get(self, run_id: int) -> tuple[float, int | None] | None:
        """(best eval accuracy, eval pairs it is over) of a run, None before it has one."""
        rows = self.project.metrics(run_id, since_id=self.last_id.get(run_id, 0), names=list(self.NAMES))
        if rows:
            self.last_id[run_id] = rows[-1][0]
            margins = self.margins.setdefault(run_id, [])
            margins += [(step, value) for _i, step, name, value, _t in rows if name == EVAL_MARGIN]
            pairs = [value for _i, _s, name, value, _t in rows if name == M.EVAL_PAIRS and value is not None]
            if pairs:
                self.pairs[run_id] = int(pairs[-1])
            acc = [(step, value) for _i, step, name, value, _t in rows
                   if name in EVAL_ACCURACIES and value is not None]
            # an evaluation where every margin is exactly 0 (the reference, at step 0) ranks no pair: its
            # "accuracy" of 0% read as a broken run in this column
            keep = untied(np.array([a[0] for a in acc]), np.array([m[0] for m in margins]),
                          np.array([np.nan if m[1] is None else m[1] for m in margins]))
            values = [value for (_step, value), k in zip(acc, keep, strict=True) if k]
            if values:
                self.best[run_id] = max(self.best.get(run_id, float("-inf")), *values)
        if run_id not in self.best:
            return None
        return self.best[run_id], self.pairs.get(run_id)


def method_label(run: dict) -> str:
    loss = (run.get("config") or {}).get("loss_type")
    return f"{run['method']} ({loss})" if loss and loss != "sigmoid" else run["method"]


class RunsTable(QTableWidget):
    """Runs, newest first; selection drives the monitor (one run) and Compare (several)."""

    selection_changed = Signal(object)
    """The selected run ids, in table order."""

    def __init__(self, project, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.project = project
        self.best = BestEvalAccuracy(project)
        self.runs: list[dict] = []
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().hide()
        self.setAlternatingRowColors(True)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.itemSelectionChanged.connect(lambda: self.selection_changed.emit(self.selected_ids()))

    def set_runs(self, runs: list[dict]) -> None:
        """Refill the table, keeping the selection (runs are refreshed several times a second)."""
        keep = set(self.selected_ids())
        self.runs = sorted(runs, key=lambda r: r["id"], reverse=True)
        places = queue_places(self.runs)  # queued runs show their place in the queue: "queued #2"
        self.blockSignals(True)
        self.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            best = self.best.get(run["id"])
            best_text = "–" if best is None else f"{best[0]:.1%}" + (f" of {best[1]}" if best[1] else "")
            total = f"/{run['total_steps']}" if run.get("total_steps") else ""
            model = run["model"]
            cells = (run["name"], method_label(run), model.rsplit("/", 1)[-1] if "/" in model else model,
                     status_with_place(run["status"], places.get(run["id"])), f"{run['step']}{total}",
                     fmt_elapsed(run), best_text)
            for col, text in enumerate(cells):
                item = self.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.setItem(row, col, item)
                item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, run["id"])
                if col == 2:
                    item.setToolTip(model)
                if col == 3:
                    item.setForeground(QBrush(QColor(STATUS_COLORS.get(run["status"], "#000"))))
                    if run["status"] == "failed" and run.get("error"):
                        item.setToolTip(run["error"])
            selected = run["id"] in keep
            for col in range(len(COLUMNS)):
                self.item(row, col).setSelected(selected)
        self.blockSignals(False)
        if keep != set(self.selected_ids()):
            self.selection_changed.emit(self.selected_ids())

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.selectedIndexes()})
        return [self.runs[r]["id"] for r in rows if r < len(self.runs)]

    def select_ids(self, ids: list[int]) -> None:
        self.clearSelection()
        for row, run in enumerate(self.runs):
            if run["id"] in ids:
                for col in range(len(COLUMNS)):
                    self.item(row, col).setSelected(True)

    def run_by_id(self, run_id: int) -> dict | None:
        return next((r for r in self.runs if r["id"] == run_id), None)
