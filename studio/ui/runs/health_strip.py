"""The health strip above the monitor's charts: a few tiles (a value, a sparkline, a status colour) for the
signals that show a run going wrong first. Tiles are data: each names the metrics it reads (the first one the
run logs is shown, so a method with other names brings its own), the chart it opens, and the health rules
(studio.core.health) whose warnings colour it, so a tile and the warning line can never disagree."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QWidget

from studio.core import metrics as M
from studio.core.series import RunSeries, Series
from studio.ui.runs import charts as C


def _last(rd: RunSeries, name: str) -> float | None:
    s = rd.series.get(name)
    if s is None or not len(s):
        return None
    y = s.y[np.isfinite(s.y)]
    return float(y[-1]) if y.size else None


def _margin_detail(rd: RunSeries, shown: str) -> str:
    other = M.eval_name(M.REWARDS_MARGINS) if shown == M.REWARDS_MARGINS else None
    value = _last(rd, other) if other else None
    return f"eval {value:+.3f}" if value is not None else ""


def _accuracy_detail(rd: RunSeries, shown: str) -> str:
    pairs = _last(rd, M.EVAL_PAIRS) if shown.startswith(M.EVAL_PREFIX) else None
    _x, y = tile_points(rd, shown)
    best = f" · best {y.max():.0%}" if y.size > 1 else ""
    return (f"of {pairs:.0f} pairs" if pairs is not None else "train (no eval split)" if not
            shown.startswith(M.EVAL_PREFIX) else "") + best


def _kl_detail(rd: RunSeries, shown: str) -> str:
    k1 = _last(rd, M.EVAL_KL_K1) if shown == M.EVAL_KL else None
    return f"k1 {k1:.3f}" if k1 is not None else ""


def _length_detail(rd: RunSeries, shown: str) -> str:
    length, capped, cap = _last(rd, shown), _last(rd, M.EVAL_SAMPLE_HIT_CAP), _last(rd, M.EVAL_SAMPLE_CAP)
    parts = [f"{length:.0f} tokens" if length is not None else ""]
    if capped is not None:
        parts.append(f"{capped:.0%} at the {cap:.0f} cap" if cap is not None else f"{capped:.0%} at the cap")
    return " · ".join(p for p in parts if p)


def _diversity_detail(rd: RunSeries, shown: str) -> str:
    similar, repeated = _last(rd, M.EVAL_SELF_SIMILARITY), _last(rd, M.EVAL_REPETITION)
    parts = [f"self-sim. {similar:.2f}" if similar is not None else "",
             f"repeats {repeated:.2f}" if repeated is not None else ""]
    return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Tile:
    title: str
    metrics: tuple[str, ...]
    """The metrics it can show, in order of preference: the first one the run logs is shown."""
    chart: str
    """The title of the chart a click opens large."""
    rules: tuple[str, ...] = ()
    """Names of the health rules (studio.core.health.RULES) whose warnings colour it."""
    fmt: Callable[[float], str] = "{:.3g}".format
    relative: bool = False
    """Shown as a multiple of its first value (the reference at step 0)."""
    detail: Callable[[RunSeries, str], str] | None = None
    """A second line from the run's other metrics (the shown metric's name is passed)."""


TILES: tuple[Tile, ...] = (
    Tile("Reward margin", (M.REWARDS_MARGINS, M.eval_name(M.REWARDS_MARGINS)), "Reward margin",
         ("likelihood_displacement", "divergence"), "{:+.3f} nats".format, detail=_margin_detail),
    # DPO's implicit-reward accuracy, else a reward model's
    Tile("Eval accuracy", (M.eval_name(M.REWARDS_ACCURACIES), M.REWARDS_ACCURACIES, M.eval_name(M.ACCURACY),
                           M.ACCURACY), "Accuracy", ("overfitting",),
         "{:.0%}".format, detail=_accuracy_detail),
    Tile("Sampled KL", (M.EVAL_KL, M.OBJECTIVE_KL), "Sampled KL", (), "{:.3f} nats/token".format, detail=_kl_detail),
    Tile("Length vs step 0", (M.EVAL_SAMPLE_LENGTH,), "Sample length", ("length_drift", "samples_at_cap"),
         "{:.2f}x".format, relative=True, detail=_length_detail),
    Tile("Diversity", (M.EVAL_DISTINCT_2,), "Diversity", ("diversity_collapse",), "distinct-2 {:.2f}".format,
         detail=_diversity_detail),
)


def tile_points(rd: RunSeries, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The (step, value) points a tile draws of a metric: finite values, accuracy where it is defined."""
    s: Series | None = rd.series.get(name)
    if s is None or not len(s):
        return np.empty(0), np.empty(0)
    keep = np.isfinite(s.y)
    defined = rd.defined(name)
    if defined is not None:
        keep &= defined
    return s.step[: s.n][keep], s.y[keep]


