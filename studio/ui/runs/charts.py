"""The chart catalogue (which metrics share a chart, colours) and pyqtgraph set-up shared by views."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg

from studio.core import metrics as M

# Light theme: the charts end up in screenshots and docs, where dark-on-white reads best.
pg.setConfigOptions(background="w", foreground="#333", antialias=False)

BLUE, GREEN, RED, PURPLE, ORANGE, GREY = "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#555555"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
              "#7f7f7f", "#bcbd22")


@dataclass(frozen=True)
class Line:
    metric: str
    label: str
    color: str
    eval_twin: bool = True
    """Also draw `eval/<metric>` (dashed, with markers) when the run logs it."""


@dataclass(frozen=True)
class ChartSpec:
    title: str
    lines: tuple[Line, ...]
    hint: str = ""
    """What healthy looks like, shown as the chart's tooltip."""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Reward margin", (Line(M.REWARDS_MARGINS, "margin", BLUE),),
              "chosen minus rejected implicit reward; should rise, eval along with train"),
    ChartSpec("Rewards", (Line(M.REWARDS_CHOSEN, "chosen", GREEN), Line(M.REWARDS_REJECTED, "rejected", RED)),
              "beta * log-ratio to the reference; rejected should fall faster than chosen"),
    ChartSpec("Log-probs", (Line(M.LOGPS_CHOSEN, "chosen", GREEN, False), Line(M.LOGPS_REJECTED, "rejected", RED,
                                                                               False)),
              "both falling = likelihood displacement: probability moves to responses outside the data"),
    ChartSpec("Accuracy", (Line(M.REWARDS_ACCURACIES, "accuracy", BLUE),),
              "share of pairs whose chosen reward beats the rejected one"),
    ChartSpec("Loss", (Line(M.LOSS, "loss", BLUE),), "preference loss; DPO starts at ln 2 = 0.693"),
    ChartSpec("KL to reference", (Line(M.KL_CHOSEN, "chosen", GREEN, False),
                                  Line(M.KL_REJECTED, "rejected", RED, False),
                                  Line(M.EVAL_KL, "sampled (eval)", PURPLE, False)),
              "per-token log-ratio on the data, and KL on the policy's own samples at evals"),
    ChartSpec("Entropy", (Line(M.ENTROPY, "entropy", BLUE),), "falling fast towards 0 is a collapse signal"),
    ChartSpec("Grad norm", (Line(M.GRAD_NORM, "grad norm", GREY, False),), "before clipping; spikes = instability"),
    ChartSpec("Learning rate", (Line(M.LEARNING_RATE, "lr", GREY, False),), "warmup then schedule"),
    ChartSpec("Tokens / s", (Line(M.TOKENS_PER_SECOND, "tokens/s", ORANGE, False),), "training throughput"),
    ChartSpec("Memory (GiB)", (Line(M.MEMORY, "peak memory", ORANGE, False),), "peak GPU memory (RSS on CPU)"),
    ChartSpec("Samples", (Line(M.EVAL_SAMPLE_LENGTH, "length", GREY, False),
                          Line(M.EVAL_DISTINCT_2, "distinct-2", PURPLE, False)),
              "generated length and bigram diversity at evals; diversity collapsing = mode collapse"),
)

COMPARE_METRICS = (M.REWARDS_MARGINS, M.eval_name(M.REWARDS_MARGINS), M.REWARDS_ACCURACIES,
                   M.eval_name(M.REWARDS_ACCURACIES), M.LOSS, M.LOGPS_CHOSEN, M.LOGPS_REJECTED, M.EVAL_KL)
"""Metrics overlaid in Compare, and listed in its final-metrics table."""

SPARSE = frozenset({M.EVAL_KL, M.EVAL_KL_SEQ, M.EVAL_SAMPLE_LENGTH, M.EVAL_DISTINCT_2})
"""Metrics written only at evaluations: drawn with markers, never smoothed."""


def is_sparse(name: str) -> bool:
    return name in SPARSE or name.startswith(M.EVAL_PREFIX)


def make_plot(layout: pg.GraphicsLayout, row: int, col: int, title: str) -> pg.PlotItem:
    """A chart with the settings that keep 100k points per curve smooth: clip to view, peak
    downsampling (keeps spikes visible), no per-point symbols on dense curves."""
    plot = layout.addPlot(row=row, col=col)
    plot.setTitle(title, size="10pt", bold=True)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMenuEnabled(True)
    plot.getAxis("left").setWidth(48)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setStyle(tickFont=_small_font())
    return plot


def _small_font():
    from PySide6.QtGui import QFont

    f = QFont()
    f.setPointSize(8)
    return f


def faint(color: str, alpha: int = 70):
    c = pg.mkColor(color)
    c.setAlpha(alpha)
    return c


def write_csv(path: Path, rows) -> None:
    """rows: iterables of (run, name, step, time, value)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "metric", "step", "time", "value"])
        w.writerows(rows)


def export_plot_png(plot: pg.PlotItem, path: Path, width: int = 1200) -> None:
    from pyqtgraph.exporters import ImageExporter

    exporter = ImageExporter(plot)
    exporter.parameters()["width"] = width
    exporter.export(str(path))
