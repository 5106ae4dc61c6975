"""The monitor's charts: one PlotItem per chart spec with its metrics' curves (raw, smoothed, eval twin), its
legend, and the fitting of its axes to a run's data."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt

from studio.core import metrics as M
from studio.ui.runs import charts as C
from studio.ui.runs.poller import RunData

EDGE_LABEL_PX = 9


class Curves:
    """The items of one metric on a chart: the main curve, the faint raw one behind it (dense
    metrics), and what was last pushed to them, so a redraw skips metrics that did not change."""

    __slots__ = ("drawn", "main", "markers", "raw")

    def __init__(self, main: pg.PlotDataItem, raw: pg.PlotDataItem | None, markers: bool):
        self.main = main
        self.raw = raw
        self.markers = markers
        self.drawn: tuple | None = None  # (series version, x axis, smoothing) last drawn


class Chart:
    """One PlotItem and the curves of its lines: raw (faint), smoothed, and the eval twin; the unit along
    the y axis and the legend under the x axis."""

    def __init__(self, spec: C.ChartSpec, plot: pg.PlotItem):
        self.spec = spec
        self.plot = plot
        self.curves: dict[str, Curves] = {}
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#999", width=1, style=Qt.PenStyle.DotLine))
        self.cursor.setVisible(False)
        plot.addItem(self.cursor, ignoreBounds=True)
        if spec.unit:
            plot.setLabel("left", spec.unit, **{"font-size": "8pt"})
        self.show_legend()

    def metrics(self) -> list[tuple[str, C.Line, bool]]:
        """(metric name, line, is_eval_twin) for every curve this chart can show."""
        out = []
        for line in self.spec.lines:
            out.append((line.metric, line, False))
            if line.eval_twin:
                out.append((M.eval_name(line.metric), line, True))
        return out

    def ensure(self, name: str, line: C.Line, twin: bool) -> Curves:
        """Create a metric's curves on first data, so legends list only what the run logs."""
        curves = self.curves.get(name)
        if curves is not None:
            return curves
        color = C.on_background(line.color)
        if line.limit:
            main = pg.PlotDataItem(pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine), **C.curve_options())
            raw, markers = None, False
        elif twin or C.is_sparse(name) or self.spec.versus:
            pen = pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine if twin else Qt.PenStyle.SolidLine)
            # eval series are short, but a long run evaluated often still has thousands of points
            main = pg.PlotDataItem(pen=pen, symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None,
                                   **C.curve_options())
            raw, markers = None, True
        else:
            raw = pg.PlotDataItem(pen=pg.mkPen(C.faint(color), width=1), **C.curve_options())
            main = pg.PlotDataItem(pen=pg.mkPen(color, width=2), **C.curve_options())
            markers = False
            self.plot.addItem(raw)
        self.plot.addItem(main)
        curves = self.curves[name] = Curves(main, raw, markers)
        self.show_legend()
        return curves

    def show_legend(self) -> None:
        """The legend, as the label under the x axis: coloured names of what this run logs."""
        entries, eval_color = [], None
        # a chart of one metric is titled by it: its legend only tells train from eval
        single = len(self.spec.lines) == 1
        for name, line, twin in self.metrics():
            if name not in self.curves:
                continue
            if twin:
                eval_color = eval_color or "#666"
                continue
            label = "train" if single and line.eval_twin else line.label
            glyph = "- -" if line.limit else "●" if C.is_sparse(name) else "▬"
            if self.spec.versus:
                label = f"{line.label} (y) against {self.spec.versus} (x)"
            entries.append((glyph, C.on_background(line.color), label))
        if eval_color:
            entries.append(("- -●", eval_color, "eval"))
        self.plot.setLabel("bottom", C.legend_html(entries) if entries else "&nbsp;", **{"font-size": "8pt"})

    def clear(self) -> None:
        for curves in self.curves.values():
            for item in (curves.main, curves.raw):
                if item is not None:
                    self.plot.removeItem(item)
        self.curves.clear()
        self.show_legend()

    def y_extent(self, rd: RunData) -> tuple[float, float] | None:
        """The y range Follow shows: every series' running min/max (never a scan of 100k points) and the
        values the lines always include, widened to the chart's least span around its middle."""
        values: list[float] = []
        for name, line, _twin in self.metrics():
            series = rd.series.get(name)
            if series is None or not len(series):
                continue
            vr = series.value_range()
            if vr is not None:
                values.extend((*vr, *line.include))
        if not values:
            return None
        return C.widened(self.spec, min(values), max(values))

    def fit(self, rd: RunData, x_range: tuple[float, float], running: bool) -> None:
        """Follow: scale the axes to all the data. While the run grows, leave headroom, so the axes (and
        their cached pictures) change every few seconds rather than at every redraw. x_range is the whole
        run's, so every chart shows the same steps (one evaluated only at step 0 included)."""
        extent = self.y_extent(rd)
        if extent is None:
            return
        if self.spec.versus:
            against = rd.series.get(self.spec.versus)
            vr = against.value_range() if against is not None and len(against) else None
            if vr is None:
                return
            x_range, running = vr, False  # not a time axis: no room to grow to the right
        view = self.plot.getViewBox()
        fit_axis(view, 0, *x_range, running, only_up=True)
        fit_axis(view, 1, *extent, running, only_up=False)


def fit_axis(view: pg.ViewBox, axis: int, lo: float, hi: float, running: bool, only_up: bool) -> None:
    """Set one axis of a view to [lo, hi] with a little padding. While running: keep the current
    range while the data fits in it and fills most of it; when changing it, leave room to grow
    (to the right only for x)."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        span = max(abs(hi) * 0.1, 1e-9) if math.isfinite(hi) else 1.0
        lo, hi = lo - span / 2, hi + span / 2
        span = hi - lo
    # room for the labels of ticks at the ends (pyqtgraph hides a label that would cross them)
    pixels = view.width() if axis == 0 else view.height()
    edge = EDGE_LABEL_PX / pixels if pixels > 0 else 0.0
    pad = max(0.02 if axis == 0 else 0.06, edge) * span
    cur_lo, cur_hi = view.viewRange()[axis]
    if running:
        fits = cur_lo <= lo and hi <= cur_hi and (hi - lo) >= 0.55 * (cur_hi - cur_lo)
        if fits and (only_up or cur_lo >= lo - 4 * pad):
            return
        room = 0.25 * span
        new = (lo - pad, hi + room) if only_up else (lo - pad - room / 2, hi + pad + room / 2)
    else:
        new = (lo - pad, hi + pad)
        if abs(new[0] - cur_lo) <= 1e-9 * span and abs(new[1] - cur_hi) <= 1e-9 * span:
            return
    if axis == 0:
        view.setXRange(*new, padding=0)
    else:
        view.setYRange(*new, padding=0)


def run_x_range(rd: RunData, x_by: str) -> tuple[float, float] | None:
    """The x extent of all of a run's series (first and last points only), from 0 when the data starts
    near it, and at least one step (or a few seconds) wide."""
    t0 = rd.t0 or 0.0
    lo, hi = math.inf, -math.inf
    for series in rd.series.values():
        if len(series):
            x = series.x(x_by, t0)
            lo, hi = min(lo, float(x[0])), max(hi, float(x[-1]))
    if not math.isfinite(lo):
        return None
    if 0 < lo <= 0.1 * hi:
        lo = 0.0  # steps from 1 (or minutes from a few seconds) read better from 0
    return lo, max(hi, lo + (1.0 if x_by == "step" else 0.1))
