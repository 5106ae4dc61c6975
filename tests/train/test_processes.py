"""Several processes: `studio train --queue` creates a run for a launcher, `accelerate launch` trains it on two
CPU processes (gloo) to what one process reaches with the same global batch, and only the main one writes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import studio as studio_package
from studio.cli import main as studio
from studio.core import metrics as M
from studio.core import paths
from studio.train.worker import run_worker

MULTI_GPU_CONFIG = Path(studio_package.__file__).parents[1] / "docs" / "accelerate" / "multi_gpu.yaml"

# per process: 2 pairs per micro-batch, 2 micro-batches per step, so one process takes 4 pairs per micro-batch
SETTINGS = {"lora": {"r": 4, "dropout": 0.0}, "batch_size": 2, "grad_accumulation": 2, "max_steps": 3,
            "learning_rate": 5e-3, "warmup_ratio": 0.0, "eval_interval": 2, "eval_samples": 2,
            "samples_per_prompt": 1, "sample_budget": 1.0, "sample_max_new_tokens": 4, "checkpoint_interval": 0,
            "precompute_ref_logps": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue(project, model, settings: dict, tmp_path, capsys) -> int:
    file = tmp_path / f"settings{len(list(tmp_path.glob('settings*')))}.json"
    file.write_text(json.dumps(settings))
    capsys.readouterr()
    assert studio(["train", str(project.folder), "--model", str(model), "--config", str(file), "--queue"]) == 0
    out = capsys.readouterr()
    assert "--run" in out.err  # how to start it
    return int(out.out)  # stdout is the id alone, for a script


def test_queue_creates_the_run_without_starting_it(trait_project, tiny_model, tmp_path, capsys):
    run_id = queue(trait_project, tiny_model, SETTINGS, tmp_path, capsys)
    run = trait_project.run(run_id)
    assert run["status"] == "queued" and run["pid"] is None
    assert len(trait_project.run_snapshot(run_id)) == 20  # the snapshot is taken now
    assert not paths.log_path(trait_project.folder, run_id).exists()
    # --queue starts nothing, so it takes no --detach
    assert studio(["train", str(trait_project.folder), "--model", str(tiny_model), "--queue", "--detach"]) != 0
    assert "--queue: creates a run without starting it" in capsys.readouterr().err


def test_a_setting_the_loss_ignores_is_a_warning_when_the_run_is_created(trait_project, tiny_model, capsys):
    args = ["train", str(trait_project.folder), "--model", str(tiny_model), "--queue"]
    assert studio([*args, "--set", "label_smoothing=0.2"]) == 0
    err = capsys.readouterr().err
    assert "studio: warning: label_smoothing: 0.2 has no effect with loss_type 'sigmoid' (only robust reads it)" in err
    assert studio([*args, "--set", "label_smoothing=0.2", "--set", "loss_type=robust"]) == 0
    assert "warning" not in capsys.readouterr().err


def final(project, run_id, name):
    rows = project.metrics(run_id, names=[name])
    return max(rows, key=lambda r: r[1])[3]


def test_two_processes_train_as_one_process_with_their_global_batch(trait_project, tiny_model, tmp_path, capsys):
    two = queue(trait_project, tiny_model, SETTINGS, tmp_path, capsys)
    one = queue(trait_project, tiny_model, {**SETTINGS, "batch_size": 4}, tmp_path, capsys)
    env = {**os.environ, "STUDIO_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    # the multi-GPU config of the docs; on a machine without a GPU it is accelerate's torchrun launcher all the
    # same (`--cpu --num_processes 2` starts one process unless MPI is set up) and the worker trains over gloo
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(MULTI_GPU_CONFIG),
              "--num_processes", "2", "--main_process_port", str(free_port()),
              "-m", "studio", "train", str(trait_project.folder), "--run", str(two)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_worker(trait_project.folder, one) == "done"

    run = trait_project.run(two)
    assert run["status"] == "done" and run["step"] == 3 and run["device"] == "cpu x2"
    # the main process speaks for both: one progress line per step, one final line
    assert done.stdout.count("step 3/3  loss") == 1 and done.stdout.count(f"run {two}: done") == 1
    for name in (M.LOSS, M.REWARDS_MARGINS, M.GRAD_NORM, M.LOGPS_CHOSEN, M.eval_name(M.LOSS),
                 M.eval_name(M.REWARDS_MARGINS)):
        assert final(trait_project, two, name) == pytest.approx(final(trait_project, one, name), rel=1e-4), name
    assert abs(final(trait_project, two, M.REWARDS_MARGINS)) > 1e-3  # it learned something to compare
    # the run's token count is every process's tokens: those of the one process's equal global batches
    assert final(trait_project, two, M.NUM_TOKENS) == final(trait_project, one, M.NUM_TOKENS) > 0
    # only the main process wrote: one row per metric and step, one sample per prompt and evaluation, one log
    steps = [s for _, s, n, _, _ in trait_project.metrics(two) if n == M.LOSS]
    assert steps == [1, 2, 3]
    assert len(trait_project.samples(two)) == len(trait_project.samples(one)) == 2 * 3  # steps 0, 2 and 3
    assert paths.log_path(trait_project.folder, two).read_text().count("worker pid") == 1
    from safetensors.torch import load_file

    a, b = (load_file(paths.adapter_dir(trait_project.folder, r) / "adapter_model.safetensors") for r in (two, one))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
