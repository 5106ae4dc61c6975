"""The chart catalogue (which metrics share a chart, colours) and pyqtgraph set-up shared by views."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem

from studio.core import metrics as M
from studio.ui import palette

# The theme's chart colours (dark-on-white in the light theme, which screenshots and docs use);
# studio.ui.theme repaints charts already on screen when the theme changes.
pg.setConfigOptions(background=palette.current().chart_background, foreground=palette.current().chart_foreground,
                    antialias=False)

BLUE, GREEN, RED, PURPLE, ORANGE, GREY = "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#7f7f7f"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
              "#7f7f7f", "#bcbd22")


@dataclass(frozen=True)
class Line:
    metric: str
    label: str
    color: str
    eval_twin: bool = True
    """Also draw `eval/<metric>` (dashed, with markers) when the run logs it."""
    axis: str = "left"
    """'right': its own y axis on the right, for a metric on another scale than the chart's others."""
    include: tuple[float, ...] = ()
    """Values the y axis always shows (0 and 1 for a fraction), so a flat curve reads as where it is."""


@dataclass(frozen=True)
class ChartSpec:
    title: str
    lines: tuple[Line, ...]
    hint: str = ""
    """What healthy looks like, shown as the chart's tooltip."""
    versus: str = ""
    """A metric to draw the lines against (its value at the same step) instead of against step or time."""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Reward margin", (Line(M.REWARDS_MARGINS, "margin", BLUE),),
              "chosen minus rejected implicit reward; should rise, eval along with train"),
    ChartSpec("Rewards", (Line(M.REWARDS_CHOSEN, "chosen", GREEN), Line(M.REWARDS_REJECTED, "rejected", RED)),
              "beta * log-ratio to the reference; rejected should fall faster than chosen"),
    ChartSpec("Log-probs", (Line(M.LOGPS_CHOSEN, "chosen", GREEN, False), Line(M.LOGPS_REJECTED, "rejected", RED,
                                                                               False)),
              "both falling = likelihood displacement: probability moves to responses outside the data"),
    ChartSpec("Accuracy", (Line(M.REWARDS_ACCURACIES, "accuracy", BLUE, include=(0.0, 1.0)),),
              "share of pairs whose chosen reward beats the rejected one"),
    ChartSpec("Loss", (Line(M.LOSS, "loss", BLUE),), "preference loss; DPO starts at ln 2 = 0.693"),
    ChartSpec("Log-ratio on the data", (Line(M.LOGRATIO_CHOSEN, "chosen", GREEN, False),
                                        Line(M.LOGRATIO_REJECTED, "rejected", RED, False)),
              "mean per-token log pi - log pi_ref on the dataset's responses (not a KL: it can go negative; "
              "chosen falling below 0 = likelihood displacement)"),
    ChartSpec("Sampled KL to reference", (Line(M.EVAL_KL, "k3", PURPLE, False, include=(0.0,)),
                                          Line(M.EVAL_KL_K1, "k1", GREY, False)),
              "KL(policy || reference) per token on the policy's own samples at evals (k3 never negative; "
              "k1 unbiased but noisy)"),
    ChartSpec("Entropy", (Line(M.ENTROPY, "entropy", BLUE),), "falling fast towards 0 is a collapse signal"),
    ChartSpec("Grad norm", (Line(M.GRAD_NORM, "grad norm", GREY, False),), "before clipping; spikes = instability"),
    ChartSpec("Learning rate", (Line(M.LEARNING_RATE, "lr", GREY, False),), "warmup then schedule"),
    ChartSpec("Tokens / s", (Line(M.TOKENS_PER_SECOND, "tokens/s", ORANGE, False),), "training throughput"),
    ChartSpec("Memory (GiB)", (Line(M.MEMORY, "peak memory", ORANGE, False),), "peak GPU memory (RSS on CPU)"),
    # each axis is coloured like its line, so the legend needs no "(left)"/"(right)", which did not
    # fit under the chart at 1280x800
    ChartSpec("Samples", (Line(M.EVAL_SAMPLE_LENGTH, "length", GREY, False, include=(0.0,)),
                          Line(M.EVAL_DISTINCT_2, "distinct-2", PURPLE, False, axis="right",
                               include=(0.0, 1.0))),
              "generated length in tokens (left axis) and bigram diversity (right axis) at evals; "
              "diversity collapsing = mode collapse"),
)

