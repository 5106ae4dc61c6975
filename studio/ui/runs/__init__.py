"""The Runs section: launch, watch live, stop, resume and compare training runs.

Placeholder until the runs view lands; the main window embeds `RunsPanel` and registers its
screenshot views through `register_screenshot_views`.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class RunsPanel(QWidget):
    """The Runs section of the main window."""

    def __init__(self, project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Training runs appear here."))

    def confirm_close(self) -> bool:
        """Called by the main window before it closes; False cancels the close."""
        return True


def register_screenshot_views(register) -> None:
    """Register screenshot views: register(name, factory(window, args) -> QWidget)."""
