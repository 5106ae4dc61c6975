"""Helpers for the Runs view tests: labeled projects, a fake model folder, the fake worker command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


def label_all(project, choice: str = "b", annotator: str = "ann") -> None:
    """Label every pair for one annotator (the conftest pairs: b is the longer response)."""
    for pair_id in project.pair_ids():
        project.record_label(pair_id, annotator, choice, shown_left="a")


def fake_model(folder: Path) -> Path:
    """A folder that passes resolve_model (config.json) without weights: enough for the fake worker."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 1024}))
    return folder


def fake_train_command(project_folder, run_id, resume=False):
    return [sys.executable, str(FAKE_WORKER), str(project_folder), "--resume" if resume else "--run", str(run_id)]


def make_panel(qtbot, project):
    """The Runs section on a project, its views built, answering 'keep running' when closed."""
    from studio.ui.runs import RunsPanel

    panel = RunsPanel(project)
    qtbot.addWidget(panel)
    panel.ensure_views()
    panel.ask_close = lambda runs: "keep"
    return panel


def end_children() -> None:
    """Terminate the processes the Runs section started (workers, queue runners) at the end of a test."""
    from studio.ui.runs import jobs

    for proc in jobs.children():
        proc.terminate()
        proc.wait(10)