@dataclass
class TileState:
    """What a tile shows now."""

    metric: str | None
    value: str = "–"
    detail: str = ""
    status: str = "none"
    """'ok' (no rule warns), 'warn' (one does) or 'none' (no data yet)."""
    tooltip: str = ""
    x: np.ndarray | None = None
    y: np.ndarray | None = None


def tile_state(tile: Tile, rd: RunSeries | None, findings: dict[str, str]) -> TileState:
    """The tile's value, detail, sparkline points and status from a run's series and its health findings
    (`studio.core.health.run_findings`: the same rule functions as the warning line)."""
    metric = next((m for m in tile.metrics if rd is not None and m in rd.series and len(rd.series[m])), None)
    if rd is None or metric is None:
        return TileState(None, tooltip=f"{tile.title}: no data yet")
    x, y = tile_points(rd, metric)
    if not y.size:
        return TileState(metric, tooltip=f"{tile.title}: no data yet")
    shown = y / y[0] if tile.relative and y[0] not in (0,) and math.isfinite(y[0]) else y
    warnings = [findings[r] for r in tile.rules if r in findings]
    status = "warn" if warnings else "ok"
    info = C.metric_info(metric).title
    tooltip = "\n\n".join(warnings) if warnings else f"{info}: no warning. Click to open its chart."
    detail = tile.detail(rd, metric) if tile.detail else ""
    return TileState(metric, tile.fmt(float(shown[-1])), detail, status, tooltip, x, shown)


STATUS_COLORS = {"ok": C.STATUS_OK, "warn": C.STATUS_WARN, "none": C.STATUS_NONE}


