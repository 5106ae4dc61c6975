"""The Data section: every pair in a lazily paged table, with filters and each pair's label history."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.informative import describe_parts, model_terms
from studio.core.types import LabelState
from studio.store import PairFilter, Project, informative
from studio.ui import render

STATES = {"any": "Any state", "unlabeled": "Unlabeled", "labeled": "Labeled", "needs_more": "Needs another label"}
AGREEMENTS = {"any": "Any agreement", "single": "One label", "agree": "Annotators agree",
              "disagree": "Annotators disagree"}


# Who and what first: the details panel is narrow, and the state (current, replaced, undone) is what
# tells a relabel from the label it replaced.
HISTORY_COLUMNS = ["Annotator", "Choice", "State", "Strength", "Seconds", "When", "Rationale"]


class PairTableModel(QAbstractTableModel):
    """Pairs in id order, fetched a page at a time as the table scrolls (keyset paging, so the millionth
    row costs what the first does)."""

    PAGE = 200
    COLUMNS = ("Pair", "Split", "Source", "Prompt", "A chars", "B chars", "Labels", "Votes", "Agreement",
               "Informative")
    INFORMATIVE = COLUMNS.index("Informative")

    def __init__(self, project: Project, parent=None):
        super().__init__(parent)
        self.project = project
        self.rows: list[tuple] = []
        self._filter = PairFilter()
        self._more = True
        self._last_id = 0
        self.informative_first = False
        """Sorted by the informative score (the queue's order) instead of by id."""
        self._order: list[int] = []
        self._scores = InformativeScores(project)

    def set_filters(self, state: str = "any", annotator: str | None = None, agreement: str = "any",
                    search: str | None = None) -> None:
        self.beginResetModel()
        self._filter = PairFilter(state=state, labeled_by=annotator, agreement=agreement, search=search)
        self.rows = []
        self._more = True
        self._last_id = 0
        self._scores.reset()
        # sorting reads every matching pair's place once; the pages then come from that list
        self._order = informative.informative_order(self.project, self._filter) if self.informative_first else []
        self.endResetModel()
        self.fetchMore(QModelIndex())

    def total(self) -> int:
        return self.project.count_pairs(self._filter)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        return not parent.isValid() and self._more

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        if parent.isValid() or not self._more:
            return
        if self.informative_first:
            page = self.project.pair_rows(self._order[len(self.rows):len(self.rows) + self.PAGE])
        else:
            page = self.project.pair_page(self._filter, self._last_id, self.PAGE)
        if len(page) < self.PAGE:
            self._more = False
        if not page:
            return
        self._last_id = page[-1].id
        rows = []
        for r in page:
            decided = {k: n for k, n in r.votes.items() if k != "skip"}
            if not decided:
                agreement = ""
            elif sum(decided.values()) == 1:
                agreement = "one label"
            else:
                agreement = "agree" if len(decided) == 1 else "disagree"
            vote_text = " · ".join(f"{k.replace('_', ' ')} {n}" for k, n in sorted(r.votes.items()))
            rows.append((r.id, r.split, r.source, " ".join(r.prompt.split()), r.a_chars, r.b_chars,
                         sum(r.votes.values()), vote_text, agreement, None))
        self._scores.fetch([r[0] for r in rows])
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        col = index.column()
        if col == self.INFORMATIVE and role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self._scores.text(row[0]) if role == Qt.ItemDataRole.DisplayRole else self._scores.tooltip(row[0])
        if role == Qt.ItemDataRole.DisplayRole:
            value = row[col]
            return f"{value:,}" if isinstance(value, int) and col in (4, 5) else value
        if role == Qt.ItemDataRole.ToolTipRole and col == 3:
            return row[3]
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 4, 5, 6, self.INFORMATIVE):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return row[0]
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole and \
                section == self.INFORMATIVE:
            return ("How much labeling this pair would teach the models (see the labeling guide). Click to sort: "
                    "most informative first, the order of the 'Informative first' queue")
        return None

    def pair_id(self, row: int) -> int:
        return int(self.rows[row][0])

    def score_text(self, pair_id: int) -> str:
        """The pair's informative score as the column shows it, with its rank ('' before any ranking)."""
        return self._scores.detail(pair_id)


