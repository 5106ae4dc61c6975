"""The chart catalogue (which metrics share a chart, colours) and pyqtgraph set-up shared by views."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGraphicsItem, QScrollArea

from studio.core import metrics as M
from studio.ui import palette

# The theme's chart colours (dark-on-white in the light theme, which screenshots and docs use);
# studio.ui.theme repaints charts already on screen when the theme changes.
pg.setConfigOptions(background=palette.current().chart_background, foreground=palette.current().chart_foreground,
                    antialias=False)

# Named colours: views take every colour from here, so a theme can restyle them in one place. GREEN and RED
# mean chosen and rejected wherever they appear.
BLUE, GREEN, RED, PURPLE, ORANGE, GREY = "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#555555"
TEAL, BROWN, PINK, OLIVE = "#17becf", "#8c564b", "#e377c2", "#bcbd22"
RUN_COLORS = (BLUE, PURPLE, ORANGE, TEAL, BROWN, PINK, "#7f7f7f", OLIVE, "#393b79", "#637939")
"""One colour per compared run; never GREEN or RED, which mean chosen and rejected on the monitor's charts."""
STATUS_OK, STATUS_WARN, STATUS_NONE = "#2e8b57", "#d9822b", "#a0a0a0"
"""A health tile's status: no rule warns, a rule warns, no data yet."""
HIGHLIGHT, BADGE, BADGE_WARN, BADGE_TEXT = "#ffe08a", "#e8eaee", "#ffd9b3", "#1d1f23"
"""Sample text: repeated n-grams; a sample's measures; the "hit the cap" badge; the text on all three (dark, as
their backgrounds are light in either theme)."""


@dataclass(frozen=True)
class Line:
    metric: str
    label: str
    color: str
    eval_twin: bool = True
    """Also draw `eval/<metric>` (dashed, with markers) when the run logs it."""
    include: tuple[float, ...] = ()
    """Values the y axis always shows (0 and 1 for a fraction), so a flat curve reads as where it is."""
    limit: bool = False
    """A limit rather than a measurement (the sampling cap): a thin dashed line without markers."""


@dataclass(frozen=True)
class ChartSpec:
    title: str
    lines: tuple[Line, ...]
    hint: str = ""
    """What healthy looks like, shown as the chart's tooltip."""
    unit: str = ""
    """The y axis's unit, written along it."""
    min_span: float = 0.0
    """The least y range the chart shows, in its unit: noise in a narrower band must not look like a trend."""
    min_rel_span: float = 0.0
    """The same as a share of the values' size, for units whose scale depends on the machine (tokens/s)."""
    versus: str = ""
    """A metric to draw the lines against (its value at the same step) instead of against step or time."""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Reward margin", (Line(M.REWARDS_MARGINS, "margin", BLUE),),
              "chosen minus rejected implicit reward; should rise, eval along with train", "nats", 0.2),
    ChartSpec("Rewards", (Line(M.REWARDS_CHOSEN, "chosen", GREEN), Line(M.REWARDS_REJECTED, "rejected", RED)),
              "beta * log-ratio to the reference; rejected should fall faster than chosen", "nats", 0.2),
    ChartSpec("Log-probs", (Line(M.LOGPS_CHOSEN, "chosen", GREEN, False), Line(M.LOGPS_REJECTED, "rejected", RED,
                                                                               False)),
              "both falling = likelihood displacement: probability moves to responses outside the data",
              "nats", 2.0),
    ChartSpec("Accuracy", (Line(M.REWARDS_ACCURACIES, "accuracy", BLUE, include=(0.0, 1.0)),),
              "share of pairs whose chosen reward beats the rejected one (not drawn where every margin is "
              "exactly 0: the reference ties every pair)", "share"),
    ChartSpec("Loss", (Line(M.LOSS, "loss", BLUE),), "preference loss; DPO starts at ln 2 = 0.693", "nats", 0.1),
    ChartSpec("Log-ratio on the data", (Line(M.LOGRATIO_CHOSEN, "chosen", GREEN, False),
                                        Line(M.LOGRATIO_REJECTED, "rejected", RED, False)),
              "mean per-token log pi - log pi_ref on the dataset's responses (not a KL: it can go negative; "
              "chosen falling below 0 = likelihood displacement)", "nats/token", 0.1),
    ChartSpec("Sampled KL", (Line(M.EVAL_KL, "k3", PURPLE, False, include=(0.0,)),
                             Line(M.EVAL_KL_K1, "k1", GREY, False)),
              "KL(policy || reference) per token on the policy's own samples at evals (k3 never negative; "
              "k1 unbiased but noisy); rising fast = over-optimisation", "nats/token", 0.05),
    ChartSpec("Sample length", (Line(M.EVAL_SAMPLE_LENGTH, "mean", GREY, False, include=(0.0,)),
                                Line(M.EVAL_SAMPLE_LENGTH_MEDIAN, "median", BLUE, False),
                                Line(M.EVAL_SAMPLE_CAP, "cap", ORANGE, False, limit=True)),
              "tokens the policy writes on the probe prompts; rising against step 0 = length drift. Samples "
              "at the dashed cap were cut there (the share that was is on the Length tile)", "tokens", 8.0),
    ChartSpec("Diversity", (Line(M.EVAL_DISTINCT_2, "dist-2", PURPLE, False, include=(0.0, 1.0)),
                            Line(M.EVAL_SELF_SIMILARITY, "self-sim", BROWN, False, include=(0.0,)),
                            Line(M.EVAL_REPETITION, "rep-3", PINK, False, include=(0.0,))),
              "dist-2: distinct bigrams over all samples (falling = mode collapse; distinct-1 is in studio samples); "
              "self-sim: bigram overlap among a prompt's samples; rep-3: repeated trigrams within a sample "
              "(rising = collapse)", "share", 0.2),
    ChartSpec("Entropy", (Line(M.ENTROPY, "data", BLUE), Line(M.EVAL_SAMPLE_ENTROPY, "samples", PURPLE, False)),
              "per-token entropy of the policy on the dataset's responses and on its own samples; falling "
              "fast towards 0 is a collapse signal", "nats/token", 0.2),
    ChartSpec("Grad norm", (Line(M.GRAD_NORM, "grad norm", GREY, False),), "before clipping; spikes = instability",
              "norm", 0.1),
    ChartSpec("Learning rate", (Line(M.LEARNING_RATE, "lr", GREY, False),), "warmup then schedule"),
    ChartSpec("Tokens / s", (Line(M.TOKENS_PER_SECOND, "tokens/s", ORANGE, False),), "training throughput",
              "tokens/s", min_rel_span=0.2),
    ChartSpec("Memory", (Line(M.MEMORY, "peak memory", ORANGE, False),), "peak GPU memory (RSS on CPU)", "GiB",
              0.5),
)