_DPO_CHARTS = {spec.title: spec for spec in CHARTS}
_SHARED = tuple(_DPO_CHARTS[t] for t in ("Grad norm", "Learning rate", "Tokens / s", "Memory (GiB)"))
"""Charts every method has."""
_SAMPLES = _DPO_CHARTS["Samples"]

REWARD_CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Accuracy", (Line(M.ACCURACY, "accuracy", BLUE, include=(0.0, 1.0)),),
              "share of pairs whose chosen response scores above the rejected one; eval should follow train"),
    ChartSpec("Margin", (Line(M.MARGIN, "margin", BLUE),),
              "mean chosen minus rejected score; rising on train but not on eval = memorising the pairs"),
    ChartSpec("Loss", (Line(M.LOSS, "loss", BLUE),), "Bradley-Terry loss; starts near ln 2 = 0.693"),
    ChartSpec("Scores", (Line(M.MEAN_REWARD, "mean", GREEN), Line(M.STD_REWARD, "spread", GREY)),
              "mean and standard deviation of all scores; centring (center_rewards_coefficient) keeps the mean "
              "near 0"),
    *_SHARED,
)

RL_CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Reward", (Line(M.OBJECTIVE_SCORES, "score", BLUE), Line(M.OBJECTIVE_RLHF_REWARD, "score - KL penalty",
                                                                       GREEN, eval_twin=False)),
              "the reward model's score of the rollouts (eval: held-out prompts) and the objective PPO maximises; "
              "should rise"),
    ChartSpec("KL to reference", (Line(M.OBJECTIVE_KL, "KL", PURPLE, include=(0.0,)),),
              "KL(policy || reference) per response, nats; a steady climb with a flat score = reward hacking"),
    ChartSpec("Reward against KL", (Line(M.OBJECTIVE_SCORES, "score", BLUE, eval_twin=False),),
              "score (y) against KL (x) over the run: how much reward each nat of drift bought; a frontier that "
              "flattens means more KL buys nothing", versus=M.OBJECTIVE_KL),
    ChartSpec("Entropy", (Line(M.POLICY_ENTROPY, "per token", BLUE, eval_twin=False),
                          Line(M.OBJECTIVE_ENTROPY, "per response", GREY, eval_twin=False, axis="right")),
              "entropy of the policy per token (left) and -log pi of the sampled responses (right); falling fast "
              "towards 0 is a collapse signal"),
    ChartSpec("Response length", (Line(M.RESPONSE_LENGTH, "tokens", ORANGE, include=(0.0,)),),
              "mean response length in tokens; a climb towards max_new_tokens = rambling (see the missing-EOS "
              "penalty)"),
    ChartSpec("Clip fractions", (Line(M.POLICY_CLIPFRAC, "policy", BLUE, eval_twin=False, include=(0.0,)),
                                 Line(M.VALUE_CLIPFRAC, "value", ORANGE, eval_twin=False)),
              "share of ratios (values) clipped; above ~0.2 the updates are too large: lower learning_rate"),
    ChartSpec("Approx. KL per update", (Line(M.POLICY_APPROXKL, "approx KL", PURPLE, eval_twin=False,
                                             include=(0.0,)),),
              "0.5 mean (log pi - log pi_rollout)^2 over the updates of a batch; a spike = an update too large"),
    ChartSpec("Losses", (Line(M.LOSS_POLICY, "policy", BLUE, eval_twin=False),
                         Line(M.LOSS_VALUE, "value", ORANGE, eval_twin=False, axis="right")),
              "clipped policy loss (left) and value loss (right, PPO); the value loss should fall"),
    ChartSpec("Phase times (s)", (Line(M.TIME_GENERATE, "generate", BLUE, eval_twin=False, include=(0.0,)),
                                  Line(M.TIME_FORWARD, "forward", GREY, eval_twin=False),
                                  Line(M.TIME_SCORE, "score", GREEN, eval_twin=False),
                                  Line(M.TIME_OPTIMISE, "optimise", RED, eval_twin=False)),
              "seconds per step: sampling, the no-grad forwards (rollout and reference log-probs, values), the "
              "reward model, the updates"),
    ChartSpec("KL coefficient", (Line(M.KL_COEF, "kl_coef", GREY, eval_twin=False),),
              "the KL penalty's weight; it moves when kl_target > 0 (adaptive)"),
    _SAMPLES,
    *_SHARED,
)

METHOD_CHARTS: dict[str, tuple[ChartSpec, ...]] = {"dpo": CHARTS, "reward": REWARD_CHARTS, "ppo": RL_CHARTS,
                                                   "rloo": RL_CHARTS}


