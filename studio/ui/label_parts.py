"""The labeling workbench's small parts: screen sides and verdicts, their keys and the `?` help, the active-time
clock of a label and the session's rate, and the source filter that lists sources only when opened."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from studio.core.types import Choice, Label, Strength
from studio.store import Project
from studio.ui import palette
from studio.ui.widgets import FilterCombo

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
    ("F", "Flag this pair for review, with a note"),
    ("G", "Show or hide the project's guidelines"),
    ("Ctrl+Z", "Undo your last label and show that pair again"),
    ("M", "Rendered markdown / raw text"),
    ("D", "Highlight word differences"),
    ("L", "Scroll both responses together"),
    ("J / K", "Scroll both responses down / up"),
    ("Tab", "Move through the controls; Esc in a text field returns to the keys"),
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


def describe(label: Label, shown_left: str) -> str:
    text = SIDE_TITLES[choice_to_side(label.choice, shown_left)]
    if label.strength:
        text += f" ({label.strength.value})"
    return text


class ActiveTimer:
    """Seconds spent while running; pause() and resume() bracket the time the window is inactive. `clock`: the
    seconds clock it reads (the label view passes its own, which tests replace)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._total = 0.0
        self._since: float | None = None
        self._paused = False

    def restart(self) -> None:
        self._total = 0.0
        self._since = None if self._paused else self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._total += self._clock() - self._since
            self._since = None
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._since is None:
            self._since = self._clock()

    @property
    def paused(self) -> bool:
        return self._paused

    def seconds(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
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
        footer = QLabel("Choosing a verdict saves the label and shows the next pair.<br>Set strength and "
                        "rationale first.")
        footer.setObjectName("mutedLabel")
        grid.addWidget(footer, len(SHORTCUTS) + 1, 0, 1, 2)
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
        p.fillRect(self.rect(), QColor(*palette.current().overlay))

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


class SourceCombo(FilterCombo):
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
