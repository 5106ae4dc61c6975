"""What `studio train` prints when its run ends in the foreground (the worker itself is tested in tests/train)."""

from __future__ import annotations

import pytest

from studio.commands import train as train_command
from studio.core import metrics as M
from studio.core.configs import DPOConfig
from studio.store import Project
from tests.conftest import add_pairs


@pytest.mark.parametrize(("config", "budget"), [({"beta": 0.1}, DPOConfig().sample_budget),
                                                 ({"beta": 0.1, "sample_budget": 0.25}, 0.25)])
def test_the_sampling_share_names_the_budget_the_run_trained_with(tmp_path, monkeypatch, capsys, config, budget):
    """A run whose stored config leaves sample_budget out (created before the setting existed, or by a script)
    trained with the default, and the line says so rather than a budget it did not have."""
    with Project.create(tmp_path / "p") as p:
        add_pairs(p, 2)
        run_id = p.create_run("dpo", "tiny", config)
        p.log_metrics(run_id, [(0, M.EVAL_SAMPLING_SECONDS, 3.0), (10, M.EVAL_SAMPLING_SECONDS, 1.0)], at=100.0)
        p.update_run(run_id, status="running", started_at="2026-01-01T10:00:00+00:00",
                     resumed_at="2026-01-01T10:00:00+00:00")
        p.update_run(run_id, status="done", step=10, total_steps=10, ended_at="2026-01-01T10:00:40+00:00")
        assert p.run(run_id)["active_seconds"] == pytest.approx(40.0)
    monkeypatch.setattr(train_command, "run_with_progress", lambda *args: "done")
    assert train_command._train_foreground(tmp_path / "p", run_id, resume=False) == 0
    out = capsys.readouterr().out
    assert f"run {run_id}: done at step 10/10" in out
    assert f"sampling: 2 evaluations took 4.0s, 10.0% of the run's 0:00:40 (sample_budget {budget:.0%})" in out
