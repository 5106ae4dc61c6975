"""The welcome page, shown when no project is open: create, open (a recent one) or try the demo project."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from studio.ui import prefs
from studio.ui.widgets import centre_column, named

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

DEMO_FOLDER_NAME = "Preference Studio demo"


def demo_folder() -> Path:
    """Where "Open the demo" keeps its project: the user's documents folder (tests replace this)."""
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(docs or Path.home()) / DEMO_FOLDER_NAME



class WelcomePage(QWidget):
    """Shown when no project is open: create one, open one (a recent one with a double-click or Enter), try
    the demo, or change the settings first."""

    def __init__(self, window: MainWindow):
        super().__init__()
        self.setObjectName("welcome")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        title = QLabel("Preference Studio")
        title.setObjectName("welcomeTitle")
        intro = QLabel("Label which of two responses is better, keep the labels in one file per project, and "
                       "fine-tune a local model on them (LoRA: DPO and its variants, or PPO and RLOO against a reward "
                       "model learned from the same labels), watching it train.")
        intro.setWordWrap(True)
        intro.setObjectName("emptyText")
        self.new_button = QPushButton("New project…")
        self.new_button.setToolTip("Create a project folder, then import prompts and response pairs into it — "
                                   "Ctrl+Shift+N")
        self.open_button = QPushButton("Open project…")
        self.open_button.setToolTip("Open a project folder (one holding studio.db) — Ctrl+O")
        self.demo_button = QPushButton("Open the demo")
        self.demo_button.setToolTip(f"A small labeled project to try everything on, in {demo_folder()}")
        self.settings_button = QPushButton("Settings…")
        self.settings_button.setToolTip("Your name, daily goal, theme, text size, training device — Ctrl+,")
        self.new_button.clicked.connect(window.new_project_dialog)
        self.open_button.clicked.connect(window.open_project_dialog)
        self.demo_button.clicked.connect(window.open_demo)
        self.settings_button.clicked.connect(window.settings_dialog)
        self.recent = named(QListWidget(), "Recent projects")
        self.recent.setObjectName("recentList")
        self.recent.itemActivated.connect(lambda item: window.open_project(item.data(Qt.ItemDataRole.UserRole)))
        self.no_recent = QLabel("No recent projects yet. Start with the demo, or create a project and import "
                                "your data (File ▸ Import).")
        self.no_recent.setObjectName("emptyText")
        self.no_recent.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.new_button, self.open_button, self.demo_button):
            b.setMinimumHeight(34)
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.settings_button)
        recent_title = QLabel("<b>Recent projects</b>  (double-click or Enter to open)")
        recent_title.setBuddy(self.recent)
        col = QVBoxLayout()
        col.addStretch(1)
        col.addWidget(title)
        col.addWidget(intro)
        col.addSpacing(14)
        col.addLayout(buttons)
        col.addSpacing(18)
        col.addWidget(recent_title)
        col.addWidget(self.recent)
        col.addWidget(self.no_recent)
        col.addStretch(1)
        centre_column(self, col)
        self.refresh()

    def refresh(self, paths: list[str] | None = None) -> None:
        """List the recent projects (those of the settings unless given)."""
        self.recent.clear()
        for path in prefs.recent_projects() if paths is None else paths:
            item = QListWidgetItem(f"{Path(path).name}    —    {path}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.recent.addItem(item)
        has_recent = self.recent.count() > 0
        self.recent.setVisible(has_recent)
        self.no_recent.setVisible(not has_recent)
        if has_recent:
            self.recent.setCurrentRow(0)
            # as tall as its rows (up to MAX_RECENT), not a large empty box
            rows = self.recent.sizeHintForRow(0) * self.recent.count()
            self.recent.setFixedHeight(rows + 2 * self.recent.frameWidth() + 4)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.recent.count():
            self.recent.setFocus()  # Enter opens the latest project
