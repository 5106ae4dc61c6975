"""The look of the app: light or dark (following the system unless the settings say otherwise), the
desktop's font size times the user's zoom, and the style sheet filled in with the palette's colours."""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from studio.ui import palette as P

STYLE_FILE = Path(__file__).resolve().parent.parent / "resources" / "ui" / "style.qss"
THEMES = ("system", "light", "dark")
ZOOM_STEPS = (0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6, 1.8, 2.0)
# Offscreen and minimal platforms have no desktop to take a font size from (Qt falls back to 9 pt):
# screenshots and tests use this instead, so they look like an ordinary desktop.
HEADLESS_POINT_SIZE = 10.0
# font sizes in the style sheet, relative to the application font
RELATIVE_SIZES = {"pt_title": 1.3, "pt_hero": 1.8, "pt_tab": 1.05, "pt_text": 1.1, "pt_choice": 1.1}


class _Notifier(QObject):
    changed = Signal(object)
    """The theme or zoom changed: the new palette. Views with colours baked into rendered text redraw."""


notifier = _Notifier()
_state = {"mode": "system", "zoom": 1.0, "desktop_pt": None, "sheet": None, "applied": None}


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark


def resolve(mode: str) -> P.Palette:
    """The palette a theme setting means now: 'system' follows the desktop's colour scheme."""
    if mode == "dark" or (mode == "system" and system_is_dark()):
        return P.DARK
    return P.LIGHT


def desktop_point_size(app: QApplication) -> float:
    """The desktop's font size, read once before the zoom changes the application font."""
    if _state["desktop_pt"] is None:
        size = app.font().pointSizeF()
        if QGuiApplication.platformName() in ("offscreen", "minimal") or size <= 0:
            size = HEADLESS_POINT_SIZE
        _state["desktop_pt"] = size
    return float(_state["desktop_pt"])


def style_sheet(pal: P.Palette, base_pt: float) -> str:
    if _state["sheet"] is None:
        try:
            _state["sheet"] = STYLE_FILE.read_text(encoding="utf-8")
        except OSError:
            _state["sheet"] = ""  # a missing style sheet leaves the stock look; the app still works
    values = pal.qss_values() | {k: f"{base_pt * r:.1f}" for k, r in RELATIVE_SIZES.items()}
    return Template(_state["sheet"]).safe_substitute(values)


def qt_palette(pal: P.Palette) -> QPalette:
    """Fusion's palette in the theme's colours (the style sheet covers only what it names)."""
    q = QPalette()
    roles = QPalette.ColorRole
    for role, color in ((roles.Window, pal.window), (roles.WindowText, pal.text), (roles.Base, pal.surface),
                        (roles.AlternateBase, pal.surface_alt), (roles.Text, pal.text), (roles.Button, pal.button),
                        (roles.ButtonText, pal.text), (roles.BrightText, pal.error_text),
                        (roles.Highlight, pal.accent), (roles.HighlightedText, pal.accent_text),
                        (roles.ToolTipBase, pal.surface), (roles.ToolTipText, pal.text),
                        (roles.PlaceholderText, pal.faint), (roles.Link, pal.focus), (roles.Mid, pal.border),
                        (roles.Midlight, pal.surface_alt), (roles.Dark, pal.border_strong),
                        (roles.Shadow, "#000000"), (roles.Light, pal.surface)):
        q.setColor(role, QColor(color))
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        q.setColor(QPalette.ColorGroup.Disabled, role, QColor(pal.faint))
    return q


def apply(app: QApplication, mode: str | None = None, zoom: float | None = None) -> P.Palette:
    """Apply a theme setting and zoom to the application (the current ones where not given)."""
    if mode is not None:
        if mode not in THEMES:
            raise ValueError(f"theme: expected one of {', '.join(THEMES)}, got {mode!r}")
        _state["mode"] = mode
    if zoom is not None:
        _state["zoom"] = clamp_zoom(zoom)
    pal = resolve(_state["mode"])
    base_pt = desktop_point_size(app) * _state["zoom"]
    key = (pal.name, round(base_pt, 2))
    if _state["applied"] == key and app.styleSheet():
        return pal
    first = _state["applied"] is None
    P.set_current(pal)
    if pal.dark or not first:  # the light theme at start is Fusion's own palette: nothing to replace
        app.setPalette(qt_palette(pal) if pal.dark else app.style().standardPalette())
    font = app.font()
    font.setPointSizeF(base_pt)
    app.setFont(font)
    app.setStyleSheet(style_sheet(pal, base_pt))
    _state["applied"] = key
    _apply_charts(pal)
    if not first:
        notifier.changed.emit(pal)
    return pal


def follow_system(app: QApplication) -> None:
    """Re-apply when the desktop switches between light and dark (only matters for the 'system' theme)."""
    hints = QGuiApplication.styleHints()
    if hints is not None and not _state.get("following"):
        _state["following"] = True
        hints.colorSchemeChanged.connect(lambda _scheme: apply(app))


def mode() -> str:
    return str(_state["mode"])


def zoom() -> float:
    return float(_state["zoom"])


def clamp_zoom(value: float) -> float:
    return min(max(float(value), ZOOM_STEPS[0]), ZOOM_STEPS[-1])


def step_zoom(value: float, steps: int) -> float:
    """The next zoom step up (steps > 0) or down from `value`."""
    if steps > 0:
        return next((z for z in ZOOM_STEPS if z > value + 1e-6), ZOOM_STEPS[-1])
    return next((z for z in reversed(ZOOM_STEPS) if z < value - 1e-6), ZOOM_STEPS[0])


def _apply_charts(pal: P.Palette) -> None:
    """pyqtgraph's colours: new charts take them from its config; charts already on screen are repainted.
    Nothing happens before the Runs section has imported pyqtgraph."""
    pg = sys.modules.get("pyqtgraph")
    if pg is None:
        return
    pg.setConfigOptions(background=pal.chart_background, foreground=pal.chart_foreground)
    app = QApplication.instance()
    if app is None:
        return
    for widget in app.allWidgets():
        if isinstance(widget, pg.GraphicsView):
            widget.setBackground(pal.chart_background)
            for item in widget.scene().items():
                if isinstance(item, pg.AxisItem):
                    item.setPen(pal.chart_foreground)
                    item.setTextPen(pal.chart_foreground)
                elif isinstance(item, pg.LabelItem):
                    item.setText(item.text, color=pal.chart_foreground)