_DPO_CHARTS = {spec.title: spec for spec in CHARTS}
_SHARED = tuple(_DPO_CHARTS[t] for t in ("Grad norm", "Learning rate", "Tokens / s", "Memory"))
"""Charts every method has."""
_SAMPLED = tuple(_DPO_CHARTS[t] for t in ("Sampled KL", "Sample length", "Diversity"))
"""The collapse lens's charts of the policy's own samples at evaluations (the health strip's tiles open them)."""

REWARD_CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Accuracy", (Line(M.ACCURACY, "accuracy", BLUE, include=(0.0, 1.0)),),
              "share of pairs whose chosen response scores above the rejected one; eval should follow train",
              "share"),
    ChartSpec("Margin", (Line(M.MARGIN, "margin", BLUE),),
              "mean chosen minus rejected score; rising on train but not on eval = memorising the pairs", "score",
              0.2),
    ChartSpec("Loss", (Line(M.LOSS, "loss", BLUE),), "Bradley-Terry loss; starts near ln 2 = 0.693", "nats", 0.1),
    ChartSpec("Scores", (Line(M.MEAN_REWARD, "mean", GREEN), Line(M.STD_REWARD, "spread", GREY)),
              "mean and standard deviation of all scores; centring (center_rewards_coefficient) keeps the mean "
              "near 0", "score", 0.2),
    *_SHARED,
)

