"""Starting and stopping worker processes: training, resume and model export, detached from the GUI."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from studio.core import paths
from studio.core.jobs import JOB_METHODS
from studio.core.types import RunStatus
from studio.ui import prefs
from studio.ui.runs import worker_env

STOP_GRACE_S = 20.0
"""How long a worker gets to finish its step and save after a stop request before SIGTERM."""

# Popen objects of the workers this GUI started: polled so finished ones are reaped (no zombies).
_children: list[subprocess.Popen] = []


def studio_command(*args: str) -> list[str]:
    """`python -m studio ARGS` on the interpreter that has the training side (worker_env.worker_python:
    the app's own, or the desktop bundle's worker environment; WorkerEnvMissing when it has none yet)."""
    return [worker_env.worker_python(), "-m", "studio", *args]


def train_command(project_folder: Path, run_id: int, resume: bool = False) -> list[str]:
    """The worker command line; tests replace this to start a fake worker instead."""
    flag = "--resume" if resume else "--run"
    return studio_command("train", str(project_folder), flag, str(run_id))


def queue_command(project_folder: Path) -> list[str]:
    """The queue runner: trains the project's queued runs one after another (tests replace this)."""
    return studio_command("train", str(project_folder), "--next")


def export_command(project_folder: Path, run_id: int, out: Path, merged: bool) -> list[str]:
    cmd = studio_command("export-model", str(project_folder), str(run_id), str(out))
    return [*cmd, "--merged"] if merged else cmd


def spawn(cmd: list[str], log_file: Path) -> subprocess.Popen:
    """Start `cmd` in its own session with stdout/stderr appended to `log_file`, so closing the GUI
    (or a Ctrl+C in its terminal) does not reach it. Its environment carries the Settings' device, model
    cache and offline mode."""
    reap()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **prefs.worker_environment()})
    _children.append(proc)
    return proc


def start_training(project_folder: Path, run_id: int, resume: bool = False) -> subprocess.Popen:
    """Spawn the worker for a queued run (or resume an interrupted one)."""
    return spawn(train_command(project_folder, run_id, resume), paths.log_path(project_folder, run_id))


def start_queue(project_folder: Path) -> subprocess.Popen:
    """Spawn a queue runner for the project (it exits at once when another one already runs the queue)."""
    return spawn(queue_command(project_folder), project_folder / paths.RUNS_DIR / "queue.log")


def start_export(project_folder: Path, run_id: int, out: Path, merged: bool) -> subprocess.Popen:
    log = paths.run_dir(project_folder, run_id) / "export.log"
    return spawn(export_command(project_folder, run_id, out, merged), log)


def last_error(log_file: Path, max_bytes: int = 8192) -> str | None:
    """The error a command ended with, from the end of its log: the CLI's `studio: error: ...` line,
    else the last exception line of a traceback, else the last line; None without a log."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if not lines:
        return None
    for line in reversed(lines):
        if line.startswith("studio: error:"):
            return line[len("studio: error:"):].strip()
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "NotFound")) and " " not in head:
            return line
    return lines[-1]


def reap() -> None:
    """Collect exit statuses of finished children (a zombie would still look alive by pid)."""
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def children() -> list[subprocess.Popen]:
    reap()
    return list(_children)


def terminate(pid: int | None) -> bool:
    """SIGTERM a worker (it takes the same graceful path as a stop request). True if it was sent."""
    if not pid:
        return False
    try:
        os.kill(int(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def resumable(project_folder: Path | None, run: dict) -> bool:
    """Interrupted runs resume from their checkpoint; a failed run can too when it left one. A generation job
    keeps every batch it finished in the project, so it resumes from any stop or failure. A run stopped
    before it ever started (taken out of the queue) has nothing to resume from."""
    if run["status"] == RunStatus.INTERRUPTED:
        return bool(run.get("started_at"))
    if run["status"] == RunStatus.FAILED and run.get("method") in JOB_METHODS:
        return True
    return (run["status"] == RunStatus.FAILED and project_folder is not None
            and paths.checkpoint_dir(project_folder, run["id"]).exists())
