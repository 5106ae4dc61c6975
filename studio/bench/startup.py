"""`studio bench startup`: `studio train` on a large snapshot, timed from outside as a user sees it: from launch
to the first optimizer step, the worker's peak memory, and how long a stop asked while it prepares takes.

The project (plain pairs, labeled) is filled with `studio.store.bulk`, the model is the tiny test model, so
what is measured is the engine's preparation, not the model's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from studio.bench.common import work_folder


def fill_project(folder: Path, pairs: int):
    """A project with `pairs` plain prompts, each with one labeled pair of a short and a longer response."""
    from studio.store import Project, bulk

    project = Project.create(folder)
    bulk.add_prompts(project, ((i + 1, f"Prompt {i}: explain item {i} of the list in a sentence or two, with an "
                                       f"example and the reason why it matters. ", "train", None)
                               for i in range(pairs)))
    bulk.add_responses(project, (row for i in range(pairs) for row in (
        (2 * i + 1, i + 1, f"Item {i} is short and the answer is no.", None),
        (2 * i + 2, i + 1, f"Item {i} is described here at greater length, with detail: the cat and the dog go "
                           f"to the river because the sun is big.", None))))
    bulk.add_pairs(project, ((i + 1, 2 * i + 1, 2 * i + 2, None) for i in range(pairs)))
    bulk.add_labels(project, ((i + 1, "bench", "a" if i % 2 else "b", "a", 1.0) for i in range(pairs)))
    return project


def launch(project, run_id: int, threads: int, stop_after: float | None) -> dict:
    """Run `python -m studio train PROJECT --run ID` in a child process. Without `stop_after`: stop it once its
    first optimizer step is done; with it: ask it to stop that many seconds after launch (once it has claimed
    the run). Returns the seconds to the first step, to the stop request and to its exit, and its peak RSS."""
    env = {**os.environ, "STUDIO_TORCH_THREADS": str(threads)}
    t0 = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "studio", "train", str(project.folder), "--run", str(run_id)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = asked = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
        now, run = time.monotonic() - t0, project.run(run_id)
        if asked is None and stop_after is None and (run["step"] or 0) >= 1:
            first = asked = now
            project.request_stop(run_id)
        elif asked is None and stop_after is not None and now >= stop_after and run["status"] == "running":
            asked = now
            project.request_stop(run_id)
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise RuntimeError(f"studio train exited {child.returncode}: {err[-2000:]}")
    return {"first_step_s": first, "stop_asked_s": asked, "exit_s": time.monotonic() - t0,
            "peak_rss_mib": usage.ru_maxrss / 1024, "status": project.run(run_id)["status"]}


def run_bench(pairs: int, max_steps: int, batch: int, stop_after: float, threads: int, keep: str | None,
              log: Callable[[str], None]) -> dict:
    from studio.train.tiny import write_tiny_model

    with work_folder(keep, "studio-bench-startup-") as folder:
        t = time.perf_counter()
        model = write_tiny_model(folder / "model")
        project = fill_project(folder / f"project_{pairs}", pairs)
        log(f"project with {pairs} pairs ready in {time.perf_counter() - t:.1f} s")
        settings = {"max_steps": max_steps, "batch_size": batch, "lora": {"r": 4}, "eval_interval": 0,
                    "eval_samples": 2, "checkpoint_interval": 0}
        try:
            t = time.perf_counter()
            first = project.create_run("dpo", str(model), settings)
            created = time.perf_counter() - t
            result = {"pairs": pairs, "max_steps": max_steps, "batch_size": batch, "create_run_s": created,
                      "to_first_step": launch(project, first, threads, None)}
            if stop_after > 0:
                stopped = project.create_run("dpo", str(model), settings)
                result["stop_while_preparing"] = launch(project, stopped, threads, stop_after)
        finally:
            project.close()
    return result


def format_result(r: dict) -> str:
    first = r["to_first_step"]
    lines = [f"studio train on {r['pairs']} pairs (max_steps {r['max_steps']}, batch_size {r['batch_size']}, tiny "
             f"model)",
             f"  run created (snapshot) in {r['create_run_s']:.1f} s",
             f"  launch to first optimizer step   {first['first_step_s']:.1f} s   peak RSS {first['peak_rss_mib']:.0f} "
             f"MiB"]
    stop = r.get("stop_while_preparing")
    if stop:
        asked = "never (it ended first)" if stop["stop_asked_s"] is None else f"{stop['stop_asked_s']:.1f} s"
        lines.append(f"  stop asked {asked} after launch: {stop['status']} {stop['exit_s']:.1f} s after launch")
    return "\n".join(lines)
