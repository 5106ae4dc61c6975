"""Where a project's files live: `studio.db` plus `runs/<id>/` (adapters, checkpoints, logs)."""

from __future__ import annotations

from pathlib import Path

DB_NAME = "studio.db"
RUNS_DIR = "runs"


def db_path(project: str | Path) -> Path:
    return Path(project) / DB_NAME


def run_dir(project: str | Path, run_id: int) -> Path:
    return Path(project) / RUNS_DIR / str(run_id)


def adapter_dir(project: str | Path, run_id: int) -> Path:
    """The final PEFT adapter of a run, loadable with `PeftModel.from_pretrained`."""
    return run_dir(project, run_id) / "adapter"


def checkpoint_dir(project: str | Path, run_id: int) -> Path:
    return run_dir(project, run_id) / "checkpoint"


def log_path(project: str | Path, run_id: int) -> Path:
    return run_dir(project, run_id) / "worker.log"
