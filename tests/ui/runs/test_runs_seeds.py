"""Seeds in the Runs section: launching a seed group queues it, the queue trains one run at a time, Stop takes a
waiting run out; Compare draws a group as its mean with a ±1 std band and gives mean ± std and costs; Report…"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from studio.core import metrics as M
from studio.store.comparison import price_per_gpu_hour
from studio.store.run_queue import create_seed_group
from studio.ui.runs import jobs
from studio.ui.runs.launch_dialog import LaunchDialog
from tests.ui.runs.runs_helpers import end_children, fake_model, fake_train_command, label_all, make_panel

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
FAKE_RUNNER = Path(__file__).with_name("fake_queue_runner.py")


@pytest.fixture
def labeled(pairs_project):
    label_all(pairs_project)
    return pairs_project


@pytest.fixture
def fake_queue(monkeypatch):
    """The app's queue runner trains with tests/ui/runs/fake_worker.py."""
    monkeypatch.setattr(jobs, "queue_command", lambda folder: [sys.executable, str(FAKE_RUNNER), str(folder)])
    monkeypatch.setattr(jobs, "train_command", fake_train_command)
    monkeypatch.setenv("FAKE_STEPS", "8")
    monkeypatch.setenv("FAKE_RATE", "40")
    yield
    end_children()


def launch_seeds(panel, model_dir, monkeypatch, seeds: int) -> list[int]:
    """Through the real launch dialog with `seeds` runs; returns the runs it created."""
    made = {}

    def fake_exec(dialog):
        dialog.set_model(str(model_dir))
        dialog.seeds_edit.setText(str(seeds))
        assert dialog.queue_check.isChecked() and not dialog.queue_check.isEnabled()
        dialog._on_launch()
        made["ids"] = dialog.run_ids
        return dialog.result()

    monkeypatch.setattr(LaunchDialog, "exec", fake_exec)
    monkeypatch.setattr("studio.ui.runs.resources.gpus", lambda timeout=3.0: [])
    panel.open_launch_dialog()
    return made["ids"]


def statuses(panel) -> dict[int, str]:
    return {panel.table.item(row, 0).data(0x0100): panel.table.item(row, 3).text()
            for row in range(panel.table.rowCount())}


def test_a_seed_group_is_queued_and_trains_one_run_after_another(qtbot, labeled, tmp_path, fake_queue, monkeypatch):
    panel = make_panel(qtbot, labeled)
    runs = launch_seeds(panel, fake_model(tmp_path / "m"), monkeypatch, 3)
    assert [labeled.run(r)["config"]["seed"] for r in runs] == [0, 1, 2]
    # the list shows the queue's order before the runner has started anything
    assert [statuses(panel)[r] for r in runs] == ["queued #1", "queued #2", "queued #3"]
    qtbot.waitUntil(lambda: all(labeled.run(r)["status"] == "done" for r in runs), timeout=60000)
    rows = [labeled.run(r) for r in runs]
    for before, after in itertools.pairwise(rows):
        assert after["started_at"] >= before["ended_at"]  # one at a time
    panel.poller.refresh_runs()
    assert [statuses(panel)[r] for r in runs] == ["done"] * 3


def test_stop_takes_a_waiting_run_out_of_the_queue(qtbot, labeled, tmp_path, fake_queue, monkeypatch):
    monkeypatch.setenv("FAKE_RATE", "10")
    panel = make_panel(qtbot, labeled)
    first, second = launch_seeds(panel, fake_model(tmp_path / "m"), monkeypatch, 2)
    panel.table.select_ids([second])
    panel.stop_selected()
    assert "taken out of the queue" in panel.message.text()
    qtbot.waitUntil(lambda: labeled.run(first)["status"] == "done", timeout=60000)
    run = labeled.run(second)
    assert run["status"] == "interrupted" and run["started_at"] is None
    panel.table.select_ids([second])
    assert not panel.resume_button.isEnabled()  # nothing to resume: it never trained