class InformativeScores:
    """The Informative column's values: the current ranking's score and parts of the pairs on the loaded pages
    (one query per page), read again after each reset (a new ranking may have come)."""

    def __init__(self, project: Project):
        self.project = project
        self.reset()

    def reset(self) -> None:
        self.ranking = informative.current_ranking(self.project)
        self.terms = model_terms(self.ranking["scorers"]) if self.ranking else set()
        self.parts: dict[int, dict] = {}

    def fetch(self, pair_ids: list[int]) -> None:
        if self.ranking is not None:
            self.parts.update(informative.informative_parts(self.project, pair_ids))

    def text(self, pair_id: int) -> str:
        parts = self.parts.get(pair_id)
        return "–" if parts is None else f"{parts['score']:.2f}"

    def detail(self, pair_id: int) -> str:
        parts = self.parts.get(pair_id)
        return "" if parts is None else f"informative {parts['score']:.2f} (rank {parts['rank']:,})"

    def tooltip(self, pair_id: int) -> str:
        parts = self.parts.get(pair_id)
        if parts is None:
            return ("Not ranked yet: added after the ranking, which the 'Informative first' queue follows (" +
                    informative.describe_ranking(self.ranking) + ")" if self.ranking else
                    "No ranking yet: rank the pairs with `studio rank PROJECT`, or train a reward model")
        return "\n".join([*describe_parts(parts, self.terms), "", f"Rank {parts['rank']:,}: " +
                          informative.describe_ranking(self.ranking)])


