"""The labeling workbench's controls: the queue and filters above the pair (`LabelFilters`), the display
options in the prompt's header (`DisplayOptions`) and the verdict below the pair (`VerdictControls`: the
choice buttons, strength, rationale, flag and undo). They own their widgets and say what was asked of them
through signals; the view decides what happens."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from studio.core.types import Strength
from studio.store import Project
from studio.ui.label_parts import SIDE_TITLES, SIDES, STRENGTH_KEYS, SourceCombo
from studio.ui.widgets import FilterCombo, named

QUEUE_TITLES = {
    "mine": "Unlabeled by me",
    "informative": "Informative first",
    "needs_more": "Needs another label",
    "disagreements": "Disagreements",
    "flagged": "Flagged for review",
    "all": "All pairs",
}


def empty_queue_message(queue: str, has_pairs: bool, filtered: bool) -> tuple[str, str, list[tuple[str, str]]]:
    """What an empty labeling queue says and offers: (title, text, [(button, action)]), the action 'import'
    (the project has no pairs), 'clear' (filters hide the rest of the queue) or another queue to go to."""
    if not has_pairs:
        return ("This project has no pairs yet",
                "Import a file of prompts with two responses each (TRL, HH-RLHF, UltraFeedback; JSONL, JSON or "
                "CSV) to start labeling: File ▸ Import… (Ctrl+I).", [("Import…", "import")])
    title = QUEUE_TITLES[queue]
    if filtered:
        return (f"Nothing left in “{title}” with these filters",
                "Clear the filters to see the whole queue, or pick another queue above.", [("Clear filters", "clear")])
    why = {"mine": "You have labeled every pair here.",
           "informative": "You have labeled every pair here.",
           "needs_more": "No pair waits for another annotator's label.",
           "disagreements": "The annotators agree on every pair labeled more than once.",
           "flagged": "No pair is flagged for review. Press F on a pair to flag it, with a note.",
           "all": ""}[queue]
    others = [q for q in ("mine", "needs_more", "disagreements", "all") if q != queue]
    return (f"Nothing left in “{title}”", f"{why} Pick another queue:".strip(), [(QUEUE_TITLES[q], q) for q in others])


class LabelFilters(QWidget):
    """Which pairs come next: the queue, the split and source filters and a search. Each is reached with
    Tab; a value changes only when picked from the list (see FilterCombo), and the search on Enter."""

    changed = Signal()
    """The queue or a filter changed."""
    done = Signal()
    """A value was picked or a search entered: the keys go back to the workbench."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(parent)
        self.queue_box = FilterCombo()
        for key, title in QUEUE_TITLES.items():
            self.queue_box.addItem(title, key)
        self.queue_box.setToolTip("Which pairs to label next")
        self.split_box = FilterCombo()
        self.split_box.addItem("All splits", None)
        self.split_box.addItem("train", "train")
        self.split_box.addItem("eval", "eval")
        self.source_box = SourceCombo(project)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search prompt and responses…  (Enter)")
        self.search_edit.setClearButtonEnabled(True)
        for box, name in ((self.queue_box, "Queue"), (self.split_box, "Split filter"),
                          (self.source_box, "Source filter")):
            named(box, name)
            box.currentIndexChanged.connect(self.changed)
            box.activated.connect(lambda _index: self.done.emit())
        named(self.search_edit, "Search prompt and responses")
        self.search_edit.returnPressed.connect(self.changed)
        self.search_edit.returnPressed.connect(self.done)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        caption = QLabel("Queue")
        caption.setBuddy(self.queue_box)
        row.addWidget(caption)
        row.addWidget(self.queue_box)
        row.addWidget(self.split_box)
        row.addWidget(self.source_box)
        row.addWidget(self.search_edit, 1)

    @property
    def queue(self) -> str:
        return self.queue_box.currentData()

    def scope(self) -> dict[str, str | None]:
        """The filters as the store takes them: split, source, search (None: any)."""
        return {"split": self.split_box.currentData(), "source": self.source_box.currentData(),
                "search": self.search_edit.text().strip() or None}

    def set_queue(self, queue: str) -> None:
        self.queue_box.setCurrentIndex(self.queue_box.findData(queue))

    def set_filters(self, split: str | None = None, source: str | None = None, search: str | None = None) -> None:
        """Set every filter at once (None: any), then say so once."""
        self.split_box.blockSignals(True)
        self.split_box.setCurrentIndex(max(self.split_box.findData(split), 0))
        self.split_box.blockSignals(False)
        if source is not None and self.source_box.findData(source) < 0:
            self.source_box.addItem(source, source)
        self.source_box.blockSignals(True)
        self.source_box.setCurrentIndex(max(self.source_box.findData(source), 0))
        self.source_box.blockSignals(False)
        self.search_edit.setText(search or "")
        self.changed.emit()

    def describe_queue(self, queue: str, text: str) -> None:
        """The tooltip of one queue in the list (what the informative queue's order comes from)."""
        self.queue_box.setItemData(self.queue_box.findData(queue), text, Qt.ItemDataRole.ToolTipRole)


