"""The labeling workbench: a prompt, two responses side by side, and keyboard-first choices."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeySequence, QPainter, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from studio.core.types import Choice, Label, Pair, Strength
from studio.store import Project, ProjectError
from studio.store.generations import candidate_provenance, describe_generation
from studio.store.informative import current_ranking, describe_ranking
from studio.ui import diff, render

# The clock behind time-per-label; tests replace it (monkeypatch) to check what gets stored.
clock = time.monotonic

QUEUE_TITLES = {
    "mine": "Unlabeled by me",
    "informative": "Informative first",
    "needs_more": "Needs another label",
    "disagreements": "Disagreements",
    "all": "All pairs",
}

# Queues of the pairs the annotator has not labeled (the informative one orders them by store.informative's
# ranking): what is left in them follows from the project's totals, without a count.
UNLABELED_BY_ME = ("mine", "informative")

# side on screen -> verdict; "left"/"right" are mapped to the pair's a/b through shown_left
SIDES = ("left", "right", "tie", "both_bad", "skip")
SIDE_TITLES = {"left": "Left better", "right": "Right better", "tie": "Tie", "both_bad": "Both bad", "skip": "Skip"}
SIDE_KEYS = {"left": ("1", "Left"), "right": ("2", "Right"), "tie": ("3", "T"), "both_bad": ("4", "B"),
             "skip": ("S", "0")}
STRENGTH_KEYS = {Strength.SLIGHT: "Q", Strength.CLEAR: "W", Strength.DECISIVE: "E"}

# (keys, what they do) for the `?` overlay; the buttons' tooltips say the same
SHORTCUTS = [
    ("1  or  ←", "Left response is better"),
    ("2  or  →", "Right response is better"),
    ("3  or  T", "Tie: equally good"),
    ("4  or  B", "Both bad"),
    ("S  or  0", "Skip this pair (stored as a skip)"),
    ("Q / W / E", "Strength: slight / clear / decisive (press again to clear)"),
    ("R", "Write a rationale (Enter or Esc returns to the keys)"),
    ("Ctrl+Z", "Undo your last label and show that pair again"),
    ("M", "Rendered markdown / raw text"),
    ("D", "Highlight word differences"),
    ("L", "Scroll both responses together"),
    ("J / K", "Scroll both responses down / up"),
    ("?  or  F1", "Show or hide this help"),
]


def side_to_choice(side: str, shown_left: str) -> Choice:
    """What a screen-side verdict means for the pair: left is the pair's `shown_left` response."""
    if side == "left":
        return Choice(shown_left)
    if side == "right":
        return Choice.B if shown_left == "a" else Choice.A
    return Choice(side)


def choice_to_side(choice: Choice, shown_left: str) -> str:
    if choice in (Choice.A, Choice.B):
        return "left" if choice.value == shown_left else "right"
    return choice.value


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def describe(label: Label, shown_left: str) -> str:
    text = SIDE_TITLES[choice_to_side(label.choice, shown_left)]
    if label.strength:
        text += f" ({label.strength.value})"
    return text


class ActiveTimer:
    """Seconds spent while running; pause() and resume() bracket the time the window is inactive."""

    def __init__(self) -> None:
        self._total = 0.0
        self._since: float | None = None
        self._paused = False

    def restart(self) -> None:
        self._total = 0.0
        self._since = None if self._paused else clock()

    def pause(self) -> None:
        if self._since is not None:
            self._total += clock() - self._since
            self._since = None
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._since is None:
            self._since = clock()

    @property
    def paused(self) -> bool:
        return self._paused

    def seconds(self) -> float:
        running = clock() - self._since if self._since is not None else 0.0
        return self._total + running


@dataclass
class Session:
    """What this annotator did since the window opened, for the labels-per-hour rate."""

    labels: int = 0
    seconds: float = 0.0

    def rate(self, current: float = 0.0) -> float | None:
        hours = (self.seconds + current) / 3600
        if self.labels == 0 or hours <= 0:
            return None
        return self.labels / hours


