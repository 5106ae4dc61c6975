"""The labeling view's save path: `Verdicts` saves each verdict and knows which Ctrl+Z may undo; `LabelSaver`
saves a label off the GUI thread when the project is busy, so the window never waits on the write lock.

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

from studio.core.types import Label, LabelState
from studio.store import LabelConflict, Project, ProjectBusy, ProjectError


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


class NotUndone(Exception):
    """Why Ctrl+Z undid nothing; the message says it to the annotator."""


class Verdicts(QObject):
    """The labels one labeling view saves, and which of them Ctrl+Z may undo.

    A verdict is saved at once when the project is free and handed to a `LabelSaver` when another process
    holds the write lock, so the GUI thread never waits. Each carries the annotator's label in force on the
    pair as it was shown (`showing`): when another window changed it meanwhile the store refuses with a
    LabelConflict, and the next verdict on that pair replaces the other one knowingly. Only labels made here
    are undone, newest first, and only while still in force."""

    saved = Signal(object, int)
    """(the label's arguments, its new id): saved now or in the background."""
    failed = Signal(object, object)
    """(the label's arguments, the ProjectError): disk full, read-only, busy for too long, or a conflict."""
    saving = Signal(bool)
    """A background save started (True) or ended (False)."""

    def __init__(self, project: Project, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.pair_id: int | None = None
        self.expected: int | None = None  # the annotator's label in force on the pair shown, as shown
        self._own: list[int] = []  # the labels made here, newest last
        self._saver: LabelSaver | None = None

    @property
    def busy(self) -> bool:
        """A verdict is being saved in the background."""
        return self._saver is not None

    def showing(self, pair_id: int | None, expected: int | None) -> None:
        """The pair now on screen, and the annotator's label in force on it (None: none)."""
        self.pair_id, self.expected = pair_id, expected

    def forget(self) -> None:
        """Another annotator labels here now: their labels are not this window's to undo."""
        self._own.clear()

    def save(self, label: dict[str, Any]) -> int | None:
        """Save a verdict (`record_label`'s arguments but expected_current). Returns its id, or None when it
        failed or is being saved in the background (`saved` or `failed` follows)."""
        label = {**label, "expected_current": self.expected}
        try:
            label_id = self.project.record_label(**label, wait=False)
        except ProjectBusy:
            self._save_in_background(label)
            return None
        except ProjectError as e:
            self._failed(label, e)
            return None
        self._saved(label, label_id)
        return label_id

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background save has ended (the window is closing); False if it still runs."""
        return self._saver is None or self._saver.wait(timeout)

    def undo(self) -> tuple[Label, int]:
        """Undo the latest label made here, if still in force: (that label, its pair). NotUndone says why not."""
        if self._saver is not None:
            raise NotUndone("Still saving your last verdict; undo it once it is saved.")
        if not self._own:
            raise NotUndone("Nothing to undo: this window has made no labels yet.")
        undone = self.project.label(self._own[-1])
        if undone.state is not LabelState.CURRENT:
            self._own.pop()
            raise NotUndone(f"Not undone: your last label here, on pair #{undone.pair_id}, was replaced or undone "
                            "in another window since.")
        try:
            pair_id = self.project.undo_label(undone.id, wait=False)
        except ProjectBusy:
            raise NotUndone("The project is busy (another process is writing to it): press Ctrl+Z again in a "
                            "moment.") from None
        except ProjectError as e:
            raise NotUndone(f"Not undone: {e}") from None
        self._own.pop()
        return undone, pair_id

    def _saved(self, label: dict[str, Any], label_id: int) -> None:
        self._own.append(label_id)
        self.saved.emit(label, label_id)

    def _failed(self, label: dict[str, Any], error: ProjectError) -> None:
        if isinstance(error, LabelConflict) and label["pair_id"] == self.pair_id:
            # the next verdict on this pair replaces the other window's label knowingly
            self.expected = error.current.id if error.current else None
        self.failed.emit(label, error)

    def _save_in_background(self, label: dict[str, Any]) -> None:
        if self.project.folder is None:  # an in-memory project has no second connection to wait on
            self._failed(label, ProjectBusy("the project is busy; try again"))
            return
        self._saver = LabelSaver(self.project.folder, label)
        self._saver.saved.connect(self._background_saved)
        self._saver.failed.connect(self._background_failed)
        self.saving.emit(True)
        self._saver.start()

    def _background_saved(self, label: dict[str, Any], label_id: int) -> None:
        self._saver = None
        self.saving.emit(False)
        self._saved(label, label_id)

    def _background_failed(self, label: dict[str, Any], error: ProjectError) -> None:
        self._saver = None
        self.saving.emit(False)
        self._failed(label, error)
