"""Small widgets every view shares: combo boxes and number fields that input cannot change by accident,
and the empty state that says what to do next."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

# keys that step a combo box to another value (names: reading Qt.Key at import builds its whole enum, ~5 ms)
_STEP_KEYS = ("Key_Up", "Key_Down", "Key_PageUp", "Key_PageDown", "Key_Home", "Key_End")


def named(widget: QWidget, name: str, description: str = "") -> QWidget:
    """Give a control the name a screen reader says (and the description it adds); returns the control."""
    widget.setAccessibleName(name)
    if description:
        widget.setAccessibleDescription(description)
    return widget


def centre_column(parent: QWidget, column: QVBoxLayout, weight: int = 4) -> None:
    """Lay `column` out in the middle of `parent`, `weight` parts of the width to one part either side."""
    outer = QHBoxLayout(parent)
    outer.addStretch(1)
    outer.addLayout(column, weight)
    outer.addStretch(1)


class QuietCombo(QComboBox):
    """A combo box the mouse wheel changes only while it has the focus (scrolling a form past it leaves
    it alone), and which a click focuses but the wheel does not."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()  # the scroll area around it scrolls instead


class FilterCombo(QuietCombo):
    """A filter: its value changes only when picked from its list. Arrow and page keys open the list instead
    of stepping to the next value, the wheel does nothing, and it is reached with Tab (a click opens the list
    without keeping the focus, so the keys go back to the view)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if Qt.Key(event.key()).name in _STEP_KEYS:
            self.showPopup()
            event.accept()
            return
        super().keyPressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()


class NumberEdit(QLineEdit):
    """The one numeric field of the forms: the number as typed (5e-5 stays 5e-5), right-aligned, checked by
    the form on submit; no spin arrows and no wheel, so nothing changes it but typing."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.setMaximumWidth(160)

    def set_invalid(self, invalid: bool) -> None:
        """Outline the field (style sheet `QLineEdit[invalid="true"]`) while its value is not accepted."""
        if bool(self.property("invalid")) != invalid:
            self.setProperty("invalid", invalid)
            self.style().unpolish(self)
            self.style().polish(self)


class EmptyState(QWidget):
    """A centred message for a view with nothing to show, saying why and offering what to do next."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("emptyState")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.title = QLabel()
        self.title.setObjectName("emptyTitle")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setWordWrap(True)
        self.text = QLabel()
        self.text.setObjectName("emptyText")
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self._buttons = QHBoxLayout()  # stretch, the buttons, stretch: centred
        self._buttons.addStretch(1)
        self._buttons.addStretch(1)
        self.buttons: list[QPushButton] = []
        col = QVBoxLayout()
        col.addStretch(1)
        col.addWidget(self.title)
        col.addWidget(self.text)
        col.addSpacing(10)
        col.addLayout(self._buttons)
        col.addStretch(2)
        centre_column(self, col)

    def show_state(self, title: str, text: str = "", actions: Sequence[tuple[str, Callable[[], object]]] = ()) -> None:
        """Say `title` (and `text`), with a button per (label, what it does)."""
        self.title.setText(title)
        self.text.setText(text)
        self.text.setVisible(bool(text))
        for b in self.buttons:
            self._buttons.removeWidget(b)
            b.deleteLater()
        self.buttons = []
        for label, slot in actions:
            b = QPushButton(label)
            b.clicked.connect(lambda _c=False, slot=slot: slot())
            self._buttons.insertWidget(self._buttons.count() - 1, b)
            self.buttons.append(b)
        self.setAccessibleName(title)

    def button(self, label: str) -> QPushButton:
        return next(b for b in self.buttons if b.text() == label)
