"""Compare runs: curves overlaid per metric (a seed group as its mean with a band; each chart on a linear, log or
normalised scale), the config fields that differ, final metrics and costs side by side with the best marked, two
runs' samples side by side, and the HTML report."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSplitter,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.comparison import Comparison, Entry, comparable_config, comparison_entries
from studio.core.series import ema
from studio.store.comparison import price_per_gpu_hour
from studio.store.run_queue import group_names
from studio.ui.runs import charts as C
from studio.ui.runs import compare_tables as T
from studio.ui.runs.frontier_chart import FrontierChart
from studio.ui.runs.poller import Poller
from studio.ui.runs.samples_view import SamplesTimeline
from studio.ui.runs.seed_groups import GroupCurves

SCALES = {"linear": "Linear", "log": "Log scale", "normalised": "Normalised (÷ first value)"}
"""A chart's scale: runs on very different scales (IPO's loss is ~30x DPO's) compare on log or normalised."""


def scaled(y: np.ndarray, scale: str) -> np.ndarray:
    """The values as a chart in `scale` draws them: divided by the first finite non-zero value when
    normalised (each run then starts at 1), unchanged otherwise (a log axis takes the log itself)."""
    if scale != "normalised":
        return y
    finite = y[np.isfinite(y) & (y != 0)]
    return y / abs(finite[0]) if finite.size else y

__all__ = ["CompareView", "comparable_config"]


