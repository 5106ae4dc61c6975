"""`studio runs` and `studio metrics` name a run's health problems in the monitor's words."""

from __future__ import annotations

import json

import pytest

from studio.cli import main
from studio.core import health as H
from studio.core import metrics as M
from studio.store import Project
from studio.store.run_metrics import read_run_series

EVAL_ACC = M.eval_name(M.REWARDS_ACCURACIES)


def log_run(project: Project, train_acc: float, eval_acc: float, steps: int = 40) -> int:
    """A run evaluated at step 0 and every 20 steps, its eval accuracy ending at eval_acc."""
    run_id = project.create_run("dpo", "tiny-model", {"beta": 0.1})
    rows = [(s, name, value) for s in range(1, steps + 1)
            for name, value in ((M.LOSS, 0.69 - s / 1000), (M.REWARDS_ACCURACIES, train_acc), (M.GRAD_NORM, 1.0))]
    rows += [(0, EVAL_ACC, 0.5), (steps // 2, EVAL_ACC, (0.5 + eval_acc) / 2), (steps, EVAL_ACC, eval_acc)]
    project.log_metrics(run_id, rows, at=100.0)
    return run_id


@pytest.fixture
def two_runs(tmp_path):
    """A project with a healthy run and one that memorised its training pairs."""
    with Project.create(tmp_path / "p") as project:
        healthy = log_run(project, train_acc=0.8, eval_acc=0.72)
        memorised = log_run(project, train_acc=1.0, eval_acc=0.55)
        expected = H.run_warnings(read_run_series(project, memorised))
    assert len(expected) == 1 and expected[0].startswith("Overfitting: train accuracy 100% over the last steps, "
                                                         "but 55% on the eval split at step 40")
    return tmp_path / "p", healthy, memorised, expected


def test_runs_json_carries_each_runs_warnings(two_runs, capsys):
    folder, healthy, memorised, expected = two_runs
    assert main(["runs", str(folder), "--json"]) == 0
    runs = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs[healthy]["warnings"] == [] and runs[memorised]["warnings"] == expected
    assert set(runs[memorised]) == {"id", "name", "method", "status", "model", "step", "total_steps", "created_at",
                                    "started_at", "ended_at", "warnings", "reward_model"}

    assert main(["runs", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"warning: run {memorised} (dpo-{memorised}): {expected[0]}" in out
    assert f"run {healthy} " not in out.split("warning:", 1)[1]  # no warning line for the healthy run


def test_metrics_json_carries_the_rows_and_the_warnings(two_runs, capsys):
    folder, healthy, memorised, expected = two_runs
    assert main(["metrics", str(folder), str(memorised), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run"] == memorised and out["warnings"] == expected
    assert len(out["metrics"]) == 40 * 3 + 3 and out["metrics"][0] == {"step": 1, "name": M.LOSS,
                                                                         "value": 0.69 - 1 / 1000, "time": 100.0}
    assert main(["metrics", str(folder), str(healthy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []

    assert main(["metrics", str(folder), str(memorised)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"warning: {expected[0]}")


def test_a_diverged_run_is_named_by_both_commands(tmp_path, capsys):
    with Project.create(tmp_path / "p") as project:
        run_id = project.create_run("dpo", "tiny-model", {})
        project.log_metrics(run_id, [(s, M.LOSS, float("nan") if s == 7 else 0.5) for s in range(1, 10)])
    assert main(["runs", str(tmp_path / "p"), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["warnings"][0].startswith("The loss became nan at step 7: training diverged.")
    assert main(["metrics", str(tmp_path / "p"), str(run_id), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == run["warnings"]
