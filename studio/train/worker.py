"""The training worker process: claims a run, trains it, and always leaves the run in a final state.

Protocol (the runs view relies on it): queued -> running (pid, host, device, started_at, total_steps) ->
stopping (set by `Project.request_stop`) -> done | interrupted (stopped by request or signal; adapter and
checkpoint saved; resumable) | failed (error message + log tail). SIGINT/SIGTERM take the same graceful
path as a stop request: the current optimizer step finishes, then the worker saves and exits.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from studio.core import paths
from studio.core.configs import config_for, from_dict
from studio.core.jobs import JOB_METHODS, job_plan
from studio.core.models import resolve_model
from studio.store import Project
from studio.store.db import hostname, now_iso
from studio.train.preflight import TrainingError

log = logging.getLogger("studio.train")

# The recipe of each training method: a module whose `train(RunContext)` trains a run and returns its final
# status ('done' or 'interrupted'). Imported when a run of that method starts: torch loads in the worker only.
RECIPES = {"dpo": "studio.train.dpo", "reward": "studio.train.reward", "ppo": "studio.train.ppo",
           "rloo": "studio.train.ppo", "generate": "studio.train.generation_job",
           "arena": "studio.train.generation_job", "rank": "studio.train.rank_job",
           "frontier": "studio.train.frontier_job"}

RANKED_AFTER = ("reward", "dpo")
"""Methods whose finished runs start a rank job (their models rank the informative queue anew)."""

OOM_HINT = ("out of memory on the GPU. What helps, roughly in order: a smaller batch_size with a larger "
            "grad_accumulation (same effective batch), a shorter max_length, gradient_checkpointing=on, "
            "a smaller lora.r, precision=bf16.")


class ClaimError(RuntimeError):
    """The run cannot be started in its current state; the message says why."""


def process_rank() -> int:
    """This process's rank under `accelerate launch` (torchrun sets RANK); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def _setup_log(project_folder: Path, run_id: int, rank: int = 0) -> logging.Handler:
    """The run's log file for the main process; the other processes of `accelerate launch` log to stderr
    (only the main process writes to the project)."""
    if rank == 0:
        path = paths.log_path(project_folder, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}] %(message)s"))
    root = logging.getLogger("studio")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def claim(project: Project, run_id: int, resume: bool) -> dict:
    """Move the run to 'running' atomically, so two workers can never train the same run."""
    allowed = ("interrupted", "failed") if resume else ("queued",)
    project.run(run_id)  # a missing run gets its own message
    if not project.claim_run(run_id, allowed, os.getpid(), hostname()):
        # read again: another worker may have claimed it between our first read and the claim
        raise ClaimError(_claim_refusal(project.run(run_id), resume))
    return project.run(run_id)


def _claim_refusal(run: dict, resume: bool) -> str:
    """Why a run in this status cannot be started (or resumed), and what to do instead."""
    rid, status = run["id"], run["status"]
    if status in ("running", "stopping"):
        return (f"run {rid}: is {status} in another worker (pid {run['pid']} on {run['host']}); only one worker "
                f"trains a run: wait for it, or stop it first")
    if status == "done":
        return (f"run {rid}: is done (step {run['step']}/{run['total_steps']}); a finished run does not continue: "
                f"start a new run (larger max_steps or epochs) to train further")
    if resume:
        return f"run {rid}: is {status} and has never started; start it with --run {rid}"
    return f"run {rid}: is {status}; use --resume {rid} to continue it from its last checkpoint"


def recipe_for(method: str) -> Callable:
    """The `train` function of the method's recipe."""
    if method not in RECIPES:
        raise TrainingError(f"method: no training recipe for {method!r}; this version trains "
                            f"{', '.join(sorted(RECIPES))}")
    return importlib.import_module(RECIPES[method]).train


class StopFlag:
    """Set by SIGINT/SIGTERM or a stop request in the database (polled at most twice a second)."""

    def __init__(self, project: Project, run_id: int):
        self.project, self.run_id = project, run_id
        self.signalled = False
        self._last_poll = 0.0

    def handle(self, signum, _frame) -> None:
        self.signalled = True
        log.info("received %s: stopping after the current step", signal.Signals(signum).name)

    def __call__(self) -> bool:
        if self.signalled:
            return True
        now = time.monotonic()
        if now - self._last_poll >= 0.5:
            self._last_poll = now
            if self.project.stop_requested(self.run_id):
                log.info("stop requested: stopping after the current step")
                self.signalled = True
        return self.signalled


def run_worker(project_folder: str | Path, run_id: int, resume: bool = False,
               on_progress: Callable | None = None, on_status: Callable[[str], None] | None = None) -> str:
    """Train run `run_id` of the project in this process; returns the final status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network from a training run
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    project_folder = Path(project_folder)
    project = Project.open(project_folder)
    # under `accelerate launch` only the main process (rank 0) claims the run, logs to its file and reports its end
    main = process_rank() == 0
    handler = _setup_log(project_folder, run_id, process_rank())
    run = claim(project, run_id, resume) if main else project.run(run_id)
    stop = StopFlag(project, run_id)
    old = {s: signal.signal(s, stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    log.info("run %d (%s): worker pid %d on %s", run_id, run["name"], os.getpid(), hostname())
    status, error = "failed", None
    try:
        from studio.train import runtime

        runtime.apply_thread_cap()
        config = run_config(run)
        train = recipe_for(run["method"])
        model_path = resolve_model(run["model"])
        log.info("model: %s", model_path)
        ctx = runtime.RunContext(project, run_id, config, model_path, resume=resume, should_stop=stop,
                                 on_progress=on_progress, on_status=on_status)
        status = train(ctx)
    except BaseException as e:  # every failure must end in a final run state
        error = _describe(e)
        log.error("run failed: %s\n%s", error, traceback.format_exc())
        if isinstance(e, KeyboardInterrupt | SystemExit):
            status = "interrupted" if stop.signalled else "failed"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        handler.flush()
        log.info("run %d: %s", run_id, status)
        if main:
            fields = {"status": status, "ended_at": now_iso()}
            if status == "failed":
                fields.update(error=error or "unknown error", log_tail=paths.log_tail(project_folder, run_id))
            project.update_run(run_id, **fields)
            if status == "done" and run["method"] in RANKED_AFTER:
                from studio.train.rank_job import rank_after_run

                rank_after_run(project_folder, run_id)
        logging.getLogger("studio").removeHandler(handler)
        handler.close()
        project.close()
    return status


def run_config(run: dict):
    """The run's stored settings as its recipe takes them: a training config, or a job's plan."""
    if run["method"] in JOB_METHODS:
        return job_plan(run["method"], run["config"])
    return from_dict(config_for(run["method"]), run["config"])


def spawn_worker(project_folder: str | Path, run_id: int, resume: bool = False) -> int:
    """Start `studio train PROJECT --run ID` (or --resume) in a process of its own session, on this interpreter,
    its output appended to the run's log; returns its pid. The new process outlives the one that started it."""
    log_file = paths.log_path(project_folder, run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "studio", "train", str(project_folder), "--resume" if resume else "--run", str(run_id)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    return proc.pid


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    if "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError":
        return f"{OOM_HINT} ({text.splitlines()[0][:300]})"
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.train.worker PROJECT RUN_ID [--resume]` (the CLI's `studio train --run` does the same)."""
    argv = sys.argv[1:] if argv is None else argv
    status = run_worker(argv[0], int(argv[1]), resume="--resume" in argv)
    return 0 if status in ("done", "interrupted") else 1


if __name__ == "__main__":
    raise SystemExit(main())
