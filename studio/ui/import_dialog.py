"""Import and export dialogs: the store's formats run on a worker thread with its own database connection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.store import Project, ProjectError, export, formats, import_writing


class StoreJob(QThread):
    """Runs one import or export off the GUI thread. SQLite connections must not be shared across
    threads mid-transaction, so the job opens the project again for itself."""

    progress = Signal(int, int)
    """(done, total) as the store reports it."""
    succeeded = Signal(object)
    """The store's report (ImportReport or ExportReport)."""
    failed = Signal(str, list)
    """A message, and the per-row errors as strings (empty for a whole-file problem)."""

    def __init__(self, folder: Path, kind: str, kwargs: dict[str, Any], parent=None):
        super().__init__(parent)
        self.folder = folder
        self.kind = kind
        self.kwargs = kwargs

    def run(self) -> None:
        try:
            project = Project.open(self.folder)
        except ProjectError as e:
            self.failed.emit(str(e), [])
            return
        try:
            if self.kind == "import":
                report = import_writing.import_file(project, progress=self.progress.emit, **self.kwargs)
            else:
                report = export.export_file(project, progress=self.progress.emit, **self.kwargs)
        except formats.ImportErrors as e:
            self.failed.emit(f"{len(e.errors):,} invalid row(s); nothing was imported.", [str(x) for x in e.errors])
        except (ProjectError, OSError, ValueError) as e:
            self.failed.emit(str(e), [])
        except Exception as e:  # a worker thread must report every failure: the dialog would wait in silence
            self.failed.emit(f"unexpected error: {type(e).__name__}: {e}", [])
        else:
            self.succeeded.emit(report)
        finally:
            project.close()


def _path_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    lay.addWidget(button)
    return w


class _StoreDialog(QDialog):
    """What the import and export dialogs share: a file row, a format box, a progress bar, a status line and
    a run button beside Close. Subclasses add their fields to `self.form` and lay out `self.extra`."""

    def __init__(self, project: Project, title: str, width: int, run_label: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(width)
        self.project = project
        self.job: StoreJob | None = None
        self.path_edit = QLineEdit()
        self.path_edit.setAccessibleName("File")
        browse = QPushButton("Browse…")
        # Enter in the file field runs the import (or export), it does not open the file browser: the
        # browse button must not become the dialog's default when the field has the focus
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse)
        self.format_box = QComboBox()
        self.form = QFormLayout()
        self.form.addRow("File", _path_row(self.path_edit, browse))
        self.form.addRow("Format", self.format_box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.run_button = self.buttons.addButton(run_label, QDialogButtonBox.ButtonRole.ActionRole)
        self.run_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)

    def _lay_out(self, *extra: QWidget) -> None:
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        for w in extra:
            layout.addWidget(w, 1)
        layout.addWidget(self.buttons)
        # Only now is the button inside the dialog: made default earlier, the dialog would not know and would
        # pick its first button when shown (Enter in the file field then opened the browser, or closed it)
        self.run_button.setDefault(True)

    def _browse(self) -> None:
        raise NotImplementedError

    def start(self) -> StoreJob | None:
        raise NotImplementedError


