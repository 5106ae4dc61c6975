"""Compare runs: curves overlaid per metric, the config fields that differ, final metrics side by side."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core import metrics as M
from studio.core.configs import diff_configs, flatten
from studio.ui.runs import charts as C
from studio.ui.runs.frontier_chart import FrontierChart
from studio.ui.runs.poller import Poller

COLUMNS = 4
TITLES = {M.REWARDS_MARGINS: "Reward margin", M.eval_name(M.REWARDS_MARGINS): "Eval reward margin",
          M.REWARDS_ACCURACIES: "Accuracy", M.eval_name(M.REWARDS_ACCURACIES): "Eval accuracy",
          M.LOSS: "Loss", M.LOGPS_CHOSEN: "Log-prob chosen", M.LOGPS_REJECTED: "Log-prob rejected",
          M.EVAL_KL: "Sampled KL (eval)"}


def comparable_config(run: dict) -> dict:
    """A run's config plus its model, so a different base model shows up as a differing field."""
    return {**run["config"], "model": run["model"]}


class CompareView(QWidget):
    """Pick runs on the left; charts, differing config fields and final metrics on the right."""

    def __init__(self, project, poller: Poller, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.poller = poller
        self.run_ids: list[int] = []
        self.runs: dict[int, dict] = {}
        self.smoothing = 0.6
        self._dirty = True
        self.last_redraw_ms = 0.0
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self._redraw_if_dirty)
        self.timer.start()
        poller.data_changed.connect(self._on_data)
        poller.runs_changed.connect(self._on_runs)

    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Runs to compare"))
        self.picker = QListWidget()
        self.picker.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.picker.itemChanged.connect(self._on_pick)
        ll.addWidget(self.picker, 1)
        split.addWidget(left)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing"))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setValue(int(self.smoothing * 100))
        self.slider.setMaximumWidth(140)
        self.slider.valueChanged.connect(self._on_smoothing)
        controls.addWidget(self.slider)
        controls.addSpacing(12)
        self.legend = QLabel()  # one legend for every chart, above them: none covers a curve
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        controls.addWidget(self.legend, 1)
        png = QPushButton("Save PNG…")
        png.clicked.connect(self._ask_png)
        csv_button = QPushButton("Save CSV…")
        csv_button.clicked.connect(self._ask_csv)
        controls.addWidget(png)
        controls.addWidget(csv_button)
        rl.addLayout(controls)

        vsplit = QSplitter(Qt.Orientation.Vertical)
        self.graphics = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self._drawn: dict[tuple[str, int], tuple] = {}  # (series version, smoothing) last drawn
        for i, name in enumerate(C.COMPARE_METRICS):
            plot = C.make_plot(self.graphics.ci, i // COLUMNS, i % COLUMNS, TITLES.get(name, name))
            plot.setLabel("bottom", "step", **{"font-size": "8pt"})
            self.plots[name] = plot
        vsplit.addWidget(self.graphics)
        # the two tables side by side (each has one narrow column per run), with compact rows, so at
        # 1280x800 they show their rows instead of one line each under the charts
        tables = QWidget()
        tl = QHBoxLayout(tables)
        tl.setContentsMargins(0, 0, 0, 0)
        self.config_table = QTableWidget()
        self.final_table = QTableWidget()
        for title, t in (("Settings that differ", self.config_table), ("Final metrics", self.final_table)):
            t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 6)
            t.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
            box = QWidget()
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            bl.setSpacing(2)
            heading = QLabel(f"<b>{title}</b>")
            bl.addWidget(heading)
            bl.addWidget(t, 1)
            tl.addWidget(box, 1)
        self.frontier = FrontierChart(self.project)
        tl.addWidget(self.frontier, 1)
        tables.setMinimumHeight(self.fontMetrics().height() * 8)
        vsplit.addWidget(tables)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 2)
        vsplit.setSizes([600, 260])
        rl.addWidget(vsplit, 1)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([200, 1000])
        outer.addWidget(split)

    # ------------------------------------------------------------------ runs

    def _on_runs(self, runs: list[dict]) -> None:
        self.runs = {r["id"]: r for r in runs}
        self.picker.blockSignals(True)
        self.picker.clear()
        for r in sorted(runs, key=lambda r: r["id"], reverse=True):
            item = QListWidgetItem(f"{r['name']}  ({r['status']})")
            item.setData(Qt.ItemDataRole.UserRole, r["id"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if r["id"] in self.run_ids else Qt.CheckState.Unchecked)
            self.picker.addItem(item)
        self.picker.blockSignals(False)
        gone = [i for i in self.run_ids if i not in self.runs]
        if gone:
            self.set_runs([i for i in self.run_ids if i in self.runs])
        else:
            self._fill_tables()
        self.frontier.set_runs(self.run_ids, {rid: self.color(rid) for rid in self.run_ids})

    def _on_pick(self, _item) -> None:
        ids = [self.picker.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.picker.count())
               if self.picker.item(i).checkState() == Qt.CheckState.Checked]
        self.set_runs(sorted(ids))

    def set_runs(self, run_ids: list[int]) -> None:
        """Compare these runs (ids in the order to list them)."""
        if not self.runs:
            self.runs = {r["id"]: r for r in self.project.runs()}
        run_ids = [i for i in run_ids if i in self.runs]
        for rid in self.run_ids:
            if rid not in run_ids:
                self.poller.unwatch(rid)
        for rid in run_ids:
            if rid not in self.run_ids:
                self.poller.watch(rid)
        self.run_ids = list(run_ids)
        self.picker.blockSignals(True)
        for i in range(self.picker.count()):
            item = self.picker.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in run_ids
                               else Qt.CheckState.Unchecked)
        self.picker.blockSignals(False)
        for (name, _rid), curve in self.curves.items():
            self.plots[name].removeItem(curve)
        self.curves.clear()
        self._drawn.clear()
        self.legend.setText(C.legend_html([("▬", self.color(rid), self.runs[rid]["name"]) for rid in self.run_ids]))
        self._dirty = True
        self.redraw()
        self._fill_tables()
        self.frontier.set_runs(self.run_ids, {rid: self.color(rid) for rid in self.run_ids})

    def color(self, run_id: int) -> str:
        return C.RUN_COLORS[self.run_ids.index(run_id) % len(C.RUN_COLORS)]

    # ------------------------------------------------------------------ tables

    def differing_fields(self) -> list[str]:
        runs = [self.runs[i] for i in self.run_ids if i in self.runs]
        return diff_configs([comparable_config(r) for r in runs]) if len(runs) > 1 else []

    def _fill_tables(self) -> None:
        runs = [self.runs[i] for i in self.run_ids if i in self.runs]
        names = [r["name"] for r in runs]
        fields = self.differing_fields()
        t = self.config_table
        t.clear()
        t.setColumnCount(len(runs))
        t.setHorizontalHeaderLabels(names)
        t.setRowCount(len(fields))
        t.setVerticalHeaderLabels(fields)
        flats = [flatten(comparable_config(r)) for r in runs]
        for row, f in enumerate(fields):
            for col, flat in enumerate(flats):
                t.setItem(row, col, QTableWidgetItem("–" if f not in flat else str(flat[f])))
        if len(runs) > 1 and not fields:
            t.setRowCount(1)
            t.setVerticalHeaderLabels([""])
            t.setItem(0, 0, QTableWidgetItem("All settings are the same."))

        ft = self.final_table
        ft.clear()
        metrics = list(C.COMPARE_METRICS)
        ft.setColumnCount(len(runs))
        ft.setHorizontalHeaderLabels(names)
        ft.setRowCount(len(metrics) + 2)
        ft.setVerticalHeaderLabels(["status", "step", *metrics])
        for col, r in enumerate(runs):
            ft.setItem(0, col, QTableWidgetItem(r["status"]))
            ft.setItem(1, col, QTableWidgetItem(str(r["step"])))
            rd = self.poller.data.get(r["id"])
            for row, m in enumerate(metrics, start=2):
                s = rd.series.get(m) if rd else None
                last = s.last() if s is not None else None
                ft.setItem(row, col, QTableWidgetItem("–" if last is None else f"{last:.4g}"))

    def final_value(self, run_id: int, metric: str) -> str:
        """The final-metrics cell text for a run and metric (for tests)."""
        col = self.run_ids.index(run_id)
        row = 2 + list(C.COMPARE_METRICS).index(metric)
        item = self.final_table.item(row, col)
        return item.text() if item else ""

    # ------------------------------------------------------------------ drawing

    def _on_data(self, run_id: int, _names: set) -> None:
        if run_id in self.run_ids:
            self._dirty = True

    def _on_smoothing(self, value: int) -> None:
        self.smoothing = value / 100
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.isVisible() and not self.window().isMinimized():
            self.redraw()
            self._fill_tables()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._redraw_if_dirty()

    def redraw(self) -> None:
        import time

        t = time.perf_counter()
        self._dirty = False
        for rid in self.run_ids:
            rd = self.poller.data.get(rid)
            if rd is None:
                continue
            for name in C.COMPARE_METRICS:
                s = rd.series.get(name)
                if s is None or not len(s):
                    continue
                sparse = C.is_sparse(name)
                smoothing = 0.0 if sparse else self.smoothing
                if self._drawn.get((name, rid)) == (s.version, smoothing):
                    continue  # unchanged since last drawn
                self._drawn[(name, rid)] = (s.version, smoothing)
                curve = self.curves.get((name, rid))
                if curve is None:
                    color = self.color(rid)
                    kw = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None} if sparse else {}
                    curve = pg.PlotDataItem(pen=pg.mkPen(color, width=2), **kw, **C.curve_options())
                    self.plots[name].addItem(curve)
                    self.curves[(name, rid)] = curve
                y = s.y if smoothing <= 0 else s.smoothed(smoothing)
                curve.setData(s.step[: s.n], y, skipFiniteCheck=s.all_finite or smoothing > 0)
        self.last_redraw_ms = (time.perf_counter() - t) * 1000

    def curve_data(self, metric: str, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        if self._dirty:
            self.redraw()
        curve = self.curves.get((metric, run_id))
        if curve is None or curve.xData is None:
            return np.empty(0), np.empty(0)
        return curve.xData, curve.yData  # all points, not the downsampled ones on screen

    # ------------------------------------------------------------------ export

    def export_png(self, path: str | Path) -> None:
        self.grab().save(str(path))

    def export_csv(self, path: str | Path) -> None:
        rows = []
        for rid in self.run_ids:
            rd = self.poller.data.get(rid)
            if rd is None:
                continue
            self.poller.finish_loading(rid)
            for name in C.COMPARE_METRICS:
                s = rd.series.get(name)
                if s is not None:
                    rows += C.series_rows(rid, self.runs[rid]["name"] if rid in self.runs else "", name, s)
        C.write_csv(Path(path), rows)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison as PNG", "compare.png", "PNG image (*.png)")
        if path:
            self.export_png(path)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save compared data as CSV", "compare.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def describe(self) -> str:
        return html.escape(", ".join(self.runs[i]["name"] for i in self.run_ids if i in self.runs))
