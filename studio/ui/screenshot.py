"""Offscreen screenshots of real views on real data, for the README and for looking at the UI in checks."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

ViewFactory = Callable[..., object]
"""factory(window: MainWindow, args: Namespace) -> the QWidget to grab."""

_VIEWS: dict[str, ViewFactory] = {}
_LOADED = False


def register_view(name: str, factory: ViewFactory) -> None:
    """Add a view `studio screenshot --view NAME` can render; the Runs section adds its own."""
    _VIEWS[name] = factory


def _label_view(window, args: Namespace):
    window.show_section("Label")
    return window


def _data_view(window, args: Namespace):
    view = window.show_section("Data")
    view.refresh()
    return window


def views() -> dict[str, ViewFactory]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        register_view("label", _label_view)
        register_view("data", _data_view)
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


def take_screenshot(project: str | Path, view: str, out: str | Path, size: tuple[int, int] = (1280, 800),
                    args: Namespace | None = None) -> Path:
    """Open the project in a main window offscreen at `size`, show `view`, and save a PNG to `out`."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        # never flash a window on the user's desktop: render off screen
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from studio.ui.app import make_app

    app = make_app()
    from studio.ui.main_window import MainWindow

    known = views()
    if view not in known:
        raise ValueError(f"--view: unknown view {view!r}; known: {', '.join(sorted(known))}")
    args = args or Namespace()
    # Nobody can click in an offscreen window: it opens no dialog (closing with a run still training asked
    # "keep it running?" and waited forever), and any modal that still appears is closed at once.
    window = MainWindow(annotator=getattr(args, "annotator", None), remember_recent=False, interactive=False)
    guard = QTimer(interval=50, timeout=_close_modal_dialogs)
    guard.start()
    widget = None
    try:
        if not window.open_project(project):
            raise ValueError(window.last_error or f"{project}: could not open the project")
        window.resize(*size)
        window.show()
        app.processEvents()
        widget = known[view](window, args)
        if widget is not window and widget.parent() is None:
            # a view built on its own gets the requested size, as if it filled the window
            widget.resize(*size)
            widget.show()
        for _ in range(3):  # layouts settle over a few event-loop turns (lazy fetches, text layout)
            app.processEvents()
        if hasattr(widget, "redraw"):  # charts draw on a timer; draw now so the grab shows them
            widget.redraw()
            app.processEvents()
        image = widget.grab()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out), "PNG"):
            raise OSError(f"{out}: could not write the PNG")
        return out
    finally:
        if widget is not None and widget is not window and widget.parent() is None:
            widget.close()
            widget.deleteLater()
        window.close()
        window.deleteLater()
        app.processEvents()
        guard.stop()


def _close_modal_dialogs() -> None:
    from PySide6.QtWidgets import QApplication

    dialog = QApplication.activeModalWidget()
    if dialog is not None:
        dialog.close()
