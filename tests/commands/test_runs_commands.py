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
                                    "started_at", "ended_at", "error", "group_id", "queue_place", "warnings",
                                    "reward_model"}
    assert runs[memorised]["group_id"] is None and runs[memorised]["queue_place"] is None

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


def test_samples_prints_a_steps_samples_with_their_measures(tmp_path, capsys):
    with Project.create(tmp_path / "p") as project:
        run_id = project.create_run("dpo", "tiny-model", {})
        pid = project.add_prompt("Tell me about cats.")
        for step, text in ((0, "the cat sat"), (20, "yes yes yes yes")):
            project.add_samples(run_id, step, [
                {"prompt_id": pid, "prompt_text": "Tell me about cats.", "text": f"{text} {k}",
                 "meta": {"sample": k, "tokens": 5 + step, "hit_cap": step == 20, "repetition": step / 40,
                          "kl_seq": step / 10, "repeated": [[0, 7]] if step else []}} for k in range(2)])
            project.log_metrics(run_id, [(step, M.EVAL_DISTINCT_2, 1.0 - step / 40), (step, M.LOSS, 0.6)])
    assert main(["samples", str(tmp_path / "p"), str(run_id), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["run"], out["step"], out["steps"]) == (run_id, 20, [0, 20])  # the latest step by default
    assert out["metrics"] == {M.EVAL_DISTINCT_2: 0.5}  # what the evaluation measured on the samples
    assert out["samples"][1] == {"prompt_id": pid, "prompt": "Tell me about cats.", "text": "yes yes yes yes 1",
                                 "sample": 1, "tokens": 25, "hit_cap": True, "repetition": 0.5, "kl_seq": 2.0,
                                 "repeated": [[0, 7]]}

    assert main(["samples", str(tmp_path / "p"), str(run_id), "--step", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run {run_id}, step 0: 2 samples of 1 prompts (steps with samples: 0, 20)")
    assert f"== prompt {pid}: Tell me about cats." in text
    assert "-- sample 0  tokens 5  hit_cap no  repetition 0.000  kl_seq 0.000\n   the cat sat 0" in text

    assert main(["samples", str(tmp_path / "p"), str(run_id), "--step", "5"]) == 2
    assert "--step 5: run" in capsys.readouterr().err
