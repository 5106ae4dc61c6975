"""A training worker killed outright is found dead wherever the project is opened: `studio runs`,
`studio train --resume`, `studio stop` (and the GUI, tests/ui/test_main_window.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from studio.cli import main
from studio.store import Project
from tests.conftest import add_pairs


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def killed_run(tmp_path):
    """A project whose run says 'running' at step 3, its worker gone (as after `kill -9`)."""
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        add_pairs(p, 3)
        for pair in p.pair_ids():
            p.record_label(pair, "alice", "a", "a")
        run = p.create_run("dpo", "no-such-model", {"max_steps": 10})
        assert p.claim_run(run, ("queued",), dead_pid(), socket.gethostname())
        p.update_run(run, step=3)
    return folder, run


def test_studio_runs_reports_a_killed_worker_as_failed(killed_run, capsys):
    folder, run = killed_run
    assert main(["runs", str(folder), "--json"]) == 0
    cap = capsys.readouterr()
    (r,) = json.loads(cap.out)
    assert r["status"] == "failed" and "ended without reporting (killed or crashed)" in r["error"]
    assert f"run {run}: marked failed" in cap.err
    assert main(["runs", str(folder), "--json"]) == 0  # once: the second look finds nothing new
    assert capsys.readouterr().err == ""


def test_studio_stop_on_a_killed_worker_says_it_stopped_already(killed_run, capsys):
    folder, run = killed_run
    assert main(["stop", str(folder), str(run)]) == 0
    out = capsys.readouterr().out
    assert f"run {run}: stopped already" in out and "marked failed at step 3" in out and "--resume" in out
    with Project.open(folder) as p:
        assert p.run(run)["status"] == "failed"


def test_resume_of_a_killed_run_is_not_refused_as_running_elsewhere(killed_run):
    folder, run = killed_run
    res = subprocess.run([sys.executable, "-m", "studio", "train", str(folder), "--resume", str(run)],
                         capture_output=True, text=True, timeout=300)
    assert "running in another worker" not in res.stderr
    assert f"run {run}: marked failed" in res.stderr
    with Project.open(folder) as p:  # the resumed worker claimed it, then failed on its (missing) model
        r = p.run(run)
        assert r["status"] == "failed" and "no-such-model" in r["error"]


def test_opening_a_project_leaves_runs_of_another_host_alone(tmp_path):
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        run = p.create_run("dpo", "m", {})
        assert p.claim_run(run, ("queued",), dead_pid(), "some-other-host")
    with Project.open(folder) as p:
        assert p.found_dead_runs == [] and p.run(run)["status"] == "running"


def test_the_host_recorded_beside_a_pid_is_the_name_other_tools_see():
    """Runs, imports and sessions record `hostname()` (read without the socket module); a worker or script
    that records socket.gethostname() must match it, or its pid would never be checked."""
    from studio.store.db import hostname

    assert hostname() == socket.gethostname()
