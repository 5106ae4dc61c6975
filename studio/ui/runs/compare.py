"""Compare runs: curves overlaid per metric (each on a linear, log or normalised scale), the config fields that
differ, final metrics side by side with the best highlighted, and two runs' samples side by side."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont
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
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.configs import diff_configs, flatten
from studio.core.series import ema
from studio.ui.runs import charts as C
from studio.ui.runs.poller import Poller
from studio.ui.runs.samples_view import SamplesTimeline

SCALES = {"linear": "Linear", "log": "Log scale", "normalised": "Normalised (÷ first value)"}
"""A chart's scale: runs on very different scales (IPO's loss is ~30x DPO's) compare on log or normalised."""


def scaled(y: np.ndarray, scale: str) -> np.ndarray:
    """The values as a chart in `scale` draws them: divided by the first finite non-zero value when
    normalised (each run then starts at 1), unchanged otherwise (a log axis takes the log itself)."""
    if scale != "normalised":
        return y
    finite = y[np.isfinite(y) & (y != 0)]
    return y / abs(finite[0]) if finite.size else y


def comparable_config(run: dict) -> dict:
    """A run's config plus its model, so a different base model shows up as a differing field."""
    return {**run["config"], "model": run["model"]}


class CompareView(QWidget):
    """Pick runs on the left; charts, two runs' samples, differing config fields and final metrics on the right."""

    def __init__(self, project, poller: Poller, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.poller = poller
        self.run_ids: list[int] = []
        self.runs: dict[int, dict] = {}
        self.smoothing = 0.6
        self.scales: dict[str, str] = dict.fromkeys(C.COMPARE_METRICS, "linear")
        self._dirty = True
        self._columns = 0
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
        self.readout = QLabel()
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        rl.addWidget(self.readout)

        vsplit = QSplitter(Qt.Orientation.Vertical)
        self.graphics = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self._drawn: dict[tuple[str, int], tuple] = {}  # (series version, smoothing, scale) last drawn
        for i, name in enumerate(C.COMPARE_METRICS):
            info = C.metric_info(name)
            plot = C.make_plot(self.graphics.ci, 0, i, info.title)
            plot.setLabel("bottom", "step", **{"font-size": "8pt"})
            if info.unit:
                plot.setLabel("left", info.unit, **{"font-size": "8pt"})
            plot.setToolTip("Right-click: linear, log or normalised scale (each run divided by its first value)")
            menu = plot.getViewBox().menu
            menu.addSeparator()
            for scale, text in SCALES.items():
                menu.addAction(text, lambda n=name, sc=scale: self.set_scale(n, sc))
            cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#999", width=1, style=Qt.PenStyle.DotLine))
            cursor.setVisible(False)
            plot.addItem(cursor, ignoreBounds=True)
            self.cursors[name] = cursor
            self.plots[name] = plot
        self._mouse = pg.SignalProxy(self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)
        self.scroll = C.scrolling(self.graphics)
        self.timeline = SamplesTimeline()
        self.views = QTabWidget()
        self.views.addTab(self.scroll, "Charts")
        self.views.addTab(self.timeline, "Samples")
        self.views.setTabToolTip(1, "The first two ticked runs' samples of one probe prompt, side by side")
        vsplit.addWidget(self.views)
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
        self.final_table.setToolTip("Final value of each metric; the best of the runs in bold (for metrics where "
                                    "higher or lower is better)")
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
        self._layout_charts()

    def _layout_charts(self) -> None:
        """The charts in as many columns as the width allows; rows that do not fit scroll."""
        columns = C.grid_columns(self.scroll.viewport().width())
        if columns == self._columns:
            return
        self._columns = columns
        C.lay_out(self.graphics, list(self.plots.values()), columns)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._layout_charts()

    def set_scale(self, metric: str, scale: str) -> None:
        """Draw a chart's curves on a linear, log or normalised scale (see `scaled`)."""
        self.scales[metric] = scale
        plot = self.plots[metric]
        info = C.metric_info(metric)
        plot.setLogMode(y=scale == "log")
        suffix = {"log": " (log)", "normalised": " (÷ first)"}.get(scale, "")
        plot.setTitle(info.title + suffix, size="10pt", bold=True)
        plot.setLabel("left", "× first value" if scale == "normalised" else info.unit, **{"font-size": "8pt"})
        plot.getViewBox().enableAutoRange()
        for key in [k for k in self._drawn if k[0] == metric]:
            del self._drawn[key]  # redraw this chart's curves on the new scale
        self._dirty = True
        self.redraw()

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
        self.readout.clear()
        self.legend.setText(C.legend_html([("▬", self.color(rid), self.runs[rid]["name"]) for rid in self.run_ids]))
        self.timeline.set_sources([(self.runs[rid]["name"], self.poller.data[rid].samples)
                                   for rid in self.run_ids[:2] if rid in self.poller.data])
        self._dirty = True
        self.redraw()
        self._fill_tables()

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
        labels = ["status", "step"] + [C.metric_info(m).title for m in metrics]
        ft.setVerticalHeaderLabels(labels)
        for row, m in enumerate(metrics, start=2):
            ft.verticalHeaderItem(row).setToolTip(m)
        for col, r in enumerate(runs):
            ft.setItem(0, col, QTableWidgetItem(r["status"]))
            ft.setItem(1, col, QTableWidgetItem(str(r["step"])))
        for row, m in enumerate(metrics, start=2):
            finals = [self._final(r["id"], m) for r in runs]
            best = self._best(m, finals)
            for col, last in enumerate(finals):
                item = QTableWidgetItem("–" if last is None else f"{last:.4g}")
                if best is not None and last == best and len(runs) > 1:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                    item.setBackground(QBrush(QColor(C.BADGE)))
                    item.setToolTip(f"best final {C.metric_info(m).title.lower()} "
                                    f"({C.metric_info(m).better} is better)")
                ft.setItem(row, col, item)
        for table, heads in ((t, fields), (ft, labels)):
            # row headers as wide as their longest name, so none is clipped
            width = max((table.fontMetrics().horizontalAdvance(h) for h in heads), default=0) + 16
            table.verticalHeader().setMinimumWidth(width)

    def _final(self, run_id: int, metric: str) -> float | None:
        rd = self.poller.data.get(run_id)
        s = rd.series.get(metric) if rd else None
        return s.last() if s is not None else None

    @staticmethod
    def _best(metric: str, finals: list[float | None]) -> float | None:
        """The best of the runs' final values, by the metric's direction (None when it has none)."""
        values = [v for v in finals if v is not None and math.isfinite(v)]
        better = C.metric_info(metric).better
        if not values or better is None:
            return None
        return max(values) if better == "higher" else min(values)

    def final_value(self, run_id: int, metric: str) -> str:
        """The final-metrics cell text for a run and metric (for tests)."""
        col = self.run_ids.index(run_id)
        row = 2 + list(C.COMPARE_METRICS).index(metric)
        item = self.final_table.item(row, col)
        return item.text() if item else ""

    def is_best(self, run_id: int, metric: str) -> bool:
        """Whether the run's final value of the metric is highlighted as the best."""
        col = self.run_ids.index(run_id)
        item = self.final_table.item(2 + list(C.COMPARE_METRICS).index(metric), col)
        return bool(item and item.font().bold())

    # ------------------------------------------------------------------ drawing

    def _on_data(self, run_id: int, names: set) -> None:
        if run_id in self.run_ids:
            self._dirty = True
            if "samples" in names:
                self.timeline.refresh()

    def _on_smoothing(self, value: int) -> None:
        self.smoothing = value / 100
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.isVisible() and not self.window().isMinimized():
            self.redraw()
            self._fill_tables()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._layout_charts()
        self._redraw_if_dirty()

    def redraw(self) -> None:
        import time

        t = time.perf_counter()
        self._dirty = False
        changed: set[str] = set()
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
                scale = self.scales[name]
                if self._drawn.get((name, rid)) == (s.version, smoothing, scale):
                    continue  # unchanged since last drawn
                self._drawn[(name, rid)] = (s.version, smoothing, scale)
                curve = self.curves.get((name, rid))
                if curve is None:
                    color = self.color(rid)
                    kw = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None} if sparse else {}
                    curve = pg.PlotDataItem(pen=pg.mkPen(color, width=2), **kw, **C.curve_options())
                    self.plots[name].addItem(curve)
                    self.curves[(name, rid)] = curve
                x, y = s.step[: s.n], s.y
                defined = rd.defined(name)
                if defined is not None:  # an accuracy where every margin was 0 is not a ranking: left out
                    x, y = x[defined], y[defined]
                if smoothing > 0:
                    y = s.smoothed(smoothing) if defined is None else ema(y, smoothing)
                y = scaled(y, scale)
                if scale == "log":
                    y = np.where(y > 0, y, np.nan)  # a log axis has no place for 0 or below
                curve.setData(x, y, skipFiniteCheck=scale != "log" and (s.all_finite or smoothing > 0))
                changed.add(name)
        for name in changed:
            self._fit_y(name)
        self.last_redraw_ms = (time.perf_counter() - t) * 1000

    def _fit_y(self, metric: str) -> None:
        """A linear chart's y axis over all its runs' curves, at least the metric's least range (see
        charts.least_y_range): a 0.002-wide wobble of distinct-2 must not read as a trend."""
        if self.scales[metric] != "linear":
            return
        ys = [c.yData for (n, _rid), c in self.curves.items() if n == metric and c.yData is not None]
        values = np.concatenate(ys) if ys else np.empty(0)
        values = values[np.isfinite(values)]
        if not values.size:
            return
        lo, hi = C.least_y_range(metric, float(values.min()), float(values.max()))
        self.plots[metric].setYRange(lo, hi, padding=0.06)

    def curve_data(self, metric: str, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        if self._dirty:
            self.redraw()
        curve = self.curves.get((metric, run_id))
        if curve is None or curve.xData is None:
            return np.empty(0), np.empty(0)
        return curve.xData, curve.yData  # all points, not the downsampled ones on screen

    def _on_mouse(self, event) -> None:
        """A crosshair at the hovered step on every chart; the hovered chart's runs' values in the readout."""
        pos = event[0]
        hovered = next((n for n, p in self.plots.items() if p.scene() is not None
                        and p.sceneBoundingRect().contains(pos)), None)
        for cursor in self.cursors.values():
            cursor.setVisible(hovered is not None)
        if hovered is None:
            return
        x = self.plots[hovered].getViewBox().mapSceneToView(pos).x()
        parts = []
        for cursor in self.cursors.values():
            cursor.setPos(x)
        for rid in self.run_ids:
            rd = self.poller.data.get(rid)
            s = rd.series.get(hovered) if rd is not None else None
            hit = s.value_at(x) if s is not None else None
            if hit is not None:
                parts.append(f"<span style='color:{self.color(rid)}'>{html.escape(self.runs[rid]['name'])}</span> "
                             f"{hit[1]:.4g} (step {hit[0]:.0f})")
        info = C.metric_info(hovered)
        self.readout.setText(f"<b>{html.escape(info.title)}</b>: " + " · ".join(parts) if parts else "")

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