class ResponsePane(QFrame):
    """One response: a header with its side and length, and the rendered text."""

    def __init__(self, side: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.side = side
        self.setObjectName(f"pane_{side}")
        self.setProperty("pane", True)
        self.title = QLabel()
        self.title.setObjectName("paneTitle")
        self.browser = render.SafeBrowser()
        self.browser.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.browser.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.title)
        layout.addWidget(self.browser, 1)

    def show_text(self, text: str, raw: bool) -> None:
        long_text = render.render_text(self.browser.document(), text, raw)
        words = len(diff.WORD.findall(text)) if len(text) < 2_000_000 else None
        size = _count(len(text), "char") + (f" · {_count(words, 'word')}" if words is not None else "")
        name = "Left" if self.side == "left" else "Right"
        note = "  ·  long: shown as plain text" if long_text else ""
        self.title.setText(f"<b>{name}</b>&nbsp;&nbsp;<span style='color:#666'>{size}{note}</span>")
        self.browser.setExtraSelections([])

    def show_message(self, text: str) -> None:
        self.title.setText("<b>Left</b>" if self.side == "left" else "<b>Right</b>")
        self.browser.setPlainText(text)


class ShortcutOverlay(QWidget):
    """The `?` help: every key of the workbench over a dimmed view; any key or click closes it."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("shortcutOverlay")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        box = QFrame(self)
        box.setObjectName("shortcutBox")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(24)
        title = QLabel("<b>Keyboard shortcuts</b>")
        grid.addWidget(title, 0, 0, 1, 2)
        for row, (keys, what) in enumerate(SHORTCUTS, start=1):
            k = QLabel(keys)
            k.setObjectName("shortcutKey")
            grid.addWidget(k, row, 0)
            grid.addWidget(QLabel(what), row, 1)
        grid.addWidget(QLabel("<span style='color:#666'>Choosing a verdict saves the label and shows the next "
                              "pair.<br>Set strength and rationale first.</span>"), len(SHORTCUTS) + 1, 0, 1, 2)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(box)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(1)
        self.hide()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0, 110))

    def event(self, event) -> bool:
        # While the help is up, a key only closes it: claiming the shortcut stops `1` from also
        # labeling the pair behind it (the workbench's shortcuts would fire before keyPressEvent).
        if event.type() == QEvent.Type.ShortcutOverride:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        self.hide()
        self.parentWidget().setFocus()

    def mousePressEvent(self, event) -> None:
        self.hide()
        self.parentWidget().setFocus()


class SourceCombo(QComboBox):
    """The source filter; its list is read when opened, so a million pairs are not scanned at start."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.addItem("All sources", None)

    def showPopup(self) -> None:
        current = self.currentData()
        sources = self.project.sources()
        self.blockSignals(True)
        self.clear()
        self.addItem("All sources", None)
        for s in sources:
            self.addItem(s, s)
        idx = self.findData(current)
        self.setCurrentIndex(max(idx, 0))
        self.blockSignals(False)
        super().showPopup()


