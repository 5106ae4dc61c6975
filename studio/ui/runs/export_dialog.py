"""The dialog asking where to export a run's model (an adapter, or merged into the base weights)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)


def export_problem(out: Path) -> str | None:
    """Why `studio export-model` would refuse this output folder (checked before spawning it)."""
    if not str(out).strip():
        return "choose an output folder"
    if out.exists() and not out.is_dir():
        return f"{out} is a file, not a folder"
    if out.is_dir() and any(out.iterdir()):
        return f"{out} exists and is not empty; choose a new folder"
    return None


class ExportDialog(QDialog):
    """Where to export a run's model, and whether to merge the adapter into the base weights."""

    def __init__(self, run: dict, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Export {run['name']}")
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.out_edit = QLineEdit(str(Path.home() / f"{run['name']}-model"))
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        form.addRow("Output folder", row)
        self.merged = QCheckBox("Merge the adapter into the base model (a standalone model, larger)")
        form.addRow(self.merged)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d62728;")
        form.addRow(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_ok)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(640, self.sizeHint().height())

    def out_path(self) -> Path:
        return Path(self.out_edit.text().strip()).expanduser()

    def _on_ok(self) -> None:
        # the export refuses a non-empty folder; say so here rather than after spawning it
        problem = export_problem(self.out_path())
        self.error_label.setText(problem or "")
        if problem is None:
            self.accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to folder")
        if folder:
            self.out_edit.setText(folder)
