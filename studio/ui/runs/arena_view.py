"""The Arena tab: an arena's results as `studio arena --results` reports them: matchups with 95% intervals and a
length-controlled win rate, Bradley-Terry scores with bootstrap intervals, and the matchups per annotator."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.arena import MATCHUP_COLUMNS, matchup_cells, score_cells
from studio.store import ProjectError
from studio.store import arena as arena_store

SCORE_COLUMNS = ("Source", "Bradley-Terry score", "95% interval", "Judgements")
ANNOTATOR_COLUMNS = ("Annotator", "Matchup", "Wins", "Ties", "Losses", "Win rate", "95% interval")


def _table(columns: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 8)
    header = t.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    return t


def _fill(table: QTableWidget, rows: list[list[str]], names: int = 1) -> None:
    """Rows of cells; the first `names` columns are names (left), the others numbers (right-aligned)."""
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c >= names:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class ArenaView(QWidget):
    """Pick an arena; its results are computed when it is shown, picked or refreshed (labels change elsewhere)."""

    def __init__(self, project, parent: QWidget | None = None, rounds: int = 1000):
        super().__init__(parent)
        self.project = project
        self.rounds = rounds
        self.results: dict | None = None
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Arena"))
        self.arena_combo = QComboBox()
        self.arena_combo.setMinimumWidth(420)
        self.arena_combo.currentIndexChanged.connect(lambda _i: self.refresh_results())
        bar.addWidget(self.arena_combo)
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Recompute with the labels made since")
        refresh.clicked.connect(self.refresh)
        bar.addWidget(refresh)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.summary)

        self.matchups = _table(MATCHUP_COLUMNS)
        self.matchups.setToolTip("Each later source against each earlier one. Ties and 'both bad' count half. "
                                 "Length-controlled: the win rate at equal length (a logistic regression of the "
                                 "outcome on the length difference). Identical: prompts where both wrote the same "
                                 "text (no pair to label).")
        self.scores = _table(SCORE_COLUMNS)
        self.scores.setToolTip("Bradley-Terry scores on the Elo scale (400 points = 10:1 odds, mean 1000), with "
                               "95% intervals from resampling prompts")
        self.annotators = _table(ANNOTATOR_COLUMNS)
        split = QSplitter(Qt.Orientation.Vertical)
        for title, table in (("Matchups", self.matchups), ("Bradley-Terry scores", self.scores),
                             ("Per annotator", self.annotators)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(table)
            split.addWidget(box)
            if table is self.scores:
                self.scores_box = box
        layout.addWidget(split, 1)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the list of arenas (keeping the one picked) and recompute its results."""
        current = self.arena_combo.currentData()
        arenas = arena_store.arenas(self.project)
        self.arena_combo.blockSignals(True)
        self.arena_combo.clear()
        for a in arenas:
            self.arena_combo.addItem(f"arena {a['id']}: {', '.join(a['sources'])}  ·  {a['labeled_pairs']}/"
                                     f"{a['pairs']} pairs labeled", a["id"])
        idx = self.arena_combo.findData(current)
        self.arena_combo.setCurrentIndex(idx if idx >= 0 else (0 if arenas else -1))
        self.arena_combo.blockSignals(False)
        self.refresh_results()

    def set_arena(self, arena_id: int) -> None:
        self.refresh()
        self.arena_combo.setCurrentIndex(self.arena_combo.findData(arena_id))

    def refresh_results(self) -> None:
        arena_id = self.arena_combo.currentData()
        if arena_id is None:
            self.results = None
            self.summary.setText("No arena yet. Start one with <b>Generate… ▸ Arena</b> (or <code>studio arena "
                                 "PROJECT --sources base RUN</code>), label its pairs, and the results show here.")
            for t in (self.matchups, self.scores, self.annotators):
                t.setRowCount(0)
            return
        try:
            r = self.results = arena_store.arena_results(self.project, arena_id, rounds=self.rounds)
        except ProjectError as e:
            self.summary.setText(html.escape(str(e)))
            return
        a = r["arena"]
        job = (f"{a['prompts_done']}/{a['prompts']} prompts generated ({a['job_status']})" if a["job_status"]
               else "its job was deleted")
        hint = (f" Label them in the Label section, source <b>arena {a['id']}</b>; which source wrote which "
                f"response is not shown there.") if r["labeled_pairs"] < r["pairs"] else ""
        self.summary.setText(f"<b>{html.escape(', '.join(a['sources']))}</b> · {job} · {r['pairs']} blind pairs, "
                             f"{r['labeled_pairs']} labeled, {r['judgements']} judgements.{hint}")
        _fill(self.matchups, [matchup_cells(m) for m in r["matchups"]])
        scores = r["bradley_terry"] or []
        self.scores_box.setVisible(bool(scores))
        _fill(self.scores, [score_cells(b) for b in scores])
        _fill(self.annotators, [[ann["name"], *matchup_cells(m)] for ann in r["annotators"] for m in ann["matchups"]],
              names=2)

    def cell(self, table: QTableWidget, row: int, col: int) -> str:
        item = table.item(row, col)
        return item.text() if item else ""
