"""Reward-model, PPO and RLOO runs in the Runs view: the launch dialog's method choice and reward picker, each
method's own charts in the monitor, each method's metrics in Compare, and the runs table."""

from __future__ import annotations

import pytest

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import PPOConfig, RewardConfig, RLOOConfig, config_fields, to_dict
from studio.ui.runs import charts as C
from studio.ui.runs.compare import CompareView
from studio.ui.runs.launch_dialog import LaunchDialog
from studio.ui.runs.launch_fields import RewardPicker, initial_from_run
from studio.ui.runs.monitor import MonitorView
from studio.ui.runs.poller import Poller
from tests.ui.runs.runs_helpers import fake_model, label_all

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def labeled(pairs_project):
    label_all(pairs_project)
    return pairs_project


def finished_reward_run(project, model: str) -> int:
    """A reward run as a worker leaves it: done, with its adapter folder."""
    run_id = project.create_run("reward", model, to_dict(RewardConfig()))
    project.update_run(run_id, status="done")
    adapter = paths.adapter_dir(project.folder, run_id)
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    return run_id


def test_the_launch_dialog_switches_method_and_picks_a_finished_reward_run(qtbot, labeled, tmp_path):
    model = fake_model(tmp_path / "models" / "tiny")
    other = fake_model(tmp_path / "models" / "other")
    reward = finished_reward_run(labeled, str(model))
    labeled.create_run("reward", str(model), to_dict(RewardConfig()))  # queued: not offered
    dialog = LaunchDialog(labeled, models=[], gpus=[])
    qtbot.addWidget(dialog)
    dialog.set_model(str(model))

    dialog.set_method("reward")
    assert set(dialog.editors) == {f.name for f in config_fields(RewardConfig)}
    assert "eval_samples" not in dialog.editors and not dialog.preset_combo.isEnabled()
    reward_id = dialog.launch()
    assert labeled.run(reward_id)["method"] == "reward"

    dialog.set_method("ppo")
    assert set(dialog.editors) == {f.name for f in config_fields(PPOConfig)}
    picker = dialog.editors["reward_model"]
    assert isinstance(picker, RewardPicker) and picker.count() == 1 and f"run {reward}" in picker.itemText(0)
    assert dialog.raw_value("reward_model") == str(reward)
    assert dialog.name_edit.placeholderText() == "automatic (ppo-<id>)"
    dialog.set_model(str(other))  # the reward adapter needs the policy's own base
    assert dialog.launch() is None
    assert f"Reward model (reward_model): reward run {reward} was trained on" in dialog.error_label.text()
    dialog.set_model(str(model))
    dialog.apply_preset("PPO, adaptive KL (Ziegler 2019)")
    run_id = dialog.launch()
    run = labeled.run(run_id)
    assert run["method"] == "ppo" and run["config"]["reward_model"] == str(reward)
    assert run["config"]["kl_target"] == 6.0 and run["config"]["lora"]["dropout"] == 0.0

    # a typed folder that is not a reward model is named as the problem
    dialog.set_method("rloo")
    dialog.set_value("reward_model", str(other))
    assert dialog.launch() is None and "not a sequence-classification model" in dialog.error_label.text()

    # duplicating the PPO run opens the PPO form with its reward run selected
    again = LaunchDialog(labeled, initial=initial_from_run(run), models=[], gpus=[])
    qtbot.addWidget(again)
    assert again.method == "ppo" and again.method_combo.currentData() == "ppo"
    assert again.raw_value("reward_model") == str(reward) and again.raw_value("kl_target") == "6.0"


def log_rl_run(project, method="ppo", steps=6) -> int:
    run_id = project.create_run(method, "m", to_dict(PPOConfig() if method == "ppo" else RLOOConfig()))
    rows = []
    for step in range(1, steps + 1):
        rows += [(step, M.OBJECTIVE_SCORES, step / 2), (step, M.OBJECTIVE_KL, step / 10),
                 (step, M.OBJECTIVE_RLHF_REWARD, step / 2 - 0.05 * step / 10), (step, M.POLICY_CLIPFRAC, 0.1),
                 (step, M.TIME_GENERATE, 0.5), (step, M.TIME_OPTIMISE, 1.5), (step, M.KL_COEF, 0.05)]
    rows += [(0, M.eval_name(M.OBJECTIVE_SCORES), 0.2), (steps, M.eval_name(M.OBJECTIVE_SCORES), 2.5),
             (0, M.EVAL_KL, 0.0), (steps, M.EVAL_KL, 0.02)]
    project.log_metrics(run_id, rows)
    project.add_samples(run_id, steps, [{"prompt_id": None, "prompt_text": "Question?", "text": "sure it is.",
                                         "meta": {"reward": 2.5, "kl_seq": 0.6, "tokens": 4, "finished": True}}])
    return run_id


