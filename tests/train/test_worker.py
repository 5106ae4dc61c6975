"""The worker protocol: statuses, stop and resume, signals, SIGKILL, the CLI and exports."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from studio.cli import main as studio
from studio.core import paths
from studio.core.configs import DPOConfig, apply_overrides, to_dict
from studio.store import Project
from studio.train.worker import run_worker

from .conftest import logged_steps_at_each_checkpoint

# one sample of each of two probe prompts, at every evaluation whatever it costs (these tests are about the
# protocol: which steps are evaluated and sampled, once each)
SMALL = {"learning_rate": 5e-3, "batch_size": 4, "warmup_ratio": 0.25, "lora.r": 4, "eval_interval": 3,
         "eval_samples": 2, "samples_per_prompt": 1, "sample_budget": 1.0, "sample_max_new_tokens": 4,
         "checkpoint_interval": 0, "max_steps": 8}


def make_run(project, model, **overrides):
    config = apply_overrides(DPOConfig(), {**SMALL, **overrides})
    return project.create_run("dpo", str(model), to_dict(config))


def adapter_weights(project, run_id):
    from safetensors.torch import load_file

    return load_file(paths.adapter_dir(project.folder, run_id) / "adapter_model.safetensors")


def test_run_goes_queued_running_done_with_metrics_samples_and_adapter(trait_project, tiny_model):
    run_id = make_run(trait_project, tiny_model)
    seen = []

    def progress(step, total, values):
        seen.append(trait_project.run(run_id)["status"])

    assert trait_project.run(run_id)["status"] == "queued"
    assert run_worker(trait_project.folder, run_id, on_progress=progress) == "done"
    assert set(seen) == {"running"}
    run = trait_project.run(run_id)
    assert run["status"] == "done" and run["step"] == 8 and run["total_steps"] == 8
    assert run["device"] == "cpu" and run["pid"] and run["host"] and run["started_at"] and run["ended_at"]
    names = {name for _, _, name, _, _ in trait_project.metrics(run_id)}
    from studio.core import metrics as M

    assert set(M.TRAIN_METRICS) <= names
    assert {M.EVAL_KL, M.EVAL_KL_SEQ, M.eval_name(M.REWARDS_MARGINS), M.EVAL_DISTINCT_2} <= names
    steps = sorted({s for _, s, n, _, _ in trait_project.metrics(run_id, names=[M.LOSS])})
    assert steps == list(range(1, 9))
    # memory is in GiB (this process's peak RSS on CPU: hundreds of MiB, not hundreds of "GiB" in KiB or MiB)
    memory = [v for _, _, _, v, _ in trait_project.metrics(run_id, names=[M.MEMORY])]
    assert all(0.05 < v < 64 for v in memory)
    assert {s["step"] for s in trait_project.samples(run_id)} == {0, 3, 6, 8}
    assert paths.log_path(trait_project.folder, run_id).read_text().count("checkpoint at step 8") == 1

    # the adapter loads with PEFT and changes the model's output
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[5, 100, 200, 300]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, paths.adapter_dir(trait_project.folder, run_id))
        assert not torch.allclose(tuned(ids).logits, before)


def test_stop_and_resume_reach_the_same_adapter_as_an_uninterrupted_run(trait_project, tiny_model):
    straight = make_run(trait_project, tiny_model, **{"lora.dropout": 0.1, "grad_accumulation": 2})
    assert run_worker(trait_project.folder, straight) == "done"

    stopped = make_run(trait_project, tiny_model, **{"lora.dropout": 0.1, "grad_accumulation": 2})

    def stop_at_3(step, total, values):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the worker finishes the step, saves and leaves

    assert run_worker(trait_project.folder, stopped, on_progress=stop_at_3) == "interrupted"
    run = trait_project.run(stopped)
    assert run["status"] == "interrupted" and run["step"] == 3
    assert (paths.adapter_dir(trait_project.folder, stopped) / "adapter_config.json").is_file()
    assert run_worker(trait_project.folder, stopped, resume=True) == "done"
    assert trait_project.run(stopped)["step"] == 8

    a, b = adapter_weights(trait_project, straight), adapter_weights(trait_project, stopped)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    # the curve continues: one loss row per step, no duplicates around the stop
    from studio.core import metrics as M

    steps = [s for _, s, _, _, _ in trait_project.metrics(stopped, names=[M.LOSS])]
    assert steps == list(range(1, 9))
    losses_a = [v for _, _, _, v, _ in trait_project.metrics(straight, names=[M.LOSS])]
    losses_b = [v for _, _, _, v, _ in trait_project.metrics(stopped, names=[M.LOSS])]
    assert losses_a == pytest.approx(losses_b, abs=1e-5)
    # the cost counters carry on from the checkpoint: the same totals as the uninterrupted run
    from studio.store.comparison import last_values

    counters = (M.NUM_TOKENS, M.SAMPLES_GENERATED)
    totals = last_values(trait_project, straight, counters)
    assert totals == last_values(trait_project, stopped, counters)
    assert totals[M.SAMPLES_GENERATED] == len(trait_project.samples(straight)) == 8  # 2 at steps 0, 3, 6, 8


def test_stop_requested_in_the_database_interrupts(trait_project, tiny_model):
    run_id = make_run(trait_project, tiny_model, max_steps=200, eval_interval=0)
    other = Project.open(trait_project.folder)  # the GUI's own connection

    def request(step, total, values):
        if step == 2:
            other.request_stop(run_id)
            assert other.run(run_id)["status"] == "stopping"

    assert run_worker(trait_project.folder, run_id, on_progress=request) == "interrupted"
    run = trait_project.run(run_id)
    assert run["status"] == "interrupted" and 2 <= run["step"] < 200
    other.close()


def test_a_failing_run_is_marked_failed_with_message_and_log_tail(trait_project, tiny_model):
    run_id = make_run(trait_project, tiny_model)
    trait_project.update_run(run_id, model=str(tiny_model / "missing"))
    assert run_worker(trait_project.folder, run_id) == "failed"
    run = trait_project.run(run_id)
    assert run["status"] == "failed"
    assert "missing" in run["error"] and "not found" in run["error"]
    assert "run failed" in run["log_tail"]


def test_sigkilled_worker_leaves_project_intact_and_run_failed(trait_project, tiny_model):
    run_id = make_run(trait_project, tiny_model, max_steps=100000, eval_interval=0)
    labels = trait_project.counts()["labels"]
    env = {**os.environ, "STUDIO_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "train", str(trait_project.folder), "--run",
                             str(run_id)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and trait_project.run(run_id)["step"] < 2:
            assert proc.poll() is None, "the worker ended early"
            time.sleep(0.2)
        assert trait_project.run(run_id)["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reopened = Project.open(trait_project.folder)
    assert reopened.found_dead_runs == [run_id]  # opening the project found it
    run = reopened.run(run_id)
    assert run["status"] == "failed" and "killed" in run["error"]
    assert reopened.integrity_check() == "ok"
    assert reopened.counts()["labels"] == labels
    assert len(reopened.metrics(run_id)) > 0
    reopened.close()


def test_cli_trains_exports_and_explains_errors(trait_project, tiny_model, tmp_path, capsys):
    folder = str(trait_project.folder)
    assert studio(["train", folder, "--model", "/no/such/model"]) == 2
    assert "not found" in capsys.readouterr().err
    assert studio(["train", folder, "--model", str(tiny_model), "--set", "betta=0.2"]) == 2
    assert "betta" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"beta": 0.1,\n "lora": {"r": "x"}}')
    assert studio(["train", folder, "--model", str(tiny_model), "--config", str(bad)]) == 2
    assert "lora.r" in capsys.readouterr().err

    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"lora": {"r": 4}, "batch_size": 4, "eval_interval": 0, "eval_samples": 0}')
    rc = studio(["train", folder, "--model", str(tiny_model), "--config", str(cfg), "--set", "max_steps=3",
                 "--name", "cli run"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "step 3/3" in out and "done" in out
    run = trait_project.runs()[-1]
    assert run["name"] == "cli run" and run["status"] == "done" and run["config"]["lora"]["r"] == 4

    assert studio(["export-model", folder, str(run["id"]), str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert studio(["export-model", folder, str(run["id"]), str(tmp_path / "merged"), "--merged"]) == 0
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file() and merged.config.vocab_size > 100
    # a done run cannot be started or resumed again; the message says what to do instead
    for flag in ("--run", "--resume"):
        assert studio(["train", folder, flag, str(run["id"])]) == 2
        assert "is done" in (err := capsys.readouterr().err) and "start a new run" in err


def test_precomputed_reference_gives_the_same_curve(trait_project, tiny_model):
    from studio.core import metrics as M

    runs = [make_run(trait_project, tiny_model, max_steps=4, eval_interval=0, precompute_ref_logps=pre)
            for pre in ("false", "true")]
    for run_id in runs:
        assert run_worker(trait_project.folder, run_id) == "done"
    curves = [[v for _, _, _, v, _ in trait_project.metrics(r, names=[M.LOSS, M.LOGRATIO_CHOSEN])] for r in runs]
    assert curves[0] == pytest.approx(curves[1], abs=1e-5)


def test_with_log_interval_each_logged_value_is_the_mean_over_its_window(trait_project, tiny_model):
    from studio.core import metrics as M

    every = make_run(trait_project, tiny_model, max_steps=6, eval_interval=0, eval_samples=0)
    windows = make_run(trait_project, tiny_model, max_steps=6, eval_interval=0, eval_samples=0, log_interval=3)
    for run_id in (every, windows):
        assert run_worker(trait_project.folder, run_id) == "done"

    def series(run_id, name):
        return {step: v for _, step, _, v, _ in trait_project.metrics(run_id, names=[name])}

    for name in (M.LOSS, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES, M.GRAD_NORM):
        steps, logged = series(every, name), series(windows, name)
        assert sorted(logged) == [3, 6], name
        for end in (3, 6):
            assert logged[end] == pytest.approx(sum(steps[s] for s in range(end - 2, end + 1)) / 3, rel=1e-5), name
    steps, logged = series(every, M.LOSS), series(windows, M.LOSS)
    assert logged[3] != pytest.approx(steps[3], rel=1e-3)  # not the window's last step alone


def test_simpo_runs_no_reference_forward_unless_the_logratio_charts_are_asked_for(trait_project, tiny_model,
                                                                                 monkeypatch):
    from studio.core import metrics as M
    from studio.train import dpo

    reference_forwards = []
    real = dpo.completion_logps  # the recipe's reference forward (the policy's goes through PolicyLogps)

    def counted(*args, **kwargs):
        reference_forwards.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo, "completion_logps", counted)
    names = {}
    for charts in ("false", "true"):
        reference_forwards.clear()
        run_id = make_run(trait_project, tiny_model, max_steps=3, eval_interval=0, eval_samples=0,
                          loss_type="simpo", beta=2.0, nll_weight=1.0, logratio_metrics=charts, label_smoothing=0.1)
        assert run_worker(trait_project.folder, run_id) == "done"
        names[charts] = ({n for _, _, n, _, _ in trait_project.metrics(run_id)}, len(reference_forwards))
        # a setting the loss ignores is a warning in the run's log
        assert "WARNING label_smoothing: 0.1 has no effect with loss_type 'simpo'" in \
            paths.log_path(trait_project.folder, run_id).read_text()
    metrics, forwards = names["false"]
    assert {M.NLL, M.LOSS, M.REWARDS_MARGINS, M.eval_name(M.LOSS)} <= metrics
    assert M.LOGRATIO_CHOSEN not in metrics and forwards == 0
    metrics, forwards = names["true"]
    assert {M.LOGRATIO_CHOSEN, M.LOGRATIO_REJECTED, M.eval_name(M.LOGRATIO_CHOSEN)} <= metrics
    assert forwards == 3 + 1  # each step, and the final evaluation's one batch


def test_merged_export_gives_the_logits_of_base_plus_adapter(trait_project, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_id = make_run(trait_project, tiny_model, max_steps=3, eval_interval=0, eval_samples=0)
    assert run_worker(trait_project.folder, run_id) == "done"
    out = tmp_path / "merged"
    assert studio(["export-model", str(trait_project.folder), str(run_id), str(out), "--merged"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())  # a plain model, no adapter left
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Question 3: tell me about the dog. sure the dog", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, paths.adapter_dir(trait_project.folder, run_id))
        expected = tuned(ids).logits
        assert not torch.allclose(expected, plain, atol=1e-4)  # the adapter does change the model
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=1e-4)


def test_zero_preferences_and_bad_settings_fail_before_a_model_is_loaded(tmp_path, tiny_model, monkeypatch):
    from studio.train import dpo

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(dpo, "load_policy", no_load)
    project = Project.create(tmp_path / "empty")
    run_id = make_run(project, tiny_model)  # the app can create a run on an empty snapshot
    assert run_worker(project.folder, run_id) == "failed"
    assert "no train preferences" in project.run(run_id)["error"]

    from .conftest import add_trait_pairs

    add_trait_pairs(project, n_train=4, n_eval=0)
    run_id = make_run(project, tiny_model, loss_type="robust", label_smoothing=0.5)
    assert run_worker(project.folder, run_id) == "failed"
    assert "label_smoothing" in project.run(run_id)["error"]
    project.close()


def test_cli_names_model_folder_and_settings_problems_before_creating_a_run(trait_project, tiny_model, tmp_path,
                                                                           capsys):
    import shutil

    folder = str(trait_project.folder)
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, weights_only / name)
    assert studio(["train", folder, "--model", str(weights_only)]) == 2
    err = capsys.readouterr().err
    assert str(weights_only) in err and "no tokenizer files" in err
    assert studio(["train", folder, "--model", str(tiny_model), "--set", "loss_type=robust",
                   "--set", "label_smoothing=0.5"]) == 2
    assert "label_smoothing" in capsys.readouterr().err
    assert trait_project.runs() == []  # nothing was created

    # the worker says the same for a run the app created
    run_id = make_run(trait_project, weights_only)
    assert run_worker(trait_project.folder, run_id) == "failed"
    assert "no tokenizer files" in trait_project.run(run_id)["error"]

    # settings given with --run/--resume would be silently ignored: refused instead
    for flag in ("--run", "--resume"):
        assert studio(["train", folder, flag, str(run_id), "--set", "max_steps=20"]) == 2
        assert "--set: not taken with " + flag in capsys.readouterr().err


def test_only_one_of_two_racing_workers_claims_a_run(trait_project, tiny_model):
    import threading

    from studio.train.worker import ClaimError, claim

    def worker(project, run_id, barrier, results):
        barrier.wait()  # both UPDATEs as close together as two threads can make them
        try:
            claim(project, run_id, resume=False)
            results.append("won")
        except ClaimError as e:
            results.append(str(e))

    for _ in range(3):
        run_id = make_run(trait_project, tiny_model)
        projects = [Project.open(trait_project.folder) for _ in range(2)]
        barrier, results = threading.Barrier(2), []
        threads = [threading.Thread(target=worker, args=(p, run_id, barrier, results)) for p in projects]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in projects:
            p.close()
        assert results.count("won") == 1, results
        [lost] = [r for r in results if r != "won"]
        assert "is running in another worker" in lost


def test_resume_refuses_a_changed_config_and_a_run_that_never_started(trait_project, tiny_model):
    from studio.train.worker import ClaimError, claim

    queued = make_run(trait_project, tiny_model)
    with pytest.raises(ClaimError, match=f"has never started; start it with --run {queued}"):
        claim(trait_project, queued, resume=True)

    run_id = make_run(trait_project, tiny_model, eval_interval=0, eval_samples=0)

    def stop_at_2(step, total, values):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    assert run_worker(trait_project.folder, run_id, on_progress=stop_at_2) == "interrupted"
    config = trait_project.run(run_id)["config"]
    trait_project.update_run(run_id, config={**config, "beta": 0.5, "lora": {**config["lora"], "r": 8}})
    assert run_worker(trait_project.folder, run_id, resume=True) == "failed"
    error = trait_project.run(run_id)["error"]
    assert "beta: 0.1 -> 0.5" in error and "lora.r: 4 -> 8" in error and "duplicate the run" in error
    trait_project.update_run(run_id, config=config)  # put back, it continues
    assert run_worker(trait_project.folder, run_id, resume=True) == "done"


def _eval_rows(project, run_id):
    from studio.core import metrics as M

    name = M.eval_name(M.REWARDS_MARGINS)
    return sorted(s for _, s, n, _, _ in project.metrics(run_id) if n in (name, M.EVAL_KL))


def test_sigterm_during_the_reference_pass_stops_before_training_and_resume_redoes_it(trait_project, tiny_model,
                                                                                      monkeypatch):
    from studio.train import dpo

    real = dpo.precompute_ref

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the pass runs
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo, "precompute_ref", signalled)
    run_id = make_run(trait_project, tiny_model, precompute_ref_logps="true", max_steps=4, eval_interval=2)
    assert run_worker(trait_project.folder, run_id) == "interrupted"
    run = trait_project.run(run_id)
    assert run["step"] == 0 and trait_project.metrics(run_id) == []  # no baseline evaluation after the stop
    monkeypatch.setattr(dpo, "precompute_ref", real)
    assert run_worker(trait_project.folder, run_id, resume=True) == "done"
    # the baseline, step 2 and the end, each evaluated exactly once
    assert _eval_rows(trait_project, run_id) == [0, 0, 2, 2, 4, 4]
    assert sorted(s["step"] for s in trait_project.samples(run_id)) == [0, 0, 2, 2, 4, 4]


@pytest.mark.parametrize("where", ["eval split", "sampling"])
def test_sigterm_during_an_evaluation_leaves_no_hole_and_no_duplicate(trait_project, tiny_model, monkeypatch,
                                                                     where):
    from studio.train import dpo, sampling

    target, name = (dpo, "evaluate") if where == "eval split" else (sampling, "sample_and_measure")
    real = getattr(target, name)
    calls = []

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the baseline evaluation, before step 1
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, signalled)
    run_id = make_run(trait_project, tiny_model, max_steps=4, eval_interval=2)
    assert run_worker(trait_project.folder, run_id) == "interrupted"
    assert trait_project.run(run_id)["step"] == 0
    monkeypatch.setattr(target, name, real)
    assert run_worker(trait_project.folder, run_id, resume=True) == "done"
    assert _eval_rows(trait_project, run_id) == [0, 0, 2, 2, 4, 4]
    assert sorted(s["step"] for s in trait_project.samples(run_id)) == [0, 0, 2, 2, 4, 4]


def test_a_deleted_run_folder_neither_breaks_the_run_nor_a_later_resume_message(trait_project, tiny_model):
    import shutil

    run_id = make_run(trait_project, tiny_model, max_steps=4, eval_interval=0, eval_samples=0)
    run_folder = paths.log_path(trait_project.folder, run_id).parent

    def delete_at_2(step, total, values):
        if step == 2:
            shutil.rmtree(run_folder)  # worker.log, checkpoint and adapter gone mid-run
            os.kill(os.getpid(), signal.SIGTERM)

    assert run_worker(trait_project.folder, run_id, on_progress=delete_at_2) == "interrupted"
    assert (paths.adapter_dir(trait_project.folder, run_id) / "adapter_config.json").is_file()  # saved again
    shutil.rmtree(run_folder)
    assert run_worker(trait_project.folder, run_id, resume=True) == "failed"
    error = trait_project.run(run_id)["error"]
    assert "no checkpoint to resume from" in error and str(run_folder) in error
    assert "no checkpoint" in trait_project.run(run_id)["log_tail"]  # the new log holds the story


def test_a_diverging_loss_fails_the_run_at_that_step_instead_of_ending_done(trait_project, tiny_model, monkeypatch):
    import dataclasses

    from studio.train import dpo

    real = dpo.preference_loss
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] < 4:
            return out
        return dataclasses.replace(out, loss=out.loss * float("nan"))  # what an exploding update leads to

    monkeypatch.setattr(dpo, "preference_loss", diverging)
    run_id = make_run(trait_project, tiny_model, eval_interval=0, eval_samples=0)
    assert run_worker(trait_project.folder, run_id) == "failed"
    run = trait_project.run(run_id)
    assert "diverged" in run["error"] and "learning_rate" in run["error"]
    assert run["step"] < 8
    losses = [v for _, _, name, v, _ in trait_project.metrics(run_id) if name == "loss"]
    assert losses[-1] is None  # stored as a gap, so the chart shows where it broke


def test_metric_rows_survive_a_busy_project_and_are_written_at_the_next_flush(trait_project):
    from studio.store.project import ProjectBusy
    from studio.train.metrics_writer import MetricsWriter

    run_id = trait_project.create_run("dpo", "m", {})
    writer = MetricsWriter(trait_project, run_id, min_interval=0.0)
    real_write = trait_project.transaction
    busy = {"left": 1}

    def write():
        if busy["left"]:
            busy["left"] -= 1
            raise ProjectBusy("another process holds the write lock (a large import)")
        return real_write()

    trait_project.transaction = write
    writer.add(1, {"loss": 0.7})  # flush fails: the row is kept
    assert trait_project.metrics(run_id) == []
    writer.add(2, {"loss": 0.6})
    assert [(s, v) for _, s, _, v, _ in trait_project.metrics(run_id)] == [(1, 0.7), (2, 0.6)]


def test_studio_stop_stops_a_background_run(trait_project, tiny_model, capsys):
    folder = str(trait_project.folder)
    run_id = make_run(trait_project, tiny_model, max_steps=100000, eval_interval=0)
    assert studio(["stop", folder, str(run_id)]) == 2  # queued, nobody training it yet
    assert "no worker is training it" in capsys.readouterr().err
    env = {**os.environ, "STUDIO_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "train", folder, "--run", str(run_id)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and trait_project.run(run_id)["step"] < 2:
            assert proc.poll() is None, "the worker ended early"
            time.sleep(0.2)
        assert studio(["stop", folder, str(run_id), "--wait", "60"]) == 0
        out = capsys.readouterr().out
        assert "asked to stop" in out and "interrupted at step" in out
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert trait_project.run(run_id)["status"] == "interrupted"
    assert studio(["stop", folder, str(run_id)]) == 2  # stopped already


def test_the_worker_runs_the_recipe_of_the_runs_method(trait_project, tiny_model, monkeypatch):
    import types

    from studio.train import worker

    handed = []
    recipe = types.ModuleType("recipe_for_this_test")
    recipe.train = lambda ctx: handed.append(ctx) or "done"
    monkeypatch.setitem(sys.modules, recipe.__name__, recipe)
    monkeypatch.setitem(worker.RECIPES, "dpo", recipe.__name__)
    run_id = make_run(trait_project, tiny_model, beta=0.3)
    assert run_worker(trait_project.folder, run_id) == "done"
    [ctx] = handed
    assert ctx.run_id == run_id and ctx.config.beta == 0.3 and ctx.model_path == tiny_model

    monkeypatch.delitem(worker.RECIPES, "dpo")  # a method whose recipe this version lacks
    run_id = make_run(trait_project, tiny_model)
    assert run_worker(trait_project.folder, run_id) == "failed"
    assert "no training recipe for 'dpo'" in trait_project.run(run_id)["error"]


def test_a_large_snapshot_is_tokenized_as_steps_reach_it_with_progress_and_a_prompt_stop(tmp_path, tiny_model,
                                                                                        monkeypatch):
    """A run of a few steps on many pairs tokenizes what its steps use, not the whole snapshot first; while it
    prepares it reports progress and a heartbeat, and a stop asked before the first step is honoured at once."""
    from studio.train import dpo
    from studio.train import model as model_module

    from .conftest import add_trait_pairs

    project = Project.create(tmp_path / "big")
    add_trait_pairs(project, n_train=200, n_eval=0)
    texts = []
    real = model_module.load_tokenizer

    def counting_tokenizer(path):
        tok = real(path)

        class Counting(type(tok)):
            def __call__(self, text, *args, **kwargs):
                texts.append(text)
                return super().__call__(text, *args, **kwargs)

        tok.__class__ = Counting
        return tok

    monkeypatch.setattr(model_module, "load_tokenizer", counting_tokenizer)
    run_id = make_run(project, tiny_model, max_steps=2, batch_size=2, eval_interval=0)
    at_first_step, status_lines = [], []

    def on_status(line):
        status_lines.append((line, project.run(run_id)["heartbeat_at"]))

    def on_progress(step, total, values):
        if step == 1:
            at_first_step.append(len(texts))

    assert run_worker(project.folder, run_id, on_progress=on_progress, on_status=on_status) == "done"
    # 3 texts per pair (prompt, prompt + chosen, prompt + rejected): step 1's 2 pairs, the 2 sampled prompts' and
    # the few longest pairs by characters that gradient_checkpointing 'auto' measures the longest among
    measured = dpo.LONGEST_CANDIDATES
    assert at_first_step == [3 * (2 + 2 + measured)]
    assert len(texts) <= 3 * (2 + 2 + measured + 2)  # and step 2's, never the other pairs
    lines = [line for line, _ in status_lines]
    assert lines[:2] == ["preparing: reading the run's snapshot", f"preparing: loading the model from {tiny_model}"]
    assert status_lines[1][1] is not None  # the heartbeat was written while preparing

    # a stop asked while it prepares: interrupted at step 0 with a checkpoint, having tokenized next to nothing
    texts.clear()
    stopped = make_run(project, tiny_model, max_steps=2, batch_size=2, eval_interval=0, precompute_ref_logps="true")

    def stop_while_preparing(line):
        if line.startswith("preparing: loading the model"):
            project.request_stop(stopped)

    assert run_worker(project.folder, stopped, on_status=stop_while_preparing) == "interrupted"
    assert project.run(stopped)["step"] == 0 and len(texts) <= 3 * (2 + measured)
    assert run_worker(project.folder, stopped, resume=True) == "done"
    project.close()


def test_a_checkpoint_is_written_after_the_rows_of_the_steps_it_holds(trait_project, tiny_model, monkeypatch):
    # a kill just after a checkpoint must not lose its steps' rows: the resume starts after them
    run_id = make_run(trait_project, tiny_model, max_steps=4, eval_interval=0, checkpoint_interval=1)
    seen = logged_steps_at_each_checkpoint(monkeypatch, trait_project, run_id)
    assert run_worker(trait_project.folder, run_id) == "done"
    assert sorted(seen) == [1, 2, 3, 4]
    for step, logged in seen.items():
        assert set(range(1, step + 1)) <= logged, f"checkpoint {step} written before the rows of {step}"
