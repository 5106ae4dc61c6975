"""The review dashboard of the Data section: how far the labels can be trusted before a run learns from them.

The project's agreement (Cohen's kappa, Krippendorff's alpha), position and length bias, ties and both-bad,
then the per-annotator audit (left side, longer response, a length coefficient, time per pair, agreement with
the others' majority) with the cells that warn marked, imported labels apart, and every warning in words:
the same figures and sentences as `studio stats`."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.stats import annotator_findings
from studio.store import Project

WARN_BACKGROUND = "#ffe3c7"
"""A cell of the audit whose figure a warning is about."""


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def share_text(entry: dict | None) -> str:
    """'62% (39–82%, n=16)': a share with its 95% interval and what it is over."""
    if not entry or entry.get("share") is None:
        return "–"
    lo, hi = entry["ci95"]
    return f"{pct(entry['share'])} ({pct(lo)}–{pct(hi)}, n={entry['n']})"


def number(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


# (header, audit field, cell text, tooltip): the people's table
PEOPLE_COLUMNS: tuple[tuple[str, str, Callable[[dict], str], str], ...] = (
    ("Labels", "labels", lambda a: str(a["labels"]), "current labels (decided: a or b)"),
    ("Chose left", "left", lambda a: share_text(a["left"]),
     "decided labels for the response shown on the left; sides are randomised, so about 50% is unbiased"),
    ("Chose longer", "longer", lambda a: share_text(a["longer"]),
     "decided labels, on pairs of unequal length, for the longer response"),
    ("Length coef.", "length_coefficient", lambda a: number(a["length_coefficient"]),
     "logistic slope of choosing A on log2(length A / length B): the log-odds gained per doubling of a "
     "response's relative length (0: length plays no part)"),
    ("Median s", "median_seconds", lambda a: number(a["median_seconds"], "{:.1f}"), "median seconds on a pair"),
    ("Fast labels", "fast_labels", lambda a: share_text(a["fast_labels"]),
     "timed labels given faster than the time floor"),
    ("Agrees with majority", "majority_agreement", lambda a: share_text(a["majority_agreement"]),
     "on pairs where the other people's verdicts have a majority, the share of this annotator's that match it"),
)
IMPORTED_COLUMNS = tuple(c for c in PEOPLE_COLUMNS if c[1] in ("labels", "longer", "length_coefficient",
                                                               "majority_agreement"))


def _card(title: str, value: str, detail: str, tooltip: str) -> QFrame:
    card = QFrame()
    card.setObjectName("reviewCard")
    card.setFrameShape(QFrame.Shape.StyledPanel)
    card.setToolTip(tooltip)
    layout = QVBoxLayout(card)
    layout.setContentsMargins(8, 4, 8, 4)
    layout.setSpacing(0)
    head = QLabel(title)
    big = QLabel(f"<b>{html.escape(value)}</b>")
    font = big.font()
    font.setPointSizeF(font.pointSizeF() + 2)
    big.setFont(font)
    small = QLabel(html.escape(detail))
    small.setWordWrap(True)
    for w in (head, big, small):
        layout.addWidget(w)
    return card


def _table(columns) -> QTableWidget:
    t = QTableWidget(0, len(columns) + 1)
    t.setHorizontalHeaderLabels(["Annotator", *(c[0] for c in columns)])
    for i, c in enumerate(columns, start=1):
        t.horizontalHeaderItem(i).setToolTip(c[3])
    t.verticalHeader().hide()
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    t.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return t


class ReviewDashboard(QWidget):
    """Agreement, bias and the per-annotator audit of a project's labels, recomputed when shown after labels
    changed (`mark_stale`) or on Refresh."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.stats: dict[str, Any] | None = None
        self._stale = True
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Recompute from the labels as they are now")
        self.refresh_button.clicked.connect(self.refresh)
        self.cards = QHBoxLayout()
        self.people = _table(PEOPLE_COLUMNS)
        self.imported = _table(IMPORTED_COLUMNS)
        self.imported.horizontalHeaderItem(0).setText("Source")
        self.imported.horizontalHeaderItem(len(IMPORTED_COLUMNS)).setText("Agrees with people's majority")
        self.imported_title = QLabel("<b>Imported labels</b> — the dataset's verdicts, reported apart: they had no "
                                     "screen sides and no clock, and count in no majority")
        self.imported_title.setWordWrap(True)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.floor_note = QLabel()
        self.floor_note.setWordWrap(True)

        body = QWidget()
        layout = QVBoxLayout(body)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Can these labels be trusted?</b> Agreement and bias of the current labels "
                             "(the same figures as <code>studio stats</code>)"), 1)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)
        layout.addLayout(self.cards)
        layout.addWidget(QLabel("<b>Per annotator</b> — shares with their 95% intervals; marked cells are what "
                                "a warning below is about"))
        layout.addWidget(self.people)
        layout.addWidget(self.floor_note)
        layout.addWidget(self.imported_title)
        layout.addWidget(self.imported)
        layout.addWidget(self.warnings)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._timer = QTimer(self, singleShot=True, interval=0, timeout=self._refresh_if_shown)

    # -- when to compute

    def mark_stale(self) -> None:
        """Labels changed elsewhere: recompute when next shown (not on every label)."""
        self._stale = True
        if self.isVisible():
            self._timer.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._timer.start()

    def _refresh_if_shown(self) -> None:
        if self.isVisible() and self._stale:
            self.refresh()

    def refresh(self) -> None:
        from studio.store.statistics import project_stats

        self._stale = False
        self.stats = project_stats(self.project)
        self._show(self.stats)

    # -- drawing

    def _show(self, s: dict[str, Any]) -> None:
        while self.cards.count():
            item = self.cards.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        ag, pos, length, res = s["agreement"], s["position_bias"], s["length_bias"], s["resolved"]
        dist = s["label_distribution"]
        kappa = ag["cohens_kappa"]
        alpha = ag["krippendorff_alpha"]
        self._add_card(_card(
            "Agreement", f"α {number(alpha)}" + (f" · κ {number(kappa)}" if kappa is not None else ""),
            f"{ag['pairs']} pairs shared by {ag['annotators']} annotators · all agree on {pct(ag['percent'])}",
            "Krippendorff's alpha (nominal; any number of annotators) and Cohen's kappa (exactly two) on pairs "
            "labeled by two or more people; 1 = perfect, 0 = chance, below 0.4 = noisy preferences"))
        ci = pos["ci95"]
        self._add_card(_card(
            "Position bias", f"left won {pct(pos['share'])}",
            f"95% {pct(ci[0])}–{pct(ci[1])} of {pos['decided']} decisions" if ci else "no decisions yet",
            "share of decided labels by people for the response shown on the left (sides are randomised)"))
        ci = length["ci95"]
        self._add_card(_card(
            "Length bias", f"chosen longer {pct(length['share'])}",
            (f"95% {pct(ci[0])}–{pct(ci[1])} of {length['decided_pairs']} preferences · median ratio "
             f"{number(length['median_ratio'])}") if ci else "no preferences yet",
            "share of resolved preferences whose chosen response is the longer one: DPO learns whatever separates "
            "chosen from rejected"))
        self._add_card(_card(
            "Ties and both bad", f"{dist['tie']['count']} ties · {dist['both_bad']['count']} both bad",
            f"{pct(dist['tie']['share'])} and {pct(dist['both_bad']['share'])} of labels · {res['tie']} pairs "
            f"resolve to a tie, {res['both_bad']} to both bad",
            "current labels saying neither response is better, or both are bad; such pairs are left out of training"))
        self._add_card(_card(
            "Preferences", str(res["preferences"]),
            f"{res['no_majority']} split votes · {res['skipped']} only skipped",
            "pairs whose majority verdict is a or b: what a run trains on"))

        audit = s["annotator_audit"]
        flagged = {(name, field): text for name, field, text in annotator_findings(audit)}
        self._fill(self.people, PEOPLE_COLUMNS, audit["people"], flagged)
        self._fill(self.imported, IMPORTED_COLUMNS, audit["imported"], {})
        self.imported.setVisible(bool(audit["imported"]))
        self.imported_title.setVisible(bool(audit["imported"]))
        self.floor_note.setText(f"<small>Fast labels: given in under {audit['time_floor_seconds']:g} seconds, "
                                f"too fast to read two responses. The length coefficient is the slope of a "
                                f"logistic regression (Firth) of choosing A on log2(length A / length B).</small>")
        warnings = s["warnings"]
        self.warnings.setText("<b>Warnings</b><br>" + "<br>".join(f"⚠ {html.escape(w)}" for w in warnings)
                              if warnings else "<b>No warnings</b> about these labels.")

    def _add_card(self, card: QFrame) -> None:
        self.cards.addWidget(card, 1)

    @staticmethod
    def _fill(table: QTableWidget, columns, rows: list[dict], flagged: dict[tuple[str, str], str]) -> None:
        table.setRowCount(len(rows))
        for r, a in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(a["name"]))
            for c, (_head, field, text, tip) in enumerate(columns, start=1):
                item = QTableWidgetItem(text(a))
                item.setToolTip(tip)
                if (a["name"], field) in flagged:
                    item.setBackground(QBrush(QColor(WARN_BACKGROUND)))
                    item.setToolTip(flagged[(a["name"], field)])
                table.setItem(r, c, item)
        table.resizeColumnsToContents()
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(table.rowCount())) + 4
        table.setFixedHeight(height)

    def flagged_cells(self) -> list[tuple[str, str]]:
        """(annotator, column header) of the marked cells (for tests)."""
        out = []
        for r in range(self.people.rowCount()):
            for c in range(1, self.people.columnCount()):
                if self.people.item(r, c).background().color() == QColor(WARN_BACKGROUND):
                    out.append((self.people.item(r, 0).text(), self.people.horizontalHeaderItem(c).text()))
        return out
