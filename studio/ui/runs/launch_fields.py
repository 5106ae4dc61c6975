"""The launch form's own fields: an editor for each setting (the reward-run picker for a PPO/RLOO run's reward),
the outline of an invalid one, and the pre-fill from an existing run; and where the form looks for models (the
Hugging Face cache of the settings and the model folders besides it, the Generate dialog's too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QWidget

from studio.core.configs import ConfigField
from studio.store.rlhf import reward_runs
from studio.ui import prefs
from studio.ui.widgets import NumberEdit, QuietCombo


class RewardPicker(QComboBox):
    """The `reward_model` of a PPO/RLOO run: one of the project's finished reward runs, or a typed folder of a
    sequence-classification model."""

    def __init__(self, project):
        super().__init__()
        self.setEditable(True)
        self.lineEdit().setPlaceholderText("a finished reward run of this project, or a classifier model folder")
        for run in reward_runs(project):
            model = run["model"].rsplit("/", 1)[-1]
            self.addItem(f"run {run['id']} · {run['name']} · {model}", str(run["id"]))
        self.setCurrentIndex(0 if self.count() else -1)

    def value(self) -> str:
        idx = self.findText(self.currentText())
        return str(self.itemData(idx)) if idx >= 0 and self.itemData(idx) else self.currentText().strip()

    def set_value(self, value: str) -> None:
        idx = self.findData(str(value))
        if idx >= 0:
            self.setCurrentIndex(idx)
        elif value:
            self.setEditText(str(value))


def field_editor(f: ConfigField, project, changed: Callable[[], None]) -> QWidget:
    """A combo box for a choice, a check box for a yes/no, and one kind of number field for the rest (the
    number as typed, so 5e-5 reads 5e-5; checked by parse_value); for a PPO/RLOO run's reward, a picker of
    the project's reward runs."""
    if f.name == "reward_model":
        w = RewardPicker(project)
        w.currentTextChanged.connect(lambda _t: changed())
        return w
    if f.choices:
        w = QuietCombo()
        w.setMaximumWidth(220)
        w.addItems([str(c) for c in f.choices])
        w.currentTextChanged.connect(lambda _t: changed())
    elif f.type is bool:
        w = QCheckBox()
        w.toggled.connect(lambda _b: changed())
    elif f.type in (int, float):
        w = NumberEdit()
        w.textChanged.connect(lambda _t: changed())
    else:
        w = QLineEdit()
        w.textChanged.connect(lambda _t: changed())
    return w


def set_invalid(widget: QWidget, invalid: bool) -> None:
    """Outline a field whose value is not accepted (the style sheet's [invalid="true"] rules)."""
    if bool(widget.property("invalid")) != invalid:
        widget.setProperty("invalid", invalid)
        widget.style().unpolish(widget)
        widget.style().polish(widget)


def hf_cache() -> Path | None:
    """The Hugging Face cache folder of the settings, or None for the default."""
    folder = str(prefs.get("hf_cache")).strip()
    return Path(folder).expanduser() if folder else None
def model_search_dirs(project) -> list[Path]:
    """Folders whose sub-folders are offered as models besides the HF cache: the project's `models/`
    and ~/models."""
    dirs = [Path.home() / "models"]
    if project.folder is not None:
        dirs.insert(0, project.folder / "models")
    return dirs


def initial_from_run(run: dict, retry: bool = False) -> dict:
    """Dialog pre-fill from an existing run: duplicate (parent set) or retry after a failure."""
    return {"model": run["model"], "config": run["config"], "parent_id": run["id"], "retry": retry,
            "name": "" if not retry else f"{run['name']}-retry", "source_name": run["name"]}
