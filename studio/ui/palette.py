"""The app's colours, light and dark, in one place: the style sheet, rendered texts and charts read them here.

Plain data (no Qt), so any view (the run monitor's charts included) can read `current()` without pulling in
the theme machinery; `studio.ui.theme` decides which palette is current and applies it.
"""

from __future__ import annotations


class Palette:
    """A theme's colours by name (CSS colour strings unless said otherwise). A plain class, not a dataclass:
    this module is imported before the window opens, and a 40-field dataclass costs milliseconds to build.

    window, surface (panes, tables, text views), surface_alt (alternate rows, pane headers), header, border,
    border_strong, text, text_strong, muted, faint (past labels, disabled text), accent, accent_text (on the
    accent), focus (the focus ring of every control), selection, hover, pressed, button, choice_text,
    bad_text, note ("you labeled this pair"), saved (the "Saved: …" confirmation), warning_text,
    warning_background, error_text, error_background, progress, progress_track, overlay (an RGBA tuple over
    a view behind the shortcut help); for rendered texts: code_background, quote_text, table_rule,
    diff_highlight, role_colors and turn_backgrounds (dicts by chat role); for charts: chart_background,
    chart_foreground, chart_cursor."""

    def __init__(self, name: str, dark: bool, **colors: object):
        self.name = name
        self.dark = dark
        self.__dict__.update(colors)

    def __getattr__(self, name: str) -> str:  # for type checkers: every colour is an attribute
        raise AttributeError(f"palette {self.name!r} has no colour {name!r}")

    def qss_values(self) -> dict[str, str]:
        """The colours by name, for `$name` in the style sheet."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, str)}


LIGHT = Palette(
    name="light", dark=False,
    window="#fafafa", surface="#ffffff", surface_alt="#f1f2f4", header="#ffffff",
    border="#dcdde0", border_strong="#b9bdc4", text="#1d1f23", text_strong="#111317", muted="#555a62",
    faint="#8a8d93", accent="#2f6fe0", accent_text="#ffffff", focus="#2f6fe0", selection="#cfe0fc",
    hover="#eef3fd", pressed="#dbe6fb", button="#ffffff", choice_text="#173f8a", bad_text="#8a1c1c",
    note="#6a4b00", saved="#1e7a45", warning_text="#7a4100", warning_background="#fff4e5",
    error_text="#b3261e", error_background="#fdecea", progress="#2f9e5b", progress_track="#e6e7ea",
    overlay=(0, 0, 0, 110),
    code_background="#f3f4f6", quote_text="#555a62", table_rule="#d0d3d8", diff_highlight="#ffe08a",
    role_colors={"system": "#6b6f76", "user": "#1f5fbf", "assistant": "#2e7d32", "tool": "#8a5a00"},
    turn_backgrounds={"system": "#f3f3f4", "user": "#eef4fc", "assistant": "#f1f8f1", "tool": "#fbf5ea"},
    chart_background="#ffffff", chart_foreground="#333333", chart_cursor="#999999",
)

DARK = Palette(
    name="dark", dark=True,
    window="#1c1d20", surface="#25272b", surface_alt="#2c2e33", header="#222428",
    border="#3a3d43", border_strong="#50545c", text="#e3e5e8", text_strong="#f4f5f7", muted="#a3a8b0",
    faint="#7b8089", accent="#4c8dff", accent_text="#0d1117", focus="#6ea2ff", selection="#2d4a7a",
    hover="#2f3a4d", pressed="#34486b", button="#2c2e33", choice_text="#a8c7ff", bad_text="#ff9d94",
    note="#e5c07b", saved="#7fd18a", warning_text="#f0c27b", warning_background="#3a2f1c",
    error_text="#ff8a80", error_background="#3b2222", progress="#3fb56c", progress_track="#3a3d43",
    overlay=(0, 0, 0, 150),
    code_background="#2f3237", quote_text="#a3a8b0", table_rule="#4a4e55", diff_highlight="#6b5a1e",
    role_colors={"system": "#a3a8b0", "user": "#8ab4ff", "assistant": "#84d08e", "tool": "#e0b062"},
    turn_backgrounds={"system": "#2a2b2e", "user": "#223049", "assistant": "#203224", "tool": "#352d1f"},
    chart_background="#1f2125", chart_foreground="#c9ccd1", chart_cursor="#6b7079",
)

PALETTES = {"light": LIGHT, "dark": DARK}
_current = LIGHT


def current() -> Palette:
    """The palette in use now (light until the theme says otherwise)."""
    return _current


def set_current(palette: Palette) -> None:
    global _current
    _current = palette
