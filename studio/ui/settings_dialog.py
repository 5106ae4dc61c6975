"""Settings: who labels and their daily goal, the look (theme, text size), what training runs use (device,
Hugging Face cache, offline), and the open project's own settings (length counts, labels per pair)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.models import hf_cache_dir
from studio.store import Project
from studio.ui import prefs, theme
from studio.ui.widgets import NumberEdit, QuietCombo, named

THEME_TITLES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


@dataclass(frozen=True)
class Settings:
    """What the dialog was left with (the caller applies it)."""

    annotator: str
    daily_goal: int
    theme: str
    zoom: float
    device: str
    hf_cache: str
    offline: bool
    show_length_counts: bool | None
    """None without an open project."""
    overlap_target: int | None


class SettingsDialog(QDialog):
    """Edit the preferences (and the open project's settings); `settings()` reads the form back, checked."""

    def __init__(self, annotator: str, project: Project | None = None, gpus: list | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.project = project

        you = QGroupBox("You")
        yf = QFormLayout(you)
        self.annotator_edit = named(QLineEdit(annotator), "Annotator name")
        self.annotator_edit.setToolTip("Stored on every label you make in any project")
        self.goal_edit = named(NumberEdit(), "Daily goal")
        self.goal_edit.setText(str(prefs.get("daily_goal")))
        self.goal_edit.setToolTip("Labels a day the progress bar counts towards; 0 for no goal")
        yf.addRow("Annotator name", self.annotator_edit)
        yf.addRow("Daily goal (labels)", self.goal_edit)

        look = QGroupBox("Appearance")
        lf = QFormLayout(look)
        self.theme_box = named(QuietCombo(), "Theme")
        for key, title in THEME_TITLES.items():
            self.theme_box.addItem(title, key)
        self.theme_box.setCurrentIndex(max(0, self.theme_box.findData(str(prefs.get("theme")))))
        self.zoom_box = named(QuietCombo(), "Text size")
        for z in theme.ZOOM_STEPS:
            self.zoom_box.addItem(f"{z:.0%}", z)
        self.zoom_box.setCurrentIndex(min(range(len(theme.ZOOM_STEPS)),
                                          key=lambda i: abs(theme.ZOOM_STEPS[i] - float(prefs.get("zoom")))))
        self.zoom_box.setToolTip("Of the desktop's font size; Ctrl+plus and Ctrl+minus change it too")
        lf.addRow("Theme", self.theme_box)
        lf.addRow("Text size", self.zoom_box)

        train = QGroupBox("Training runs")
        tf = QFormLayout(train)
        self.device_box = named(QuietCombo(), "Default device")
        self.device_box.addItem("Automatic (a GPU when there is one)", "auto")
        self.device_box.addItem("CPU only", "cpu")
        for i, gpu in enumerate(gpus or []):
            self.device_box.addItem(f"GPU {i}: {gpu.name}", f"cuda:{i}")
        current = str(prefs.get("device"))
        if self.device_box.findData(current) < 0:
            self.device_box.addItem(current, current)  # a GPU not present now keeps its setting
        self.device_box.setCurrentIndex(self.device_box.findData(current))
        self.cache_edit = named(QLineEdit(str(prefs.get("hf_cache"))), "Hugging Face cache folder")
        self.cache_edit.setPlaceholderText(str(hf_cache_dir()))
        self.cache_edit.setToolTip("Where runs find downloaded models (the launch dialog lists them); empty: the "
                                   "default (or HF_HOME / HF_HUB_CACHE)")
        browse = QPushButton("Folder…")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse_cache)
        cache_row = QHBoxLayout()
        cache_row.addWidget(self.cache_edit, 1)
        cache_row.addWidget(browse)
        self.offline_check = named(QCheckBox("Offline: runs never download (models from disk or the cache)"),
                                   "Offline mode")
        self.offline_check.setChecked(bool(prefs.get("offline")))
        tf.addRow("Default device", self.device_box)
        tf.addRow("Model cache", cache_row)
        tf.addRow("", self.offline_check)

        layout = QVBoxLayout(self)
        for box in (you, look, train):
            layout.addWidget(box)
        self.counts_check = self.overlap_edit = None
        if project is not None:
            proj = QGroupBox(f"This project ({project.name})")
            pf = QFormLayout(proj)
            self.counts_check = named(QCheckBox("Show each response's character and word counts"),
                                      "Show length counts")
            self.counts_check.setToolTip("Counts can pull annotators towards the longer answer; hiding them is "
                                         "recorded with its time so the bias audit can compare before and after")
            self.counts_check.setChecked(project.show_length_counts)
            self.overlap_edit = named(NumberEdit(), "Labels per pair")
            self.overlap_edit.setText(str(project.overlap_target))
            self.overlap_edit.setToolTip("How many annotators each pair should get (the “Needs another label” queue)")
            pf.addRow("", self.counts_check)
            pf.addRow("Labels per pair", self.overlap_edit)
            layout.addWidget(proj)
        self.error_label = QLabel()
        self.error_label.setObjectName("errorText")
        self.error_label.setWordWrap(True)
        layout.addWidget(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_ok)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(600)

    def _browse_cache(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Hugging Face cache folder", self.cache_edit.text() or
                                                  str(hf_cache_dir()))
        if folder:
            self.cache_edit.setText(folder)

    def _number(self, edit: NumberEdit, what: str, minimum: int, errors: list[str]) -> int:
        try:
            value = int(edit.text().strip())
            if value < minimum:
                raise ValueError
        except ValueError:
            errors.append(f"{what}: expected a whole number of at least {minimum}, got {edit.text().strip()!r}")
            edit.set_invalid(True)
            return minimum
        edit.set_invalid(False)
        return value

    def settings(self) -> tuple[Settings | None, list[str]]:
        """The form's values, or the problems in words (each naming its field)."""
        errors: list[str] = []
        name = self.annotator_edit.text().strip()
        if not name:
            errors.append("Annotator name: say who is labeling (it is stored on every label)")
        if name.startswith("import:"):
            errors.append("Annotator name: names starting with 'import:' are kept for imported labels")
        goal = self._number(self.goal_edit, "Daily goal", 0, errors)
        overlap = self._number(self.overlap_edit, "Labels per pair", 1, errors) if self.overlap_edit else None
        cache = self.cache_edit.text().strip()
        if cache and Path(cache).expanduser().exists() and not Path(cache).expanduser().is_dir():
            errors.append(f"Model cache: {cache} is a file, not a folder")
        if errors:
            return None, errors
        return Settings(name, goal, self.theme_box.currentData(), float(self.zoom_box.currentData()),
                        self.device_box.currentData(), cache, self.offline_check.isChecked(),
                        self.counts_check.isChecked() if self.counts_check else None, overlap), []

    def _on_ok(self) -> None:
        values, errors = self.settings()
        self.error_label.setText("\n".join(errors))
        if values is not None:
            self.accept()
