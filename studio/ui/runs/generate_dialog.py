"""The Generate dialog: sample candidates to label from a model or a run's adapter, or start a blind arena of
several sources; the same job `studio generate` and `studio arena` create."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QWidget,
)

from studio.core import paths
from studio.core.errors import ConfigError
from studio.core.generations import ARENA, BASE, GENERATE, GenerationPlan
from studio.core.jobs import JOB_METHODS
from studio.core.models import LocalModel, ModelNotFound, find_local_models, resolve_model
from studio.store import ProjectError
from studio.store import generations as gen_store
from studio.ui.runs.launch_fields import model_search_dirs

KINDS = {GENERATE: "Candidates to label (provenance shown after each choice)",
         ARENA: "Arena: blind comparison of sources (results in the Arena tab)"}


def adapter_runs(project) -> list[dict]:
    """Training runs that have saved an adapter, newest first: what can be sampled besides the base model."""
    if project.folder is None:
        return []
    return [r for r in reversed(project.runs()) if r["method"] not in JOB_METHODS
            and (paths.adapter_dir(project.folder, r["id"]) / "adapter_config.json").is_file()]


class GenerateDialog(QDialog):
    """Pick the kind, the sources and the sampling; `launch()` creates the job and returns its run id (the caller
    starts the worker, as with a training run)."""

    def __init__(self, project, parent: QWidget | None = None, kind: str = GENERATE,
                 models: list[LocalModel] | None = None):
        super().__init__(parent)
        self.project = project
        self.run_id: int | None = None
        self.runs = adapter_runs(project)
        self.models = models if models is not None else find_local_models(model_search_dirs(project))
        self.setWindowTitle("Generate responses")
        self._build()
        self.kind_combo.setCurrentIndex(list(KINDS).index(kind))
        self._kind_changed()
        self.resize(760, 620)

    def _build(self) -> None:
        form = QFormLayout(self)
        self.kind_combo = QComboBox()
        for key, title in KINDS.items():
            self.kind_combo.addItem(title, key)
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        form.addRow("What", self.kind_combo)

        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.lineEdit().setPlaceholderText("a model folder or a Hugging Face id in the local cache")
        names = list(dict.fromkeys([r["model"] for r in self.runs] + [m.name for m in self.models]))
        for name in names:
            self.model_combo.addItem(name, name)
        self.model_combo.setToolTip("The model 'base model' stands for; a run's adapter always goes on the model "
                                    "it was trained on")
        form.addRow("Base model", self.model_combo)

        self.sources = QListWidget()
        self.sources.setToolTip("Candidates: one source (pairs of its samples) or two (one sample of each). "
                                "Arena: two or more.")
        item = QListWidgetItem("base model (no adapter)")
        item.setData(Qt.ItemDataRole.UserRole, BASE)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Unchecked)
        self.sources.addItem(item)
        for r in self.runs:
            item = QListWidgetItem(f"{r['name']}  (run {r['id']}, {r['status']} at step {r['step']}, on "
                                   f"{r['model'].rstrip('/').rsplit('/', 1)[-1]})")
            item.setData(Qt.ItemDataRole.UserRole, str(r["id"]))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.sources.addItem(item)
        self.sources.itemChanged.connect(lambda _i: self._update_summary())
        form.addRow("Sources", self.sources)

        self.split_combo = QComboBox()
        for split in ("train", "eval"):
            self.split_combo.addItem(split, split)
        self.split_combo.currentIndexChanged.connect(lambda _i: self._update_summary())
        form.addRow("Prompts of split", self.split_combo)
        self.prompts_spin = QSpinBox()
        self.prompts_spin.setRange(0, 10_000_000)
        self.prompts_spin.setSpecialValueText("all")
        self.prompts_spin.setToolTip("At most this many prompts, drawn at random (seeded); 'all' takes every one")
        self.prompts_spin.valueChanged.connect(lambda _v: self._update_summary())
        form.addRow("Number of prompts", self.prompts_spin)
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, 64)
        self.samples_spin.setValue(2)
        self.samples_spin.setToolTip("Samples per prompt and source; one source's samples are paired two by two")
        self.samples_spin.valueChanged.connect(lambda _v: self._update_summary())
        form.addRow("Samples per prompt", self.samples_spin)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.01, 5.0)
        self.temperature_spin.setSingleStep(0.1)
        self.temperature_spin.setValue(1.0)
        self.temperature_spin.setToolTip("1 samples the policy's own distribution")
        form.addRow("Temperature", self.temperature_spin)
        self.max_tokens_spin = QSpinBox()
        self.max_tokens_spin.setRange(1, 32_768)
        self.max_tokens_spin.setValue(256)
        form.addRow("Max new tokens", self.max_tokens_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        form.addRow("Seed", self.seed_spin)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        form.addRow(self.summary)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d62728;")
        form.addRow(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.start_button = buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self._on_start)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    # ------------------------------------------------------------------ state

    @property
    def kind(self) -> str:
        return self.kind_combo.currentData()

    def checked_sources(self) -> list[str]:
        return [self.sources.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.sources.count())
                if self.sources.item(i).checkState() == Qt.CheckState.Checked]

    def set_sources(self, specs: list[str]) -> None:
        for i in range(self.sources.count()):
            item = self.sources.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in specs
                               else Qt.CheckState.Unchecked)

    def _kind_changed(self) -> None:
        arena = self.kind == ARENA
        self.samples_spin.setEnabled(not arena)
        self.samples_spin.setValue(1 if arena else max(2, self.samples_spin.value()))
        self.split_combo.setCurrentIndex(1 if arena else 0)
        self.setWindowTitle("New arena" if arena else "Generate candidates")
        self._update_summary()

    def _update_summary(self) -> None:
        sources = self.checked_sources()
        n = len(sources)
        split = self.split_combo.currentData()
        try:
            prompts = len(gen_store.choose_prompts(self.project, split, self.prompts_spin.value() or None))
        except ProjectError:
            prompts = 0
        if self.kind == ARENA:
            per_prompt = n * (n - 1) // 2
            text = (f"{prompts} prompts x {n} sources: {prompts * n} responses, up to {prompts * per_prompt} blind "
                    f"pairs. Who wrote what is never shown while labeling.")
        else:
            samples = self.samples_spin.value()
            per_prompt = samples // 2 if n == 1 else samples
            text = (f"{prompts} prompts x {n} source(s) x {samples} samples: up to {prompts * per_prompt} pairs to "
                    f"label.")
        self.summary.setText(text)

    # ------------------------------------------------------------------ launching

    def plan(self) -> GenerationPlan:
        """The plan the form describes; ProjectError/ConfigError say what is wrong."""
        specs = self.checked_sources()
        if not specs:
            raise ProjectError("Tick the sources to sample from.")
        model = self.model_combo.currentText().strip() or None
        if BASE in specs:
            if not model:
                raise ProjectError("Base model: choose the model 'base model' stands for.")
            try:
                resolve_model(model)
            except ModelNotFound as e:
                raise ProjectError(f"Base model: {e}") from None
        sources = gen_store.resolve_sources(self.project, specs, model)
        arena = self.kind == ARENA
        prompts = gen_store.choose_prompts(self.project, self.split_combo.currentData(),
                                           self.prompts_spin.value() or None, self.seed_spin.value())
        return GenerationPlan(self.kind, sources, prompts, samples=1 if arena else self.samples_spin.value(),
                              temperature=self.temperature_spin.value(), max_new_tokens=self.max_tokens_spin.value(),
                              seed=self.seed_spin.value(), split=self.split_combo.currentData())

    def launch(self) -> int | None:
        """Create the job from the form; None, with the reason shown, when the form is not valid."""
        try:
            plan = self.plan()
        except (ProjectError, ConfigError) as e:
            self.error_label.setText(html.escape(str(e)))
            return None
        self.error_label.setText("")
        self.run_id = gen_store.create_job(self.project, plan)
        return self.run_id

    def _on_start(self) -> None:
        if self.launch() is not None:
            self.accept()