@pytest.fixture
def group_and_single(labeled):
    """A seed group whose margins end at 1, 2 and 3 (a run a step behind), and a single run (margin 0.5)."""
    _group, runs = create_seed_group(labeled, "dpo", "m", {"beta": 0.1}, [0, 1, 2], name="g")
    for run_id, top in zip(runs, (1.0, 2.0, 3.0), strict=True):
        labeled.log_metrics(run_id, [(s, M.REWARDS_MARGINS, top * s / 4) for s in range(1, 5)])
        labeled.log_metrics(run_id, [(4, M.NUM_TOKENS, 1000.0 * top), (4, M.MEMORY, 1.0)])
        labeled.update_run(run_id, status="done", step=4, device="cuda:0 (GPU)", started_at="2026-01-01T10:00:00+00:00",
                           ended_at="2026-01-01T10:06:00+00:00")
    single = labeled.create_run("dpo", "m", {"beta": 0.3})
    labeled.log_metrics(single, [(s, M.REWARDS_MARGINS, 0.5) for s in range(1, 4)])
    labeled.update_run(single, status="done", step=3, device="cpu", started_at="2026-01-01T11:00:00+00:00",
                       ended_at="2026-01-01T11:01:00+00:00")
    return runs, single


def test_compare_draws_a_seed_group_as_its_mean_with_a_band(qtbot, labeled, group_and_single):
    runs, single = group_and_single
    panel = make_panel(qtbot, labeled)
    panel.table.select_ids([*runs, single])
    panel.compare_selected()
    view = panel.compare
    view.slider.setValue(0)  # no smoothing: the band is of the logged values
    view.redraw()
    assert [e.label for e in view.entries] == ["g (3 seeds)", f"dpo-{single}"]
    gid = labeled.run(runs[0])["group_id"]
    band = view.groups.band(M.REWARDS_MARGINS, gid)
    assert band.steps.tolist() == [1, 2, 3, 4]
    assert band.mean.tolist() == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert band.std.tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])  # sample std of top * s / 4 for tops 1, 2, 3
    mean, lower, upper, _fill = view.groups.items[(M.REWARDS_MARGINS, gid)]
    assert np.allclose(mean.yData, band.mean) and np.allclose(upper.yData - lower.yData, 2 * band.std)
    assert view.curve_data(M.REWARDS_MARGINS, runs[0])[0].size == 0  # no separate curve per seed
    assert len(view.curve_data(M.REWARDS_MARGINS, single)[0]) == 3
    assert view.final_value(runs[1], M.REWARDS_MARGINS) == "2 ± 1"
    assert view.final_value(single, M.REWARDS_MARGINS) == "0.5"
    assert view.final_value(runs[0], "tokens") == "2,000 ± 1,000"
    assert view.final_value(runs[0], "GPU time") == "6m 00s ± 0s" and view.final_value(single, "GPU time") == "0s"
    t = view.config_table
    fields = [t.verticalHeaderItem(i).text() for i in range(t.rowCount())]
    assert fields == ["beta", "seed"] and t.item(1, 0).text() == "0, 1, 2"

    # a price turns GPU time into money, and is kept with the project
    view.price_edit.setText("3")
    view.price_edit.editingFinished.emit()
    assert price_per_gpu_hour(labeled) == 3.0
    assert view.final_value(runs[0], "cost") == "0.30 ± 0.00"  # 6 minutes on one GPU at 3 per GPU-hour
    view.price_edit.setText("lots")
    view.price_edit.editingFinished.emit()
    assert "expected a number" in view.price_edit.toolTip() and price_per_gpu_hour(labeled) == 3.0

    view.group_check.setChecked(False)  # every run on its own again
    assert len(view.entries) == 4 and view.final_value(runs[2], M.REWARDS_MARGINS) == "3"
    assert len(view.curve_data(M.REWARDS_MARGINS, runs[0])[0]) == 4


def test_report_writes_the_comparison_and_offers_to_open_it(qtbot, labeled, group_and_single, tmp_path, monkeypatch):
    runs, single = group_and_single
    panel = make_panel(qtbot, labeled)
    panel.table.select_ids([*runs, single])
    panel.compare_selected()
    out = tmp_path / "report.html"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "HTML (*.html)"))
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Close)
    panel.compare._ask_report()
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page and "g (3 seeds)" in page and f"dpo-{single}" in page
    assert asked and str(out) in asked[0]