# one y axis per chart: what the PPO branch drew on a second, right-hand axis (per-response entropy, the value
# loss) has a chart of its own
RL_CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Reward", (Line(M.OBJECTIVE_SCORES, "score", BLUE), Line(M.OBJECTIVE_RLHF_REWARD, "score - KL penalty",
                                                                       GREEN, eval_twin=False)),
              "the reward model's score of the rollouts (eval: held-out prompts) and the objective PPO maximises; "
              "should rise", "score", 0.2),
    ChartSpec("KL to reference", (Line(M.OBJECTIVE_KL, "KL", PURPLE, include=(0.0,)),),
              "KL(policy || reference) per response, nats; a steady climb with a flat score = reward hacking",
              "nats", 0.1),
    ChartSpec("Reward against KL", (Line(M.OBJECTIVE_SCORES, "score", BLUE, eval_twin=False),),
              "score (y) against KL (x) over the run: how much reward each nat of drift bought; a frontier that "
              "flattens means more KL buys nothing", "score", 0.2, versus=M.OBJECTIVE_KL),
    ChartSpec("Entropy", (Line(M.POLICY_ENTROPY, "per token", BLUE, eval_twin=False),),
              "entropy of the policy per token on the rollouts; falling fast towards 0 is a collapse signal",
              "nats/token", 0.2),
    ChartSpec("Response entropy", (Line(M.OBJECTIVE_ENTROPY, "per response", GREY, eval_twin=False),),
              "-log pi of the sampled responses (a response's total surprise); falls with the per-token entropy "
              "and with shorter responses", "nats", 1.0),
    ChartSpec("Response length", (Line(M.RESPONSE_LENGTH, "tokens", ORANGE, include=(0.0,)),),
              "mean response length in tokens; a climb towards max_new_tokens = rambling (see the missing-EOS "
              "penalty)", "tokens", 8.0),
    ChartSpec("Clip fractions", (Line(M.POLICY_CLIPFRAC, "policy", BLUE, eval_twin=False, include=(0.0,)),
                                 Line(M.VALUE_CLIPFRAC, "value", ORANGE, eval_twin=False)),
              "share of ratios (values) clipped; above ~0.2 the updates are too large: lower learning_rate",
              "share", 0.1),
    ChartSpec("Approx. KL per update", (Line(M.POLICY_APPROXKL, "approx KL", PURPLE, eval_twin=False,
                                             include=(0.0,)),),
              "0.5 mean (log pi - log pi_rollout)^2 over the updates of a batch; a spike = an update too large",
              "nats"),
    ChartSpec("Policy loss", (Line(M.LOSS_POLICY, "policy", BLUE, eval_twin=False),),
              "clipped policy loss (PPO) or REINFORCE loss (RLOO) over the updates of a batch", "loss", 0.05),
    ChartSpec("Value loss", (Line(M.LOSS_VALUE, "value", ORANGE, eval_twin=False),),
              "clipped value loss (PPO only); it should fall as the value head learns the returns", "loss", 0.05),
    ChartSpec("Phase times", (Line(M.TIME_GENERATE, "generate", BLUE, eval_twin=False, include=(0.0,)),
                              Line(M.TIME_FORWARD, "forward", GREY, eval_twin=False),
                              Line(M.TIME_SCORE, "score", GREEN, eval_twin=False),
                              Line(M.TIME_OPTIMISE, "optimise", RED, eval_twin=False)),
              "seconds per step: sampling, the no-grad forwards (rollout and reference log-probs, values), the "
              "reward model, the updates", "s", min_rel_span=0.2),
    ChartSpec("KL coefficient", (Line(M.KL_COEF, "kl_coef", GREY, eval_twin=False),),
              "the KL penalty's weight; it moves when kl_target > 0 (adaptive)"),
    *_SAMPLED,
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


