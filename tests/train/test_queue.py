"""The queue runner: queued runs train one after another; dead workers do not stall it; one runner per project."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from studio.store import Project
from studio.store.run_queue import create_seed_group, queue_runner
from studio.train.queue import QueueRunner
from tests.conftest import add_pairs
from tests.ui.runs.runs_helpers import fake_train_command

ROOT = Path(__file__).resolve().parents[2]


def make_queue(folder, seeds: int) -> list[int]:
    """A project with a seed group of `seeds` queued runs."""
    with Project.create(folder) as p:
        add_pairs(p, 4)
        for pair_id in p.pair_ids():
            p.record_label(pair_id, "ann", "b", shown_left="a")
        return create_seed_group(p, "dpo", "tiny", {}, list(range(seeds)))[1]


@pytest.fixture
def fast_workers(monkeypatch):
    """Fake workers take 6 steps at 60 steps/s."""
    monkeypatch.setenv("FAKE_STEPS", "6")
    monkeypatch.setenv("FAKE_RATE", "60")


@pytest.fixture
def queued(tmp_path, fast_workers):
    """Three queued runs of a seed group."""
    return tmp_path / "p", make_queue(tmp_path / "p", 3)


@pytest.fixture
def two_queued(tmp_path, fast_workers):
    return tmp_path / "p", make_queue(tmp_path / "p", 2)


def runner(folder, **kw) -> QueueRunner:
    said: list[str] = []
    r = QueueRunner(folder, command=lambda f, run_id: fake_train_command(f, run_id), poll_s=0.05,
                    say=said.append, show_output=False, **kw)
    r.said = said
    return r


def test_queued_runs_train_one_after_another_in_order(queued):
    folder, runs = queued
    r = runner(folder)
    assert r.run() == 0
    assert r.started == runs
    with Project.open(folder) as p:
        rows = [p.run(i) for i in runs]
        assert [x["status"] for x in rows] == ["done"] * 3
        for before, after in itertools.pairwise(rows):
            assert after["started_at"] >= before["ended_at"]  # never two at once
        assert queue_runner(p) is None  # the runner let go of the queue


def test_a_worker_killed_outright_fails_its_run_and_the_queue_goes_on(queued, monkeypatch):
    folder, runs = queued
    monkeypatch.setenv("FAKE_KILL_AT", "3")
    monkeypatch.setenv("FAKE_KILL_RUN", str(runs[1]))
    assert runner(folder).run() == 0
    with Project.open(folder) as p:
        assert [p.run(i)["status"] for i in runs] == ["done", "failed", "done"]
        assert "ended without reporting" in p.run(runs[1])["error"]


def test_the_queue_waits_for_a_training_run_and_finds_a_dead_one_by_its_pid(two_queued):
    folder, runs = two_queued
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with Project.open(folder) as p:
        solo = p.create_run("dpo", "tiny", {})  # started outside the queue, training now
        p.update_run(solo, status="running", pid=other.pid, host=socket.gethostname())
    r = runner(folder)
    thread = threading.Thread(target=r.run)
    thread.start()
    try:
        time.sleep(0.5)
        assert r.started == [] and any(f"waiting for run {solo}" in line for line in r.said)
        other.kill()  # the other run's worker dies without a word
        other.wait()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        r.stop()
        thread.join(60)
    assert r.started == runs
    with Project.open(folder) as p:
        assert p.run(solo)["status"] == "failed"


def test_a_second_runner_leaves_the_queue_to_the_first(two_queued):
    folder, runs = two_queued
    first = runner(folder)
    thread = threading.Thread(target=first.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not first.started and time.monotonic() < deadline:
            time.sleep(0.02)
        # another process: the same lines as `studio train PROJECT --next`
        second = subprocess.run([sys.executable, "-c", "import sys; from studio.train.queue import run_queue; "
                                 "sys.exit(run_queue(sys.argv[1]))", str(folder)], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert second.returncode == 0 and "is run by another process already" in second.stdout
        assert "starting run" not in second.stdout
    finally:
        thread.join(60)
    assert first.started == runs


def test_the_cli_runs_the_queue_in_the_foreground(two_queued, capsys, monkeypatch):
    from studio.cli import main
    from studio.train import queue

    folder, runs = two_queued
    monkeypatch.setattr(queue, "worker_command", lambda f, run_id: fake_train_command(f, run_id))
    assert main(["train", str(folder), "--next"]) == 0
    out = capsys.readouterr().out
    assert [f"starting run {i}" in out for i in runs] == [True, True]
    with Project.open(folder) as p:
        assert {p.run(i)["status"] for i in runs} == {"done"}
    assert os.path.getsize(folder / "runs" / str(runs[0]) / "worker.log") > 0  # each worker logs to its run