class ImportDialog(_StoreDialog):
    """Pick a file and format; the import is checked whole and written all or nothing (in short
    transactions, so labeling goes on meanwhile), so an invalid file changes nothing and the error list
    says which line and field."""

    imported = Signal(object)
    """An import finished: its report."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(project, "Import preference data", 640, "Import", parent)
        self.format_box.addItem("Detect from the fields", "auto")
        for f in formats.IMPORT_FORMATS:
            self.format_box.addItem(f, f)
        self.split_box = QComboBox()
        self.split_box.addItems(["train", "eval"])
        self.annotator_edit = QLineEdit()
        self.annotator_edit.setPlaceholderText("import:<file name>")
        self.annotator_edit.setToolTip("Labeled formats store one label per row under this annotator name")
        self.skip_check = QCheckBox("Import the valid rows and list the invalid ones")
        self.form.addRow("Split", self.split_box)
        self.form.addRow("Annotator", self.annotator_edit)
        self.form.addRow("", self.skip_check)
        self.errors = QListWidget()
        self.errors.hide()
        self._lay_out(self.errors)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import file", "", "Preference data (*.jsonl *.json *.csv *.tsv "
                                              "*.gz);;All files (*)")
        if path:
            self.path_edit.setText(path)

    def start(self) -> StoreJob | None:
        path = self.path_edit.text().strip()
        if not path:
            self.status.setText("Choose a file to import.")
            return None
        kwargs = {"path": path, "fmt": self.format_box.currentData(), "split": self.split_box.currentText(),
                  "annotator": self.annotator_edit.text().strip() or None,
                  "skip_invalid": self.skip_check.isChecked()}
        self.errors.clear()
        self.errors.hide()
        self.status.setText(f"Reading {Path(path).name}…")
        self.progress.setRange(0, 0)
        self.run_button.setEnabled(False)
        self.job = StoreJob(self.project.folder, "import", kwargs, self)
        self.job.progress.connect(self._progress)
        self.job.succeeded.connect(self._done)
        self.job.failed.connect(self._failed)
        self.job.finished.connect(lambda: self.run_button.setEnabled(True))
        self.job.start()
        return self.job

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _done(self, report: formats.ImportReport) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        text = (f"Imported {report.file} as {report.format}: {report.pairs_added:,} pairs, "
                f"{report.prompts_added:,} prompts, {report.labels_added:,} labels; "
                f"{report.duplicates:,} duplicates left out.")
        if report.invalid:
            text += f" {len(report.invalid):,} invalid rows were not imported:"
            self._show_errors([str(e) for e in report.invalid])
        self.status.setText(text)
        self.imported.emit(report)

    def _failed(self, message: str, errors: list[str]) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"<b>Nothing was imported.</b> {message}")
        self._show_errors(errors)

    def _show_errors(self, errors: list[str]) -> None:
        if errors:
            self.errors.addItems(errors)
            self.errors.show()

    def reject(self) -> None:
        # the import is all or nothing; closing waits for it rather than leaving a thread behind
        if self.job is not None and self.job.isRunning():
            self.status.setText("Finishing the import before closing…")
            self.job.wait()
        super().reject()


class ExportDialog(_StoreDialog):
    """Write resolved preferences (trl, trl-chat, csv) or every label (labels) to a file."""

    def __init__(self, project: Project, parent: QWidget | None = None):
        super().__init__(project, "Export", 560, "Export", parent)
        for f in formats.EXPORT_FORMATS:
            self.format_box.addItem(f, f)
        self.split_box = QComboBox()
        self.split_box.addItem("All splits", None)
        self.split_box.addItem("train", "train")
        self.split_box.addItem("eval", "eval")
        self.form.addRow("Split", self.split_box)
        self.expected_rows = None
        self._ticker = QTimer(self, interval=1000, timeout=self._tick)
        self._lay_out()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to", "preferences.jsonl",
                                              "JSON lines (*.jsonl);;JSON (*.json);;CSV (*.csv)")
        if path:
            self.path_edit.setText(path)

    def start(self) -> StoreJob | None:
        path = self.path_edit.text().strip()
        if not path:
            self.status.setText("Choose a file to write.")
            return None
        # busy until the export has counted its rows, then a real bar; the status says how many and how long
        self.progress.setRange(0, 0)
        self.run_button.setEnabled(False)
        self.expected_rows: int | None = None
        self._started = time.monotonic()
        self._target = Path(path).name
        self.status.setText(f"Exporting to {self._target}…")
        self.job = StoreJob(self.project.folder, "export",
                            {"out": path, "fmt": self.format_box.currentData(), "split": self.split_box.currentData()},
                            self)
        self.job.progress.connect(self._counted)
        self.job.finished.connect(self._ticker.stop)
        self._ticker.start()
        self.job.succeeded.connect(self._done)
        self.job.failed.connect(self._failed)
        self.job.finished.connect(lambda: self.run_button.setEnabled(True))
        self.job.start()
        return self.job

    def _counted(self, done: int, total: int) -> None:
        self.expected_rows = total
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self._tick()

    def _tick(self) -> None:
        if self.expected_rows is None:
            return
        what = "labels" if self.format_box.currentData() == "labels" else "preferences"
        elapsed = time.monotonic() - self._started
        self.status.setText(f"Exporting {self.expected_rows:,} {what} to {self._target}…  {elapsed:.0f} s")

    def _done(self, report: export.ExportReport) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        left = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in report.left_out.items() if n)
        self.status.setText(f"Wrote {report.rows:,} rows to {report.file} ({report.format})."
                            + (f" Left out: {left}." if left else ""))

    def _failed(self, message: str, _errors: list[str]) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"<b>Export failed.</b> {message}")

    def reject(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.job.wait()
        super().reject()