def test_the_monitor_shows_each_methods_own_charts(qtbot, project):
    view = MonitorView(project, Poller(project))
    qtbot.addWidget(view)
    view.redraw_timer.stop()
    view.smooth_slider.setValue(0)
    ppo = log_rl_run(project)
    view.set_run(ppo)
    assert list(view.charts) == [spec.title for spec in C.RL_CHARTS]
    x, y = view.curve_data(M.OBJECTIVE_SCORES)
    assert x.tolist() == [1, 2, 3, 4, 5, 6] and y.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    # reward against KL: the score at each step drawn at that step's KL
    versus = view.charts["Reward against KL"].curves[M.OBJECTIVE_SCORES].main
    assert versus.xData.tolist() == pytest.approx([s / 10 for s in range(1, 7)])
    assert versus.yData.tolist() == [s / 2 for s in range(1, 7)]
    assert view.charts["Phase times"].curves.keys() == {M.TIME_GENERATE, M.TIME_OPTIMISE}
    shown = view.timeline.panes[1].toPlainText()  # the samples timeline: its reward and KL as badges
    assert "reward +2.500" in shown and "KL 0.60 nats" in shown
    # the health strip: the tiles of what a PPO run logs, and each opens a chart of the PPO monitor
    tiles = {title: w for title, w in view.health.tiles.items() if not w.isHidden()}
    assert set(tiles) == {"Sampled KL"} and tiles["Sampled KL"].state.metric == M.EVAL_KL
    view.enlarge(tiles["Sampled KL"].tile.chart)
    assert view.enlarged == "Sampled KL"

    reward = project.create_run("reward", "m", to_dict(RewardConfig()))
    project.log_metrics(reward, [(1, M.ACCURACY, 0.75), (1, M.eval_name(M.ACCURACY), 0.5)])
    view.set_run(reward)
    assert list(view.charts) == [spec.title for spec in C.REWARD_CHARTS] and view.enlarged is None
    assert view.curve_data(M.eval_name(M.ACCURACY))[1].tolist() == [0.5]
    accuracy = view.health.tiles["Eval accuracy"]
    assert not accuracy.isHidden() and accuracy.state.value == "50%"
    assert view.health.tiles["Sampled KL"].isHidden()
    assert "reward model samples nothing" in view.timeline.placeholder.text()
    dpo = project.create_run("dpo", "m", {})
    view.set_run(dpo)
    assert list(view.charts) == [spec.title for spec in C.CHARTS]


def test_compare_overlays_the_metrics_of_the_compared_methods(qtbot, project):
    view = CompareView(project, Poller(project))
    qtbot.addWidget(view)
    a, b = log_rl_run(project, "ppo"), log_rl_run(project, "rloo")
    dpo = project.create_run("dpo", "m", {})
    view.set_runs([a, b])
    assert view.metrics == C.compare_metrics_for(["ppo"]) and M.OBJECTIVE_KL in view.plots
    assert view.final_value(b, M.OBJECTIVE_SCORES) == "3"
    assert len(view.curve_data(M.eval_name(M.OBJECTIVE_SCORES), a)[0]) == 2
    view.set_runs([a, dpo])  # both methods' metrics, each chart once
    assert set(C.COMPARE_METRICS) <= set(view.metrics) and M.OBJECTIVE_KL in view.metrics
    assert len(view.metrics) == len(set(view.metrics))


def test_studio_compare_and_reports_chart_a_ppo_runs_own_metrics(project):
    from studio.store.comparison import REPORT_METRICS, gather

    ppo, dpo = log_rl_run(project, "ppo"), project.create_run("dpo", "m", {})
    charted = gather(project, [ppo]).series
    assert M.OBJECTIVE_SCORES in charted and M.REWARDS_MARGINS not in charted
    assert tuple(gather(project, [dpo]).series) == REPORT_METRICS  # DPO's as before
