"""`studio compare`, `studio report`, `studio train --seeds/--next` argument checks and `studio demo --no-open`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main
from studio.core import metrics as M
from studio.store import Project
from studio.store.comparison import set_price_per_gpu_hour
from studio.store.run_queue import create_seed_group
from tests.conftest import add_pairs
from tests.core.test_report import Page, svgs

ROOT = Path(__file__).resolve().parents[2]


def finish(project: Project, run_id: int, margin: float, tokens: float, device: str = "cpu") -> None:
    """A finished run that logged a margin at steps 1-3, the token counter and its peak memory."""
    project.log_metrics(run_id, [(s, M.REWARDS_MARGINS, margin * s / 3) for s in (1, 2, 3)]
                        + [(3, M.NUM_TOKENS, tokens), (3, M.MEMORY, 1.5), (3, M.SAMPLES_GENERATED, 4)], at=100.0)
    project.update_run(run_id, status="done", step=3, total_steps=3, device=device,
                       started_at="2026-01-01T10:00:00+00:00", resumed_at="2026-01-01T10:00:00+00:00",
                       ended_at="2026-01-01T10:30:00+00:00")
    project.add_samples(run_id, 3, [{"prompt_id": None, "prompt_text": "Hi?", "text": f"run {run_id} says hi"}])


@pytest.fixture
def compared(tmp_path):
    """A seed group of three DPO runs (on one GPU) and a single IPO run (on CPU)."""
    with Project.create(tmp_path / "p") as p:
        add_pairs(p, 4)
        for pair_id in p.pair_ids():
            p.record_label(pair_id, "ann", "b", shown_left="a")
        _group, seeds = create_seed_group(p, "dpo", "tiny", {"beta": 0.1}, [0, 1, 2], name="dpo3")
        for run_id, margin in zip(seeds, (1.0, 2.0, 3.0), strict=True):
            finish(p, run_id, margin, 1000.0, device="cuda:0 (NVIDIA H200)")
        ipo = p.create_run("dpo", "tiny", {"beta": 0.1, "loss_type": "ipo"})
        finish(p, ipo, 0.5, 800.0)
        set_price_per_gpu_hour(p, 2.0)
    return tmp_path / "p", seeds, ipo


def test_compare_json_gives_each_runs_final_metrics_and_cost_and_the_groups_spread(compared, capsys):
    folder, seeds, ipo = compared
    assert main(["compare", str(folder), *map(str, seeds), str(ipo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["price_per_gpu_hour"] == 2.0  # the project's setting
    runs = {r["id"]: r for r in out["runs"]}
    assert runs[seeds[1]]["final"][M.REWARDS_MARGINS] == 2.0 and runs[seeds[1]]["seed"] == 1
    # 30 minutes on one GPU at 2.0 per GPU-hour
    assert runs[seeds[0]]["cost"]["gpu_seconds"] == 1800 and runs[seeds[0]]["cost"]["money"] == 1.0
    assert runs[ipo]["cost"]["gpus"] == 0 and runs[ipo]["cost"]["money"] == 0
    assert runs[ipo]["cost"]["num_tokens"] == 800 and runs[ipo]["cost"]["peak_memory_gib"] == 1.5
    (group,) = out["groups"]
    assert group["name"] == "dpo3" and group["runs"] == seeds and group["finished_runs"] == 3
    assert group["final"][M.REWARDS_MARGINS] == {"mean": 2.0, "std": 1.0, "n": 3}
    assert group["cost"]["money"] == {"mean": 1.0, "std": 0.0, "n": 3}

    assert main(["compare", str(folder), str(ipo), "--json", "--price-per-gpu-hour", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["price_per_gpu_hour"] == 10.0


def test_compare_as_a_table_and_its_errors(compared, capsys):
    folder, seeds, ipo = compared
    assert main(["compare", str(folder), *map(str, seeds), str(ipo)]) == 0
    out = capsys.readouterr().out
    assert "rewards/margins" in out and "2 ± 1" in out and "dpo3 (3 seeds)" in out
    assert main(["compare", str(folder), "99"]) == 2
    assert "run 99: no such run" in capsys.readouterr().err
    assert main(["compare", str(folder), str(ipo), "--price-per-gpu-hour", "free"]) == 2
    assert "--price-per-gpu-hour: expected a number such as 2.5, got 'free'" in capsys.readouterr().err


def test_the_report_is_one_html_file_that_opens_offline_with_its_charts(compared, tmp_path, capsys):
    folder, seeds, ipo = compared
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(folder), "--runs", *map(str, seeds), str(ipo), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    p = Page()
    p.feed(page)
    assert not [u for u in p.urls if not u.startswith("data:")] and "url(" not in page
    charts = svgs(page)
    assert charts and all(c.find("{http://www.w3.org/2000/svg}path") is not None for c in charts)
    margin = charts[0]
    assert margin.get("aria-label") == "Reward margin"
    assert len(margin.findall("{http://www.w3.org/2000/svg}polygon")) == 1  # the seed group's band
    assert "run 4 says hi" in page and "dpo3 (3 seeds)" in page and "loss_type" in page

    assert main(["report", str(folder), "--runs", str(ipo), "--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_train_refuses_seed_and_queue_flags_that_do_not_go_together(compared, capsys):
    folder, seeds, _ipo = compared
    cases = [(["--seeds", "0", "--model", "m"], "--seeds: give between 1 and 100 runs, got 0"),
             (["--next", "--model", "m"], "--model: not taken with --next"),
             (["--seeds", "2", "--run", str(seeds[0])], "--seeds: creates new runs"),
             (["--next", "--run", str(seeds[0])], "--run, --resume and --next: give one of them")]
    for flags, message in cases:
        assert main(["train", str(folder), *flags]) == 2
        assert message in capsys.readouterr().err


def test_studio_stop_takes_a_waiting_run_out_of_the_queue(compared, capsys):
    folder, _seeds, _ipo = compared
    with Project.open(folder) as p:
        _group, (waiting,) = create_seed_group(p, "dpo", "tiny", {}, [9])
    assert main(["stop", str(folder), str(waiting)]) == 0
    assert "taken out of the queue" in capsys.readouterr().out
    with Project.open(folder) as p:
        assert p.run(waiting)["status"] == "interrupted"
    assert main(["stop", str(folder), str(waiting)]) == 2  # nothing left to stop


def test_demo_no_open_builds_the_project_without_qt(tmp_path):
    code = ("import sys; from studio.cli import main; rc = main(['demo', '--no-open', '--no-model', sys.argv[1]]); "
            "assert 'PySide6' not in sys.modules, 'Qt was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "created demo project" in done.stdout
    with Project.open(tmp_path / "demo") as p:
        assert p.counts()["pairs"] > 0
