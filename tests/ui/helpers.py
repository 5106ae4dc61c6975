"""Helpers for the Qt tests: a widget shown and made the active window, as when a person is typing in it; the
application styled as `studio gui` styles it (a fixture: import it into the test module)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication, QWidget

from studio.ui import palette, theme


def show_active(qtbot, widget: QWidget, size: tuple[int, int]) -> QWidget:
    """Register, size, show and activate `widget` (shortcuts fire only in the active window)."""
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget)
    return widget


@pytest.fixture
def styled_app(qapp, monkeypatch):
    """The application with the app's own theme applied (light, desktop text size), as `studio gui` styles
    it; afterwards the plain look the other tests expect comes back."""
    before = (qapp.styleSheet(), qapp.font(), qapp.palette())
    monkeypatch.setattr(theme, "_state", dict(theme._state, applied=None))
    monkeypatch.setattr(palette, "_current", palette.current())
    theme.apply(qapp, "light", 1.0)
    yield qapp
    sheet, font, pal = before
    # widgets the test closed are deleted first: unstyling the application with them still pending deletion
    # crashes Qt in the next setStyleSheet (the app itself never goes back to no style sheet)
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.setStyleSheet(sheet)
    qapp.setFont(font)
    qapp.setPalette(pal)
