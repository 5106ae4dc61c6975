"""Seed groups and the run queue: runs created together from one config with different seeds, and queued runs
that train one after another on this machine's GPU.

A queued run (status 'queued' with a queue_position) waits until no run of the project is training; then the
queue runner (studio.train.queue) starts the first. One runner per project: it holds the `queue_runner`
setting (its pid and host), taken in one write transaction, and a runner whose process is gone is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from studio.store.db import ProjectError, hostname, now_iso, pid_alive
from studio.store.project import Project

RUNNER_KEY = "queue_runner"


def create_seed_group(project: Project, method: str, model: str, config: dict, seeds: Sequence[int],
                      name: str | None = None, parent_id: int | None = None) -> tuple[int, list[int]]:
    """Create one queued run per seed, in a group, on one snapshot of the resolved preferences; the runs
    join the queue in seed order. Returns (group id, run ids)."""
    seeds = list(seeds)
    if not seeds:
        raise ProjectError("seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ProjectError(f"seeds: each run of a group needs its own seed, got {seeds}")
    snapshot = project.resolved_preferences()
    with project.transaction():
        with project._write() as c:
            group_id = int(c.execute("INSERT INTO run_groups (name, created_at) VALUES (?, ?)",
                                     (name or "", now_iso())).lastrowid)
            if not name:
                name = f"{method}-group{group_id}"
                c.execute("UPDATE run_groups SET name = ? WHERE id = ?", (name, group_id))
        run_ids = [project.create_run(method, model, {**config, "seed": int(seed)}, name=f"{name}-seed{seed}",
                                      parent_id=parent_id, snapshot=snapshot) for seed in seeds]
        with project._write() as c:
            c.executemany("UPDATE runs SET group_id = ? WHERE id = ?", [(group_id, r) for r in run_ids])
        enqueue(project, run_ids)
    return group_id, run_ids


def enqueue(project: Project, run_ids: Sequence[int]) -> None:
    """Put queued runs at the end of the queue, in the order given."""
    with project._write() as c:
        last = c.execute("SELECT coalesce(max(queue_position), 0) FROM runs").fetchone()[0]
        for i, run_id in enumerate(run_ids, start=1):
            cur = c.execute("UPDATE runs SET queue_position = ? WHERE id = ? AND status = 'queued'",
                            (last + i, run_id))
            if cur.rowcount != 1:
                raise ProjectError(f"run {run_id}: only a queued run that has not started can join the queue")


def waiting_runs(project: Project) -> list[dict]:
    """The runs waiting in the queue, first to start first."""
    rows = project._query("SELECT * FROM runs WHERE status = 'queued' AND queue_position IS NOT NULL "
                          "ORDER BY queue_position, id")
    for r in rows:
        r["config"] = json.loads(r["config"])
    return rows


def queue_places(runs: Sequence[dict]) -> dict[int, int]:
    """Each waiting run's place in the queue (1 = next), from rows of Project.runs."""
    waiting = sorted((r for r in runs if r["status"] == "queued" and r.get("queue_position") is not None),
                     key=lambda r: (r["queue_position"], r["id"]))
    return {r["id"]: i for i, r in enumerate(waiting, start=1)}


def status_with_place(status: str, place: int | None) -> str:
    """A run's status as the runs list shows it: with its place when it waits in the queue ('queued #2')."""
    return f"{status} #{place}" if place else status


def training_runs(project: Project) -> list[dict]:
    """Runs of the project being trained now (running or stopping): the queue waits for them."""
    return project._query("SELECT id, name, pid, host FROM runs WHERE status IN ('running', 'stopping') ORDER BY id")


def cancel_queued(project: Project, run_id: int) -> bool:
    """Take a run waiting in the queue, that no worker has picked up, out of it: it ends 'interrupted' without
    having trained. False for a run not waiting in the queue, or one a worker already has (stop it instead)."""
    with project._write() as c:
        cur = c.execute("UPDATE runs SET status = 'interrupted', ended_at = ?, queue_position = NULL "
                        "WHERE id = ? AND status = 'queued' AND queue_position IS NOT NULL AND pid IS NULL",
                        (now_iso(), run_id))
        return cur.rowcount == 1


def group_names(project: Project) -> dict[int, str]:
    return {r["id"]: r["name"] for r in project._query("SELECT id, name FROM run_groups ORDER BY id")}


# ---------------------------------------------------------------------------------------------- the runner


def _holder(project: Project) -> dict | None:
    raw = project.setting(RUNNER_KEY)
    if not raw:
        return None
    try:
        holder = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) and holder.get("pid") else None


def _alive(holder: dict | None) -> bool:
    if holder is None:
        return False
    if holder.get("host") != hostname():
        return True  # cannot be checked from here: assume it runs (as mark_dead_runs does)
    return pid_alive(holder["pid"])


def queue_runner(project: Project) -> dict | None:
    """The live queue runner of the project ({"pid", "host", "since"}), or None."""
    holder = _holder(project)
    return holder if _alive(holder) else None


def acquire_runner(project: Project, pid: int, host: str | None = None) -> bool:
    """Become the project's queue runner: True unless another live runner holds the queue. Read and write
    happen in one write transaction, so two runners starting at once cannot both win."""
    host = host or hostname()
    with project.transaction():
        holder = _holder(project)
        if _alive(holder) and not (holder["pid"] == pid and holder.get("host") == host):
            return False
        project.set_setting(RUNNER_KEY, json.dumps({"pid": pid, "host": host, "since": now_iso()}))
        return True


def release_runner(project: Project, pid: int, host: str | None = None) -> None:
    """Give the queue up (only when this process holds it)."""
    host = host or hostname()
    with project.transaction():
        holder = _holder(project)
        if holder and holder["pid"] == pid and holder.get("host") == host:
            project.set_setting(RUNNER_KEY, "")
