"""Seed groups in Compare's charts: a group's runs drawn as one mean curve over a band of +-1 standard deviation
(studio.core.seed_bands), in the group's colour. Compare keeps drawing single runs itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyqtgraph as pg

from studio.core.comparison import Entry
from studio.core.seed_bands import Band, seed_band
from studio.core.series import RunSeries
from studio.ui.runs import charts as C


class GroupCurves:
    """The band and mean curve of each seed group on each chart, redrawn only when a run's series changed."""

    def __init__(self, plots: Mapping[str, pg.PlotItem]):
        self.plots = plots
        self.items: dict[tuple[str, int], tuple[pg.PlotDataItem, pg.PlotDataItem, pg.PlotDataItem,
                                                pg.FillBetweenItem]] = {}
        self.bands: dict[tuple[str, int], Band] = {}
        self._drawn: dict[tuple[str, int], tuple] = {}

    def clear(self) -> None:
        for (name, _gid), (mean, lower, upper, fill) in self.items.items():
            for item in (fill, lower, upper, mean):
                self.plots[name].removeItem(item)
        self.items.clear()
        self.bands.clear()
        self._drawn.clear()

    def redraw(self, groups: list[tuple[Entry, str]], data: Mapping[int, RunSeries], smoothing: float,
               is_sparse: Callable[[str], bool] = C.is_sparse) -> None:
        """Draw each (group entry, colour) from the runs' series; train metrics smoothed per run first."""
        for entry, color in groups:
            for name, plot in self.plots.items():
                series = [data[i].series.get(name) for i in entry.run_ids if i in data]
                series = [s for s in series if s is not None and len(s)]
                sparse = is_sparse(name)
                weight = 0.0 if sparse else smoothing
                key = (tuple((id(s), s.version) for s in series), weight)
                if not series or self._drawn.get((name, entry.group_id)) == key:
                    continue
                self._drawn[(name, entry.group_id)] = key
                band = seed_band([(s.step[: s.n], s.y if weight <= 0 else s.smoothed(weight)) for s in series])
                self.bands[(name, entry.group_id)] = band
                self._draw(plot, name, entry.group_id, band, color, sparse)

    def _draw(self, plot: pg.PlotItem, name: str, group_id: int, band: Band, color: str, sparse: bool) -> None:
        items = self.items.get((name, group_id))
        if items is None:
            kw = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None} if sparse else {}
            mean = pg.PlotDataItem(pen=pg.mkPen(color, width=2), **kw, **C.curve_options())
            # invisible edges (NoPen; pen=None would leave them without a path, and the fill empty)
            lower, upper = pg.PlotDataItem(pen=pg.mkPen(None)), pg.PlotDataItem(pen=pg.mkPen(None))
            fill_color = pg.mkColor(color)
            fill_color.setAlpha(60)
            fill = pg.FillBetweenItem(lower, upper, brush=pg.mkBrush(fill_color))
            for item in (fill, lower, upper, mean):
                plot.addItem(item)
            self.items[(name, group_id)] = items = (mean, lower, upper, fill)
        mean, lower, upper, _fill = items
        spread = np.nan_to_num(band.std)  # where one run is left the band closes onto its curve
        mean.setData(band.steps, band.mean)
        lower.setData(band.steps, band.mean - spread)
        upper.setData(band.steps, band.mean + spread)

    def band(self, metric: str, group_id: int) -> Band | None:
        """The band last drawn for a group on a chart (for tests)."""
        return self.bands.get((metric, group_id))