def widened(spec: ChartSpec, lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to the chart's least span around its middle, so noise in a narrow band does not
    fill the chart."""
    least = max(spec.min_span, spec.min_rel_span * max(abs(lo), abs(hi)))
    if hi - lo < least:
        middle = (lo + hi) / 2
        lo, hi = middle - least / 2, middle + least / 2
    return lo, hi


def least_y_range(metric: str, lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to what the metric's chart in the catalogue always shows: its line's fixed values (0
    and 1 of a share) and the chart's least span (Compare's charts of one metric read them from here)."""
    for spec in dict.fromkeys(spec for specs in METHOD_CHARTS.values() for spec in specs):
        for line in spec.lines:
            if metric in (line.metric, M.eval_name(line.metric) if line.eval_twin else None):
                return widened(spec, min(lo, *line.include, lo), max(hi, *line.include, hi))
    return lo, hi


@dataclass(frozen=True)
class MetricInfo:
    """How a metric reads on its own (Compare's charts and tables): its title, unit and which way is better."""

    title: str
    unit: str = ""
    better: str | None = None
    """'higher' or 'lower' (the best final value is highlighted), None when neither is."""


METRICS: dict[str, MetricInfo] = {
    M.REWARDS_MARGINS: MetricInfo("Reward margin", "nats", "higher"),
    M.eval_name(M.REWARDS_MARGINS): MetricInfo("Eval reward margin", "nats", "higher"),
    M.REWARDS_ACCURACIES: MetricInfo("Accuracy", "share", "higher"),
    M.eval_name(M.REWARDS_ACCURACIES): MetricInfo("Eval accuracy", "share", "higher"),
    M.LOSS: MetricInfo("Loss", "nats", "lower"),
    M.eval_name(M.LOSS): MetricInfo("Eval loss", "nats", "lower"),
    M.LOGPS_CHOSEN: MetricInfo("Log-prob chosen", "nats"),
    M.LOGPS_REJECTED: MetricInfo("Log-prob rejected", "nats"),
    M.EVAL_KL: MetricInfo("Sampled KL", "nats/token"),
    M.EVAL_SAMPLE_LENGTH: MetricInfo("Sample length", "tokens"),
    M.EVAL_SAMPLE_HIT_CAP: MetricInfo("Samples at the cap", "share", "lower"),
    M.EVAL_DISTINCT_2: MetricInfo("Distinct-2", "share", "higher"),
    M.EVAL_SELF_SIMILARITY: MetricInfo("Self-similarity", "share", "lower"),
    M.EVAL_REPETITION: MetricInfo("Repetition", "share", "lower"),
    M.EVAL_SAMPLE_ENTROPY: MetricInfo("Entropy on samples", "nats/token"),
    # the reward model's and PPO/RLOO's (core.metrics.METHOD_COMPARE_METRICS)
    M.ACCURACY: MetricInfo("Accuracy", "share", "higher"),
    M.eval_name(M.ACCURACY): MetricInfo("Eval accuracy", "share", "higher"),
    M.MARGIN: MetricInfo("Margin", "score", "higher"),
    M.eval_name(M.MARGIN): MetricInfo("Eval margin", "score", "higher"),
    M.OBJECTIVE_SCORES: MetricInfo("Score", "score", "higher"),
    M.eval_name(M.OBJECTIVE_SCORES): MetricInfo("Eval score", "score", "higher"),
    M.OBJECTIVE_KL: MetricInfo("KL", "nats"),
    M.eval_name(M.OBJECTIVE_KL): MetricInfo("Eval KL", "nats"),
    M.OBJECTIVE_RLHF_REWARD: MetricInfo("Score - KL penalty", "score", "higher"),
    M.RESPONSE_LENGTH: MetricInfo("Response length", "tokens"),
    M.POLICY_CLIPFRAC: MetricInfo("Policy clip fraction", "share"),
}


def metric_info(name: str) -> MetricInfo:
    """The metric's MetricInfo; a readable title from its name when it has none ('eval/grad_norm' -> 'Eval
    grad norm')."""
    if name in METRICS:
        return METRICS[name]
    words = name.replace("/", " ").replace("_", " ").strip()
    return MetricInfo(words[:1].upper() + words[1:])


SPARSE = frozenset({*M.SAMPLE_METRICS, M.EVAL_PAIRS})
"""Metrics written only at evaluations: drawn with markers, never smoothed."""


def is_sparse(name: str) -> bool:
    return name in SPARSE or name.startswith(M.EVAL_PREFIX)


MAX_COLUMNS = 4
COLUMN_PX = 200
"""Least width of a chart column: a grid of charts reflows to fewer columns on narrow windows."""
ROW_PX = 150
"""Least height of a row of charts: rows that do not fit scroll rather than shrink past reading."""


def grid_columns(width: int) -> int:
    """Chart columns that fit a width in pixels (1 to MAX_COLUMNS)."""
    return max(1, min(MAX_COLUMNS, width // COLUMN_PX))


def scrolling(graphics: pg.GraphicsLayoutWidget) -> QScrollArea:
    """A vertical scroll area around a grid of charts: rows that do not fit scroll instead of shrinking."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(graphics)
    return scroll


def lay_out(graphics: pg.GraphicsLayoutWidget, plots: list[pg.PlotItem], columns: int,
            rows_scroll: bool = True) -> None:
    """Place plots in a grid of `columns`, in order, each row at least ROW_PX high when `rows_scroll`."""
    graphics.ci.clear()
    for i, plot in enumerate(plots):
        graphics.ci.addItem(plot, row=i // columns, col=i % columns)
    graphics.setMinimumHeight(ROW_PX * -(-len(plots) // columns) if rows_scroll else 0)


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
        # the unit is written along the axis as given: a "(x0.001)" prefix read as a different unit
        plot.getAxis(axis).enableAutoSIPrefix(False)
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


DARK_GREY = "#9a9ea6"


def on_background(color: str) -> str:
    """A line's colour as drawn on the current chart background: GREY, dark for light charts, is lightened on
    dark ones (the other named colours read on both)."""
    return DARK_GREY if color == GREY and palette.current().dark else color


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
