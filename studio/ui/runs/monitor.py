"""The live monitor of one run: a health strip, its charts, warnings in words, the samples timeline, failure
details."""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.health import headline, run_findings
from studio.core.series import ema
from studio.core.types import RunStatus
from studio.ui.runs import charts as C
from studio.ui.runs.formatting import fmt_elapsed, fmt_eta
from studio.ui.runs.health_strip import HealthStrip
from studio.ui.runs.monitor_charts import Chart, Curves, run_x_range
from studio.ui.runs.poller import Poller, RunData
from studio.ui.runs.samples_view import SamplesTimeline

MAX_MARKERS = 300
REDRAW_MS = 100


class MonitorView(QWidget):
    """A health strip and charts for one run, following it live from the database through the shared Poller."""

    retry_requested = Signal(int)
    """A failed run's id, when the user asks to retry it with the launch dialog pre-filled."""

    def __init__(self, project, poller: Poller, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.poller = poller
        self.run_id: int | None = None
        self.rd: RunData | None = None
        self.run: dict | None = None
        self.smoothing = 0.6
        self.x_by = "step"
        self.enlarged: str | None = None
        """The title of the chart shown alone (double-click or a health tile), None for the grid."""
        self._dirty: set[str] = set()
        self._all_dirty = False
        self.last_redraw_ms = 0.0
        self._loading = False
        self._refit = True
        self._was_running = False
        self._x_range: tuple[float, float] | None = None
        self._layout_key: tuple | None = None
        self._build()
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw_if_dirty)
        self.redraw_timer.start()
        poller.data_changed.connect(self._on_data)
        poller.runs_changed.connect(self._on_runs)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.header = QLabel("Select a run, or start one with New run…")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        outer.addWidget(self.header)

        self.failure = QFrame()
        self.failure.setFrameShape(QFrame.Shape.StyledPanel)
        self.failure.setStyleSheet("QFrame { background: #fdecea; }")
        fl = QVBoxLayout(self.failure)
        row = QHBoxLayout()
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Retry…")
        self.retry_button.setToolTip("Open the launch dialog with this run's settings")
        self.retry_button.clicked.connect(lambda: self.run_id and self.retry_requested.emit(self.run_id))
        row.addWidget(self.error_label, 1)
        row.addWidget(self.retry_button)
        fl.addLayout(row)
        # the log tail goes in the side pane (a tab beside the samples): under the error it took the
        # charts' height, leaving them ~60 px a row at 1280x800
        self.log_tail = QPlainTextEdit()
        self.log_tail.setReadOnly(True)
        self.log_tail.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.log_tail.setPlaceholderText("A failed run's last log lines appear here.")
        self.failure.hide()
        outer.addWidget(self.failure)

        # the signals that show a run going wrong first, each tile coloured by the rules behind the warnings
        self.health = HealthStrip()
        self.health.open_chart.connect(self.enlarge)
        outer.addWidget(self.health)

        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("QLabel { background: #fff4e5; color: #7a4100; padding: 4px; }")
        self.warning.hide()
        outer.addWidget(self.warning)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing"))
        self.smooth_slider = QSlider(Qt.Orientation.Horizontal)
        self.smooth_slider.setRange(0, 99)
        self.smooth_slider.setValue(int(self.smoothing * 100))
        self.smooth_slider.setMaximumWidth(120)
        self.smooth_slider.setToolTip("EMA weight: the smoothed curve is drawn over the raw one (faint)")
        self.smooth_value = QLabel(f"{self.smoothing:.2f}")
        self.smooth_slider.valueChanged.connect(self._on_smoothing)
        controls.addWidget(self.smooth_slider)
        controls.addWidget(self.smooth_value)
        controls.addSpacing(8)
        controls.addWidget(QLabel("x axis"))
        self.x_combo = QComboBox()
        self.x_combo.addItem("step", "step")
        self.x_combo.addItem("time (min)", "time")
        self.x_combo.currentIndexChanged.connect(self._on_x_axis)
        controls.addWidget(self.x_combo)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.follow.setToolTip("Keep every chart scaled to all data as it arrives (zooming a chart turns this off)")
        self.follow.toggled.connect(self._on_follow)
        controls.addWidget(self.follow)
        self.back = QPushButton("◀ All charts")
        self.back.setToolTip("Back to the grid of charts (Esc, or double-click the chart)")
        self.back.clicked.connect(lambda: self.enlarge(None))
        self.back.hide()
        controls.addWidget(self.back)
        controls.addSpacing(8)
        self.readout = QLabel()
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setMinimumWidth(50)
        controls.addWidget(self.readout, 1)
        png = QPushButton("Save PNG…")
        png.setToolTip("Save all charts as one image (right-click a chart to save just that one)")
        png.clicked.connect(self._ask_png)
        csv_button = QPushButton("Save CSV…")
        csv_button.setToolTip("Save the run's metric data (right-click a chart for just its metrics)")
        csv_button.clicked.connect(self._ask_csv)
        controls.addWidget(png)
        controls.addWidget(csv_button)
        outer.addLayout(controls)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.graphics = pg.GraphicsLayoutWidget()
        self.scroll = C.scrolling(self.graphics)
        self.graphics.ci.setSpacing(2)
        self.graphics.setToolTip("")
        self.charts: dict[str, Chart] = {}
        self._specs: tuple[C.ChartSpec, ...] = ()
        self._make_charts(C.CHARTS)
        self._mouse = pg.SignalProxy(self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, lambda: self.enlarge(None))
        split.addWidget(self.scroll)
        self.timeline = SamplesTimeline()
        self.side = QTabWidget()
        self.side.addTab(self.timeline, "Samples")
        self.side.addTab(self.log_tail, "Log")
        split.addWidget(self.side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([880, 320])
        outer.addWidget(split, 1)
        self._layout_charts()

    def _layout_charts(self) -> None:
        """Place the charts in a grid of as many columns as the width allows, or the enlarged one alone."""
        columns = C.grid_columns(self.scroll.viewport().width())
        key = (columns, self.enlarged)
        if key == self._layout_key:
            return
        self._layout_key = key
        shown = [self.charts[self.enlarged]] if self.enlarged else list(self.charts.values())
        C.lay_out(self.graphics, [chart.plot for chart in shown], columns, rows_scroll=not self.enlarged)
        self.back.setVisible(self.enlarged is not None)
        self._refit = True

    def enlarge(self, title: str | None) -> None:
        """Show one chart alone, large (None: back to the grid)."""
        if title is not None and title not in self.charts:
            return
        self.enlarged = title
        self._layout_charts()
        self._all_dirty = True
        self.redraw()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._layout_charts()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._layout_charts()
        self._redraw_if_dirty()

    def _on_click(self, event) -> None:
        if not event.double():
            return
        for title, chart in self.charts.items():
            if chart.plot.scene() is not None and chart.plot.sceneBoundingRect().contains(event.scenePos()):
                self.enlarge(None if self.enlarged == title else title)
                return

    def _make_charts(self, specs: tuple[C.ChartSpec, ...]) -> None:
        """The charts of a method (each method has its own: see charts.charts_for), laid out in the grid."""
        self.graphics.ci.clear()
        self.charts = {}
        self._specs = specs
        for spec in specs:
            plot = C.make_plot(self.graphics.ci, 0, len(self.charts), spec.title)
            plot.setToolTip(f"{spec.hint}\n\nDouble-click to enlarge; right-click to save.")
            chart = Chart(spec, plot)
            self.charts[spec.title] = chart
            plot.getViewBox().disableAutoRange()  # Follow fits the axes itself, throttled (Chart.fit)
            plot.getViewBox().sigRangeChangedManually.connect(lambda *_: self.follow.setChecked(False))
            menu = plot.getViewBox().menu
            menu.addSeparator()
            menu.addAction("Enlarge / back to all charts", lambda c=chart: self.enlarge(
                None if self.enlarged == c.spec.title else c.spec.title))
            menu.addAction("Save this chart as PNG…", lambda c=chart: self._ask_png(c))
            menu.addAction("Save this chart's data as CSV…", lambda c=chart: self._ask_csv(c))
        if self.enlarged not in self.charts:
            self.enlarged = None  # a chart of the method shown before
        self._layout_key = None

    # ------------------------------------------------------------------ run selection

    def set_run(self, run_id: int | None) -> None:
        """Show a run (None: nothing). Data already in the database is read at once."""
        if run_id == self.run_id:
            return
        if self.run_id is not None:
            self.poller.unwatch(self.run_id)
        self.run_id = run_id
        for chart in self.charts.values():
            chart.clear()
            chart.cursor.setVisible(False)
        self.readout.clear()  # the values of the run shown before
        self.rd = self.poller.watch(run_id) if run_id is not None else None
        self.run = None
        if run_id is not None:
            try:
                self.run = self.project.run(run_id)
            except Exception:
                self.run = None
        method = self.run["method"] if self.run else None
        self.timeline.placeholder.setText(
            "A reward model samples nothing: its scores of the eval pairs are in the charts (score a file of pairs "
            "with `studio score`)." if method == "reward" else SamplesTimeline.PLACEHOLDER)
        specs = C.charts_for(method)
        if specs is not self._specs:
            self._make_charts(specs)
            self._layout_charts()
        self._show_run_info()
        self.timeline.set_sources([(self.run["name"] if self.run else "", self.rd.samples)] if self.rd else [])
        self._all_dirty = True
        self._refit = True
        self.redraw()

    def _on_runs(self, runs: list[dict]) -> None:
        if self.run_id is None:
            return
        for r in runs:
            if r["id"] == self.run_id:
                if self.run is not None and self.run.get("status") != r["status"]:
                    self._all_dirty = True  # finished: fit the axes to the data, without headroom
                self.run = r
                break
        self._show_run_info()

    def _show_run_info(self) -> None:
        run = self.run
        progress = self.rd.progress if self.rd is not None else None
        self._loading = progress is not None
        loading = f" · <i>loading metrics {progress:.0%}…</i>" if progress is not None else ""
        if run is None:
            self.header.setText("Select a run, or start one with <b>New run…</b>" if self.run_id is None
                                else f"Run {self.run_id} was deleted.")
            self.failure.hide()
            self.log_tail.clear()
            return
        total = f"/{run['total_steps']}" if run.get("total_steps") else ""
        device = f" · {html.escape(run['device'])}" if run.get("device") else ""
        reward = (run.get("config") or {}).get("reward_model")
        if reward:  # PPO/RLOO: what it is scored by
            device += f" · reward {'run ' + reward if str(reward).isdigit() else html.escape(str(reward))}"
        self.header.setText(
            f"<b>{html.escape(run['name'])}</b> · {html.escape(run['method'])} on {html.escape(run['model'])} · "
            f"<b>{run['status']}</b> · step {run['step']}{total} · {fmt_elapsed(run)}{fmt_eta(run)}{device}{loading}")
        if run["status"] == RunStatus.FAILED:
            self.error_label.setText(f"<b>Failed:</b> {html.escape(run.get('error') or 'no error recorded')}"
                                     f"<br><small>The end of its log is in the Log tab on the right.</small>")
            tail = run.get("log_tail") or "(no log kept)"
            if self.log_tail.toPlainText() != tail:  # runs refresh often: keep the user's scroll position
                self.log_tail.setPlainText(tail)
                self.log_tail.verticalScrollBar().setValue(self.log_tail.verticalScrollBar().maximum())
                self.side.setCurrentWidget(self.log_tail)
            self.failure.show()
        else:
            self.failure.hide()
            if self.log_tail.toPlainText():
                self.log_tail.clear()
                self.side.setCurrentWidget(self.timeline)

    # ------------------------------------------------------------------ data and drawing

    def _on_data(self, run_id: int, names: set) -> None:
        if run_id != self.run_id:
            return
        self._dirty |= names
        if "samples" in names:
            self.timeline.refresh()
        if self.rd is not None and (self.rd.progress is not None or self._loading):
            self._show_run_info()  # loading progress, or its end

    def _on_smoothing(self, value: int) -> None:
        self.smoothing = value / 100
        self.smooth_value.setText(f"{self.smoothing:.2f}")
        self._all_dirty = True

    def _on_x_axis(self) -> None:
        self.x_by = self.x_combo.currentData()
        self._all_dirty = True
        if self.follow.isChecked():
            self._refit = True
        self.follow.setChecked(True)

    def _on_follow(self, on: bool) -> None:
        if on:
            self._refit = True
            self._all_dirty = True

    def _redraw_if_dirty(self) -> None:
        # nothing to paint while hidden or minimised: keep the changes for when it shows again
        if not self.isVisible() or self.window().isMinimized():
            return
        if self._dirty or self._all_dirty:
            self.redraw()

    def redraw(self) -> float:
        """Push the buffers of changed metrics to their curves (one pass per timer tick, never per
        point): only metrics whose data, x axis or smoothing changed since they were last drawn; then
        the warnings and the health tiles. Returns the time taken in ms (also kept in last_redraw_ms)."""
        t = time.perf_counter()
        self._dirty, self._all_dirty = set(), False
        rd = self.rd
        if rd is None:
            self.health.refresh(None, {})
            self.warning.hide()
        else:
            t0 = rd.t0 or 0.0
            running = bool(self.run and self.run.get("status") in (RunStatus.RUNNING, RunStatus.STOPPING))
            follow = self.follow.isChecked()
            refit, self._refit = self._refit, False
            drawn: set[str] = set()
            touched_charts = []
            for chart in self.charts.values():
                touched = False
                for name, line, twin in chart.metrics():
                    series = rd.series.get(name)
                    if series is None or not len(series):
                        continue
                    if chart.spec.versus:
                        if self._draw_versus(chart.ensure(name, line, twin), series, rd.series.get(chart.spec.versus)):
                            touched = True
                            drawn.add(name)
                        continue
                    if self._draw(chart.ensure(name, line, twin), name, series, t0):
                        touched = True
                        drawn.add(name)
                touched_charts.append((chart, touched))
            x_range = run_x_range(rd, self.x_by) if follow else None
            if x_range is not None:
                x_moved = x_range != self._x_range
                self._x_range = x_range
                for chart, touched in touched_charts:
                    # every chart follows the run's x extent, also one that got no new points
                    if touched or x_moved or refit or running != self._was_running:
                        chart.fit(rd, x_range, running)
            self._was_running = running
            if drawn or refit:
                findings = run_findings(rd)
                warnings = list(findings.values())
                # one line each (what happened, in numbers) so several warnings leave the charts their room;
                # the advice that follows is in the tooltip
                self.warning.setText("\n".join("⚠ " + headline(w) for w in warnings))
                self.warning.setToolTip("\n\n".join(warnings))
                self.warning.setVisible(bool(warnings))
                self.health.refresh(rd, findings, None if refit else drawn)
        self.last_redraw_ms = (time.perf_counter() - t) * 1000
        return self.last_redraw_ms

    def _draw(self, curves: Curves, name: str, series, t0: float) -> bool:
        """Bring one metric's curves up to date; False when nothing about them changed."""
        smoothing = 0.0 if curves.raw is None else self.smoothing
        key = (series.version, self.x_by, smoothing)
        if curves.drawn == key:
            return False
        data_changed = curves.drawn is None or curves.drawn[:2] != key[:2]
        curves.drawn = key
        x = series.x(self.x_by, t0)
        y = series.y
        defined = self.rd.defined(name) if self.rd is not None else None
        if defined is not None:  # an accuracy where every margin was 0 is not a ranking: left out
            x, y = x[defined], y[defined]
        skip = series.all_finite  # skipping pyqtgraph's finite check is only safe without gaps
        if curves.raw is None:
            # markers only while sparse: thousands of scatter symbols cost more than the line
            markers = curves.markers and len(series) <= MAX_MARKERS
            if markers != (curves.main.opts["symbol"] is not None):
                curves.main.setSymbol("o" if markers else None)
            curves.main.setData(x, y, skipFiniteCheck=skip)
        elif smoothing > 0:
            if data_changed or not curves.raw.isVisible():
                curves.raw.setData(x, y, skipFiniteCheck=skip)
                curves.raw.setVisible(True)
            smooth = series.smoothed(smoothing) if defined is None else ema(y, smoothing)
            curves.main.setData(x, smooth, skipFiniteCheck=True)
        else:
            curves.raw.setVisible(False)
            curves.main.setData(x, y, skipFiniteCheck=skip)
        return True

    def _draw_versus(self, curves: Curves, series, against) -> bool:
        """A chart of one metric against another (charts.ChartSpec.versus) at the steps both have, both smoothed
        with the monitor's smoothing: the run's path, drawn in step order; False when nothing changed."""
        if against is None or not len(against):
            return False
        key = (series.version, against.version, self.smoothing)
        if curves.drawn == key:
            return False
        curves.drawn = key
        _, i, j = np.intersect1d(series.step[:series.n], against.step[:against.n], return_indices=True)
        y = series.smoothed(self.smoothing) if self.smoothing > 0 else series.y
        x = against.smoothed(self.smoothing) if self.smoothing > 0 else against.y
        markers = curves.markers and len(i) <= MAX_MARKERS
        if markers != (curves.main.opts["symbol"] is not None):
            curves.main.setSymbol("o" if markers else None)
        curves.main.setData(x[j], y[i])
        return True

    # ------------------------------------------------------------------ hover readout

    def _on_mouse(self, event) -> None:
        """A crosshair at the hovered step on every chart, and the hovered chart's values in the readout."""
        pos = event[0]
        rd = self.rd
        hovered = next((c for c in self.charts.values() if c.plot.scene() is not None
                        and c.plot.sceneBoundingRect().contains(pos)), None) if rd is not None else None
        # a chart against another metric (ChartSpec.versus) has no step axis: no crosshair on it, none from it
        if hovered is None or hovered.spec.versus:
            for chart in self.charts.values():
                chart.cursor.setVisible(False)
            return
        x = hovered.plot.getViewBox().mapSceneToView(pos).x()
        for chart in self.charts.values():
            chart.cursor.setPos(x)
            chart.cursor.setVisible(not chart.spec.versus)
        parts = []
        at = None
        for name, line, twin in hovered.metrics():
            series = rd.series.get(name)
            hit = series.value_at(x, self.x_by, rd.t0 or 0.0) if series is not None else None
            if hit is None:
                continue
            at = at if at is not None else hit[0]
            label = f"eval {line.label}" if twin else line.label
            parts.append(f"<span style='color:{C.on_background(line.color)}'>{html.escape(label)}</span> {hit[1]:.4g}")
        if parts:
            unit = "step" if self.x_by == "step" else "min"
            xs = f"{at:.0f}" if self.x_by == "step" else f"{at:.2f}"
            units = f" {html.escape(hovered.spec.unit)}" if hovered.spec.unit else ""
            self.readout.setText(f"<b>{html.escape(hovered.spec.title)}</b> at {unit} {xs}: "
                                 + " · ".join(parts) + units)

    # ------------------------------------------------------------------ export

    def metric_rows(self, chart: Chart | None = None):
        """CSV rows (charts.CSV_HEADER) of the whole run, or of one chart's metrics."""
        if self.rd is None:
            return []
        names = [n for n, _l, _t in chart.metrics()] if chart else sorted(self.rd.series)
        run_name = self.run["name"] if self.run else ""
        rows = []
        for name in names:
            s = self.rd.series.get(name)
            if s is not None:
                rows += C.series_rows(self.run_id, run_name, name, s)
        return rows

    def export_csv(self, path: str | Path, chart: Chart | None = None) -> None:
        if self.run_id is not None:
            self.poller.finish_loading(self.run_id)  # a long run may still be loading: export all of it
        C.write_csv(Path(path), self.metric_rows(chart))

    def export_png(self, path: str | Path, chart: Chart | None = None) -> None:
        if chart is not None:
            C.export_plot_png(chart.plot, Path(path))
        else:
            self.graphics.grab().save(str(path))

    def _ask_png(self, chart: Chart | None = None) -> None:
        name = self.run["name"] if self.run else "run"
        suffix = f"-{chart.spec.title.lower().replace(' ', '-')}" if chart else ""
        path, _ = QFileDialog.getSaveFileName(self, "Save chart as PNG", f"{name}{suffix}.png", "PNG image (*.png)")
        if path:
            self.export_png(path, chart)

    def _ask_csv(self, chart: Chart | None = None) -> None:
        name = self.run["name"] if self.run else "run"
        path, _ = QFileDialog.getSaveFileName(self, "Save data as CSV", f"{name}.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path, chart)

    # ------------------------------------------------------------------ for tests and the benchmark

    def curve_data(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) drawn for a metric's main curve, empty when it has none yet (pending changes
        are drawn first: a hidden monitor draws only when shown)."""
        if self._dirty or self._all_dirty:
            self.redraw()
        for chart in self.charts.values():
            if metric in chart.curves:
                curve = chart.curves[metric].main  # all its points, not the downsampled ones on screen
                if curve.xData is not None:
                    return curve.xData, curve.yData
        return np.empty(0), np.empty(0)

    def closeEvent(self, event) -> None:
        self.redraw_timer.stop()
        super().closeEvent(event)