class DataView(QWidget):
    """The pairs table with filters; the selected pair's texts and label history beside it."""

    open_pair = Signal(int)
    """The user asked to label this pair (double-click, Enter or the button)."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.model = PairTableModel(project, self)

        self.state_box = QComboBox()
        for k, t in STATES.items():
            self.state_box.addItem(t, k)
        self.annotator_box = QComboBox()
        self.agreement_box = QComboBox()
        for k, t in AGREEMENTS.items():
            self.agreement_box.addItem(t, k)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search prompt and responses…  (Enter)")
        self.search_edit.setClearButtonEnabled(True)
        self.total_label = QLabel()
        self.total_label.setObjectName("totalLabel")
        for box in (self.state_box, self.annotator_box, self.agreement_box):
            box.currentIndexChanged.connect(self.apply_filters)
        self.search_edit.returnPressed.connect(self.apply_filters)
        filters = QHBoxLayout()
        filters.addWidget(self.state_box)
        filters.addWidget(self.annotator_box)
        filters.addWidget(self.agreement_box)
        filters.addWidget(self.search_edit, 1)
        filters.addWidget(self.total_label)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        head = self.table.horizontalHeader()
        informative_width = head.fontMetrics().horizontalAdvance("Informative ▼") + 16  # its header, sort mark
        widths = {0: 60, 1: 50, 2: 80, 4: 64, 5: 64, 6: 56, 7: 96, 8: 92, PairTableModel.INFORMATIVE: informative_width}
        for col, w in widths.items():
            head.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            head.resizeSection(col, w)
        head.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        head.sectionClicked.connect(self._on_header_clicked)
        self.table.doubleClicked.connect(lambda idx: self.open_pair.emit(self.model.pair_id(idx.row())))
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._show_details(cur))
        self.table.installEventFilter(self)

        # details of the selected pair
        self.detail_title = QLabel("Select a pair")
        self.detail_title.setObjectName("paneTitle")
        self.open_button = QPushButton("Label this pair  ⏎")
        self.open_button.setToolTip("Open the pair in the labeling view — Enter or double-click")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self._open_current)
        self.detail_text = render.SafeBrowser()
        self.history = QTableWidget(0, len(HISTORY_COLUMNS))
        self.history.setHorizontalHeaderLabels(HISTORY_COLUMNS)
        self.history.verticalHeader().hide()
        self.history.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history.horizontalHeader().setStretchLastSection(True)
        self.history.setWordWrap(False)
        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.detail_title, 1)
        top.addWidget(self.open_button)
        dl.addLayout(top)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.detail_text)
        hist_box = QWidget()
        hl = QVBoxLayout(hist_box)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(QLabel("<b>Label history</b> (every label ever made, including replaced and undone)"))
        hl.addWidget(self.history)
        split.addWidget(hist_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        dl.addWidget(split, 1)

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(self.table)
        body.addWidget(details)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 1)
        body.setChildrenCollapsible(False)
        body.setSizes([900, 380])  # the table's prompt column needs the room; details wrap

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(filters)
        layout.addWidget(body, 1)
        self._stale = True
        self._reload_timer = QTimer(self, singleShot=True, interval=0, timeout=self._reload_if_shown)

    def _on_header_clicked(self, section: int) -> None:
        """The Informative column sorts the table by the score, most informative first; clicked again, back to
        id order."""
        if section != PairTableModel.INFORMATIVE:
            return
        self.model.informative_first = not self.model.informative_first
        head = self.table.horizontalHeader()
        head.setSortIndicatorShown(self.model.informative_first)
        head.setSortIndicator(section, Qt.SortOrder.DescendingOrder)
        self.table.setCurrentIndex(QModelIndex())  # a new order starts at its top, not at the pair selected
        self.apply_filters()
        self.table.scrollToTop()

    def eventFilter(self, obj, event) -> bool:
        from PySide6.QtCore import QEvent

        if obj is self.table and event.type() == QEvent.Type.KeyPress and \
                event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._open_current()
            return True
        return super().eventFilter(obj, event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._reload_timer.start()

    def _reload_if_shown(self) -> None:
        # the view may have been hidden (or its project closed) between scheduling and now
        if self.isVisible() and self._stale:
            self.refresh()

    def mark_stale(self) -> None:
        """Labels or pairs changed elsewhere; reload when next shown (not on every label)."""
        self._stale = True
        if self.isVisible():
            self._reload_timer.start()

    def refresh(self) -> None:
        self._stale = False
        current = self.annotator_box.currentData()
        self.annotator_box.blockSignals(True)
        self.annotator_box.clear()
        self.annotator_box.addItem("Any annotator", None)
        for name in self.project.annotators():
            self.annotator_box.addItem(f"Labeled by {name}", name)
        self.annotator_box.setCurrentIndex(max(self.annotator_box.findData(current), 0))
        self.annotator_box.blockSignals(False)
        self.apply_filters()

    def filters(self) -> dict[str, Any]:
        return {"state": self.state_box.currentData(), "annotator": self.annotator_box.currentData(),
                "agreement": self.agreement_box.currentData(), "search": self.search_edit.text().strip() or None}

    def apply_filters(self, *_args) -> None:
        selected = self.current_pair_id()
        self.model.set_filters(**self.filters())
        total = self.model.total()
        self.total_label.setText(f"{total:,} pairs")
        row = next((i for i, r in enumerate(self.model.rows) if r[0] == selected), 0 if self.model.rows else None)
        if row is not None:
            self.table.selectRow(row)
        else:
            self._show_details(QModelIndex())

    def current_pair_id(self) -> int | None:
        idx = self.table.currentIndex()
        return self.model.pair_id(idx.row()) if idx.isValid() else None

    def _open_current(self) -> None:
        pid = self.current_pair_id()
        if pid is not None:
            self.open_pair.emit(pid)

    def _show_details(self, index: QModelIndex) -> None:
        if not index.isValid():
            self.detail_title.setText("No pair selected")
            self.detail_text.clear()
            self.history.setRowCount(0)
            self.open_button.setEnabled(False)
            return
        pair = self.project.pair(self.model.pair_id(index.row()))
        self.open_button.setEnabled(True)
        score = self.model.score_text(pair.id)
        self.detail_title.setText(f"<b>Pair #{pair.id}</b> · {pair.prompt.split}"
                                  + (f" · {pair.source}" if pair.source else "") + (f" · {score}" if score else ""))
        # plain text: this panel is for finding and auditing, the labeling view renders markdown
        cut = 4_000
        parts = [("PROMPT", pair.prompt.text), ("A", pair.a.text), ("B", pair.b.text)]
        self.detail_text.setPlainText("\n\n".join(
            f"── {name} ──\n{text[:cut]}{'…' if len(text) > cut else ''}" for name, text in parts))
        history = self.project.label_history(pair.id)
        self.history.setRowCount(len(history))
        for i, lab in enumerate(history):
            choice = lab.choice.value.replace("_", " ")
            if lab.choice.decided:
                choice += f" (shown {'left' if lab.choice.value == lab.shown_left else 'right'})"
            cells = [lab.annotator, choice, lab.state.value, lab.strength.value if lab.strength else "",
                     f"{lab.seconds:.1f}" if lab.seconds else "", lab.created_at[:16].replace("T", " "),
                     lab.rationale or ""]
            for j, c in enumerate(cells):
                item = QTableWidgetItem(c)
                if lab.state is not LabelState.CURRENT:
                    item.setForeground(QColor("#8a8d93"))  # replaced and undone labels read as past
                if j == HISTORY_COLUMNS.index("When"):
                    item.setToolTip(lab.created_at.replace("T", " "))
                elif j == HISTORY_COLUMNS.index("Rationale"):
                    item.setToolTip(lab.rationale or "")
                self.history.setItem(i, j, item)
        self.history.resizeColumnsToContents()
