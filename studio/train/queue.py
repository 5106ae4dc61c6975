"""The queue runner: trains a project's queued runs one after another, each in a worker process of its own.

`studio train PROJECT --next` runs it (the app and `studio train --seeds N --detach` start it in the
background). It holds the project's queue (studio.store.run_queue: one runner per project), and while runs
wait: finds dead workers by pid (Project.mark_dead_runs), waits while any run of the project trains (one
GPU), then starts the first waiting run with `studio train PROJECT --run ID` and records the worker's pid on
the run at once, so a worker killed before it reports is found dead and the queue moves on. The worker claims
its run atomically (a second runner's worker for the same run is refused). A runner that is killed leaves
the queue to the next runner (the app starts one when it sees runs waiting and none running the queue).

Imports no torch: the runner only watches and spawns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from studio.core import paths
from studio.store import Project
from studio.store.db import hostname, now_iso
from studio.store.run_queue import acquire_runner, release_runner, training_runs, waiting_runs

POLL_S = 2.0
"""How often a runner that waits for a training run looks again."""


def worker_command(project_folder: Path, run_id: int) -> list[str]:
    """The worker the runner starts for a queued run (tests replace it with a fake worker)."""
    return [sys.executable, "-m", "studio", "train", str(project_folder), "--run", str(run_id)]


def queue_log(project_folder: Path) -> Path:
    """Where a runner started in the background writes what it does."""
    return project_folder / paths.RUNS_DIR / "queue.log"


class QueueRunner:
    """Runs the queue of one project until no run waits, or until asked to stop (then after the current run)."""

    def __init__(self, project_folder: str | Path, command: Callable[[Path, int], list[str]] | None = None,
                 poll_s: float = POLL_S, say: Callable[[str], None] | None = None, show_output: bool | None = None):
        self.folder = Path(project_folder)
        self.command = command or (lambda folder, run_id: worker_command(folder, run_id))
        self.poll_s = poll_s
        self.say = say or _say
        # a worker writes its progress lines to the terminal of a runner started in one, else to its own log
        self.show_output = sys.stdout.isatty() if show_output is None else show_output
        self.stopping = False
        self.pid, self.host = os.getpid(), hostname()
        self.started: list[int] = []

    def stop(self, *_args) -> None:
        """Start no more runs; the current one trains on (stop it with `studio stop`)."""
        self.stopping = True

    def run(self) -> int:
        """Train queued runs until none waits. Returns 0, also when another runner already holds the queue."""
        with Project.open(self.folder) as project:
            while True:
                if not acquire_runner(project, self.pid, self.host):
                    self.say(f"the queue of {self.folder} is run by another process already")
                    return 0
                try:
                    self._drain(project)
                finally:
                    release_runner(project, self.pid, self.host)
                # a run queued between the last look and the release would wait for nobody: look once more
                if self.stopping or not waiting_runs(project):
                    return 0

    def _drain(self, project: Project) -> None:
        while not self.stopping:
            project.mark_dead_runs()
            waiting = waiting_runs(project)
            if not waiting:
                return
            busy = training_runs(project)
            if busy:
                self._wait(f"waiting for run {busy[0]['id']} ({busy[0]['name']}) to end")
                continue
            self._start(project, waiting[0])

    def _wait(self, why: str) -> None:
        if getattr(self, "_last_wait", None) != why:
            self.say(why)
            self._last_wait = why
        time.sleep(self.poll_s)

    def _start(self, project: Project, run: dict) -> None:
        run_id = run["id"]
        self.say(f"starting run {run_id} ({run['name']})")
        worker_log = paths.log_path(self.folder, run_id)
        worker_log.parent.mkdir(parents=True, exist_ok=True)
        with open(worker_log, "ab") as out:
            target = None if self.show_output else out
            try:
                proc = subprocess.Popen(self.command(self.folder, run_id), stdin=subprocess.DEVNULL, stdout=target,
                                        stderr=subprocess.STDOUT if target else None,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
            except OSError as e:
                project.update_run(run_id, status="failed", error=f"the queue could not start its worker: {e}",
                                   ended_at=now_iso())
                return
        # at once: a worker that dies before it claims the run is then found dead by its pid
        project.update_run(run_id, pid=proc.pid, host=self.host)
        self.started.append(run_id)
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl+C reached the worker too: it saves and stops; so do we
                self.stopping = True
        project.mark_dead_runs()  # a worker killed outright never says so
        after = project.run(run_id)
        self.say(f"run {run_id}: {after['status']} (worker exit {code})")


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def run_queue(project_folder: str | Path, **kw) -> int:
    """Run the project's queue in this process (SIGTERM and Ctrl+C: no new run starts; the current one ends
    as the worker decides)."""
    runner = QueueRunner(project_folder, **kw)
    old = signal.signal(signal.SIGTERM, runner.stop)
    try:
        return runner.run()
    finally:
        signal.signal(signal.SIGTERM, old)


def spawn_runner(project_folder: str | Path) -> subprocess.Popen:
    """Start a queue runner in the background, in its own session (closing a terminal or the app does not stop
    it), writing to runs/queue.log."""
    folder = Path(project_folder)
    out_path = queue_log(folder)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "ab") as out:
        return subprocess.Popen(runner_command(folder), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def runner_command(project_folder: Path) -> list[str]:
    return [sys.executable, "-m", "studio", "train", str(project_folder), "--next"]
