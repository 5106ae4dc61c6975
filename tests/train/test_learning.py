"""A short DPO run on a task with a known preferred trait moves the policy towards it."""

from studio.core import metrics as M
from studio.core.configs import DPOConfig, apply_overrides, to_dict
from studio.train.worker import run_worker

from .conftest import add_trait_pairs


def test_dpo_learns_the_preferred_trait(tmp_path, tiny_model):
    from studio.store import Project

    project = Project.create(tmp_path / "proj")
    add_trait_pairs(project, n_train=24, n_eval=12)  # chosen answers start with "sure", rejected with "no"
    config = apply_overrides(DPOConfig(), {
        "learning_rate": 1e-2, "max_steps": 30, "batch_size": 8, "warmup_ratio": 0.0, "lora.r": 8,
        "lora.dropout": 0.0, "beta": 0.1, "eval_interval": 1000,  # evaluate before training and at the end
        "eval_samples": 12, "samples_per_prompt": 1, "sample_max_new_tokens": 4, "checkpoint_interval": 0})
    run_id = project.create_run("dpo", str(tiny_model), to_dict(config))
    assert run_worker(project.folder, run_id) == "done"

    values = {(step, name): v for _, step, name, v, _ in project.metrics(run_id)}
    last = project.run(run_id)["step"]
    assert last == 30
    # held-out prompts: log P(chosen) - log P(rejected) rises, and the implicit reward ranks them right
    before = values[0, M.eval_name(M.LOGPS_CHOSEN)] - values[0, M.eval_name(M.LOGPS_REJECTED)]
    after = values[last, M.eval_name(M.LOGPS_CHOSEN)] - values[last, M.eval_name(M.LOGPS_REJECTED)]
    assert after > before + 5.0
    assert values[last, M.eval_name(M.REWARDS_ACCURACIES)] == 1.0
    assert values[last, M.eval_name(M.REWARDS_MARGINS)] > 1.0
    # the policy drifted from the reference, measured on its own samples
    assert values[0, M.EVAL_KL] == 0.0
    assert values[last, M.EVAL_KL] > 0.0

    # the samples show the trait more often than the base model's (step 0 = adapter still zero)
    samples = project.samples(run_id)
    def with_trait(step):
        return sum("sure" in s["text"].lower() for s in samples if s["step"] == step)
    assert len([s for s in samples if s["step"] == last]) == 12
    assert with_trait(last) >= 3
    assert with_trait(last) > with_trait(0)
    project.close()
