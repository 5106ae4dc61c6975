"""The Data section: every pair in a lazily paged, sortable table, with filters; the selected pair rendered as
the labeling view shows it, with its flags and label history."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.informative import describe_parts, model_terms
from studio.core.types import Label, LabelState
from studio.store import PairFilter, PairRow, Project, ProjectError, informative
from studio.store.statistics import IMPORT_PREFIX
from studio.ui import palette
from studio.ui.pair_view import PairPreview
from studio.ui.review import ReviewDashboard
from studio.ui.widgets import EmptyState, FilterCombo, named

STATES = {"any": "Any state", "unlabeled": "Unlabeled", "labeled": "Labeled", "needs_more": "Needs another label"}
AGREEMENTS = {"any": "Any agreement", "single": "One label", "agree": "Annotators agree",
              "disagree": "Annotators disagree"}


# Who and what first: the details panel is narrow, and the state (current, replaced, undone) is what
# tells a relabel from the label it replaced.
HISTORY_COLUMNS = ["Annotator", "Verdict", "Saw on left", "State", "Strength", "Seconds", "When", "Rationale"]


def saw_on_left(label: Label) -> str:
    """Which response the annotator had on the left; an imported label had no screen, so no side."""
    if label.annotator.startswith(IMPORT_PREFIX):
        return "— (imported)"
    return label.shown_left.upper()


def verdict(label: Label) -> str:
    return f"{label.choice.value.upper()} better" if label.choice.decided else label.choice.value.replace("_", " ")


def agreement_text(row: PairRow) -> str:
    d = row.disagreement
    if d is None:
        return ""
    if row.decided_by_people == 1:
        return "one label"
    return "agree" if d == 0 else f"disagree {d:.0%}"


class PairTableModel(QAbstractTableModel):
    """Pairs fetched a page at a time as the table scrolls. In id order the pages are read by key (the
    millionth row costs what the first does); sorted by another column, the order of every matching pair
    is read once (`pair_order`) and its rows a page at a time."""

    PAGE = 200
    # (title, store sort key or None when the column does not sort, tooltip)
    COLUMNS = (("Pair", "id", "The pair's id"), ("Split", "split", None), ("Source", "source", None),
               ("Prompt", None, None), ("A chars", "a_chars", "Length of response A in characters"),
               ("B chars", "b_chars", "Length of response B in characters"),
               ("Labels", "labels", "Current labels, skips included"), ("Votes", None, "Current labels by verdict"),
               ("Agreement", "disagreement", "Sorts by disagreement: the share of verdicts outside the majority"),
               ("Time", "seconds", "Mean seconds the current labels took"),
               ("⚑", "flags", "Open flags for review"),
               ("Informative", "informative", "How much labeling this pair would teach the models (see the labeling "
                "guide); sorts most informative first, the order of the 'Informative first' queue"))
    INFORMATIVE = 11
    NUMERIC = frozenset({0, 4, 5, 6, 9, 10, INFORMATIVE})

    def __init__(self, project: Project, parent=None):
        super().__init__(parent)
        self.project = project
        self.rows: list[tuple] = []
        self._filter = PairFilter()
        self._more = True
        self._last_id = 0
        self.sort_key = "id"
        self.descending = False
        self._order: list[int] | None = None  # every matching id, when sorted by another column than the id
        self._scores = InformativeScores(project)

    def set_filters(self, state: str = "any", annotator: str | None = None, agreement: str = "any",
                    search: str | None = None, flagged: bool = False) -> None:
        self._filter = PairFilter(state=state, labeled_by=annotator, agreement=agreement, search=search,
                                  flagged=flagged)
        self._reload()

    def _reload(self) -> None:
        self.beginResetModel()
        self.rows = []
        self._more = True
        self._last_id = 0
        self._order = None
        self._scores.reset()  # a new ranking may have come
        if (self.sort_key, self.descending) != ("id", False):
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)  # sorting reads every matching pair
            try:
                self._order = (informative.informative_order(self.project, self._filter, self.descending)
                               if self.sort_key == "informative" else
                               self.project.pair_order(self._filter, self.sort_key, self.descending))
            finally:
                QApplication.restoreOverrideCursor()
        self.endResetModel()
        self.fetchMore(QModelIndex())

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        key = self.COLUMNS[column][1]
        if key is None:
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if (key, descending) == (self.sort_key, self.descending):
            return
        self.sort_key, self.descending = key, descending
        self._reload()

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
        if self._order is not None:
            start = len(self.rows)
            page = self.project.pair_rows(self._order[start:start + self.PAGE])
            self._more = start + self.PAGE < len(self._order)
        else:
            page = self.project.pair_page(self._filter, self._last_id, self.PAGE)
            self._more = len(page) == self.PAGE
        if not page:
            return
        self._last_id = page[-1].id
        rows = []
        for r in page:
            vote_text = " · ".join(f"{k.replace('_', ' ')} {n}" for k, n in sorted(r.votes.items()))
            rows.append((r.id, r.split, r.source, " ".join(r.prompt.split()), r.a_chars, r.b_chars,
                         sum(r.votes.values()), vote_text, agreement_text(r),
                         "" if r.seconds is None else f"{r.seconds:.1f} s", r.flags or "", None))
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
        if role == Qt.ItemDataRole.TextAlignmentRole and col in self.NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return row[0]
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        title, key, tip = self.COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.InitialSortOrderRole and key == "informative":
            return Qt.SortOrder.DescendingOrder.value  # a first click sorts the most informative first
        if role == Qt.ItemDataRole.ToolTipRole:
            return (tip or title) + ("" if key else " (does not sort)")
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
    """The pairs table with filters; the selected pair (rendered), its flags and label history beside it."""

    open_pair = Signal(int)
    """The user asked to label this pair (double-click, Enter or the button)."""
    import_requested = Signal()
    """The empty project's "Import…" was chosen."""

    WIDE = 1400
    """From this width on the pair sits beside the table; narrower, below it (side by side it would be unreadable)."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.model = PairTableModel(project, self)

        # filters: reached with Tab; arrow keys open a filter's list rather than change it (FilterCombo)
        self.state_box = named(FilterCombo(), "State filter")
        for k, t in STATES.items():
            self.state_box.addItem(t, k)
        self.annotator_box = named(FilterCombo(), "Annotator filter")
        # filled at each refresh, after the first show: size to the names then, not to the empty list
        self.annotator_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.agreement_box = named(FilterCombo(), "Agreement filter")
        for k, t in AGREEMENTS.items():
            self.agreement_box.addItem(t, k)
        self.flagged_check = named(QCheckBox("⚑ Flagged"), "Only pairs flagged for review")
        self.flagged_check.setToolTip("Only pairs with an open flag for review")
        self.search_edit = named(QLineEdit(), "Search prompt and responses")
        self.search_edit.setPlaceholderText("Search prompt and responses…  (Enter)")
        self.search_edit.setClearButtonEnabled(True)
        self.total_label = QLabel()
        self.total_label.setObjectName("totalLabel")
        for box in (self.state_box, self.annotator_box, self.agreement_box):
            box.currentIndexChanged.connect(self.apply_filters)
            box.activated.connect(lambda _i: self.table.setFocus())
        self.flagged_check.toggled.connect(self.apply_filters)
        self.search_edit.returnPressed.connect(self.apply_filters)
        filters = QHBoxLayout()
        filters.addWidget(self.state_box)
        filters.addWidget(self.annotator_box)
        filters.addWidget(self.agreement_box)
        filters.addWidget(self.flagged_check)
        filters.addWidget(self.search_edit, 1)
        filters.addWidget(self.total_label)

        self.table = named(QTableView(), "Pairs")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        head = self.table.horizontalHeader()
        head.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # before sorting is on: id order, read by key
        self.table.setSortingEnabled(True)
        head.sortIndicatorChanged.connect(self._sort_changed)
        # the prompt takes what is left; the other columns fit their contents at any width (1024 px too)
        informative_width = head.fontMetrics().horizontalAdvance("Informative ▼") + 16  # its header, sort mark
        widths = {0: 56, 1: 50, 2: 70, 4: 70, 5: 70, 6: 56, 7: 130, 8: 112, 9: 60, 10: 30,
                  PairTableModel.INFORMATIVE: informative_width}
        for col, w in widths.items():
            head.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            head.resizeSection(col, w)
        head.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        head.setMinimumSectionSize(28)
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
        self.preview = PairPreview()
        self.detail_text = self.preview.prompt.browser  # untrusted text: the same safe views as labeling
        self.flags_label = QLabel()
        self.flags_label.setObjectName("warningBanner")
        self.flags_label.setWordWrap(True)
        self.flags_label.hide()
        self.clear_flags_button = QPushButton("Clear flags")
        self.clear_flags_button.setToolTip("Mark this pair's flags as reviewed (they stay in its history)")
        self.clear_flags_button.clicked.connect(self._clear_flags)
        self.clear_flags_button.hide()
        self.history = named(QTableWidget(0, len(HISTORY_COLUMNS)), "Label history")
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
        flags_row = QHBoxLayout()
        flags_row.addWidget(self.flags_label, 1)
        flags_row.addWidget(self.clear_flags_button)
        dl.addLayout(flags_row)
        self.history_box = QWidget()
        hl = QVBoxLayout(self.history_box)
        hl.setContentsMargins(0, 0, 0, 0)
        history_title = QLabel("<b>Label history</b>: every label ever made, replaced and undone ones included; "
                               "“Saw on left” is the response each annotator had on the left")
        history_title.setWordWrap(True)
        hl.addWidget(history_title)
        hl.addWidget(self.history)
        # wide: the pair above its history; narrow (the details below the table): one of them at a time, in tabs
        self.detail_split = QSplitter(Qt.Orientation.Vertical)
        self.detail_split.setChildrenCollapsible(False)
        self.detail_tabs = QTabWidget()
        self.detail_tabs.setDocumentMode(True)
        self.detail_stack = QStackedWidget()
        self.detail_stack.addWidget(self.detail_split)
        self.detail_stack.addWidget(self.detail_tabs)
        dl.addWidget(self.detail_stack, 1)

        self.body = QSplitter(Qt.Orientation.Horizontal)
        self.body.addWidget(self.table)
        self.body.addWidget(details)
        self.body.setChildrenCollapsible(False)
        self.empty = EmptyState()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.body)
        self.stack.addWidget(self.empty)

        # the pairs and the review dashboard (agreement, bias, the per-annotator audit) as two tabs
        pairs_page = QWidget()
        pl = QVBoxLayout(pairs_page)
        pl.setContentsMargins(0, 4, 0, 0)
        pl.addLayout(filters)
        pl.addWidget(self.stack, 1)
        self.review = ReviewDashboard(project)
        self.pages = QTabWidget()
        self.pages.addTab(pairs_page, "Pairs")
        self.pages.addTab(self.review, "Review")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(self.pages, 1)
        self._stale = True
        self._reload_timer = QTimer(self, singleShot=True, interval=0, timeout=self._reload_if_shown)
        self._fit_orientation()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.table and event.type() == QEvent.Type.KeyPress and \
                event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._open_current()
            return True
        return super().eventFilter(obj, event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_orientation()

    def _fit_orientation(self) -> None:
        """The pair beside the table on a wide window, with its history below it; on a narrow one, below the
        table, the pair and its history in tabs."""
        wide = self.width() >= self.WIDE
        orientation = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.body.orientation() == orientation and self.body.property("fitted"):
            return
        self.body.setOrientation(orientation)
        self.body.setProperty("fitted", True)
        if wide:
            self.detail_split.addWidget(self.preview)
            self.detail_split.addWidget(self.history_box)
            self.detail_split.setStretchFactor(0, 3)
            self.detail_split.setStretchFactor(1, 2)
            for w in (self.preview, self.history_box):
                w.show()  # a page taken from the tabs stays hidden by them (a hidden tab's page, or setParent)
            self.detail_stack.setCurrentWidget(self.detail_split)
        else:
            self.detail_tabs.addTab(self.preview, "Pair")
            self.detail_tabs.addTab(self.history_box, "Label history")
            self.detail_stack.setCurrentWidget(self.detail_tabs)
        total = self.width() if wide else max(self.height() - 60, 200)
        self.body.setSizes([int(total * 0.55), int(total * 0.45)] if wide else [int(total * 0.42), int(total * 0.58)])

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._reload_timer.start()
        self.table.setFocus()  # arrow keys move through the pairs, never a filter

    def _reload_if_shown(self) -> None:
        # the view may have been hidden (or its project closed) between scheduling and now
        if self.isVisible() and self._stale:
            self.refresh()

    def mark_stale(self) -> None:
        """Labels or pairs changed elsewhere; reload when next shown (not on every label)."""
        self._stale = True
        self.review.mark_stale()
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
                "agreement": self.agreement_box.currentData(), "search": self.search_edit.text().strip() or None,
                "flagged": self.flagged_check.isChecked()}

    def clear_filters(self) -> None:
        for box in (self.state_box, self.annotator_box, self.agreement_box, self.flagged_check, self.search_edit):
            box.blockSignals(True)
        self.state_box.setCurrentIndex(0)
        self.annotator_box.setCurrentIndex(0)
        self.agreement_box.setCurrentIndex(0)
        self.flagged_check.setChecked(False)
        self.search_edit.clear()
        for box in (self.state_box, self.annotator_box, self.agreement_box, self.flagged_check, self.search_edit):
            box.blockSignals(False)
        self.apply_filters()

    def apply_filters(self, *_args) -> None:
        selected = self.current_pair_id()
        self.model.set_filters(**self.filters())
        self._after_reload(selected)

    def _sort_changed(self, column: int, order: Qt.SortOrder) -> None:
        if PairTableModel.COLUMNS[column][1] is None:
            # a column that does not sort: the indicator goes back to the order in force
            key = next(i for i, c in enumerate(PairTableModel.COLUMNS) if c[1] == self.model.sort_key)
            head = self.table.horizontalHeader()
            head.blockSignals(True)
            head.setSortIndicator(key, Qt.SortOrder.DescendingOrder if self.model.descending
                                  else Qt.SortOrder.AscendingOrder)
            head.blockSignals(False)
            return
        self._after_reload(self.current_pair_id())

    def _after_reload(self, selected: int | None) -> None:
        total = self.model.total()
        self.total_label.setText(f"{total:,} pairs")
        self._show_empty(total)
        row = next((i for i, r in enumerate(self.model.rows) if r[0] == selected), 0 if self.model.rows else None)
        if row is not None:
            self.table.selectRow(row)
        else:
            self._show_details(QModelIndex())

    def _show_empty(self, total: int) -> None:
        if total:
            self.stack.setCurrentWidget(self.body)
        elif not self.project.pair_count():
            self.empty.show_state("No pairs yet", "Import prompts with two responses each to see them here: "
                                  "File ▸ Import… (Ctrl+I).", [("Import…", self.import_requested.emit)])
            self.stack.setCurrentWidget(self.empty)
        else:
            self.empty.show_state("No pair matches these filters", "Loosen the filters above, or clear them.",
                                  [("Clear filters", self.clear_filters)])
            self.stack.setCurrentWidget(self.empty)

    def current_pair_id(self) -> int | None:
        idx = self.table.currentIndex()
        return self.model.pair_id(idx.row()) if idx.isValid() else None

    def _open_current(self) -> None:
        pid = self.current_pair_id()
        if pid is not None:
            self.open_pair.emit(pid)

    def _clear_flags(self) -> None:
        pid = self.current_pair_id()
        if pid is not None:
            try:
                self.project.clear_flags(pid)
            except ProjectError as e:  # busy past the timeout, a full disk
                self.flags_label.setText(f"{self.flags_label.text()}<br>Flags not cleared: {html.escape(str(e))}")
                return
            self._show_details(self.table.currentIndex())

    def _show_details(self, index: QModelIndex) -> None:
        if not index.isValid():
            self.detail_title.setText("No pair selected")
            self.preview.show_pair(None)
            self.history.setRowCount(0)
            self.flags_label.hide()
            self.clear_flags_button.hide()
            self.open_button.setEnabled(False)
            return
        pair = self.project.pair(self.model.pair_id(index.row()))
        self.open_button.setEnabled(True)
        score = self.model.score_text(pair.id)
        self.detail_title.setText(f"<b>Pair #{pair.id}</b> · {pair.prompt.split}"
                                  + (f" · {html.escape(pair.source)}" if pair.source else "")
                                  + (f" · {score}" if score else ""))
        self.preview.show_pair(pair, counts=self.project.show_length_counts)
        flags = self.project.flags(pair.id)
        self.flags_label.setText("<br>".join(f"⚑ <b>{html.escape(f.annotator)}</b> flagged it for review: "
                                             f"{html.escape(f.note or '(no note)')}" for f in flags))
        self.flags_label.setVisible(bool(flags))
        self.clear_flags_button.setVisible(bool(flags))
        self.clear_flags_button.setEnabled(not self.project.read_only)  # read-only: flags are read, not cleared
        history = self.project.label_history(pair.id)
        self.detail_tabs.setTabText(self.detail_tabs.indexOf(self.history_box), f"Label history ({len(history)})")
        self.history.setRowCount(len(history))
        past = QColor(palette.current().faint)
        for i, lab in enumerate(history):
            cells = [lab.annotator, verdict(lab), saw_on_left(lab), lab.state.value,
                     lab.strength.value if lab.strength else "", f"{lab.seconds:.1f}" if lab.seconds else "",
                     lab.created_at[:16].replace("T", " "), lab.rationale or ""]
            for j, c in enumerate(cells):
                item = QTableWidgetItem(c)
                if lab.state is not LabelState.CURRENT:
                    item.setForeground(past)  # replaced and undone labels read as past
                if j == HISTORY_COLUMNS.index("When"):
                    item.setToolTip(lab.created_at.replace("T", " "))
                elif j == HISTORY_COLUMNS.index("Rationale"):
                    item.setToolTip(lab.rationale or "")
                self.history.setItem(i, j, item)
        self.history.resizeColumnsToContents()