class Sparkline(QWidget):
    """The tile's curve: the whole run in a strip a few dozen pixels high, the last point marked."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: tuple[np.ndarray, np.ndarray] | None = None
        self.color = C.GREY
        self.setMinimumHeight(18)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_points(self, x: np.ndarray | None, y: np.ndarray | None, color: str) -> None:
        self.points = (x, y) if x is not None and y is not None and y.size else None
        self.color = color
        self.update()

    def paintEvent(self, _event) -> None:
        if self.points is None:
            return
        x, y = self.points
        w, h = self.width() - 4, self.height() - 4
        if x.size > 2 * w:  # one point per pixel column is all a strip this size can show
            idx = np.linspace(0, x.size - 1, 2 * w).astype(int)
            x, y = x[idx], y[idx]
        x0, x1 = float(x.min()), float(x.max())
        y0, y1 = float(y.min()), float(y.max())
        span = max(y1 - y0, 1e-3 * max(abs(y0), abs(y1), 1e-9))
        y0, y1 = (y0 + y1 - span) / 2, (y0 + y1 + span) / 2

        def to_px(xi: float, yi: float) -> QPointF:
            px = 2 + (w * (xi - x0) / (x1 - x0) if x1 > x0 else w)
            return QPointF(px, 2 + h - h * (yi - y0) / (y1 - y0))

        pts = [to_px(float(a), float(b)) for a, b in zip(x, y, strict=True)]
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(self.color), 1.5))
        if len(pts) > 1:
            painter.drawPolyline(QPolygonF(pts))
        painter.setBrush(QColor(self.color))
        painter.drawEllipse(pts[-1], 2.5, 2.5)
        painter.end()


class TileWidget(QFrame):
    """One tile: title, value, detail, sparkline; its left edge in the status colour; a click opens its chart."""

    clicked = Signal(str)
    """The chart title to open."""

    def __init__(self, tile: Tile, parent: QWidget | None = None):
        super().__init__(parent)
        self.tile = tile
        self.state = TileState(None)
        self.warned: tuple = ()
        """The findings of its rules when last refreshed."""
        self.setObjectName("healthTile")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setAccessibleName(tile.title)
        self.title = QLabel(tile.title)
        self.value = QLabel("–")
        self.detail = QLabel()
        self.spark = Sparkline()
        small = self.detail.font()
        small.setPointSizeF(max(7.0, small.pointSizeF() - 1))
        self.title.setFont(small)
        self.detail.setFont(small)
        big = self.value.font()
        big.setPointSizeF(big.pointSizeF() + 2)
        big.setBold(True)
        self.value.setFont(big)
        layout = QGridLayout(self)
        layout.setContentsMargins(8, 2, 6, 2)
        layout.setHorizontalSpacing(6)
        layout.setVerticalSpacing(0)
        layout.addWidget(self.title, 0, 0, 1, 2)
        layout.addWidget(self.value, 1, 0)
        layout.addWidget(self.spark, 1, 1)
        layout.addWidget(self.detail, 2, 0, 1, 2)
        layout.setColumnStretch(1, 1)
        self.setMinimumWidth(140)
        self.set_state(self.state)

    def set_state(self, state: TileState) -> None:
        restyle = state.status != self.state.status or not self.styleSheet()
        self.state = state
        color = STATUS_COLORS[state.status]
        self.value.setText(state.value)
        self.detail.setText(html.escape(state.detail) or " ")
        self.detail.setToolTip(state.detail)
        self.setToolTip(state.tooltip)
        self.spark.set_points(state.x, state.y, color if state.status == "warn" else C.GREY)
        if restyle:  # a style sheet re-polishes the tile: only when its status changes
            self.setStyleSheet(f"QFrame#healthTile {{ border: 1px solid {C.BADGE}; border-left: 5px solid "
                               f"{color}; border-radius: 3px; }}")

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.tile.chart)
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.clicked.emit(self.tile.chart)
            return
        super().keyPressEvent(event)


class HealthStrip(QWidget):
    """The row of tiles; `refresh(run series, findings)` after each redraw."""

    open_chart = Signal(str)
    """A tile was clicked: the title of its chart."""

    def __init__(self, tiles: tuple[Tile, ...] = TILES, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.tiles: dict[str, TileWidget] = {}
        for tile in tiles:
            w = TileWidget(tile)
            w.clicked.connect(self.open_chart)
            layout.addWidget(w, 1)
            self.tiles[tile.title] = w

    def refresh(self, rd: RunSeries | None, findings: dict[str, str], changed: set[str] | None = None) -> None:
        """The tiles from the run's data: those whose metrics are in `changed` (all when None), and any whose
        rules' findings changed. Once the run has been evaluated, a tile it logs none of the metrics of is
        hidden (another method's names, or a run that does not sample)."""
        evaluated = rd is not None and any(name.startswith(M.EVAL_PREFIX) for name in rd.series)
        for w in self.tiles.values():
            warned = tuple(findings.get(r) for r in w.tile.rules)
            if changed is not None and not changed & set(w.tile.metrics) and warned == w.warned:
                continue
            w.warned = warned
            state = tile_state(w.tile, rd, findings)
            w.set_state(state)
            w.setVisible(state.metric is not None or not evaluated)
