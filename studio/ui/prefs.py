"""The user's remembered settings (QSettings): recent projects, annotator name, window geometry, and the
preferences of the Settings dialog (theme, zoom, daily goal, training device, model cache, offline mode).

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


# ---------------------------------------------------------------------------------------------- preferences
# Each preference: its QSettings key and default. Read through get()/put() so a value of the wrong type in a
# hand-edited settings file falls back to the default instead of failing.

DEFAULTS: dict[str, object] = {
    "theme": "system",              # system | light | dark
    "zoom": 1.0,                    # times the desktop's font size (Ctrl+plus / Ctrl+minus)
    "daily_goal": 100,              # labels a day the progress bar counts towards (0: no goal)
    "device": "auto",               # what training runs use: auto | cpu | cuda:N
    "hf_cache": "",                 # Hugging Face cache folder ('' = the default, or HF_HOME/HF_HUB_CACHE)
    "offline": True,                # training runs never reach the network (models come from disk)
    "label/guidelines_visible": False,
    "label/prompt_share": 0.45,     # the most of the workbench's height the prompt takes (the splitter)
}


def get(key: str):
    """A preference, converted to its default's type (the default when unset or unreadable)."""
    default = DEFAULTS[key]
    value = settings().value(key)
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
        return type(default)(value)
    except (TypeError, ValueError):
        return default


def put(key: str, value) -> None:
    if key not in DEFAULTS:
        raise KeyError(f"{key}: not a preference; known: {', '.join(DEFAULTS)}")
    s = settings()
    s.setValue(key, value)
    s.sync()


def worker_environment() -> dict[str, str]:
    """Environment for training and export processes from the preferences: which device, which model
    cache, whether they may download."""
    env: dict[str, str] = {"HF_HUB_OFFLINE": "1" if get("offline") else "0"}
    cache = str(get("hf_cache")).strip()
    if cache:
        env["HF_HUB_CACHE"] = str(Path(cache).expanduser())
    device = str(get("device"))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["ACCELERATE_USE_CPU"] = "true"
    elif device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    return env
