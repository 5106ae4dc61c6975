"""Application setup: the QApplication and its theme, the window's placement, run_gui()."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from studio.ui import prefs, theme
from studio.ui.prefs import APP_NAME, ORGANIZATION, settings


def make_app(argv: list[str] | None = None, theme_mode: str | None = None, zoom: float | None = None) -> QApplication:
    """The QApplication (reused when one exists, as under pytest-qt), styled with the theme and zoom of the
    settings (or those given: screenshots)."""
    app = QApplication.instance()
    if app is None:
        # Fusion, the same look everywhere, chosen as the app is made: a style replaced later costs ~5 ms, and
        # asking for the style at all has PySide build its QStyle type on the spot (~8 ms at start)
        app = QApplication([*(argv if argv is not None else sys.argv[:1]), "-style", "Fusion"])
    elif app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APP_NAME)
    # The base size is the application font (the desktop's, times the zoom) rather than a
    # `QWidget { font-size }` rule: a rule that matches every widget makes each one re-resolve its font when
    # polished (~10 ms more at start).
    mode = theme_mode or str(prefs.get("theme"))
    theme.apply(app, mode if mode in theme.THEMES else "system", zoom if zoom is not None else float(prefs.get("zoom")))
    if theme_mode is None:
        theme.follow_system(app)
    return app


def run_gui(project_path: str | Path | None = None, annotator: str | None = None) -> int:
    """Open the main window (on a project when given) and run until it closes."""
    app = make_app()
    from studio.ui.main_window import MainWindow

    window = MainWindow(project_path, annotator=annotator)
    place_window(window)
    window.show()
    if os.environ.get("STUDIO_EXIT_AFTER_PAINT"):
        # start-up timing (packaging/bundle.py): quit once the event loop has shown the window
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, lambda: (print("PAINTED", flush=True), app.quit()))
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
