"""PPO and RLOO: they raise the score of a rule reward and of a learned reward model with the KL to the reference
held, on one copy of the base weights; resume reaches the adapters of an uninterrupted run; a killed worker
leaves the run failed and resumable; the reward is validated at launch."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from studio.cli import main as studio
from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import PPOConfig, RewardConfig, RLOOConfig, apply_overrides, to_dict
from studio.store import Project
from studio.train import reward_model
from studio.train.worker import run_worker

from .conftest import add_trait_pairs, logged_steps_at_each_checkpoint

# a few seconds a run: 8 responses of at most 8 tokens per step, 2 epochs of 2 minibatches
FAST = {"learning_rate": 3e-3, "max_steps": 12, "batch_size": 8, "warmup_ratio": 0.0, "lora.r": 8,
        "eval_interval": 6, "eval_samples": 16, "checkpoint_interval": 0, "max_new_tokens": 8, "kl_coef": 0.05,
        "ppo_epochs": 2, "num_mini_batches": 2}
RLOO_FAST = {**FAST, "batch_size": 4, "rloo_k": 4}


@pytest.fixture(autouse=True)
def sure_rule(monkeypatch):
    """The rule reward of the tests: 1 for a response that starts with 'sure', else 0."""
    monkeypatch.setitem(reward_model.RULE_REWARDS, "sure", lambda prompt, response: float(
        response.strip().startswith("sure")))


@pytest.fixture(scope="module")
def rl_project(trait_sft_model, tmp_path_factory):
    """A project of trait pairs (chosen 'sure ...', rejected 'no ...') and a reward model trained on them, on the
    SFT model that says either about equally often."""
    project = Project.create(tmp_path_factory.mktemp("rl") / "proj")
    add_trait_pairs(project, n_train=24, n_eval=16, spaced_answers=True)
    config = apply_overrides(RewardConfig(), {"learning_rate": 3e-3, "max_steps": 15, "batch_size": 8,
                                              "warmup_ratio": 0.0, "lora.r": 8, "eval_interval": 0,
                                              "checkpoint_interval": 0})
    reward_run = project.create_run("reward", str(trait_sft_model), to_dict(config))
    assert run_worker(project.folder, reward_run) == "done"
    yield project, reward_run
    project.close()


def make_rl_run(project, model, method, **overrides):
    cls, fast = (PPOConfig, FAST) if method == "ppo" else (RLOOConfig, RLOO_FAST)
    config = apply_overrides(cls(), {**fast, **overrides})
    return project.create_run(method, str(model), to_dict(config))


def metric(project, run_id, name) -> dict[int, float]:
    return {step: v for _, step, n, v, _ in project.metrics(run_id) if n == name}


def trait_share(project, run_id, step) -> float:
    texts = [s["text"] for s in project.samples(run_id) if s["step"] == step]
    return sum(t.strip().startswith("sure") for t in texts) / len(texts)


@pytest.mark.parametrize("method", ["ppo", "rloo"])
def test_a_rule_reward_rises_with_the_kl_to_the_reference_in_bounds(rl_project, trait_sft_model, method):
    project, _ = rl_project
    run_id = make_rl_run(project, trait_sft_model, method, reward_model="rule:sure")
    assert run_worker(project.folder, run_id) == "done", project.run(run_id)["error"]
    score = metric(project, run_id, M.eval_name(M.OBJECTIVE_SCORES))
    kl = metric(project, run_id, M.eval_name(M.OBJECTIVE_KL))
    assert sorted(score) == [0, 6, 12]
    assert score[0] < 0.8 and score[12] >= 0.9  # held-out prompts: the SFT model says "sure" about half the time
    assert kl[0] == 0.0 and 0.0 < kl[12] < 5.0  # nats per response
    train = {n for _, _, n, _, _ in project.metrics(run_id)}
    assert {M.OBJECTIVE_RLHF_REWARD, M.OBJECTIVE_SCORES, M.OBJECTIVE_KL, M.OBJECTIVE_ENTROPY,
            M.OBJECTIVE_NON_SCORE_REWARD, M.POLICY_APPROXKL, M.POLICY_CLIPFRAC, M.LOSS_POLICY, M.NUM_EOS_TOKENS,
            M.KL_COEF, M.RESPONSE_LENGTH, M.TIME_GENERATE, M.TIME_SCORE, M.TIME_FORWARD, M.TIME_OPTIMISE} <= train
    assert ({M.LOSS_VALUE, M.VALUE_CLIPFRAC} <= train) == (method == "ppo")
    # the stored samples say what each response got
    sample = project.samples(run_id)[-1]
    assert sample["step"] == 12 and {"reward", "kl_seq", "tokens", "finished", "hit_cap", "repetition"} <= set(
        sample["meta"])
    # the collapse lens's measures of the held-out responses, under DPO's names, agree with the stored samples
    for step in (0, 6, 12):
        at = [s["meta"] for s in project.samples(run_id) if s["step"] == step]
        assert metric(project, run_id, M.EVAL_SAMPLE_LENGTH)[step] == pytest.approx(
            sum(m["tokens"] for m in at) / len(at))
        assert metric(project, run_id, M.EVAL_SAMPLE_HIT_CAP)[step] == pytest.approx(
            sum(m["hit_cap"] for m in at) / len(at))
        assert all(m["hit_cap"] == (not m["finished"]) for m in at)
        assert 0.0 < metric(project, run_id, M.EVAL_DISTINCT_2)[step] <= 1.0
    assert metric(project, run_id, M.EVAL_SAMPLE_CAP)[12] == FAST["max_new_tokens"]


def test_without_the_kl_penalty_the_policy_drifts_further(rl_project, trait_sft_model):
    project, _ = rl_project
    runs = {coef: make_rl_run(project, trait_sft_model, "rloo", reward_model="rule:sure", kl_coef=coef)
            for coef in (0.0, 0.5)}
    for run_id in runs.values():
        assert run_worker(project.folder, run_id) == "done"
    # KL(policy || reference) per response on the held-out prompts (k3: never negative, low variance)
    drift = {coef: metric(project, run_id, M.EVAL_KL_SEQ)[12] for coef, run_id in runs.items()}
    assert drift[0.0] > 2 * drift[0.5]
    assert metric(project, runs[0.5], M.KL_COEF)[1] == 0.5


@pytest.mark.parametrize("method", ["ppo", "rloo"])
def test_a_learned_reward_model_teaches_the_trait(rl_project, trait_sft_model, method):
    project, reward_run = rl_project
    run_id = make_rl_run(project, trait_sft_model, method, reward_model=str(reward_run))
    assert run_worker(project.folder, run_id) == "done", project.run(run_id)["error"]
    score = metric(project, run_id, M.eval_name(M.OBJECTIVE_SCORES))
    assert score[12] > score[0] + 0.5  # the reward model's own score of the held-out responses
    assert trait_share(project, run_id, 12) >= 0.9 > trait_share(project, run_id, 0)
    # the policy adapter is the run's result: export-model takes it as DPO's
    assert (paths.adapter_dir(project.folder, run_id) / "adapter_config.json").is_file()
    if method == "ppo":  # the value function started as the reward model and trained: adapter and head moved
        from safetensors.torch import load_file

        value, reward = paths.run_dir(project.folder, run_id) / "value", paths.adapter_dir(project.folder, reward_run)
        for file in ("adapter_model.safetensors", "score_head.safetensors"):
            trained, start = load_file(value / file), load_file(reward / file)
            assert trained.keys() == start.keys()
            assert all(not torch.allclose(trained[k], start[k]) for k in trained)


def _ppo_run_object(project, model, **overrides):
    from studio.core.configs import from_dict
    from studio.train.ppo import PPORun
    from studio.train.runtime import RunContext

    run_id = make_rl_run(project, model, "ppo", **overrides)
    config = from_dict(PPOConfig, project.run(run_id)["config"])
    return PPORun(RunContext(project, run_id, config, model))


def test_policy_value_reward_and_reference_share_one_copy_of_the_base(rl_project, trait_sft_model):
    import gc

    from transformers import AutoModelForCausalLM

    project, reward_run = rl_project
    base = AutoModelForCausalLM.from_pretrained(trait_sft_model)
    base_shapes = {tuple(p.shape) for p in base.parameters()}
    one_base = {shape: sum(tuple(p.shape) == shape for p in base.parameters()) for shape in base_shapes}
    del base

    def live_tensors() -> list[torch.Tensor]:
        gc.collect()
        return [o for o in gc.get_objects()
                if isinstance(o, torch.Tensor) and tuple(o.shape) in base_shapes and o.device.type == "cpu"]

    # what earlier tests left alive in this process is not the run's: set aside (and kept alive, so no new
    # tensor can take one of their addresses)
    before = live_tensors()
    earlier = {t.untyped_storage().data_ptr() for t in before}
    run = _ppo_run_object(project, trait_sft_model, reward_model=str(reward_run))
    assert set(run.shared.names) == {"default", "value", "reward"}
    # every tensor the run brought to life with the shape of a base weight, counted by its storage: exactly one
    # base's worth (an adapter's A/B and the heads have other shapes; a second copy would double the counts)
    storages: dict[tuple, set[int]] = {}
    for t in live_tensors():
        ptr = t.untyped_storage().data_ptr()
        if ptr not in earlier:
            storages.setdefault(tuple(t.shape), set()).add(ptr)
    assert {shape: len(ptrs) for shape, ptrs in storages.items()} == one_base
    # and the four models differ where they should: the reward adapter moves the hidden states, the reference
    # (adapters off) is the base, the fresh policy adapter is still the base's function
    from studio.train.reward_model import hidden_states

    ids = torch.tensor([[5, 100, 200, 300]])
    attn = torch.ones_like(ids)
    with torch.no_grad():
        policy = hidden_states(run.model, ids, attn)
        with run.shared.adapter("reward"):
            reward = hidden_states(run.model, ids, attn)
        with run.shared.reference():
            reference = hidden_states(run.model, ids, attn)
    assert run.shared.active == "default"
    torch.testing.assert_close(policy, reference)
    assert not torch.allclose(reward, reference, atol=1e-4)
    # switching adapters leaves the trained ones trainable and the reward frozen
    assert all(p.requires_grad for p in run.trainable)
    assert not any(p.requires_grad for p in run.shared.parameters_of("reward"))


def test_the_first_ratio_is_exactly_one(rl_project, trait_sft_model):
    from studio.train import rl_losses as R

    project, reward_run = rl_project
    run = _ppo_run_object(project, trait_sft_model, reward_model=str(reward_run))
    rollouts = run.rollout(run.step_prompts(), 1, seed=3)
    rows = torch.tensor([5, 1, 6, 2])  # a shuffled minibatch, in train mode, as the update sees it
    run.model.train()
    r = rollouts
    logprobs, _ = run.token_logprobs(r.input_ids[rows], r.attention_mask[rows], r.completion_mask[rows], r.mask[rows])
    torch.testing.assert_close(logprobs, r.logprobs[rows], atol=1e-6, rtol=0)
    adv = run.advantages(r)["advantages"][rows]
    first = R.clipped_policy_loss(logprobs, r.logprobs[rows], adv, r.mask[rows], 0.2)
    assert float(first.ratio) == pytest.approx(1.0, abs=1e-6) and float(first.clipfrac) == 0.0


def adapter_files(project, run_id):
    from safetensors.torch import load_file

    run_dir = paths.run_dir(project.folder, run_id)
    return {name: load_file(run_dir / name / file) for name, file in
            (("adapter", "adapter_model.safetensors"), ("value", "adapter_model.safetensors"),
             ("value", "score_head.safetensors"))}


def test_stop_and_resume_reach_the_adapters_of_an_uninterrupted_run(rl_project, trait_sft_model):
    project, reward_run = rl_project
    settings = dict(reward_model=str(reward_run), max_steps=4, eval_interval=2, kl_target=1.0, kl_horizon=50)
    straight = make_rl_run(project, trait_sft_model, "ppo", **settings)
    assert run_worker(project.folder, straight) == "done"
    stopped = make_rl_run(project, trait_sft_model, "ppo", **settings)

    def stop_at_2(step, total, values):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the worker finishes the step, saves and leaves

    assert run_worker(project.folder, stopped, on_progress=stop_at_2) == "interrupted"
    assert project.run(stopped)["step"] == 2
    assert run_worker(project.folder, stopped, resume=True) == "done"
    a, b = adapter_files(project, straight), adapter_files(project, stopped)
    for name in ("adapter", "value"):
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            torch.testing.assert_close(a[name][k], b[name][k], atol=1e-5, rtol=1e-4)
    # the adaptive KL coefficient and the curves continue where they stopped
    coef = [metric(project, r, M.KL_COEF) for r in (straight, stopped)]
    assert sorted(coef[1]) == [1, 2, 3, 4] and coef[0] == pytest.approx(coef[1], abs=1e-9)
    assert len(set(coef[0].values())) > 1  # it did adapt
    assert sorted({s["step"] for s in project.samples(stopped)}) == [0, 2, 4]


def test_a_killed_ppo_worker_leaves_the_run_failed_and_resumable(rl_project, trait_sft_model):
    project, reward_run = rl_project
    run_id = make_rl_run(project, trait_sft_model, "ppo", reward_model=str(reward_run), max_steps=5,
                         checkpoint_interval=1, eval_interval=0)
    state = paths.checkpoint_dir(project.folder, run_id) / "state.pt"
    env = {**os.environ, "STUDIO_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studio", "train", str(project.folder), "--run", str(run_id)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not state.is_file():
            assert proc.poll() is None, "the worker ended early"
            time.sleep(0.2)
        assert state.is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reopened = Project.open(project.folder)
    assert reopened.found_dead_runs == [run_id]  # opening the project found it
    assert reopened.run(run_id)["status"] == "failed"
    assert reopened.integrity_check() == "ok"
    reopened.close()
    assert run_worker(project.folder, run_id, resume=True) == "done"
    assert project.run(run_id)["step"] == 5
    assert sorted(metric(project, run_id, M.OBJECTIVE_SCORES)) == [1, 2, 3, 4, 5]



def test_a_ppo_checkpoint_is_written_after_the_rows_of_the_steps_it_holds(rl_project, trait_sft_model, monkeypatch):
    # what the killed worker above relies on: a resume starts after the checkpoint's steps, so their rows are in
    project, reward_run = rl_project
    run_id = make_rl_run(project, trait_sft_model, "ppo", reward_model=str(reward_run), max_steps=3,
                         checkpoint_interval=1, eval_interval=0)
    seen = logged_steps_at_each_checkpoint(monkeypatch, project, run_id)
    assert run_worker(project.folder, run_id) == "done"
    assert sorted(seen) == [1, 2, 3]
    for step, logged in seen.items():
        assert set(range(1, step + 1)) <= logged, f"checkpoint {step} written before the rows of {step}"

def test_the_reward_is_checked_at_launch_and_shown_with_the_run(rl_project, trait_sft_model, tiny_model, capsys):
    import json

    project, reward_run = rl_project
    folder, model = str(project.folder), str(trait_sft_model)
    cases = [
        ([], "needs a reward"),
        (["--reward", "999"], "run 999: no such run"),
        (["--reward", str(tiny_model)], "not a sequence-classification model"),
    ]
    dpo_run = project.create_run("dpo", model, {})
    cases.append((["--reward", str(dpo_run)], f"run {dpo_run} is a dpo run, not a reward model"))
    for extra, message in cases:
        assert studio(["train", folder, "--method", "ppo", "--model", model, *extra]) == 2
        assert message in capsys.readouterr().err
    # a reward run of another base model cannot share this one's weights
    assert studio(["train", folder, "--method", "rloo", "--model", str(tiny_model), "--reward", str(reward_run)]) == 2
    assert "trained on" in capsys.readouterr().err
    assert studio(["train", folder, "--method", "dpo", "--model", model, "--reward", str(reward_run)]) == 2
    assert "only ppo and rloo" in capsys.readouterr().err

    rc = studio(["train", folder, "--method", "rloo", "--model", model, "--reward", str(reward_run),
                 "--set", "max_steps=1", "--set", "batch_size=2", "--set", "rloo_k=2", "--set", "eval_interval=0",
                 "--set", "max_new_tokens=4", "--set", "ppo_epochs=1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "step 1/1" in out and "score" in out and "kl" in out
    assert studio(["runs", folder, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs[-1]["method"] == "rloo" and runs[-1]["reward_model"] == str(reward_run)


def test_a_classifier_folder_as_the_reward_and_the_policy_exported(rl_project, trait_sft_model, tmp_path):
    """A sequence-classification model instead of a reward run (here the project's reward run exported as one),
    then the PPO run's policy exported merged: the base with the policy adapter in it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    project, reward_run = rl_project
    classifier = tmp_path / "classifier"
    assert studio(["export-model", str(project.folder), str(reward_run), str(classifier), "--merged"]) == 0
    run_id = make_rl_run(project, trait_sft_model, "ppo", reward_model=str(classifier), max_steps=2,
                         eval_interval=0, eval_samples=4)
    assert run_worker(project.folder, run_id) == "done", project.run(run_id)["error"]
    assert sorted(metric(project, run_id, M.OBJECTIVE_SCORES)) == [1, 2]
    assert "reward: folder" in paths.log_path(project.folder, run_id).read_text()
    merged = tmp_path / "merged"
    assert studio(["export-model", str(project.folder), str(run_id), str(merged), "--merged"]) == 0
    ids = torch.tensor([[5, 100, 200, 300]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(trait_sft_model)
        plain = base(ids).logits
        expected = PeftModel.from_pretrained(base, paths.adapter_dir(project.folder, run_id))(ids).logits
        assert not torch.allclose(expected, plain, atol=1e-4)  # the policy did move
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(merged)(ids).logits, expected,
                                   atol=1e-5, rtol=1e-4)