def charts_for(method: str | None) -> tuple[ChartSpec, ...]:
    """The monitor's charts for a run of this method (DPO's for a method without its own)."""
    return METHOD_CHARTS.get(method or "dpo", CHARTS)


COMPARE_METRICS = M.COMPARE_METRICS
"""DPO's metrics overlaid in Compare, and listed in its final-metrics table (the report draws the same)."""
compare_metrics_for = M.compare_metrics_for
"""The metrics of the compared runs' methods (each method's own, each metric once)."""


SPARSE = frozenset({M.EVAL_KL, M.EVAL_KL_SEQ, M.EVAL_KL_K1, M.EVAL_KL_K1_SEQ, M.EVAL_SAMPLE_LENGTH,
                    M.EVAL_DISTINCT_2})
"""Metrics written only at evaluations: drawn with markers, never smoothed."""


def is_sparse(name: str) -> bool:
    return name in SPARSE or name.startswith(M.EVAL_PREFIX)


def make_plot(layout: pg.GraphicsLayout, row: int, col: int, title: str) -> pg.PlotItem:
    """A chart with the settings that keep 100k points per curve cheap to paint: clip to view and
    peak downsampling on its curves (see curve_options), major grid lines only, and axes (with
    their grid) cached as pixmaps, so a repaint for new points redraws the curves, not the text."""
    plot = layout.addPlot(row=row, col=col)
    plot.setTitle(title, size="10pt", bold=True)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    plot.showGrid(x=True, y=True, alpha=0.12)
    plot.setMenuEnabled(True)
    plot.hideButtons()  # the autoscale "A" sits on the curves; Follow (or double-click menu) does it
    plot.getAxis("left").setWidth(48)
    for axis in ("left", "bottom"):
        style_axis(plot.getAxis(axis))
    return plot


def style_axis(axis: pg.AxisItem) -> None:
    # labels may reach a few pixels past the ends, so the first and last ticks (0, 1.0) keep theirs
    axis.setStyle(tickFont=_small_font(), maxTickLevel=0, tickLength=-4, hideOverlappingLabels=8)
    axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def curve_options() -> dict:
    """PlotDataItem options for a curve: clipped to the view and peak-downsampled to about two points
    (the min and max) per pixel column, so a curve of any length paints like a few hundred points.
    Short curves are left alone (one point per pixel or fewer is never downsampled)."""
    return {"clipToView": True, "autoDownsample": True, "downsampleMethod": "peak", "autoDownsampleFactor": 1.0}


def legend_html(entries: list[tuple[str, str, str]]) -> str:
    """A one-line legend drawn under a chart (where it can never cover a curve): (glyph, colour, label)."""
    return "&nbsp;&nbsp;".join(
        f"<span style='color:{color}'>{glyph}&nbsp;{html.escape(label)}</span>" for glyph, color, label in entries)


def _small_font():
    from PySide6.QtGui import QFont

    f = QFont()
    f.setPointSize(8)
    return f


def faint(color: str, strength: float = 0.3):
    """The colour mixed with the chart's background: the raw curve behind the smoothed one. Opaque, so it
    is cheaper to paint than a translucent pen and looks the same on the background."""
    c, bg = pg.mkColor(color), pg.mkColor(palette.current().chart_background)
    mix = [round(b + (v - b) * strength) for v, b in ((c.red(), bg.red()), (c.green(), bg.green()),
                                                      (c.blue(), bg.blue()))]
    return pg.mkColor(*mix)


CSV_HEADER = ("run", "run_name", "metric", "step", "wall_time", "value")
"""wall_time: Unix seconds when the worker logged the value (TensorBoard's CSV calls it "Wall time")."""


def write_csv(path: Path, rows) -> None:
    """rows: iterables of CSV_HEADER's fields. Values are written in full precision; a missing one
    (NaN) is written as 'nan' so pandas and numpy read it back as such."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(rows)


def series_rows(run_id: int, run_name: str, name: str, series) -> list[tuple]:
    """CSV rows of one metric of a run."""
    n = len(series)
    return [(run_id, run_name, name, int(st), f"{t:.3f}", repr(float(v)))
            for st, t, v in zip(series.step[:n], series.time[:n], series.y, strict=True)]


def export_plot_png(plot: pg.PlotItem, path: Path, width: int = 1200) -> None:
    from pyqtgraph.exporters import ImageExporter

    exporter = ImageExporter(plot)
    exporter.parameters()["width"] = width
    exporter.export(str(path))
