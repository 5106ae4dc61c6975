"""The annotator's own side of the labeling view: today's labels against a goal, the last few decisions to
revisit, the brief "Saved: …" confirmation, and the bar that flags a pair for review with a note."""

from __future__ import annotations

import datetime as dt
import html

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from studio.core.types import Choice, Label

SAVED_SECONDS = 2.5
"""How long the "Saved: …" confirmation stays."""
RECENT = 5
"""Decisions in the recent strip."""

GLYPHS = {"left": "◀ Left", "right": "Right ▶", "tie": "Tie", "both_bad": "Both bad", "skip": "Skip"}
SIDE_WORDS = {"left": "Left better", "right": "Right better", "tie": "Tie", "both_bad": "Both bad", "skip": "Skipped"}


def day_start(now: dt.datetime | None = None) -> str:
    """Local midnight of today as a UTC time in the store's format (labels' created_at): "today" is the
    annotator's day, wherever the project file was made."""
    local = (now or dt.datetime.now()).astimezone()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def replaced_today(history: list[Label], label: Label, since: str) -> bool:
    """Whether `label` replaced one of its annotator's labels made since `since` (a relabel today does not
    add to today's count: the earlier label is no longer in force)."""
    earlier = [h for h in history if h.annotator == label.annotator and h.id < label.id]
    return bool(earlier) and earlier[-1].state.value == "replaced" and earlier[-1].created_at >= since


class RecentStrip(QWidget):
    """The annotator's last few decisions as small buttons, newest first; clicking one shows that pair again."""

    revisit = Signal(int)
    """The pair id of the decision clicked."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.caption: QLabel | None = None
        self.buttons: list[QPushButton] = []  # built with the first decision to show (not before the first pair)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)

    def _build(self) -> None:
        self.caption = QLabel("Recent")
        self.caption.setObjectName("mutedLabel")
        self.layout().addWidget(self.caption)
        for _ in range(RECENT):
            b = QPushButton()
            b.setProperty("recent", True)
            b.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # a click leaves the keys with the workbench
            b.clicked.connect(lambda _c=False, b=b: self.revisit.emit(int(b.property("pair_id"))))
            b.hide()
            self.layout().addWidget(b)
            self.buttons.append(b)

    def show_labels(self, labels: list[tuple[Label, str]]) -> None:
        """(label, the side it chose on screen) pairs, newest first."""
        if not self.buttons:
            if not labels:
                return
            self._build()
        for b, item in zip(self.buttons, [*labels, *[None] * RECENT], strict=False):
            if item is None:
                b.hide()
                continue
            label, side = item
            what = verdict_words(label, side)
            b.setText(f"#{label.pair_id} {GLYPHS[side]}")
            b.setToolTip(f"Pair #{label.pair_id}: {what} at {_local_time(label.created_at)} — click to see it again")
            b.setAccessibleName(f"Revisit pair {label.pair_id}: {what}")
            b.setProperty("pair_id", label.pair_id)
            b.show()
        self.caption.setVisible(bool(labels))


class SavedNote(QLabel):
    """A brief confirmation of what was saved; it clears itself after SAVED_SECONDS."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("savedNote")
        self._clear = QTimer(self, singleShot=True, interval=int(SAVED_SECONDS * 1000), timeout=self.clear)

    def say(self, text: str) -> None:
        self.setText(f"✓ {html.escape(text)}")
        self.setAccessibleName(text)
        self._clear.start()


def verdict_words(label: Label, side: str) -> str:
    """'Right better, decisive': the verdict as the annotator saw it, in the words of the buttons."""
    text = SIDE_WORDS[side]
    if label.strength and label.choice in (Choice.A, Choice.B):
        text += f", {label.strength.value}"
    return text


def _local_time(created_at: str) -> str:
    try:
        return dt.datetime.fromisoformat(created_at).astimezone().strftime("%H:%M")
    except ValueError:
        return created_at


class FlagBar(QWidget):
    """Flag the pair on screen for review, with a note: Enter flags, Esc cancels; a pair already flagged by
    this annotator shows its note and can be unflagged."""

    flag = Signal(str)
    """Flag (or re-note) the pair: the note."""
    unflag = Signal()
    """Clear this annotator's flag on the pair."""
    closed = Signal()
    """The bar was closed (after flagging or on Esc): the keys go back to the workbench."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.caption = QLabel("⚑ Flag for review")
        self.note = QLineEdit()
        self.note.setPlaceholderText("What should a reviewer look at? (optional) — Enter flags, Esc cancels")
        self.note.setAccessibleName("Note for the reviewer")
        self.note.returnPressed.connect(self._flag)
        self.note.installEventFilter(self)
        self.flag_button = QPushButton("Flag  ⏎")
        self.flag_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.flag_button.clicked.connect(self._flag)
        self.unflag_button = QPushButton("Remove flag")
        self.unflag_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.unflag_button.clicked.connect(self._unflag)
        cancel = QPushButton("Cancel  Esc")
        cancel.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        cancel.clicked.connect(self.close_bar)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.note, 1)
        layout.addWidget(self.flag_button)
        layout.addWidget(self.unflag_button)
        layout.addWidget(cancel)
        self.hide()

    def open_for(self, note: str | None, flagged: bool) -> None:
        self.note.setText(note or "")
        self.unflag_button.setVisible(flagged)
        self.flag_button.setText("Update flag  ⏎" if flagged else "Flag  ⏎")
        self.show()
        self.note.setFocus()
        self.note.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.closed.emit()

    def _flag(self) -> None:
        self.flag.emit(self.note.text().strip())
        self.close_bar()

    def _unflag(self) -> None:
        self.unflag.emit()
        self.close_bar()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.note and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.close_bar()
            return True
        return super().eventFilter(obj, event)
