"""Which Python runs the workers: the app's own from a checkout, the bundle's worker environment when
frozen, set up once after saying what it installs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from studio.ui.runs import jobs, worker_env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(worker_env.ENV_PYTHON, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_from_a_checkout_workers_run_on_the_apps_own_python():
    assert worker_env.worker_python() == sys.executable
    assert jobs.train_command(Path("/p"), 3) == [sys.executable, "-m", "studio", "train", "/p", "--run", "3"]


def test_an_explicit_worker_python_wins(monkeypatch):
    monkeypatch.setenv(worker_env.ENV_PYTHON, "/opt/envs/train/bin/python")
    assert jobs.export_command(Path("/p"), 2, Path("/o"), merged=True) == [
        "/opt/envs/train/bin/python", "-m", "studio", "export-model", "/p", "2", "/o", "--merged"]


def test_the_frozen_bundle_without_an_environment_says_what_setting_one_up_installs(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(worker_env, "has_nvidia_gpu", lambda: False)
    monkeypatch.setattr(worker_env, "base_python", lambda: "/usr/bin/python3")
    monkeypatch.setattr(worker_env, "bundled_wheel", lambda: Path("/b/wheels/preference_studio-0.1.0-py3-none-any.whl"))
    with pytest.raises(worker_env.WorkerEnvMissing) as e:
        jobs.train_command(Path("/p"), 1)
    text = str(e.value)
    assert "torch for the CPU" in text and str(tmp_path / "data" / "preference-studio" / "worker-env") in text
    # once the environment exists, it is used
    env = worker_env.default_env_dir()
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    assert jobs.train_command(Path("/p"), 1)[0] == str(env / "bin" / "python")


def test_the_plan_takes_the_cuda_build_only_with_an_nvidia_gpu(tmp_path, monkeypatch):
    wheel = tmp_path / "preference_studio-0.1.0-py3-none-any.whl"
    cpu = worker_env.plan_setup(tmp_path / "env", gpu=False, python="/usr/bin/python3", wheel=wheel)
    gpu = worker_env.plan_setup(tmp_path / "env", gpu=True, python="/usr/bin/python3", wheel=wheel)
    cpu_torch, gpu_torch = cpu.steps[1][1], gpu.steps[1][1]
    assert worker_env.TORCH_CPU_INDEX in cpu_torch and worker_env.TORCH_CPU_INDEX not in gpu_torch
    assert cpu.steps[0][1] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "env")]
    assert cpu.steps[2][1][-1] == str(wheel)  # this very version, from the bundle
    assert not cpu.problems
    monkeypatch.setattr(worker_env, "base_python", lambda: None)
    monkeypatch.setattr(worker_env, "bundled_wheel", lambda: None)
    missing = worker_env.plan_setup(tmp_path / "env", gpu=False)
    assert len(missing.problems) == 2 and "no Python 3.11" in missing.problems[0]


def test_the_setup_dialog_runs_each_step_and_reports_success(qtbot, tmp_path):
    from studio.ui.runs.worker_setup import WorkerSetupDialog

    marker = tmp_path / "steps.txt"
    plan = worker_env.SetupPlan(tmp_path / "env", gpu=False, download="nothing", steps=[
        (f"step {i}", [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('{i}'); print('did {i}')"])
        for i in range(3)])
    dialog = WorkerSetupDialog(plan)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.finished_setup, timeout=30_000) as sig:
        dialog.start()
    assert sig.args == [True] and marker.read_text() == "012"
    assert "did 2" in dialog.log.toPlainText()


def test_a_failing_step_stops_the_setup_and_says_so(qtbot, tmp_path):
    from studio.ui.runs.worker_setup import WorkerSetupDialog

    plan = worker_env.SetupPlan(tmp_path / "env", gpu=False, download="nothing", steps=[
        ("fails", [sys.executable, "-c", "import sys; print('no space left'); sys.exit(3)"]),
        ("never", [sys.executable, "-c", "raise SystemExit('must not run')"])])
    dialog = WorkerSetupDialog(plan)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.finished_setup, timeout=30_000) as sig:
        dialog.start()
    assert sig.args == [False]
    assert "step 1 failed (exit 3)" in dialog.progress.format()
    assert "no space left" in dialog.log.toPlainText() and "must not run" not in dialog.log.toPlainText()
    assert dialog.start_button.text() == "Try again"


def test_the_check_tells_a_python_without_torch(tmp_path):
    ok, why = worker_env.check(sys.executable)
    assert ok and why.startswith("torch ")
    bare = tmp_path / "bare"
    import venv

    venv.EnvBuilder(with_pip=False).create(bare)
    ok, why = worker_env.check(worker_env.env_python(bare))
    assert not ok and "cannot import the training side" in why
