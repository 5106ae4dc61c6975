"""The launch dialog: a form generated from the method's config dataclass (the fields that matter for the
chosen method and loss up front, the rest under Advanced, all in words), presets, model picker, data summary
with bias warnings, what the device has against what the run needs, and how long it will take."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from studio.core.configs import (
    ConfigError,
    ConfigField,
    config_fields,
    config_for,
    flatten,
    from_dict,
    parse_value,
    presets_for,
    to_dict,
    unflatten,
)
from studio.core.models import LocalModel, ModelNotFound, find_local_models, resolve_model
from studio.store import ProjectError
from studio.store.rlhf import reward_source
from studio.store.run_queue import create_seed_group, enqueue
from studio.ui import palette, prefs
from studio.ui.runs import launch_estimate as estimate
from studio.ui.runs import resources
from studio.ui.runs.formatting import fmt_bytes, fmt_params
from studio.ui.runs.launch_fields import RewardPicker, field_editor, hf_cache, model_search_dirs, set_invalid
from studio.ui.widgets import NumberEdit, QuietCombo, named

GROUP_TITLES = {"method": "Method", "rollout": "Rollouts", "training": "Optimisation", "lora": "LoRA", "data": "Data",
                "hardware": "Hardware", "eval": "Evaluation"}
GROUP_ORDER = ("method", "rollout", "training", "lora", "data", "eval", "hardware")
CUSTOM = "Custom"
DEVICE_TITLES = {"auto": "automatic (a GPU when there is one)", "cpu": "CPU only"}
METHODS = (("DPO and variants", "dpo"), ("Reward model", "reward"), ("PPO (against a reward model)", "ppo"),
           ("RLOO (against a reward model)", "rloo"))
RL_METHODS = ("ppo", "rloo")
MAX_SEEDS = 20


class LaunchDialog(QDialog):
    """Configure and create a run. `launch()` validates, creates the run and returns its id; the
    caller spawns the worker (so tests and Retry/Duplicate reuse the same dialog)."""

    def __init__(self, project, parent: QWidget | None = None, initial: dict | None = None,
                 models: list[LocalModel] | None = None, gpus: list[resources.Gpu] | None = None):
        super().__init__(parent)
        self.project = project
        self.initial = initial or {}
        self.parent_id: int | None = self.initial.get("parent_id")
        self.run_id: int | None = None
        self.run_ids: list[int] = []  # every run created: one, or a seed group's
        self.queued = False  # the runs joined the queue (a runner starts them one after another)
        self.method = (self.initial.get("config") or {}).get("method", "dpo")
        self.cls = config_for(self.method)
        self.fields: dict[str, ConfigField] = {f.name: f for f in config_fields(self.cls)}
        self.editors: dict[str, QWidget] = {}
        self.rows: dict[str, tuple[QFormLayout, QWidget]] = {}  # each field's form and editor, to hide it
        self.models = models if models is not None else find_local_models(model_search_dirs(project), hf_cache())
        self.gpus = gpus if gpus is not None else resources.gpus()
        self.summary = resources.summarize_data(project)
        source = self.initial.get("source_name") or "run"
        self.setWindowTitle(f"Retry {source}" if self.initial.get("retry") else
                            (f"Duplicate {source} with changes" if self.parent_id else "New training run"))
        # fields outside the method group set by the last preset applied, with the values it gave them
        # (SimPO's learning rate): the next preset puts them back unless the user changed them since
        self._preset_extras: dict[str, Any] = {}
        self._mean_chars: float | None = None  # prompt + one response, mean over labeled pairs (read once)
        self._fit_screen(parent, 980, 760)
        self._build()
        self._fill(self.initial.get("config") or {})
        self._update_visibility()
        if self.initial.get("model"):
            self.set_model(self.initial["model"])
        self._update_estimate()

    # ------------------------------------------------------------------ building

    def _fit_screen(self, parent: QWidget | None, width: int, height: int) -> None:
        """The preferred size, or less on a small screen (the form scrolls), so the buttons stay on screen."""
        screen = (parent.screen() if parent is not None else None) or self.screen()
        if screen is not None:
            free = screen.availableGeometry()
            width, height = min(width, int(free.width() * 0.95)), min(height, int(free.height() * 0.92))
        self.resize(width, height)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        top = QFormLayout()
        self.name_edit = named(QLineEdit(self.initial.get("name", "")), "Run name")
        self.name_edit.setPlaceholderText(f"automatic ({self.method}-<id>)")
        top.addRow("Run name", self.name_edit)

        self.method_combo = named(QuietCombo(), "Method")
        for label, method in METHODS:
            self.method_combo.addItem(label, method)
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(self.method)))
        self.method_combo.setToolTip("DPO trains on the pairs directly; a reward model learns to score them; PPO and "
                                     "RLOO train against a reward model on the project's prompts")
        self.method_combo.activated.connect(lambda _i: self.set_method(self.method_combo.currentData()))
        top.addRow("Method", self.method_combo)

        model_row = QHBoxLayout()
        self.model_combo = named(QuietCombo(), "Model")
        self.model_combo.setEditable(True)
        self.model_combo.setMinimumWidth(360)
        self.model_combo.lineEdit().setPlaceholderText("a Hugging Face id in the local cache, or a model folder")
        for m in self.models:
            detail = ", ".join(x for x in (m.architecture, fmt_params(m.parameters), fmt_bytes(m.size_bytes)) if x)
            self.model_combo.addItem(f"{m.name}  ({detail})", m.name)
        self.model_combo.setCurrentIndex(-1 if not self.models else 0)
        self.model_combo.currentTextChanged.connect(lambda _t: self._update_estimate())
        browse = QPushButton("Folder…")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse_model)
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(browse)
        top.addRow("Model", model_row)

        self.preset_combo = named(QuietCombo(), "Preset")
        self._fill_presets()
        self.preset_combo.setToolTip("Fill in the method settings of a known recipe; you can change them after")
        self.preset_combo.activated.connect(lambda _i: self.apply_preset(self.preset_combo.currentText()))
        top.addRow("Preset", self.preset_combo)

        seeds_row = QHBoxLayout()
        self.seeds_edit = named(NumberEdit(), "Seeds")
        self.seeds_edit.setText("1")
        self.seeds_edit.setMaximumWidth(60)
        self.seeds_edit.setToolTip(f"Train this many runs (1 to {MAX_SEEDS}) of these settings with seeds seed, "
                                   "seed+1, …, one after another; Compare draws them as their mean with a band of "
                                   "±1 std")
        self.seeds_edit.textChanged.connect(lambda _t: self._on_seeds(self.seed_count() or 1))
        self.queue_check = QCheckBox("Queue: start after the runs queued or training now (one GPU)")
        self.queue_check.setToolTip("Queued runs train one after another; several seeds are always queued")
        seeds_row.addWidget(self.seeds_edit)
        seeds_row.addWidget(self.queue_check)
        seeds_row.addStretch(1)
        top.addRow("Seeds", seeds_row)
        layout.addLayout(top)

        # what the run trains on and needs, in a column beside the form (the form scrolls, this stays put)
        info = QVBoxLayout()
        data_box = QGroupBox("Data")
        dl = QVBoxLayout(data_box)
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setTextFormat(Qt.TextFormat.RichText)
        dl.addWidget(self.data_label)
        device_box = QGroupBox("Device and time")
        vl = QVBoxLayout(device_box)
        device = str(prefs.get("device"))
        self.device_label = QLabel(html.escape(resources.device_text(self.gpus)) + "<br>Runs use: "
                                   + html.escape(DEVICE_TITLES.get(device, device)) + " (Settings)")
        self.device_label.setWordWrap(True)
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.time_label = QLabel()
        self.time_label.setWordWrap(True)
        vl.addWidget(self.device_label)
        vl.addWidget(self.estimate_label)
        vl.addWidget(self.time_label)
        info.addWidget(data_box)
        info.addWidget(device_box)
        info.addStretch(1)

        # The fields that matter for the chosen method and loss (metadata `basic`), then the rest under
        # Advanced; a field that does not apply to the loss (`applies_when`) is hidden.
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        self._build_form()
        info_host = QWidget()
        info_host = QWidget()
        info_host.setLayout(info)
        info_scroll = QScrollArea()  # on a small screen the warnings scroll rather than being cut off
        info_scroll.setWidgetResizable(True)
        info_scroll.setWidget(info_host)
        info_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QHBoxLayout()
        body.addWidget(scroll, 3)
        body.addWidget(info_scroll, 2)
        layout.addLayout(body, 1)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setObjectName("errorText")
        layout.addWidget(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.launch_button = buttons.addButton("Launch", QDialogButtonBox.ButtonRole.AcceptRole)
        self.launch_button.setDefault(True)
        buttons.accepted.connect(self._on_launch)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._show_data()

    def _build_form(self) -> None:
        """The method's settings (generated from its config class): the basic ones, then Advanced by group."""
        self.editors, self.rows = {}, {}
        form_host = QWidget()
        host = QVBoxLayout(form_host)
        main_box = QGroupBox("Settings")
        main_form = QFormLayout(main_box)
        self.advanced_button = QPushButton()
        self.advanced_button.setCheckable(True)
        self.advanced_button.setAutoDefault(False)
        self.advanced_button.setToolTip("Every other setting of the method, by group")
        self.advanced_button.toggled.connect(self._show_advanced)
        self.advanced = QWidget()
        grid = QGridLayout(self.advanced)
        grid.setContentsMargins(0, 0, 0, 0)
        groups: dict[str, list[ConfigField]] = {}
        ordered = sorted(self.fields.values(), key=lambda f: GROUP_ORDER.index(f.group) if f.group in GROUP_ORDER
                         else len(GROUP_ORDER))
        for f in ordered:
            if f.basic:
                self._add_row(main_form, f)
            else:
                groups.setdefault(f.group, []).append(f)
        self.advanced_boxes: list[tuple[QGroupBox, list[str]]] = []
        for i, (group, group_fields) in enumerate(groups.items()):
            box = QGroupBox(GROUP_TITLES.get(group, group.title()))
            form = QFormLayout(box)
            for f in group_fields:
                self._add_row(form, f)
            self.advanced_boxes.append((box, [f.name for f in group_fields]))
            grid.addWidget(box, i // 2, i % 2)
        self.advanced.hide()
        host.addWidget(main_box)
        host.addWidget(self.advanced_button, 0, Qt.AlignmentFlag.AlignLeft)
        host.addWidget(self.advanced)
        host.addStretch(1)
        self.scroll.setWidget(form_host)  # the previous method's form goes with its widget

    def _fill_presets(self) -> None:
        self.preset_combo.clear()
        self.preset_combo.addItem(CUSTOM)
        for name, overrides in presets_for(self.method).items():
            self.preset_combo.addItem(name)
            sets = ", ".join(f"{k} = {v}" for k, v in overrides.items())
            self.preset_combo.setItemData(self.preset_combo.count() - 1, f"Sets {sets}; the other method "
                                          f"settings go back to their defaults", Qt.ItemDataRole.ToolTipRole)
        self.preset_combo.setEnabled(self.preset_combo.count() > 1)

    def set_method(self, method: str) -> None:
        """Switch the form to another method's settings (its defaults; the model stays)."""
        if method == self.method:
            return
        self.method = method
        self.cls = config_for(method)
        self.fields = {f.name: f for f in config_fields(self.cls)}
        self._preset_extras = {}
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(method)))
        self.name_edit.setPlaceholderText(f"automatic ({method}-<id>)")
        self._fill_presets()
        self._build_form()
        self._fill({})
        self._update_visibility()
        self.error_label.setText("")
        self._update_estimate()

    def _add_row(self, form: QFormLayout, f: ConfigField) -> None:
        editor = field_editor(f, self.project, self._changed)
        self.editors[f.name] = editor
        label = QLabel(f.label)
        label.setBuddy(editor)
        label.setToolTip(f"{f.help} ({f.name})")
        editor.setToolTip(f"{f.help}\nSetting: {f.name}")
        named(editor, f.label, f.help)
        form.addRow(label, editor)
        self.rows[f.name] = (form, editor)

    def _show_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self._update_visibility()

    def _update_visibility(self) -> None:
        """Hide the fields that do not apply to the chosen method and loss; say how many are advanced."""
        values = {name: self.raw_value(name) for name in self.fields}
        shown = {name: f.applies(values) for name, f in self.fields.items()}
        for name, (form, editor) in self.rows.items():
            form.setRowVisible(editor, shown[name])
        for box, names in self.advanced_boxes:
            box.setVisible(any(shown[n] for n in names))
        n = sum(1 for name, f in self.fields.items() if shown[name] and not f.basic)
        arrow = "▾" if self.advanced_button.isChecked() else "▸"
        self.advanced_button.setText(f"{arrow}  Advanced: {n} more settings")

    # ------------------------------------------------------------------ values

    def set_value(self, name: str, value: Any) -> None:
        w = self.editors[name]
        if isinstance(w, RewardPicker):
            w.set_value(value)
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        else:
            w.setText(repr(value) if isinstance(value, float) and ("e" in repr(value)) else str(value))

    def raw_value(self, name: str) -> Any:
        w = self.editors[name]
        if isinstance(w, RewardPicker):
            return w.value()
        if isinstance(w, QComboBox):
            return w.currentText()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        return w.text()

    def _fill(self, config: dict) -> None:
        """Defaults, overlaid with a (partial) config dict such as a run's stored config."""
        try:
            cfg = from_dict(self.cls, config) if config else self.cls()
        except ConfigError as e:
            self.error_label.setText(f"The stored config could not be read fully: {e}")
            cfg = self.cls()
        flat = flatten(to_dict(cfg))
        for name in self.fields:
            if name == "reward_model" and not flat[name]:
                continue  # keep the picker's first reward run rather than an empty default
            self.set_value(name, flat[name])
        self._match_preset()

    def apply_preset(self, preset: str) -> None:
        presets = presets_for(self.method)
        if preset not in presets:
            return
        defaults = flatten(to_dict(self.cls()))
        overrides = presets[preset]
        current = self._parsed(quiet=True)[0]
        # a preset sets the method fields; everything it does not mention goes back to the default
        for name in self.fields:
            if self.fields[name].group == "method" and name != "reward_model":
                self.set_value(name, defaults[name])
        # so does what the previous preset set elsewhere (SimPO's learning rate), unless edited since:
        # switching SimPO -> DPO silently kept SimPO's 1e-5 before
        for name, value in self._preset_extras.items():
            if name not in overrides and current.get(name) == value:
                self.set_value(name, defaults[name])
        for name, value in overrides.items():
            self.set_value(name, value)
        self._preset_extras = {n: v for n, v in overrides.items() if self.fields[n].group != "method"}
        self.preset_combo.setCurrentText(preset)

    def _match_preset(self) -> None:
        values = self._parsed(quiet=True)[0]
        defaults = flatten(to_dict(self.cls()))
        for preset, overrides in presets_for(self.method).items():
            want = {n: defaults[n] for n, f in self.fields.items()
                    if f.group == "method" and n != "reward_model"} | overrides
            if all(values.get(k) == v for k, v in want.items()):
                self.preset_combo.setCurrentText(preset)
                return
        self.preset_combo.setCurrentText(CUSTOM)

    def _changed(self) -> None:
        if hasattr(self, "preset_combo"):
            self._match_preset()
        if hasattr(self, "advanced_button") and len(self.editors) == len(self.fields):
            self._update_visibility()
        self._update_estimate()

    def _parsed(self, quiet: bool = False) -> tuple[dict[str, Any], list[str]]:
        values, errors = {}, []
        for name, f in self.fields.items():
            w = self.editors.get(name)
            if w is None:
                continue
            try:
                values[name] = parse_value(f, self.raw_value(name))
                if not quiet:
                    set_invalid(w, False)
            except ConfigError as e:
                errors.append(str(e))
                if not quiet:
                    set_invalid(w, True)
        return values, errors

    def model_name(self) -> str:
        text = self.model_combo.currentText().strip()
        idx = self.model_combo.findText(text)
        if idx >= 0 and self.model_combo.itemData(idx):
            return str(self.model_combo.itemData(idx))
        return text

    def set_model(self, name: str) -> None:
        idx = self.model_combo.findData(name)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        else:
            self.model_combo.setEditText(name)

    def _selected_model(self) -> LocalModel | None:
        name = self.model_name()
        return next((m for m in self.models if m.name == name), None)

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (holding config.json)")
        if folder:
            self.set_model(folder)

    # ------------------------------------------------------------------ summaries

    def _show_data(self) -> None:
        s = self.summary
        pal = palette.current()
        text = html.escape(s.text()).replace("\n", "<br>")
        if s.warnings:
            text += "".join(f"<br><span style='color:{pal.warning_text}'>⚠ {html.escape(w)}</span>"
                            for w in s.warnings)
        if not s.train:
            text += f"<br><span style='color:{pal.error_text}'>Nothing to train on yet: label some pairs first.</span>"
        self.data_label.setText(text)

    def _update_estimate(self) -> None:
        if not hasattr(self, "estimate_label"):
            return
        values = self._parsed(quiet=True)[0]
        if "max_new_tokens" in values:
            # PPO/RLOO: the longest sequence is a prompt and a response, and a step is one rollout batch
            values["max_length"] = values.get("max_prompt_length", 0) + values["max_new_tokens"]
            self._update_time(dict(values, grad_accumulation=1))
        else:
            self._update_time(values)
        config = unflatten(values)
        model = self._selected_model()
        path = model.path if model else None
        params = model.parameters if model else None
        set_invalid(self.model_combo, False)
        if not self.model_name():
            self.estimate_label.setText("Choose a model to see what the run needs.")
            return
        if model is None or not path.is_dir():
            # typed, prefilled by Retry/Duplicate, or removed since: say at once when it is not there
            try:
                from studio.core.models import describe

                path = resolve_model(self.model_name(), hf_cache())
                found = describe(path)
                params = found.parameters if found else None
            except ModelNotFound as e:
                if self._downloadable():
                    self.estimate_label.setText("Not on this machine: the run downloads it first (offline mode is "
                                                "off in Settings), so no estimate yet.")
                    return
                set_invalid(self.model_combo, True)
                self.estimate_label.setText(f"Model not found, so no estimate: {e}")
                return
        self.estimate_label.setText(estimate.memory_text(params, path, config, self.gpus))

    def _downloadable(self) -> bool:
        """With offline mode off, a hub id (org/name) not in the cache is fetched by the run itself."""
        name = self.model_name()
        return not prefs.get("offline") and name.count("/") == 1 and not name.startswith((".", "/", "~"))

    def _update_time(self, values: dict[str, Any]) -> None:
        """Steps from the data size and the settings; time from the tokens per second of a recent run."""
        text, steps = estimate.steps_text(values, self.summary)
        if steps is not None:
            if self._mean_chars is None:
                self._mean_chars = sum(self.project.mean_text_chars())
            text += estimate.pace_text(values, steps, self.project.recent_pace(self.model_name() or None),
                                       self._mean_chars)
        self.time_label.setText(text)

    # ------------------------------------------------------------------ launching

    def validate(self) -> tuple[dict | None, list[str]]:
        """The config dict to store, or the problems in words (each naming its field)."""
        values, errors = self._parsed()
        if not self.model_name():
            errors.append("model: choose a model from the list or a model folder")
        elif not self._downloadable():
            try:
                resolve_model(self.model_name(), hf_cache())
            except ModelNotFound as e:
                errors.append(f"model: {e}")
        self.seeds_edit.set_invalid(self.seed_count() is None)
        if self.seed_count() is None:
            errors.append(f"seeds: a whole number from 1 to {MAX_SEEDS}, got {self.seeds_edit.text()!r}")
        if not errors and "max_length" in values and values["max_prompt_length"] >= values["max_length"]:
            errors.append(f"max_prompt_length: {values['max_prompt_length']} leaves no room for the response "
                          f"within max_length {values['max_length']}")
        if not self.summary.train:
            errors.append("data: no resolved train preferences yet; label some pairs first")
        if self.method in RL_METHODS and "reward_model" in values and not errors:
            try:  # a finished reward run of this project on the same model, or a classifier folder
                values["reward_model"] = reward_source(self.project, values["reward_model"], self.model_name()).value
            except ProjectError as e:
                errors.append(str(e))
        if errors:
            return None, errors
        try:
            config = to_dict(from_dict(self.cls, unflatten(values)))
        except ConfigError as e:
            return None, [str(e)]
        return config, []

    def launch(self) -> int | None:
        """Validate and create the run (snapshotting the preferences); returns its id, or None with the
        problems shown in the dialog."""
        config, errors = self.validate()
        if errors:
            self.error_label.setText("Cannot launch:\n" + "\n".join(f"• {self._in_words(e)}" for e in errors))
            # the form scrolls: bring the first outlined field into view (opening Advanced when it is there)
            first = next((e.split(":", 1)[0] for e in errors if e.split(":", 1)[0] in self.editors), None)
            if first is not None:
                if not self.fields[first].basic:
                    self.advanced_button.setChecked(True)
                editor = self.editors[first]
                from PySide6.QtWidgets import QApplication

                QApplication.processEvents()  # lay the opened section out before scrolling to it
                self.scroll.ensureWidgetVisible(editor)
                editor.setFocus()
            return None
        self.error_label.setText("")
        name = self.name_edit.text().strip() or None
        seeds = self.seed_count() or 1
        if seeds > 1:
            seed_values = [config["seed"] + i for i in range(seeds)]
            _group, self.run_ids = create_seed_group(self.project, config["method"], self.model_name(), config,
                                                     seed_values, name=name, parent_id=self.parent_id)
            self.queued = True
        else:
            self.run_ids = [self.project.create_run(config["method"], self.model_name(), config, name=name,
                                                    parent_id=self.parent_id)]
            self.queued = self.queue_check.isChecked()
            if self.queued:
                enqueue(self.project, self.run_ids)
        self.run_id = self.run_ids[0]
        return self.run_id

    def _in_words(self, error: str) -> str:
        """'learning_rate: expected float' as 'Learning rate (learning_rate): expected float'."""
        name, _, rest = error.partition(":")
        f = self.fields.get(name)
        return f"{f.label} ({name}):{rest}" if f is not None else error

    def seed_count(self) -> int | None:
        """The number of seeds typed, or None when it is not a whole number from 1 to MAX_SEEDS."""
        try:
            n = int(self.seeds_edit.text().strip())
        except ValueError:
            return None
        return n if 1 <= n <= MAX_SEEDS else None

    def _on_seeds(self, n: int) -> None:
        """Several seeds always queue (one GPU): the checkbox says so and cannot be unticked."""
        if n > 1:
            self.queue_check.setChecked(True)
        self.queue_check.setEnabled(n <= 1)
        self.name_edit.setPlaceholderText("automatic (dpo-<id>)" if n <= 1 else "automatic (dpo-group<id>)")

    def _on_launch(self) -> None:
        if self.launch() is not None:
            self.accept()
