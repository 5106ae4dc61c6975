"""Seed groups and the run queue in the store: groups on one snapshot, queue order, cancelling, the runner lock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from studio.store import Project, ProjectError
from studio.store.run_queue import (
    acquire_runner,
    cancel_queued,
    create_seed_group,
    enqueue,
    group_names,
    queue_places,
    queue_runner,
    release_runner,
    waiting_runs,
)
from tests.conftest import add_pairs


@pytest.fixture
def labeled(project):
    add_pairs(project, 6)
    for pair_id in project.pair_ids():
        project.record_label(pair_id, "ann", "b", shown_left="a")
    return project


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_seed_group_is_one_queued_run_per_seed_on_one_snapshot(labeled):
    group, runs = create_seed_group(labeled, "dpo", "tiny", {"beta": 0.2, "seed": 5}, [5, 6, 7], name="sweep")
    rows = [labeled.run(r) for r in runs]
    assert [r["config"]["seed"] for r in rows] == [5, 6, 7]
    assert all(r["config"]["beta"] == 0.2 and r["group_id"] == group and r["status"] == "queued" for r in rows)
    assert [r["name"] for r in rows] == ["sweep-seed5", "sweep-seed6", "sweep-seed7"]
    assert group_names(labeled) == {group: "sweep"}
    snapshots = [labeled.run_snapshot(r) for r in runs]
    assert len(snapshots[0]) == 6 and snapshots[0] == snapshots[1] == snapshots[2]
    assert [r["id"] for r in waiting_runs(labeled)] == runs
    unnamed, _ = create_seed_group(labeled, "dpo", "tiny", {}, [0, 1])
    assert group_names(labeled)[unnamed] == f"dpo-group{unnamed}"
    with pytest.raises(ProjectError, match=r"seeds: each run of a group needs its own seed, got \[1, 1\]"):
        create_seed_group(labeled, "dpo", "tiny", {}, [1, 1])


def test_the_queue_keeps_its_order_and_shows_each_runs_place(labeled):
    _, group = create_seed_group(labeled, "dpo", "tiny", {}, [0, 1])
    single = labeled.create_run("dpo", "tiny", {})
    outside = labeled.create_run("dpo", "tiny", {})  # started at once by the app: never in the queue
    enqueue(labeled, [single])
    assert [r["id"] for r in waiting_runs(labeled)] == [*group, single]
    places = queue_places(labeled.runs())
    assert places == {group[0]: 1, group[1]: 2, single: 3} and outside not in places
    labeled.update_run(group[0], status="running", pid=os.getpid(), host=socket.gethostname())
    assert queue_places(labeled.runs()) == {group[1]: 1, single: 2}
    with pytest.raises(ProjectError, match=f"run {group[0]}: only a queued run that has not started"):
        enqueue(labeled, [group[0]])


def test_a_waiting_run_can_be_taken_out_of_the_queue_but_not_one_a_worker_has(labeled):
    _, (first, second) = create_seed_group(labeled, "dpo", "tiny", {}, [0, 1])
    assert cancel_queued(labeled, second)
    run = labeled.run(second)
    assert run["status"] == "interrupted" and run["started_at"] is None and run["queue_position"] is None
    labeled.update_run(first, pid=os.getpid(), host=socket.gethostname())  # the runner spawned its worker
    assert not cancel_queued(labeled, first)
    assert waiting_runs(labeled)[0]["id"] == first


def test_a_stop_asked_before_the_worker_claims_the_run_is_kept(labeled):
    run_id = labeled.create_run("dpo", "tiny", {})
    labeled.request_stop(run_id)
    assert labeled.claim_run(run_id, ("queued",), os.getpid(), socket.gethostname())
    assert labeled.stop_requested(run_id)  # the worker stops at once instead of training it
    labeled.update_run(run_id, status="interrupted", ended_at="2026-01-01T00:00:00+00:00")
    assert labeled.claim_run(run_id, ("interrupted",), os.getpid(), socket.gethostname())
    assert not labeled.stop_requested(run_id)  # a resume starts without the old request


def test_one_runner_holds_the_queue_and_a_dead_ones_hold_is_taken_over(tmp_path):
    with Project.create(tmp_path / "p") as p, Project.open(tmp_path / "p") as other:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            assert acquire_runner(p, sleeper.pid)
            assert queue_runner(other)["pid"] == sleeper.pid
            assert not acquire_runner(other, os.getpid())  # a live runner holds it
            release_runner(other, os.getpid())  # not the holder: nothing happens
            assert queue_runner(p)["pid"] == sleeper.pid
        finally:
            sleeper.kill()
            sleeper.wait()
        assert queue_runner(p) is None  # its process is gone
        assert acquire_runner(other, os.getpid())
        release_runner(other, os.getpid())
        assert queue_runner(p) is None and acquire_runner(p, dead_pid()) and queue_runner(p) is None


def test_only_a_run_waiting_in_the_queue_is_cancelled(labeled):
    plain = labeled.create_run("dpo", "tiny", {})  # the app starts it at once: not the queue's to cancel
    assert not cancel_queued(labeled, plain) and labeled.run(plain)["status"] == "queued"
