"""The Runs view: launch, watch live, stop, resume, detach/reattach, failures, compare, export."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import DPOConfig, config_fields, to_dict
from studio.store import Project
from studio.ui.runs import jobs
from studio.ui.runs.launch_dialog import LaunchDialog
from tests.conftest import add_pairs
from tests.ui.runs.fake_worker import value as fake_value
from tests.ui.runs.runs_helpers import FAKE_WORKER, end_children, fake_model, fake_train_command, label_all, make_panel

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def labeled(pairs_project):
    label_all(pairs_project)
    return pairs_project


@pytest.fixture
def model_dir(tmp_path):
    return fake_model(tmp_path / "models" / "tiny-llama")


@pytest.fixture
def fake_jobs(monkeypatch):
    """Start tests/ui/runs/fake_worker.py instead of `studio train`, fast and with few steps by default."""
    monkeypatch.setattr(jobs, "train_command", fake_train_command)
    monkeypatch.setenv("FAKE_STEPS", "40")
    monkeypatch.setenv("FAKE_RATE", "40")
    yield
    end_children()


def launch(panel, model_dir, monkeypatch, preset=None, **values):
    """Go through the real launch dialog (exec replaced by pressing Launch) and start the worker."""
    def fake_exec(dialog):
        dialog.set_model(str(model_dir))
        if preset:
            dialog.apply_preset(preset)
        for name, value in values.items():
            dialog.set_value(name, value)
        dialog._on_launch()
        return dialog.result()

    monkeypatch.setattr(LaunchDialog, "exec", fake_exec)
    monkeypatch.setattr("studio.ui.runs.resources.gpus", lambda timeout=3.0: [])
    return panel.open_launch_dialog()


def status(project, run_id):
    return project.run(run_id)["status"]


def test_launch_then_the_monitor_draws_the_workers_metrics_as_they_arrive(qtbot, labeled, model_dir, fake_jobs,
                                                                          monkeypatch):
    panel = make_panel(qtbot, labeled)
    run_id = launch(panel, model_dir, monkeypatch, preset="IPO", beta=0.25)
    assert run_id is not None
    run = labeled.run(run_id)
    assert run["config"]["loss_type"] == "ipo" and run["config"]["beta"] == 0.25
    assert run["model"] == str(model_dir)
    assert len(labeled.run_snapshot(run_id)) == 14  # every labeled pair, frozen at launch
    assert panel.monitor.run_id == run_id

    # first points appear while the run is still going, then the full curve once it is done
    qtbot.waitUntil(lambda: len(panel.monitor.curve_data(M.REWARDS_MARGINS)[0]) > 0, timeout=60000)
    qtbot.waitUntil(lambda: status(labeled, run_id) == "done", timeout=20000)
    qtbot.waitUntil(lambda: len(panel.monitor.curve_data(M.REWARDS_MARGINS)[0]) == 40, timeout=20000)
    x, _y = panel.monitor.curve_data(M.LOGPS_CHOSEN)
    assert x.tolist() == list(range(1, 41))
    ex, _ = panel.monitor.curve_data(M.eval_name(M.REWARDS_ACCURACIES))
    assert ex.tolist() == [10, 20, 30, 40]
    # the samples timeline follows the latest evaluation, beside step 10 (the fake worker's first)
    timeline = panel.monitor.timeline
    qtbot.waitUntil(lambda: timeline.current_step() == 40, timeout=20000)
    assert "Sample 0 of 0 at step 40." in timeline.panes[1].toPlainText()
    assert "Sample 0 of 0 at step 10." in timeline.panes[0].toPlainText()
    # the fake worker's log-probs both fall: the warning says so in words
    assert "Likelihood displacement" in panel.monitor.warning.text()
    qtbot.waitUntil(lambda: panel.table.item(0, 3).text() == "done", timeout=20000)
    best = max(fake_value(M.eval_name(M.REWARDS_ACCURACIES), s, 40) for s in (10, 20, 30, 40))
    assert panel.table.item(0, 6).text() == f"{best:.1%}"  # best eval accuracy, not the last


def test_launch_dialog_is_generated_from_the_config_and_names_bad_fields(qtbot, project, model_dir):
    add_pairs(project, 30)
    label_all(project)  # b, the longer response, always chosen
    labeled = project
    dialog = LaunchDialog(labeled, models=[], gpus=[])
    qtbot.addWidget(dialog)
    assert set(dialog.editors) == {f.name for f in config_fields(DPOConfig)}
    assert "LoRA rank" in dialog.editors["lora.r"].toolTip()
    dialog.set_value("learning_rate", "fast")
    assert dialog.launch() is None
    text = dialog.error_label.text()
    assert "Learning rate (learning_rate): expected float, got 'fast'" in text
    assert "model: choose a model" in text
    dialog.set_value("learning_rate", "2e-5")
    dialog.set_model(str(model_dir))
    dialog.set_value("max_prompt_length", 2048)
    assert dialog.launch() is None and "max_prompt_length): 2048 leaves no room" in dialog.error_label.text()
    dialog.set_value("max_prompt_length", 256)
    dialog.apply_preset("SimPO")
    assert dialog.raw_value("loss_type") == "simpo"
    run_id = dialog.launch()
    config = labeled.run(run_id)["config"]
    assert config["loss_type"] == "simpo" and config["learning_rate"] == 1e-5 and config["max_prompt_length"] == 256
    assert "30 resolved preferences for training, 0 for evaluation" in dialog.data_label.text()
    assert "100% of chosen responses are longer: DPO will learn length" in dialog.data_label.text()
    assert "CPU training" in dialog.device_label.text() and "estimate" in dialog.estimate_label.text()


def test_stop_then_resume_continues_the_same_run(qtbot, labeled, model_dir, fake_jobs, monkeypatch):
    monkeypatch.setenv("FAKE_STEPS", "100000")
    monkeypatch.setenv("FAKE_RATE", "20")
    panel = make_panel(qtbot, labeled)
    run_id = launch(panel, model_dir, monkeypatch)
    qtbot.waitUntil(lambda: labeled.run(run_id)["step"] >= 3, timeout=60000)
    panel.table.select_ids([run_id])
    assert panel.stop_button.isEnabled() and not panel.delete_button.isEnabled()
    panel.stop_selected()
    assert status(labeled, run_id) in ("stopping", "interrupted")
    qtbot.waitUntil(lambda: status(labeled, run_id) == "interrupted", timeout=40000)
    stopped_at = labeled.run(run_id)["step"]
    assert stopped_at < 1000
    stopped = f"Run {run_id} stopped at step {stopped_at} (interrupted)."
    qtbot.waitUntil(lambda: panel.message.text() == stopped, timeout=20000)  # not "Asked run N to stop" any more
    qtbot.waitUntil(lambda: panel.resume_button.isEnabled(), timeout=20000)

    monkeypatch.setenv("FAKE_STEPS", str(stopped_at + 5))
    panel.resume_selected()
    assert not panel.resume_button.isEnabled()  # one worker per resume, however often it is clicked
    resumed = f"Run {run_id} resumed from its last checkpoint (it had reached step {stopped_at})."
    qtbot.waitUntil(lambda: panel.message.text() == resumed, timeout=60000)
    qtbot.waitUntil(lambda: status(labeled, run_id) == "done", timeout=60000)
    qtbot.waitUntil(lambda: len(panel.monitor.curve_data(M.LOSS)[0]) == stopped_at + 5, timeout=20000)
    assert panel.monitor.curve_data(M.LOSS)[0][-1] == stopped_at + 5


def test_closing_keeps_the_run_and_a_new_panel_reattaches(qtbot, labeled, model_dir, fake_jobs, monkeypatch):
    monkeypatch.setenv("FAKE_STEPS", "100000")
    monkeypatch.setenv("FAKE_RATE", "20")
    panel = make_panel(qtbot, labeled)
    run_id = launch(panel, model_dir, monkeypatch)
    qtbot.waitUntil(lambda: status(labeled, run_id) == "running", timeout=60000)

    asked = []
    panel.ask_close = lambda runs: asked.append([r["id"] for r in runs]) or "cancel"
    assert panel.confirm_close() is False
    panel.ask_close = lambda runs: "keep"
    assert panel.confirm_close() is True and asked == [[run_id]]
    panel.close()
    panel.deleteLater()

    reopened = Project.open(labeled.folder)  # as after restarting the app
    try:
        again = make_panel(qtbot, reopened)
        assert again.monitor.run_id == run_id  # follows the active run by itself
        n = len(again.monitor.curve_data(M.LOSS)[0])
        qtbot.waitUntil(lambda: len(again.monitor.curve_data(M.LOSS)[0]) > n + 5, timeout=40000)
        again.ask_close = lambda runs: "stop"
        assert again.confirm_close() is True
        qtbot.waitUntil(lambda: status(reopened, run_id) == "interrupted", timeout=40000)
    finally:
        reopened.close()


def test_a_run_started_from_the_cli_shows_up_live(qtbot, labeled, fake_jobs, monkeypatch):
    panel = make_panel(qtbot, labeled)
    assert panel.monitor.run_id is None
    run_id = labeled.create_run("dpo", "some/model", to_dict(DPOConfig()))
    proc = subprocess.Popen([sys.executable, str(FAKE_WORKER), str(labeled.folder), "--run", str(run_id)])
    try:
        qtbot.waitUntil(lambda: panel.monitor.run_id == run_id, timeout=40000)
        qtbot.waitUntil(lambda: len(panel.monitor.curve_data(M.REWARDS_MARGINS)[0]) > 0, timeout=40000)
    finally:
        proc.wait(20)


def test_a_failed_run_shows_error_and_log_and_retry_prefills(qtbot, labeled, model_dir, fake_jobs, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_AT", "5")
    panel = make_panel(qtbot, labeled)
    run_id = launch(panel, model_dir, monkeypatch, beta=0.3)
    qtbot.waitUntil(lambda: status(labeled, run_id) == "failed", timeout=60000)
    qtbot.waitUntil(lambda: panel.monitor.failure.isVisible() or not panel.isVisible(), timeout=20000)
    qtbot.waitUntil(lambda: "out of memory" in panel.monitor.error_label.text(), timeout=20000)
    assert "RuntimeError" in panel.monitor.log_tail.toPlainText()

    seen = {}

    def capture(dialog):
        seen.update(beta=dialog.raw_value("beta"), model=dialog.model_name(), parent=dialog.parent_id)
        return QDialog.DialogCode.Rejected

    monkeypatch.setattr(LaunchDialog, "exec", capture)
    panel.monitor.retry_button.click()
    assert seen == {"beta": "0.3", "model": str(model_dir), "parent": run_id}


def add_run(project, name, model="m", steps=5, **overrides):
    cfg = to_dict(DPOConfig())
    for k, v in overrides.items():
        if "." in k:
            a, b = k.split(".")
            cfg[a][b] = v
        else:
            cfg[k] = v
    run_id = project.create_run("dpo", model, cfg, name=name)
    project.log_metrics(run_id, [(s, M.REWARDS_MARGINS, s * 0.1) for s in range(1, steps + 1)])
    project.log_metrics(run_id, [(steps, M.eval_name(M.REWARDS_ACCURACIES), 0.5 + len(name) / 100)])
    project.update_run(run_id, status="done", step=steps)
    return run_id


def test_compare_lists_exactly_the_differing_settings(qtbot, labeled):
    a = add_run(labeled, "base")
    b = add_run(labeled, "beta", beta=0.5)
    c = add_run(labeled, "rank", model="other", **{"lora.r": 4})
    add_run(labeled, "unrelated", learning_rate=1.0)
    panel = make_panel(qtbot, labeled)
    panel.table.select_ids([a, b, c])
    panel.compare_selected()
    view = panel.compare
    assert view.run_ids == [a, b, c]
    assert view.differing_fields() == ["beta", "lora.r", "model"]
    t = view.config_table
    assert [t.verticalHeaderItem(i).text() for i in range(t.rowCount())] == ["beta", "lora.r", "model"]
    assert [t.item(0, i).text() for i in range(3)] == ["0.1", "0.5", "0.1"]
    assert [t.item(1, i).text() for i in range(3)] == ["16", "16", "4"]
    assert view.final_value(b, M.REWARDS_MARGINS) == "0.5"
    assert view.final_value(c, M.eval_name(M.REWARDS_ACCURACIES)) == "0.54"
    assert len(view.curve_data(M.REWARDS_MARGINS, c)[0]) == 5
    view.set_runs([a, b])
    assert view.differing_fields() == ["beta"]


def test_export_csv_png_and_delete(qtbot, labeled, tmp_path):
    run_id = add_run(labeled, "one", steps=30)
    (paths.run_dir(labeled.folder, run_id) / "adapter").mkdir(parents=True)
    panel = make_panel(qtbot, labeled)
    panel.show_run(run_id)
    panel.monitor.redraw()
    panel.monitor.export_csv(tmp_path / "all.csv")
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["run", "run_name", "metric", "step", "wall_time", "value"] and len(rows) == 30 + 1
    # the values read back are the stored ones, to the last bit, with the time each was logged
    stored = {(r[2], r[1]): (r[3], r[4]) for r in labeled.metrics(run_id)}
    for row in rows:
        value, wall = stored[(row["metric"], int(row["step"]))]
        assert row["run"] == str(run_id) and row["run_name"] == "one"
        assert float(row["value"]) == value and abs(float(row["wall_time"]) - wall) < 1e-3
    chart = panel.monitor.charts["Accuracy"]
    panel.monitor.export_csv(tmp_path / "acc.csv", chart)
    assert len((tmp_path / "acc.csv").read_text().splitlines()) == 2
    panel.monitor.export_png(tmp_path / "chart.png", panel.monitor.charts["Reward margin"])
    assert (tmp_path / "chart.png").stat().st_size > 1000

    panel.confirm = lambda title, text: False
    panel.delete_selected()
    assert labeled.runs()
    panel.confirm = lambda title, text: True
    panel.delete_selected()
    assert labeled.runs() == [] and not paths.run_dir(labeled.folder, run_id).exists()
    assert panel.monitor.run_id is None and panel.table.rowCount() == 0


def test_screenshot_views_register_and_build(qtbot, labeled):
    add_run(labeled, "a")
    add_run(labeled, "b", beta=0.2)
    views = {}
    from studio.ui.runs import register_screenshot_views

    register_screenshot_views(lambda name, factory: views.setdefault(name, factory))
    assert set(views) == {"runs", "monitor", "compare", "arena"}

    class Window:
        project = labeled

    class Args:
        run = ()

    for _name, factory in views.items():
        widget = factory(Window(), Args())
        qtbot.addWidget(widget)
        assert widget.grab().width() > 0
    assert views["compare"](Window(), Args()).run_ids == [1, 2]

    class Chosen:  # as `studio screenshot --run 1` parses it
        runs = (1,)

    monitor = views["monitor"](Window(), Chosen())
    qtbot.addWidget(monitor)
    assert monitor.run_id == 1  # not the latest run


@pytest.mark.slow
def test_a_real_tiny_dpo_run_launched_from_the_gui_fills_its_charts(qtbot, labeled, tmp_path, monkeypatch):
    tiny = pytest.importorskip("studio.train.tiny", reason="needs the training worker's tiny model builder")
    model = tiny.write_tiny_model(tmp_path / "tiny-model")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker shares 2 cores with the test
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    panel = make_panel(qtbot, labeled)
    run_id = launch(panel, model, monkeypatch, max_steps=6, batch_size=2, eval_interval=3, eval_samples=2,
                    sample_max_new_tokens=8, max_length=64, max_prompt_length=32, checkpoint_interval=0,
                    warmup_ratio=0.0, **{"lora.r": 4})

    def finished():
        return status(labeled, run_id) in ("done", "failed")

    qtbot.waitUntil(finished, timeout=120000)
    run = labeled.run(run_id)
    assert run["status"] == "done", f"{run['error']}\n{run['log_tail']}"
    assert run["step"] == 6
    qtbot.waitUntil(lambda: len(panel.monitor.curve_data(M.REWARDS_MARGINS)[0]) == 6, timeout=20000)
    for name in (M.LOSS, M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.LOGPS_CHOSEN, M.LEARNING_RATE,
                 M.LOGRATIO_CHOSEN):
        assert len(panel.monitor.curve_data(name)[0]) == 6, name
    # accuracy leaves out the steps where every margin was exactly 0 (the first: the adapter was still zero)
    tied = {s for _i, s, n, v, _t in labeled.metrics(run_id, names=[M.REWARDS_MARGINS]) if v == 0}
    assert 1 in tied and panel.monitor.curve_data(M.REWARDS_ACCURACIES)[0].tolist() == [
        s for s in range(1, 7) if s not in tied]
    assert len(panel.monitor.curve_data(M.eval_name(M.REWARDS_MARGINS))[0]) >= 2
    assert panel.monitor.rd.samples, "the worker sampled the eval prompts"


def test_a_resume_the_worker_refuses_says_why_and_leaves_the_run_as_it_was(qtbot, labeled, fake_jobs):
    run_id = add_run(labeled, "finished")  # done: the worker's claim refuses to resume it
    panel = make_panel(qtbot, labeled)
    panel.start_run(run_id, resume=True)
    qtbot.waitUntil(lambda: "did not resume" in panel.message.text(), timeout=30000)
    assert f"run {run_id}: is done, not interrupted or failed" in panel.message.text()
    assert status(labeled, run_id) == "done"  # not turned into a failed (or queued) run


def adapter_run(project, name):
    run_id = add_run(project, name)
    adapter = paths.run_dir(project.folder, run_id) / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    return run_id


def test_export_model_from_the_gui_reports_its_end_and_its_errors(qtbot, labeled, tmp_path):
    """`studio export-model` (the real command) runs in the background; its success or the error it
    ended with shows in the message line, though no run row changes meanwhile."""
    run_id = adapter_run(labeled, "good")
    panel = make_panel(qtbot, labeled)
    out = tmp_path / "out"
    assert panel.export_run(run_id, out, merged=False)
    assert "Exporting run" in panel.message.text()
    qtbot.waitUntil(lambda: not panel.exporting(), timeout=60000)
    assert panel.message.text() == f"Exported run {run_id} to {out}."
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").read_bytes() == b"weights"

    # a used folder is refused before anything is spawned, in the dialog and in the panel
    assert not panel.export_run(run_id, out, merged=False) and not panel.exporting()
    assert "exists and is not empty" in panel.message.text()
    from studio.ui.runs.export_dialog import ExportDialog

    dialog = ExportDialog(labeled.run(run_id), panel)
    dialog.out_edit.setText(str(out))
    dialog._on_ok()
    assert dialog.result() != QDialog.DialogCode.Accepted and "not empty" in dialog.error_label.text()

    # the command's own error (no adapter saved) comes back in words
    bare = add_run(labeled, "no-adapter")
    assert panel.export_run(bare, tmp_path / "out2", merged=False)
    qtbot.waitUntil(lambda: not panel.exporting(), timeout=60000)
    assert f"Export of run {bare} failed: run {bare}: no adapter at" in panel.message.text()


def test_presets_undo_what_the_previous_preset_set(qtbot, labeled, model_dir):
    dialog = LaunchDialog(labeled, models=[], gpus=[])
    qtbot.addWidget(dialog)
    dialog.apply_preset("SimPO")
    assert dialog.raw_value("learning_rate") == "1e-05" and dialog.raw_value("beta") == "2.0"
    dialog.apply_preset("DPO")  # SimPO's learning rate must not stay behind under a DPO preset
    assert dialog.raw_value("learning_rate") == "5e-05" and dialog.raw_value("beta") == "0.1"
    assert dialog.preset_combo.currentText() == "DPO"
    dialog.apply_preset("SimPO")
    dialog.set_value("learning_rate", "2e-5")  # the user's own choice survives a preset change
    dialog.apply_preset("IPO")
    assert dialog.raw_value("learning_rate") == "2e-5" and dialog.raw_value("loss_type") == "ipo"
    tip = dialog.preset_combo.itemData(dialog.preset_combo.findText("SimPO"), Qt.ItemDataRole.ToolTipRole)
    assert "learning_rate = 1e-05" in tip


def test_retry_with_a_missing_model_says_so_before_launch_and_invalid_fields_come_into_view(qtbot, labeled,
                                                                                         tmp_path):
    gone = tmp_path / "models" / "removed"
    run = {"id": 7, "name": "old", "model": str(gone), "config": to_dict(DPOConfig())}
    from studio.ui.runs.launch_fields import initial_from_run

    dialog = LaunchDialog(labeled, initial=initial_from_run(run, retry=True), models=[], gpus=[])
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Retry old"
    assert "Model not found" in dialog.estimate_label.text() and str(gone) in dialog.estimate_label.text()
    assert dialog.model_combo.property("invalid") is True

    dialog.resize(980, 700)
    dialog.show()
    assert dialog.scroll.verticalScrollBar().value() == 0
    dialog.set_value("gradient_checkpointing", False)
    dialog.editors["lora.dropout"].setText("lots")
    before = len(labeled.runs())
    assert dialog.launch() is None and len(labeled.runs()) == before
    assert "LoRA dropout (lora.dropout): expected float, got 'lots'" in dialog.error_label.text()
    editor = dialog.editors["lora.dropout"]
    top = editor.mapTo(dialog.scroll.widget(), editor.rect().topLeft()).y()
    bar = dialog.scroll.verticalScrollBar().value()
    assert bar <= top <= bar + dialog.scroll.viewport().height() - editor.height()  # scrolled into view


def test_best_eval_accuracy_ignores_the_step_0_evaluation(qtbot, labeled):
    # as the worker logs the step-0 evaluation: the reference ties every pair, so margin and accuracy are 0
    step0 = [(0, M.eval_name(M.REWARDS_ACCURACIES), 0.0), (0, M.eval_name(M.REWARDS_MARGINS), 0.0),
             (0, M.EVAL_PAIRS, 12)]
    run_id = add_run(labeled, "r")  # eval accuracy 0.51 at step 5
    labeled.log_metrics(run_id, step0)
    only_start = labeled.create_run("dpo", "m", to_dict(DPOConfig()), name="started")
    labeled.log_metrics(only_start, step0)
    panel = make_panel(qtbot, labeled)
    cells = {panel.table.item(r, 0).text(): panel.table.item(r, 6).text() for r in range(panel.table.rowCount())}
    assert cells == {"r": "51.0% of 12", "started": "–"}  # a run's best says over how many pairs


def test_compare_tables_show_every_differing_row_at_1280x800(qtbot, labeled):
    a = add_run(labeled, "base")
    b = add_run(labeled, "other", beta=0.5, learning_rate=1e-4, **{"lora.r": 4, "lora.alpha": 8})
    panel = make_panel(qtbot, labeled)
    panel.resize(1280, 720)  # the Runs section inside a 1280x800 window
    panel.show()
    panel.table.select_ids([a, b])
    panel.compare_selected()
    qtbot.waitUntil(lambda: panel.compare.config_table.isVisible())
    t = panel.compare.config_table
    assert t.rowCount() == 4
    last = t.rowCount() - 1
    assert t.rowViewportPosition(last) + t.rowHeight(last) <= t.viewport().height()
    assert min(p.height() for p in panel.compare.plots.values()) >= 120  # charts still readable


def test_launch_dialog_shows_what_matters_for_the_loss_and_the_rest_under_advanced(qtbot, labeled, model_dir):
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox

    from studio.ui.widgets import NumberEdit

    dialog = LaunchDialog(labeled, models=[], gpus=[])
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    fields = {f.name: f for f in config_fields(DPOConfig)}

    def visible(name: str) -> bool:
        return dialog.editors[name].isVisibleTo(dialog)

    # basic fields up front; the others only once Advanced is opened; loss-specific ones only under their loss
    assert visible("learning_rate") and visible("beta") and not visible("lora.dropout")
    assert not visible("simpo_gamma") and not visible("label_smoothing")
    dialog.set_value("loss_type", "simpo")
    assert visible("simpo_gamma") and not visible("label_smoothing")
    dialog.set_value("loss_type", "robust")
    assert visible("label_smoothing") and not visible("simpo_gamma")
    dialog.advanced_button.click()
    assert visible("lora.dropout") and visible("precompute_ref_logps")
    dialog.set_value("loss_type", "simpo")
    assert not visible("precompute_ref_logps"), "SimPO has no reference model"
    n_advanced = sum(1 for n, f in fields.items() if not f.basic and f.applies({"loss_type": "simpo"}))
    assert f"{n_advanced} more settings" in dialog.advanced_button.text()
    # one kind of numeric field; labels in words
    for name, f in fields.items():
        editor = dialog.editors[name]
        if f.choices:
            assert isinstance(editor, QComboBox)
        elif f.type is bool:
            assert isinstance(editor, QCheckBox)
        elif f.type in (int, float):
            assert isinstance(editor, NumberEdit), name
        assert "_" not in dialog.rows[name][0].labelForField(editor).text()
    # the wheel over a combo without the focus leaves it alone (the form scrolls instead)
    loss = dialog.editors["loss_type"]
    dialog.editors["beta"].setFocus()
    before = loss.currentText()
    centre = QPointF(loss.rect().center())
    wheel = QWheelEvent(centre, QPointF(loss.mapToGlobal(loss.rect().center())), QPoint(0, 0), QPoint(0, -120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(loss, wheel)
    assert loss.currentText() == before
    # how long: steps from the data size; time once a run has logged its throughput
    dialog.set_value("batch_size", 4)
    dialog.set_value("epochs", 2)
    assert f"About {2 * -(-dialog.summary.train // 4)} optimizer steps" in dialog.time_label.text()
    assert "known once a run has logged" in dialog.time_label.text()
    run = labeled.create_run("dpo", str(model_dir), to_dict(DPOConfig(batch_size=2)), name="earlier")
    for step in range(1, 6):
        labeled.log_metrics(run, [(step, M.TOKENS_PER_SECOND, 1000.0)], at=1000.0 + 30.0 * step)
    dialog.set_value("epochs", 1)
    steps = -(-dialog.summary.train // 4)
    # twice the pairs per step as the earlier run: twice its 30 s a step
    from studio.ui.runs.formatting import fmt_duration

    assert "pace of run earlier (1,000 tokens/s, 30.0 s a step" in dialog.time_label.text()
    assert f"about {fmt_duration(steps * 60)}." in dialog.time_label.text()


def test_an_invalid_advanced_field_opens_advanced_and_comes_into_view(qtbot, labeled, model_dir):
    dialog = LaunchDialog(labeled, models=[], gpus=[])
    qtbot.addWidget(dialog)
    dialog.set_model(str(model_dir))
    dialog.resize(900, 600)
    dialog.show()
    dialog.set_value("lora.alpha", "many")
    assert dialog.launch() is None
    assert dialog.advanced_button.isChecked() and dialog.editors["lora.alpha"].isVisible()
    assert dialog.editors["lora.alpha"].property("invalid") is True
    assert "LoRA alpha (lora.alpha): expected int" in dialog.error_label.text()


def test_compare_puts_the_collapse_lens_beside_the_training_curves(qtbot, labeled):
    from studio.ui.runs import charts as C

    dpo = add_run(labeled, "dpo")
    ipo = add_run(labeled, "ipo", loss_type="ipo")
    for run_id, loss, distinct in ((dpo, 0.6, 0.9), (ipo, 20.0, 0.5)):  # IPO's loss is ~30x DPO's
        labeled.log_metrics(run_id, [(s, M.LOSS, loss * (1 - s / 10)) for s in range(1, 6)]
                            + [(s, M.EVAL_DISTINCT_2, distinct - s / 100) for s in (0, 5)]
                            + [(s, M.EVAL_SAMPLE_LENGTH, 40.0 + s) for s in (0, 5)])
        labeled.add_samples(run_id, 5, [{"prompt_id": 1, "prompt_text": "Q?", "text": f"sample of run {run_id}",
                                         "meta": {"sample": 0, "tokens": 5}}])
    labeled.log_metrics(dpo, [(5, M.EVAL_SELF_SIMILARITY, 0.1)])  # one run's value: not "the best" of one
    panel = make_panel(qtbot, labeled)
    panel.resize(1280, 720)
    panel.show()
    panel.table.select_ids([dpo, ipo])
    panel.compare_selected()
    view = panel.compare
    assert {M.EVAL_SAMPLE_LENGTH, M.EVAL_DISTINCT_2, M.EVAL_SELF_SIMILARITY, M.EVAL_KL} <= set(view.plots)
    assert not {view.color(dpo), view.color(ipo)} & {C.GREEN, C.RED}  # those mean chosen and rejected
    lo, hi = view.plots[M.EVAL_SAMPLE_LENGTH].getViewBox().viewRange()[1]
    assert hi - lo >= 8  # lengths 40 and 45: the chart's least range, not a steep line

    # normalised, each run's loss starts at 1; log puts the axis on a log scale
    view.set_scale(M.LOSS, "normalised")
    for run_id in (dpo, ipo):
        assert view.curve_data(M.LOSS, run_id)[1][0] == pytest.approx(1.0)
    assert "(÷ first)" in view.plots[M.LOSS].titleLabel.text
    view.set_scale(M.LOSS, "log")
    assert view.plots[M.LOSS].getAxis("left").logMode
    view.set_scale(M.LOSS, "linear")
    assert view.curve_data(M.LOSS, ipo)[1][0] == pytest.approx(18.0)

    # the final table: names in words, the best final value marked by the metric's direction
    ft = view.final_table
    heads = [ft.verticalHeaderItem(i).text() for i in range(ft.rowCount())]
    assert "Sampled KL" in heads and "Distinct-2" in heads and "eval/rewards/margins" not in heads
    assert view.is_best(dpo, M.LOSS) and not view.is_best(ipo, M.LOSS)  # lower loss is better
    assert view.is_best(dpo, M.EVAL_DISTINCT_2) and not view.is_best(dpo, M.EVAL_SAMPLE_LENGTH)  # length: neither
    assert C.metric_info(M.EVAL_SELF_SIMILARITY).better and not view.is_best(dpo, M.EVAL_SELF_SIMILARITY)  # alone
    widest = max(ft.fontMetrics().horizontalAdvance(h) for h in heads)
    assert ft.verticalHeader().width() >= widest  # no row header clipped

    # the two runs' samples side by side
    view.views.setCurrentWidget(view.timeline)
    assert [t for t, _ in view.timeline.column_sources()] == ["dpo · step 5", "ipo · step 5"]
    assert f"sample of run {ipo}" in view.timeline.panes[1].toPlainText()
