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


def read_tail(path: str | Path, max_bytes: int = 8000) -> str | None:
    """The last `max_bytes` of a file (a worker's log) as text, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def log_tail(project: str | Path, run_id: int) -> str | None:
    """The end of a run's worker log: kept on the run when it fails, shown in its Log tab."""
    return read_tail(log_path(project, run_id))