class CompareView(QWidget):
    """Pick runs on the left; charts, two runs' samples, differing config fields and final metrics on the right."""

    def __init__(self, project, poller: Poller, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.poller = poller
        self.run_ids: list[int] = []
        self.runs: dict[int, dict] = {}
        self.entries: list[Entry] = []  # the columns: runs, and seed groups drawn as one
        self.group_seeds = True
        self.usage = T.UsageCache(project)
        self.price = price_per_gpu_hour(project)
        self.smoothing = 0.6
        self.scales: dict[str, str] = {}  # metric -> its chart's scale (see _make_plots)
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
        self.group_check = QCheckBox("Seeds as mean ± std")
        self.group_check.setChecked(self.group_seeds)
        self.group_check.setToolTip("Draw the runs of a seed group as their mean with a band of ±1 standard "
                                    "deviation, and give mean ± std of their final metrics and costs")
        self.group_check.toggled.connect(self._on_group_seeds)
        controls.addWidget(self.group_check)
        self.price_edit = QLineEdit("" if self.price is None else f"{self.price:g}")
        self.price_edit.setPlaceholderText("price / GPU-hour")
        self.price_edit.setToolTip("Price of one GPU-hour, for the cost row (kept with the project)")
        self.price_edit.setMaximumWidth(self.fontMetrics().horizontalAdvance("price / GPU-hour") + 32)
        self.price_edit.editingFinished.connect(self._on_price)
        controls.addWidget(self.price_edit)
        report = QPushButton("Report…")
        report.setToolTip("Write a self-contained HTML report of this comparison (charts, settings, final "
                          "metrics, costs, samples)")
        report.clicked.connect(self._ask_report)
        controls.addWidget(report)
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
        self.metrics: tuple[str, ...] = ()
        self._make_plots(C.COMPARE_METRICS)
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
        self.frontier.set_runs(self.run_ids, {rid: self.color(rid) for rid in self.run_ids})

    def _on_pick(self, _item) -> None:
        ids = [self.picker.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.picker.count())
               if self.picker.item(i).checkState() == Qt.CheckState.Checked]
        self.set_runs(sorted(ids))

    def _make_plots(self, metrics: tuple[str, ...]) -> None:
        """One chart per metric overlaid (the metrics of the compared runs' methods: charts.compare_metrics_for),
        each on a linear scale until changed from its menu; laid out by the next `_layout_charts`."""
        self.graphics.ci.clear()
        self.plots, self.cursors = {}, {}
        self.metrics = metrics
        self.scales = dict.fromkeys(metrics, "linear")
        for i, name in enumerate(metrics):
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
        self.groups = GroupCurves(self.plots)
        self._columns = 0

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
        metrics = C.compare_metrics_for([self.runs[rid]["method"] for rid in run_ids])
        if metrics != self.metrics:  # other methods, other charts
            self.groups.clear()
            self._make_plots(metrics)
            self._layout_charts()
        else:
            for (name, _rid), curve in self.curves.items():
                self.plots[name].removeItem(curve)
        self.curves.clear()
        self._drawn.clear()
        self.groups.clear()
        self.entries = comparison_entries([self.runs[i] for i in self.run_ids], group_names(self.project),
                                          self.group_seeds)
        self.legend.setText(C.legend_html([("▬", self.entry_color(e), e.label) for e in self.entries]))
        self.readout.clear()
        self.timeline.set_sources([(self.runs[rid]["name"], self.poller.data[rid].samples)
                                   for rid in self.run_ids[:2] if rid in self.poller.data])
        self._dirty = True
        self.redraw()
        self._fill_tables()
        self.frontier.set_runs(self.run_ids, {rid: self.color(rid) for rid in self.run_ids})

    def entry_of(self, run_id: int) -> Entry:
        return next(e for e in self.entries if run_id in e.run_ids)

    def entry_color(self, entry: Entry) -> str:
        return C.RUN_COLORS[self.entries.index(entry) % len(C.RUN_COLORS)]

    def color(self, run_id: int) -> str:
        """The colour of the run's curve: its own, or its seed group's."""
        return self.entry_color(self.entry_of(run_id))

    def _on_group_seeds(self, on: bool) -> None:
        self.group_seeds = on
        self.set_runs(self.run_ids)

    def _on_price(self) -> None:
        from studio.core.costs import parse_price
        from studio.store.comparison import set_price_per_gpu_hour

        try:
            price = parse_price(self.price_edit.text(), "price per GPU-hour")
        except ValueError as e:
            self.price_edit.setStyleSheet("border: 1px solid #d62728;")
            self.price_edit.setToolTip(str(e))
            return
        self.price_edit.setStyleSheet("")
        self.price_edit.setToolTip("Price of one GPU-hour, for the cost row (kept with the project)")
        if price != self.price:
            self.price = price
            set_price_per_gpu_hour(self.project, price)
            self._fill_tables()

    # ------------------------------------------------------------------ tables

    def comparison(self) -> Comparison:
        runs = [self.runs[i] for i in self.run_ids if i in self.runs]
        return T.gui_comparison(runs, self.entries, self.poller.data, self.metrics, self.usage, self.price)

    def differing_fields(self) -> list[str]:
        return self.comparison().differing_fields()

    def _fill_tables(self) -> None:
        c = self.comparison()
        T.fill_settings_table(self.config_table, c)
        T.fill_final_table(self.final_table, c, self.metrics, title=lambda m: C.metric_info(m).title,
                           better=lambda m: C.metric_info(m).better, mark=C.BADGE)

    def final_value(self, run_id: int, metric: str) -> str:
        """The final-metrics (or cost) cell text of the column holding a run, by row label (for tests)."""
        col = self.entries.index(self.entry_of(run_id))
        heads = [self.final_table.verticalHeaderItem(r) for r in range(self.final_table.rowCount())]
        row = next(i for i, h in enumerate(heads)
                   if metric in (h.text(), h.toolTip()) or h.text().startswith(metric + " ("))
        item = self.final_table.item(row, col)
        return item.text() if item else ""

    def is_best(self, run_id: int, metric: str) -> bool:
        """Whether the run's final value of the metric is highlighted as the best."""
        col = self.entries.index(self.entry_of(run_id))
        item = self.final_table.item(len(T.FIXED_ROWS) + list(self.metrics).index(metric), col)
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
        grouped = {rid for e in self.entries if e.is_group for rid in e.run_ids}
        changed: set[str] = set()
        for rid in self.run_ids:
            rd = self.poller.data.get(rid)
            if rid in grouped:
                continue  # drawn with its group below
            if rd is None:
                continue
            for name in self.metrics:
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
        self.groups.redraw([(e, self.entry_color(e)) for e in self.entries if e.is_group], self.poller.data,
                           self.smoothing)
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
            for name in self.metrics:
                s = rd.series.get(name)
                if s is not None:
                    rows += C.series_rows(rid, self.runs[rid]["name"] if rid in self.runs else "", name, s)
        C.write_csv(Path(path), rows)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison as PNG", "compare.png", "PNG image (*.png)")
        if path:
            self.export_png(path)

    def _ask_report(self) -> None:
        from studio.ui.runs.report_action import ask_and_write_report

        ask_and_write_report(self, self.project, self.run_ids, self.price, self.group_seeds)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save compared data as CSV", "compare.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def describe(self) -> str:
        return html.escape(", ".join(self.runs[i]["name"] for i in self.run_ids if i in self.runs))