class LabelView(QWidget):
    """Shows one pair at a time from the annotator's queue; a verdict commits the label and moves on."""

    labeled = Signal(int, str)
    """A label was committed: (pair id, choice in pair terms)."""
    undone = Signal(int)
    """A label was undone: the pair id, now shown again."""
    pair_shown = Signal(int)
    """The pair now on screen (0 when the queue is empty)."""
    counts_changed = Signal()
    """Labels changed; the window refreshes its headline counts."""
    save_failed = Signal(str)
    """A label could not be saved (disk full, project busy): the message; the pair stays on screen."""

    def __init__(self, project: Project, annotator: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.annotator = annotator
        self.queue = "mine"
        self.split: str | None = None
        self.source: str | None = None
        self.search: str | None = None
        self.pair: Pair | None = None
        self.shown_left = "a"
        self.raw = False
        self.diff_on = False
        self.sync_scroll = True
        self.timer = ActiveTimer()
        self.session = Session()
        self._session_timer = ActiveTimer()
        self._total_pairs = project.pair_count()
        self._queue_left: int | None = None
        self._syncing = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()
        self._describe_ranking()
        self._bind_keys()
        self._recount = QTimer(self, singleShot=True, interval=1200, timeout=self._refresh_queue_count)
        self._clock_tick = QTimer(self, interval=1000, timeout=self._refresh_rate)
        self._clock_tick.start()
        app = QGuiApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._on_app_state)
        self._session_timer.restart()
        self.show_next()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        # filters
        self.queue_box = QComboBox()
        for key, title in QUEUE_TITLES.items():
            self.queue_box.addItem(title, key)
        self.queue_box.setToolTip("Which pairs to label next")
        self.split_box = QComboBox()
        self.split_box.addItem("All splits", None)
        self.split_box.addItem("train", "train")
        self.split_box.addItem("eval", "eval")
        self.source_box = SourceCombo(self.project)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search prompt and responses…  (Enter)")
        self.search_edit.setClearButtonEnabled(True)
        for box in (self.queue_box, self.split_box, self.source_box):
            box.currentIndexChanged.connect(self._filters_changed)
            # A click must not leave the focus in a filter, where Up/Down would change it and the keys
            # stop labeling; Tab still reaches them. Picking a value hands the keys back.
            box.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            box.activated.connect(lambda _index: self.setFocus())
        self.search_edit.returnPressed.connect(self._filters_changed)
        self.search_edit.returnPressed.connect(self.setFocus)
        self.pair_label = QLabel()
        self.pair_label.setObjectName("pairLabel")
        self.pair_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        filters = QHBoxLayout()
        filters.addWidget(QLabel("Queue"))
        filters.addWidget(self.queue_box)
        filters.addWidget(self.split_box)
        filters.addWidget(self.source_box)
        filters.addWidget(self.search_edit, 1)
        filters.addSpacing(12)
        filters.addWidget(self.pair_label)

        # display options
        self.raw_check = QCheckBox("Raw text")
        self.raw_check.setToolTip("Show the texts exactly as stored, without markdown rendering — key M")
        self.diff_check = QCheckBox("Word diff")
        self.diff_check.setToolTip("Highlight the words each response has that the other lacks — key D")
        self.sync_check = QCheckBox("Sync scroll")
        self.sync_check.setToolTip("Scroll both responses together — key L")
        self.sync_check.setChecked(True)
        self.raw_check.toggled.connect(self.set_raw)
        self.diff_check.toggled.connect(self.set_diff)
        self.sync_check.toggled.connect(self.set_sync_scroll)
        for c in (self.raw_check, self.diff_check, self.sync_check):
            c.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        help_button = QPushButton("Shortcuts  ?")
        help_button.setToolTip("Show every key — ? or F1")
        help_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        help_button.clicked.connect(self.toggle_help)

        # prompt
        self.prompt_browser = render.SafeBrowser()
        self.prompt_browser.setObjectName("promptBrowser")
        self.prompt_browser.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.prompt_browser.setFrameShape(QFrame.Shape.NoFrame)
        # A chat is shown from its end: the responses answer the last turn. Kept there through the layout
        # passes that follow (each changes the range) until the annotator scrolls it.
        self._prompt_at_end = False
        bar = self.prompt_browser.verticalScrollBar()
        bar.rangeChanged.connect(lambda _lo, hi: self._prompt_at_end and bar.setValue(hi))
        bar.actionTriggered.connect(lambda _action: setattr(self, "_prompt_at_end", False))
        self.prompt_title = QLabel("<b>Prompt</b>")
        self.prompt_title.setObjectName("paneTitle")
        prompt_head = QHBoxLayout()
        prompt_head.setContentsMargins(0, 0, 0, 0)
        prompt_head.addWidget(self.prompt_title, 1)
        for w in (self.raw_check, self.diff_check, self.sync_check, help_button):
            prompt_head.addWidget(w)
        prompt_box = QFrame()
        prompt_box.setProperty("pane", True)
        pl = QVBoxLayout(prompt_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(0)
        head_w = QWidget()
        head_w.setObjectName("promptHead")
        head_w.setLayout(prompt_head)
        prompt_head.setContentsMargins(0, 0, 8, 0)
        pl.addWidget(head_w)
        pl.addWidget(self.prompt_browser, 1)

        # responses: equal panes (a layout, not a splitter, so neither side can look more important)
        self.left = ResponsePane("left")
        self.right = ResponsePane("right")
        responses = QWidget()
        rl = QHBoxLayout(responses)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(8)
        rl.addWidget(self.left, 1)
        rl.addWidget(self.right, 1)
        for a, b in ((self.left, self.right), (self.right, self.left)):
            a.browser.verticalScrollBar().valueChanged.connect(lambda _v, a=a, b=b: self._sync(a, b))

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(prompt_box)
        self.splitter.addWidget(responses)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setChildrenCollapsible(False)

        # verdict buttons
        self.choice_buttons: dict[str, QPushButton] = {}
        texts = {"left": "◀  Left better   1", "right": "Right better  ▶   2", "tie": "Tie   3",
                 "both_bad": "Both bad   4", "skip": "Skip   S"}
        tips = {"left": "The left response is better — keys 1 or ←",
                "right": "The right response is better — keys 2 or →",
                "tie": "Both are equally good — keys 3 or T",
                "both_bad": "Neither is acceptable — keys 4 or B",
                "skip": "Skip this pair (stored as a skip, counts as seen) — keys S or 0"}
        choices = QHBoxLayout()
        choices.setSpacing(8)
        for side in SIDES:
            b = QPushButton(texts[side])
            b.setObjectName(f"choice_{side}")
            b.setProperty("choice", True)
            b.setToolTip(tips[side])
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setMinimumHeight(40)
            b.clicked.connect(lambda _c=False, s=side: self.choose(s))
            choices.addWidget(b, 3 if side in ("left", "right") else 2)
            self.choice_buttons[side] = b

        # strength and rationale
        self.strength_buttons: dict[Strength, QPushButton] = {}
        self.strength_group = QButtonGroup(self)
        self.strength_group.setExclusive(False)
        details = QHBoxLayout()
        details.addWidget(QLabel("Strength"))
        for s, key in STRENGTH_KEYS.items():
            b = QPushButton(f"{s.value.capitalize()}  {key}")
            b.setCheckable(True)
            b.setProperty("strength", True)
            b.setToolTip(f"How much better the chosen response is: {s.value} — key {key} (again to clear)")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda checked, s=s: self.set_strength(s if checked else None))
            self.strength_group.addButton(b)
            details.addWidget(b)
            self.strength_buttons[s] = b
        details.addSpacing(12)
        self.rationale = QLineEdit()
        self.rationale.setPlaceholderText("Rationale (optional) — press R to write, Enter to go back to the keys")
        self.rationale.setToolTip("Why this verdict — key R focuses it; Enter or Esc returns to the keys")
        self.rationale.returnPressed.connect(self.setFocus)
        details.addWidget(self.rationale, 1)
        self.undo_button = QPushButton("Undo  Ctrl+Z")
        self.undo_button.setToolTip("Undo your last label and show that pair again — Ctrl+Z")
        self.undo_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.undo_button.clicked.connect(self.undo)
        details.addWidget(self.undo_button)

        # notes and progress
        self.note = QLabel()
        self.note.setObjectName("labelNote")
        self.note.setWordWrap(True)
        self.progress_text = QLabel()
        self.progress_text.setObjectName("progressText")
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(6)
        self.progress_bar.setToolTip("Project: pairs with at least one label")
        status = QHBoxLayout()
        status.addWidget(self.note, 1)
        status.addWidget(self.progress_text)
        # who wrote the sides of a generated candidates pair, shown once it is labeled (never before; never for
        # an arena's pairs): stays up while the next pair is on screen
        self.revealed = QLabel()
        self.revealed.setObjectName("revealedProvenance")
        self.revealed.setWordWrap(True)
        self.revealed.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)
        layout.addLayout(filters)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(choices)
        layout.addLayout(details)
        layout.addLayout(status)
        layout.addWidget(self.revealed)
        layout.addWidget(self.progress_bar)
        self._overlay: ShortcutOverlay | None = None
        self.rationale.installEventFilter(self)
        self.search_edit.installEventFilter(self)

    def _bind_keys(self) -> None:
        def bind(keys, slot) -> None:
            for k in keys:
                sc = QShortcut(QKeySequence(k), self)
                sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                sc.activated.connect(slot)

        for side in SIDES:
            bind(SIDE_KEYS[side], lambda s=side: self.choose(s))
        for s, key in STRENGTH_KEYS.items():
            bind([key], lambda s=s: self.set_strength(None if self.strength() is s else s))
        bind(["R"], self.focus_rationale)
        bind([QKeySequence.StandardKey.Undo], self.undo)
        bind(["?", "Shift+?", "F1"], self.toggle_help)
        bind(["M"], lambda: self.raw_check.toggle())
        bind(["D"], lambda: self.diff_check.toggle())
        bind(["L"], lambda: self.sync_check.toggle())
        bind(["J"], lambda: self._scroll(+1))
        bind(["K"], lambda: self._scroll(-1))

    @property
    def overlay(self) -> ShortcutOverlay:
        """The `?` help, built the first time it is asked for: thirty labels the window need not build
        before the first pair is on screen."""
        if self._overlay is None:
            self._overlay = ShortcutOverlay(self)
        return self._overlay

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._overlay is not None:
            self._overlay.setGeometry(self.rect())
        QTimer.singleShot(0, self._fit_prompt)

    def eventFilter(self, obj, event) -> bool:
        # Esc in the rationale or the search box returns to the keys, as Enter does
        if obj in (self.rationale, self.search_edit) and event.type() == QEvent.Type.KeyPress and \
                event.key() == Qt.Key.Key_Escape:
            self.setFocus()
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------ activity (time per label)

    def _on_app_state(self, state: Qt.ApplicationState) -> None:
        self.set_active(state == Qt.ApplicationState.ApplicationActive)

    def set_active(self, active: bool) -> None:
        """Pause the label clock while the window is not in use (another app in front, minimised)."""
        for t in (self.timer, self._session_timer):
            if active:
                t.resume()
            else:
                t.pause()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.set_active(False)
        self._recount.stop()  # recounted when shown again; the project may be closing

    def showEvent(self, event) -> None:
        super().showEvent(event)
        app = QGuiApplication.instance()
        if app is None or app.applicationState() == Qt.ApplicationState.ApplicationActive or \
                QGuiApplication.platformName() in ("offscreen", "minimal"):
            self.set_active(True)
        if self.pair is not None or self._total_pairs:
            self._refresh_progress()
        self.setFocus()

    # ------------------------------------------------------------------ queue and filters

    def set_annotator(self, name: str) -> None:
        self.annotator = name
        self.session = Session()
        self._session_timer.restart()
        self.show_next(after=None)

    def set_queue(self, queue: str) -> None:
        self.queue_box.setCurrentIndex(self.queue_box.findData(queue))

    def set_filters(self, split: str | None = None, source: str | None = None, search: str | None = None) -> None:
        self.split_box.blockSignals(True)
        self.split_box.setCurrentIndex(max(self.split_box.findData(split), 0))
        self.split_box.blockSignals(False)
        if source is not None and self.source_box.findData(source) < 0:
            self.source_box.addItem(source, source)
        self.source_box.blockSignals(True)
        self.source_box.setCurrentIndex(max(self.source_box.findData(source), 0))
        self.source_box.blockSignals(False)
        self.search_edit.setText(search or "")
        self._filters_changed()

    def _filters_changed(self, *_args) -> None:
        self.revealed.hide()  # it spoke of the pair labeled last, in the queue left behind
        self.queue = self.queue_box.currentData()
        self._describe_ranking()
        self.split = self.split_box.currentData()
        self.source = self.source_box.currentData()
        self.search = self.search_edit.text().strip() or None
        self._queue_left = None
        self.show_next(after=None)
        self._refresh_queue_count()

    def _describe_ranking(self) -> None:
        """The informative queue's tooltip says what its order comes from (models, when), or that there is none."""
        now = describe_ranking(current_ranking(self.project))
        text = f"Pairs the models are least sure about first, split votes before all ({now})"
        self.queue_box.setItemData(self.queue_box.findData("informative"), text, Qt.ItemDataRole.ToolTipRole)

    def _filtered(self) -> bool:
        return bool(self.split or self.source or self.search)

    def show_next(self, after: int | None = None) -> None:
        """Show the next pair of the queue after pair `after` (or after the annotator's last label)."""
        pid = self.project.next_pair(self.annotator, self.queue, after=after, split=self.split,
                                     source=self.source, search=self.search)
        if pid is None:
            self._show_empty()
        else:
            self.show_pair(pid)

    def reload(self) -> None:
        """Re-read counts after data changed elsewhere (an import), and refill the view if empty."""
        self._total_pairs = self.project.pair_count()
        self._describe_ranking()
        if self.pair is None:
            self.show_next()
        self._refresh_queue_count()

    def _show_empty(self) -> None:
        self.pair = None
        self.prompt_browser.setPlainText("")
        title = QUEUE_TITLES[self.queue]
        filt = " with these filters" if self._filtered() else ""
        msg = (f"Nothing left in “{title}”{filt}.\n\nPick another queue or clear the filters above."
               if self._total_pairs else "This project has no pairs yet.\n\nImport some with File → Import.")
        self.left.show_message(msg)
        self.right.show_message("")
        self.pair_label.setText("")
        for b in self.choice_buttons.values():
            b.setEnabled(False)
        self.note.setText("")
        self._refresh_progress()
        self.pair_shown.emit(0)

    def show_pair(self, pair_id: int, note: str | None = None, prefill: Label | None = None) -> None:
        """Put a pair on screen (from the queue, the data view or an undo) and start its clock."""
        self.pair = self.project.pair(pair_id)
        self.shown_left = self.project.shown_left(pair_id, self.annotator)
        self._render()
        for b in self.choice_buttons.values():
            b.setEnabled(True)
        self.set_strength(prefill.strength if prefill else None)
        self.rationale.setText((prefill.rationale or "") if prefill else "")
        mine = self.project.current_label(pair_id, self.annotator)
        if note is None and mine is not None:
            note = f"You labeled this pair: <b>{describe(mine, self.shown_left)}</b>. A new verdict replaces it."
        self.note.setText(note or "")
        p = self.pair.prompt
        bits = [f"Pair #{self.pair.id}", p.split]
        if self.pair.source:
            bits.append(self.pair.source)
        self.pair_label.setText("  ·  ".join(bits))
        self.timer.restart()
        self._refresh_progress()
        self.pair_shown.emit(pair_id)
        if not self.rationale.hasFocus():
            self.setFocus()

    def _render(self) -> None:
        if self.pair is None:
            return
        p = self.pair.prompt
        self._prompt_at_end = bool(p.messages)
        render.render_prompt(self.prompt_browser.document(), p.text, p.messages, self.raw)
        left, right = (self.pair.a, self.pair.b) if self.shown_left == "a" else (self.pair.b, self.pair.a)
        self.left.show_text(left.text, self.raw)
        self.right.show_text(right.text, self.raw)
        if self.diff_on:
            self._apply_diff()
        self._fit_prompt()
        bar = self.prompt_browser.verticalScrollBar()
        bar.setValue(bar.maximum() if self._prompt_at_end else 0)

    def _fit_prompt(self) -> None:
        """Give the prompt the height it needs, up to 45% of the space, so a short prompt leaves the
        responses room and a long one scrolls instead of pushing them away."""
        total = sum(self.splitter.sizes())
        if total <= 0 or self.pair is None:
            return
        doc = self.prompt_browser.document()
        doc.setTextWidth(max(100, self.prompt_browser.viewport().width()))
        head = self.prompt_title.sizeHint().height()
        want = int(doc.size().height()) + head + 8
        prompt_h = max(90, min(want, int(total * 0.45)))
        self.splitter.setSizes([prompt_h, total - prompt_h])

    def _apply_diff(self) -> None:
        docs = [self.left.browser.document(), self.right.browser.document()]
        mapped = [render.block_text_positions(d) for d in docs]
        spans = diff.word_diff(mapped[0][0], mapped[1][0])
        if spans is None:
            self.note.setText("These responses are too long for a word diff.")
            return
        fmt = render.highlight_format()
        for pane, (_text, positions), side_spans in zip((self.left, self.right), mapped, spans, strict=True):
            selections = []
            for start, end in side_spans:
                sel = QTextEdit.ExtraSelection()
                cur = QTextCursor(pane.browser.document())
                cur.setPosition(positions[start])
                cur.setPosition(positions[end - 1] + 1, QTextCursor.MoveMode.KeepAnchor)
                sel.cursor = cur
                sel.format = fmt
                selections.append(sel)
            pane.browser.setExtraSelections(selections)

    # ------------------------------------------------------------------ display options

    def set_raw(self, raw: bool) -> None:
        self.raw = bool(raw)
        self.raw_check.setChecked(self.raw)
        self._render()

    def set_diff(self, on: bool) -> None:
        self.diff_on = bool(on)
        self.diff_check.setChecked(self.diff_on)
        if self.diff_on:
            self._apply_diff()
        else:
            self.left.browser.setExtraSelections([])
            self.right.browser.setExtraSelections([])

    def set_sync_scroll(self, on: bool) -> None:
        self.sync_scroll = bool(on)
        self.sync_check.setChecked(self.sync_scroll)

    def _sync(self, source: ResponsePane, target: ResponsePane) -> None:
        if not self.sync_scroll or self._syncing:
            return
        s, t = source.browser.verticalScrollBar(), target.browser.verticalScrollBar()
        self._syncing = True
        try:
            # by fraction, so two responses of different lengths reach their ends together
            frac = s.value() / s.maximum() if s.maximum() else 0.0
            t.setValue(round(frac * t.maximum()))
        finally:
            self._syncing = False

    def _scroll(self, direction: int) -> None:
        for pane in (self.left, self.right):
            bar = pane.browser.verticalScrollBar()
            bar.setValue(bar.value() + direction * bar.pageStep() // 2)

    def toggle_help(self) -> None:
        if self.overlay.isVisible():
            self.overlay.hide()
            self.setFocus()
        else:
            self.overlay.setGeometry(self.rect())
            self.overlay.show()
            self.overlay.raise_()
            self.overlay.setFocus()

    def focus_rationale(self) -> None:
        self.rationale.setFocus()
        self.rationale.selectAll()

    # ------------------------------------------------------------------ labeling

    def strength(self) -> Strength | None:
        for s, b in self.strength_buttons.items():
            if b.isChecked():
                return s
        return None

    def set_strength(self, strength: Strength | str | None) -> None:
        strength = Strength(strength) if strength else None
        for s, b in self.strength_buttons.items():
            b.setChecked(s is strength)

    def choose(self, side: str) -> int | None:
        """Commit the verdict for the pair on screen and show the next pair. Returns the label id."""
        if self.pair is None:
            return None
        if self._overlay is not None and self._overlay.isVisible():
            self._overlay.hide()
        choice = side_to_choice(side, self.shown_left)
        strength = self.strength() if choice.decided else None
        seconds = round(self.timer.seconds(), 3)
        try:
            label_id = self.project.record_label(self.pair.id, self.annotator, choice, self.shown_left,
                                                 strength=strength, rationale=self.rationale.text().strip() or None,
                                                 seconds=seconds)
        except ProjectError as e:
            # disk full, read-only, or another process holding the write lock: the pair stays on screen with
            # everything the annotator set, so the same key can simply be pressed again
            self.save_failed.emit(str(e))
            self.note.setText(f"Not saved: {e}")
            return None
        pair_id = self.pair.id
        self.session.labels += 1
        self.session.seconds = self._session_timer.seconds()
        if self._queue_left is not None and self.queue in (*UNLABELED_BY_ME, "needs_more"):
            self._queue_left = max(0, self._queue_left - 1)
        self.labeled.emit(pair_id, choice.value)
        self.reveal_provenance(pair_id, self.shown_left, side)
        self.show_next(after=pair_id)
        self._schedule_counts()
        return label_id

    def reveal_provenance(self, pair_id: int, shown_left: str, side: str) -> None:
        """After a verdict on a generated candidates pair, say which source, adapter and sampling wrote each
        side; hidden for any other pair (an arena's pairs stay blind)."""
        prov = candidate_provenance(self.project, pair_id)
        if prov is None:
            self.revealed.hide()
            self.revealed.setText("")
            return
        left, right = (prov["a"], prov["b"]) if shown_left == "a" else (prov["b"], prov["a"])
        self.revealed.setText(f"Pair #{pair_id}, labeled <b>{SIDE_TITLES[side]}</b>: left was "
                              f"<b>{html.escape(describe_generation(left))}</b>; right was "
                              f"<b>{html.escape(describe_generation(right))}</b>")
        self.revealed.show()

    def undo(self) -> int | None:
        """Undo the annotator's latest current label and show its pair again, prefilled."""
        label_id = self.project.last_label_id(self.annotator)
        if label_id is None:
            self.note.setText("Nothing to undo: you have no labels in this project.")
            return None
        undone = self.project.label(label_id)
        pair_id = self.project.undo_label(label_id)
        self.session.labels = max(0, self.session.labels - 1)
        if self._queue_left is not None and self.queue in (*UNLABELED_BY_ME, "needs_more"):
            self._queue_left += 1
        shown = self.project.shown_left(pair_id, self.annotator)
        self.show_pair(pair_id, note=f"Undone: <b>{describe(undone, shown)}</b>. Choose again.", prefill=undone)
        self.undone.emit(pair_id)
        self._schedule_counts()
        return pair_id

    # ------------------------------------------------------------------ progress

    def _schedule_counts(self) -> None:
        self.counts_changed.emit()
        if self.queue not in UNLABELED_BY_ME or self._filtered():
            self._recount.start()

    def my_label_count(self) -> int:
        return self.project.label_count(self.annotator)

    def _refresh_queue_count(self) -> None:
        if self.queue in UNLABELED_BY_ME and not self._filtered():
            self._queue_left = None  # derived from the totals in _refresh_progress, no scan needed
        else:
            self._queue_left = self.project.queue_count(self.annotator, self.queue, split=self.split,
                                                        source=self.source, search=self.search)
        self._refresh_progress()

    def _refresh_progress(self) -> None:
        mine = self.my_label_count()
        labeled = self.project.labeled_pair_count()
        total = self._total_pairs
        left = self._queue_left if self._queue_left is not None else (
            max(0, total - mine) if self.queue in UNLABELED_BY_ME and not self._filtered() else None)
        pct = f" ({100 * labeled / total:.1f}%)" if total else ""
        self._progress_parts = (
            f"<b>{self.annotator}</b>: {mine:,} labeled · {self.session.labels:,} this session",
            f"<b>Project</b>: {labeled:,} / {total:,} pairs labeled{pct}",
            f"{left:,} left in queue" if left is not None else "",
        )
        self.progress_bar.setMaximum(max(total, 1))
        self.progress_bar.setValue(labeled)
        self._refresh_rate()

    def _refresh_rate(self) -> None:
        if not hasattr(self, "_progress_parts"):
            return
        rate = self.session.rate() if self.session.labels else None
        rate_text = f" · {rate:,.0f} /h" if rate is not None else ""
        me, proj, left = self._progress_parts
        parts = [me + rate_text, proj] + ([left] if left else [])
        self.progress_text.setText("&nbsp;&nbsp;│&nbsp;&nbsp;".join(parts))
