"""The reward/KL frontier in the store: creating a frontier job from the runs a user names, the points it
writes (one per policy and step, per measure), and reading them back for `studio frontier` and Compare."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from studio.core import paths
from studio.core.frontier import FRONTIER, FrontierPlan, on_frontier, policy_key
from studio.core.generations import BASE, Source
from studio.store.db import ProjectError, now_iso
from studio.store.project import Project

POLICY_METHODS = ("dpo", "ppo", "rloo")
"""Runs whose adapter is a policy (a reward run's adapter feeds a score head, not the next token)."""

POINT_FIELDS = ("samples", "reward", "reward_stderr", "kl", "kl_stderr", "kl_k1", "response_tokens", "finished")


def adapter_step(project: Project, run_id: int) -> int:
    """The step of a run's saved adapter: its latest checkpoint (a running run's adapter is the one saved
    there), else the run's step."""
    step = project._scalar("SELECT max(step) FROM checkpoints WHERE run_id = ?", (run_id,))
    return int(step) if step is not None else int(project.run(run_id)["step"])


def policy_sources(project: Project, run_ids: Sequence[int]) -> list[Source]:
    """The base model and the runs' adapters as the policies of a frontier, checked: DPO, PPO or RLOO runs of this
    project, each with a saved adapter, all on one base model."""
    if not run_ids:
        raise ProjectError("--runs: name at least one run (DPO, PPO or RLOO) to measure")
    runs = []
    for run_id in dict.fromkeys(run_ids):
        try:
            run = project.run(run_id)
        except ProjectError:
            raise ProjectError(f"--runs: run {run_id}: no such run in this project") from None
        if run["method"] not in POLICY_METHODS:
            raise ProjectError(f"--runs: run {run_id} is a {run['method']} run; a frontier point is a policy: give "
                               f"DPO, PPO or RLOO runs")
        if project.folder is None or not (paths.adapter_dir(project.folder, run_id) / "adapter_config.json").is_file():
            raise ProjectError(f"--runs: run {run_id} ({run['name']}) has no saved adapter yet (status "
                               f"{run['status']}); a run saves it at checkpoints and when it ends")
        runs.append(run)
    models = sorted({r["model"] for r in runs})
    if len(models) > 1:
        raise ProjectError("--runs: the runs have different base models, so no one reference for their KL: "
                           + "; ".join(f"run {r['id']} on {r['model']}" for r in runs))
    return [Source(BASE, models[0])] + [Source(r["name"], r["model"], r["id"], adapter_step(project, r["id"]))
                                        for r in runs]


def create_frontier_job(project: Project, plan: FrontierPlan, name: str | None = None) -> int:
    """A queued run (method 'frontier') that measures the plan's points; returns its id."""
    plan.validate()
    return project.create_run(FRONTIER, plan.model, plan.to_dict(), name=name, snapshot=[])


def measured(project: Project, measure: str) -> set[tuple[str, int]]:
    """(policy, step) of the points this measure already has."""
    return {(r[0], r[1]) for r in project._conn.execute("SELECT policy, step FROM frontier_points WHERE measure = ?",
                                                        (measure,))}


def add_point(project: Project, job_id: int | None, plan: FrontierPlan, source: Source,
              values: dict[str, float]) -> None:
    """Store one measured point (replacing the same policy and step of the same measure)."""
    step = 0 if source.adapter_run is None else int(source.adapter_step or 0)
    with project._write() as c:
        run_id = source.adapter_run
        if run_id is not None and c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            return  # the run was deleted while it was measured
        c.execute(f"INSERT OR REPLACE INTO frontier_points (measure, job_id, reward_model, policy, run_id, step, name, "
                  f"{', '.join(POINT_FIELDS)}, created_at) VALUES ({', '.join('?' * (8 + len(POINT_FIELDS)))})",
                  (plan.measure(), job_id, plan.reward_name, policy_key(source), run_id, step, source.name,
                   *(float(values[k]) for k in POINT_FIELDS), now_iso()))


def points(project: Project, measure: str, run_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The points of a measure (of these runs and the base model, when `run_ids` is given), by run and step,
    each with `on_frontier`."""
    rows = project._query("SELECT * FROM frontier_points WHERE measure = ? ORDER BY run_id IS NOT NULL, run_id, step",
                          (measure,))
    if run_ids is not None:
        rows = [r for r in rows if r["run_id"] is None or r["run_id"] in set(run_ids)]
    for r, best in zip(rows, on_frontier(rows), strict=True):
        r["samples"] = int(r["samples"])
        r["on_frontier"] = best
    return rows


def latest_measure(project: Project, run_ids: Sequence[int]) -> dict[str, Any] | None:
    """The newest measure with a point of any of these runs: {"measure", "reward_model", "job_id", "created_at"},
    or None (Compare draws that one)."""
    if not run_ids:
        return None
    marks = ", ".join("?" * len(run_ids))
    rows = project._query(f"SELECT measure, reward_model, job_id, created_at FROM frontier_points WHERE run_id IN "
                          f"({marks}) ORDER BY created_at DESC, id DESC LIMIT 1", list(run_ids))
    return rows[0] if rows else None


def job_measure(project: Project, job_id: int) -> str:
    """The measure of a frontier job."""
    return FrontierPlan.from_dict(project.run(job_id)["config"]).measure()
