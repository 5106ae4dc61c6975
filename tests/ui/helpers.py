"""Helpers for the Qt tests: a widget shown and made the active window, as when a person is typing in it."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QWidget


def show_active(qtbot, widget: QWidget, size: tuple[int, int]) -> QWidget:
    """Register, size, show and activate `widget` (shortcuts fire only in the active window)."""
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget)
    return widget
