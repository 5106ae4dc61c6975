"""The user's remembered settings (QSettings): recent projects, annotator name, window geometry.

Its own module so that the main window and the application setup both use it without importing each other.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION = "PreferenceStudio"
APP_NAME = "Preference Studio"
MAX_RECENT = 8


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
