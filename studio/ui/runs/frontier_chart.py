"""Compare's reward/KL frontier: the stored points of the compared runs (studio frontier), reward (y) against
KL(policy || reference) (x), a marker per point, a colour per run (Compare's legend), a line per run through its
steps (each marked with its step), the base model a grey square at KL 0, and the frontier itself dashed. A
point's numbers show when the pointer rests on it."""

from __future__ import annotations

import html

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from studio.store import frontier as store
from studio.ui.runs import charts as C


class FrontierChart(QWidget):
    """The newest frontier measured for any of the compared runs (one reward model, one set of samples)."""

    def __init__(self, project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.points: list[dict] = []
        self.measure: dict | None = None
        self._drawn: tuple | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.title = QLabel("<b>Reward vs KL</b>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.12)
        self.plot.hideButtons()
        for axis, label in (("left", "reward"), ("bottom", "KL(policy ‖ reference), nats per sample")):
            C.style_axis(self.plot.getAxis(axis))
            self.plot.setLabel(axis, label, **{"font-size": "8pt"})
        self.plot.getAxis("left").setWidth(44)
        self.plot.getViewBox().setDefaultPadding(0.08)  # no marker on the frame
        layout.addWidget(self.plot_widget, 1)
        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.empty, 1)

    def set_runs(self, run_ids: list[int], colors: dict[int, str]) -> None:
        """Draw the points of these runs (and the base model's) from the newest measure that has any of them;
        nothing is redrawn when they are what is drawn already (Compare calls this as the runs change)."""
        measure = store.latest_measure(self.project, run_ids)
        points = store.points(self.project, measure["measure"], run_ids) if measure else []
        drawn = (tuple(run_ids), tuple(sorted(colors.items())), tuple((p["id"], p["created_at"]) for p in points))
        if drawn == self._drawn:
            return
        self._drawn, self.measure, self.points = drawn, measure, points
        self.plot.clear()
        self.plot_widget.setVisible(bool(self.points))
        self.empty.setVisible(not self.points)
        if not self.points:
            runs = " ".join(str(r) for r in run_ids) or "RUN ..."
            self.title.setText("<b>Reward vs KL</b>")
            self.empty.setText(f"No frontier measured for these runs yet. Measure one with<br><tt>studio frontier "
                               f"PROJECT --reward REWARD_RUN --runs {html.escape(runs)}</tt>")
            return
        self.title.setText(f"<b>Reward vs KL</b> · {html.escape(self.measure['reward_model'])}, "
                           f"{self.points[0]['samples']} samples per policy")
        best = sorted((p for p in self.points if p["on_frontier"]), key=lambda p: p["kl"])
        if len(best) > 1:
            self.plot.addItem(pg.PlotDataItem([p["kl"] for p in best], [p["reward"] for p in best],
                                              pen=pg.mkPen(C.GREY, width=1, style=Qt.PenStyle.DashLine)))
        for rid in run_ids:
            mine = sorted((p for p in self.points if p["run_id"] == rid), key=lambda p: p["step"])
            if mine:
                self._add(mine, colors.get(rid, C.GREY), "o", steps=len(mine) > 1)
        base = [p for p in self.points if p["run_id"] is None]
        if base:
            self._add(base, C.GREY, "s", label="base")
        self.plot.enableAutoRange()

    def _add(self, points: list[dict], color: str, symbol: str, steps: bool = False, label: str = "") -> None:
        """One policy's points: the line through its steps, the markers (their numbers on hover), and the step
        beside each marker when there are several (or `label` beside the one)."""
        x, y = [p["kl"] for p in points], [p["reward"] for p in points]
        if len(points) > 1:
            self.plot.addItem(pg.PlotDataItem(x, y, pen=pg.mkPen(color, width=2)))
        self.plot.addItem(pg.ScatterPlotItem(x, y, data=points, symbol=symbol, size=9, brush=color, pen=None,
                                             hoverable=True, tip=_tip))
        for p in points:
            text = label or (f"{p['step']}" if steps else "")
            if text:
                item = pg.TextItem(text, color=color, anchor=(-0.15, 1))
                item.setPos(p["kl"], p["reward"])
                self.plot.addItem(item)

    def tip(self, point: dict) -> str:
        return _tip(point["kl"], point["reward"], point)

    def point_data(self, run_id: int | None) -> list[tuple[float, float]]:
        """(KL, reward) of a run's points as drawn, by step (run_id None: the base model)."""
        return [(p["kl"], p["reward"]) for p in sorted(self.points, key=lambda p: p["step"]) if p["run_id"] == run_id]


def _tip(x: float, y: float, data: dict) -> str:
    """What the pointer shows over a point."""
    p = data
    return (f"{p['name']}, step {p['step']}\nreward {p['reward']:+.4f} ± {p['reward_stderr']:.4f}\n"
            f"KL {p['kl']:.4f} ± {p['kl_stderr']:.4f} nats (k1 {p['kl_k1']:.4f})\n"
            f"{p['response_tokens']:.1f} tokens, {100 * p['finished']:.0f}% ended, {p['samples']} samples")
