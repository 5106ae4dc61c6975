"""Application setup: the QApplication, its style, remembered settings (recent projects), run_gui()."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ORGANIZATION = "PreferenceStudio"
APP_NAME = "Preference Studio"
MAX_RECENT = 8
STYLE_FILE = Path(__file__).resolve().parent.parent / "resources" / "ui" / "style.qss"


def settings() -> QSettings:
    """The user's settings. STUDIO_SETTINGS names an ini file instead (tests, portable installs)."""
    path = os.environ.get("STUDIO_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, "studio")


def recent_projects() -> list[str]:
    """Recently opened project folders, newest first, those still on disk."""
    value = settings().value("recent_projects", [])
    if isinstance(value, str):  # QSettings gives a bare string for a one-element list in ini files
        value = [value]
    return [p for p in (value or []) if (Path(p) / "studio.db").exists()]


def add_recent_project(folder: str | Path) -> None:
    path = str(Path(folder).resolve())
    items = [p for p in recent_projects() if p != path]
    s = settings()
    s.setValue("recent_projects", [path, *items][:MAX_RECENT])
    s.sync()


def default_annotator() -> str:
    """The last annotator name used here, else the OS user name."""
    saved = settings().value("annotator")
    if saved:
        return str(saved)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "annotator"


def remember_annotator(name: str) -> None:
    s = settings()
    s.setValue("annotator", name)
    s.sync()


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused when one exists, as under pytest-qt), styled."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APP_NAME)
    if app.style().name().lower() != "fusion":
        # the same look everywhere; replacing a style costs ~5 ms, so only when it is another one
        app.setStyle("Fusion")
    # The base size is the application font rather than a `QWidget { font-size }` rule: a rule that
    # matches every widget makes each one re-resolve its font when polished (~10 ms more at start).
    font = app.font()
    font.setPointSizeF(10)
    app.setFont(font)
    try:
        app.setStyleSheet(STYLE_FILE.read_text(encoding="utf-8"))
    except OSError:
        pass  # a missing style sheet leaves the stock look; the app still works
    return app


def run_gui(project_path: str | Path | None = None, annotator: str | None = None) -> int:
    """Open the main window (on a project when given) and run until it closes."""
    app = make_app()
    from studio.ui.main_window import MainWindow

    window = MainWindow(project_path, annotator=annotator)
    place_window(window)
    window.show()
    return app.exec()


def place_window(window) -> None:
    """Restore the last window geometry, else fit a comfortable size inside the screen's free area, so
    the choice buttons at the bottom are never off-screen on a laptop."""
    saved = settings().value("window/geometry")
    if saved is not None and window.restoreGeometry(saved):
        return
    screen = window.screen() or QApplication.primaryScreen()
    if screen is None:
        window.resize(1400, 900)
        return
    free = screen.availableGeometry()
    width, height = min(1400, int(free.width() * 0.95)), min(900, int(free.height() * 0.92))
    window.resize(width, height)
    frame = window.frameGeometry()
    frame.moveCenter(free.center())
    window.move(frame.topLeft())