class DisplayOptions:
    """How the pair is shown, in the prompt pane's header: raw text, word diff and sync scroll, and the
    guidelines and shortcuts buttons. Each says its key; Tab reaches them, and a click leaves the keys with the
    workbench. The view connects them (their own signals) and places `widgets`."""

    def __init__(self):
        self.raw = QCheckBox("Raw text")
        self.raw.setToolTip("Show the texts exactly as stored, without markdown rendering — key M")
        self.diff = QCheckBox("Word diff")
        self.diff.setToolTip("Highlight the words each response has that the other lacks — key D")
        self.sync = QCheckBox("Sync scroll")
        self.sync.setToolTip("Scroll both responses together — key L")
        self.sync.setChecked(True)
        self.guidelines = QPushButton("Guidelines  G")
        named(self.guidelines, "Guidelines")
        self.guidelines.setToolTip("Show or hide the project's labeling guidelines — key G")
        self.guidelines.setCheckable(True)
        self.help = QPushButton("Shortcuts  ?")
        named(self.help, "Keyboard shortcuts")
        self.help.setToolTip("Show every key — ? or F1")
        self.widgets = (self.raw, self.diff, self.sync, self.guidelines, self.help)
        for w in self.widgets:
            w.setFocusPolicy(Qt.FocusPolicy.TabFocus)

class VerdictControls(QWidget):
    """The verdict: a button per choice, then strength, rationale, flag for review and undo. Each button says
    its key; every one is reached with Tab but never takes the keys from the workbench on a click."""

    chosen = Signal(str)
    """A choice button was pressed: its side (label_parts.SIDES)."""
    flag_requested = Signal()
    undo_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
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
            named(b, SIDE_TITLES[side], tips[side])
            b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            b.setMinimumHeight(40)
            b.clicked.connect(lambda _c=False, s=side: self.chosen.emit(s))
            choices.addWidget(b, 3 if side in ("left", "right") else 2)
            self.choice_buttons[side] = b

        self.strength_buttons: dict[Strength, QPushButton] = {}
        details = QHBoxLayout()
        details.addWidget(QLabel("Strength"))
        for s, key in STRENGTH_KEYS.items():
            b = QPushButton(f"{s.value.capitalize()}  {key}")
            b.setCheckable(True)
            b.setProperty("strength", True)
            b.setToolTip(f"How much better the chosen response is: {s.value} — key {key} (again to clear)")
            named(b, f"Strength: {s.value}")
            b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            b.clicked.connect(lambda checked, s=s: self.set_strength(s if checked else None))
            details.addWidget(b)
            self.strength_buttons[s] = b
        details.addSpacing(12)
        self.rationale = QLineEdit()
        self.rationale.setPlaceholderText("Rationale (optional) — press R to write, Enter to go back to the keys")
        self.rationale.setToolTip("Why this verdict — key R focuses it; Enter or Esc returns to the keys")
        named(self.rationale, "Rationale")
        details.addWidget(self.rationale, 1)
        self.flag_button = self._action_button("⚑ Flag  F", "Flag for review",
                                               "Flag this pair for review, with a note for the reviewer — key F")
        self.flag_button.clicked.connect(self.flag_requested)
        details.addWidget(self.flag_button)
        self.undo_button = self._action_button("Undo  Ctrl+Z", "Undo last label",
                                               "Undo your last label and show that pair again — Ctrl+Z")
        self.undo_button.clicked.connect(self.undo_requested)
        details.addWidget(self.undo_button)

        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(6)
        rows.addLayout(choices)
        rows.addLayout(details)

    @staticmethod
    def _action_button(text: str, name: str, tip: str) -> QPushButton:
        b = QPushButton(text)
        b.setToolTip(tip)
        named(b, name)
        b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        return b

    def tab_chain(self) -> list[QWidget]:
        """Its controls in reading order."""
        return [*self.choice_buttons.values(), *self.strength_buttons.values(), self.rationale, self.flag_button,
                self.undo_button]

    def strength(self) -> Strength | None:
        for s, b in self.strength_buttons.items():
            if b.isChecked():
                return s
        return None

    def set_strength(self, strength: Strength | str | None) -> None:
        strength = Strength(strength) if strength else None
        for s, b in self.strength_buttons.items():
            b.setChecked(s is strength)

    def set_enabled(self, on: bool) -> None:
        """Choices, strength and flag on or off (undo stays: it acts on the last label, not on this pair)."""
        for b in (*self.choice_buttons.values(), *self.strength_buttons.values(), self.flag_button):
            b.setEnabled(on)
