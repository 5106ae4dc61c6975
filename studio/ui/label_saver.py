"""Saves a label off the GUI thread when the project is busy, so the window never waits on the write lock.

The labeling view tries to save on its own thread without waiting; when another process (an import, a
training worker) holds the lock, it hands the label here. A plain Python thread opens its own connection
(SQLite connections must not be shared mid-transaction) and waits as long as the store lets a write wait;
the result comes back to the view as a queued signal.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from studio.store import Project, ProjectError


class LabelSaver(QObject):
    """One label to save in the background: `record_label`'s keyword arguments, kept as the view made them."""

    saved = Signal(object, int)
    """(the label's arguments, its new id)."""
    failed = Signal(object, object)
    """(the label's arguments, the ProjectError: a LabelConflict when another window changed the label)."""

    def __init__(self, folder: Path, label: dict[str, Any]):
        super().__init__()
        self.folder = folder
        self.label = dict(label)
        self._thread = threading.Thread(target=self._run, name="label-save", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the save has ended (when the window closes); False if it is still going."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            with Project.open(self.folder) as project:
                label_id = project.record_label(**self.label)
        except ProjectError as e:
            self.failed.emit(self.label, e)
        except Exception as e:  # a thread must report every failure, or the label would be lost silently
            self.failed.emit(self.label, ProjectError(f"{type(e).__name__}: {e}"))
        else:
            self.saved.emit(self.label, label_id)
