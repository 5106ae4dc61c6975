"""Offscreen screenshots of real views on real data, for the README and for looking at the UI in checks."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

ViewFactory = Callable[..., object]
"""factory(window: MainWindow, args: Namespace) -> the QWidget to grab. A dialog (a top-level QDialog) is
drawn over the window, at its own size, as a person would see it."""

_VIEWS: dict[str, ViewFactory] = {}
_LOADED = False


def register_view(name: str, factory: ViewFactory) -> None:
    """Add a view `studio screenshot --view NAME` can render; the Runs section adds its own."""
    _VIEWS[name] = factory


def _label_view(window, args: Namespace):
    view = window.show_section("Label")
    if getattr(args, "pair", None):
        view.show_pair(args.pair)
    return window


def _data_view(window, args: Namespace):
    view = window.show_section("Data")
    view.refresh()
    if getattr(args, "pair", None):
        row = next((i for i, r in enumerate(view.model.rows) if r[0] == args.pair), None)
        if row is not None:
            view.table.selectRow(row)
    return window


def _welcome_view(window, args: Namespace):
    """The start page, listing the given project as the one recent project (not the user's own list)."""
    folder = str(window.project.folder.resolve())
    window._close_project(ask=False)
    window._update_title()
    window.welcome.refresh([folder])
    return window


def _settings_view(window, args: Namespace):
    from studio.ui.settings_dialog import SettingsDialog

    return SettingsDialog(window.annotator, window.project, gpus=[], parent=window)


def _launch_view(window, args: Namespace):
    from studio.ui.runs.launch_dialog import LaunchDialog

    dialog = LaunchDialog(window.project, window, gpus=[])
    if getattr(args, "loss", None):
        dialog.set_value("loss_type", args.loss)
    return dialog


def _review_view(window, args: Namespace):
    view = window.show_section("Data")
    view.pages.setCurrentWidget(view.review)
    view.review.refresh()
    return window


def views() -> dict[str, ViewFactory]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        register_view("label", _label_view)
        register_view("data", _data_view)
        register_view("welcome", _welcome_view)
        register_view("settings", _settings_view)
        register_view("launch", _launch_view)
        register_view("review", _review_view)
        from studio.ui.runs import register_screenshot_views

        register_screenshot_views(register_view)
    return dict(_VIEWS)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT such as 1280x800, got {text!r}") from None
    if not (320 <= w <= 7680 and 240 <= h <= 4320):
        raise ValueError(f"--size: {w}x{h} is outside 320x240 .. 7680x4320")
    return w, h


THEMES = ("light", "dark")


def take_screenshot(project: str | Path, view: str, out: str | Path, size: tuple[int, int] = (1280, 800),
                    args: Namespace | None = None, theme: str = "light") -> Path:
    """Open the project in a main window offscreen at `size` (in the light or dark theme, at the desktop's
    text size whatever the user's zoom), show `view`, and save a PNG to `out`."""
    from PySide6.QtWidgets import QApplication, QDialog

    if theme not in THEMES:
        raise ValueError(f"--theme: expected {' or '.join(THEMES)}, got {theme!r}")
    if QApplication.instance() is None:
        # never flash a window on the user's desktop: render off screen
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from studio.ui.app import make_app

    app = make_app(theme_mode=theme, zoom=1.0)
    from studio.ui.main_window import MainWindow

    known = views()
    if view not in known:
        raise ValueError(f"--view: unknown view {view!r}; known: {', '.join(sorted(known))}")
    args = args or Namespace()
    window = MainWindow(annotator=getattr(args, "annotator", None), remember_recent=False)
    widget = None
    try:
        if not window.open_project(project):
            raise ValueError(f"{project}: could not open the project")
        window.resize(*size)
        window.show()
        app.processEvents()
        widget = known[view](window, args)
        dialog = isinstance(widget, QDialog)
        if dialog:
            widget.show()
        elif widget is not window and widget.parent() is None:
            # a view built on its own gets the requested size, as if it filled the window
            widget.resize(*size)
            widget.show()
        for _ in range(3):  # layouts settle over a few event-loop turns (lazy fetches, text layout)
            app.processEvents()
        if hasattr(widget, "redraw"):  # charts draw on a timer; draw now so the grab shows them
            widget.redraw()
            app.processEvents()
        image = _over_window(window, widget) if dialog else widget.grab()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out), "PNG"):
            raise OSError(f"{out}: could not write the PNG")
        return out
    finally:
        if widget is not None and widget is not window and (widget.parent() is None or isinstance(widget, QDialog)):
            widget.close()
            widget.deleteLater()
        window.close()
        window.deleteLater()
        app.processEvents()


def _over_window(window, dialog):
    """The window with the dialog drawn over it, centred and no larger than the window (as a window
    manager would place it), behind a light shade."""
    from PySide6.QtGui import QColor, QPainter

    frame = window.grab()
    w, h = min(dialog.width(), frame.width() - 40), min(dialog.height(), frame.height() - 40)
    if (w, h) != (dialog.width(), dialog.height()):
        dialog.resize(w, h)
        from PySide6.QtWidgets import QApplication

        for _ in range(3):
            QApplication.processEvents()
    shot = dialog.grab()
    painter = QPainter(frame)
    painter.fillRect(frame.rect(), QColor(0, 0, 0, 70))
    x, y = (frame.width() - shot.width()) // 2, (frame.height() - shot.height()) // 2
    painter.fillRect(x - 1, y - 1, shot.width() + 2, shot.height() + 2, QColor(0, 0, 0, 120))
    painter.drawPixmap(x, y, shot)
    painter.end()
    return frame
