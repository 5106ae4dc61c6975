"""A tiny model pushed to collapse loses the diversity of its samples and gets the collapse warning; a healthy
run learns its pairs and keeps its samples' variety."""

from __future__ import annotations

import random

from studio.core import metrics as M
from studio.core.configs import DPOConfig, apply_overrides, to_dict
from studio.core.health import run_findings
from studio.store import Project
from studio.store.run_metrics import read_run_series
from studio.train.worker import run_worker

from .conftest import SUBJECTS, add_trait_pairs

WORDS = ("good", "nice", "big", "small", "red", "blue", "the", "a")


def add_repeated_pairs(project: Project, n_train: int = 12, n_eval: int = 4) -> None:
    """Every chosen response is the same word ten times; the rejected ones are varied words."""
    rng = random.Random(0)
    for i in range(n_train + n_eval):
        pid = project.add_prompt(f"Question {i}: tell me about the {SUBJECTS[i % len(SUBJECTS)]}.",
                                 split="train" if i < n_train else "eval")
        chosen = project.add_response(pid, " ".join(["yes"] * 10))
        rejected = project.add_response(pid, " ".join(rng.choice(WORDS) for _ in range(10)))
        project.record_label(project.add_pair(pid, chosen, rejected), "ann", "a", shown_left="a")


def train(project: Project, tiny_model, **overrides) -> dict[str, dict[int, float]]:
    """A 30-step run evaluated (and sampled: 4 probes x 4) every 10 steps; its eval metrics by name and step."""
    config = apply_overrides(DPOConfig(), {
        "max_steps": 30, "batch_size": 4, "warmup_ratio": 0.0, "lora.r": 8, "lora.dropout": 0.0,
        "eval_interval": 10, "eval_samples": 4, "samples_per_prompt": 4, "sample_max_new_tokens": 16,
        "sample_budget": 1.0, "checkpoint_interval": 0, **overrides})
    run_id = project.create_run("dpo", str(tiny_model), to_dict(config))
    assert run_worker(project.folder, run_id) == "done"
    values: dict[str, dict[int, float]] = {}
    for _id, step, name, value, _t in project.metrics(run_id):
        values.setdefault(name, {})[step] = value
    values["findings"] = run_findings(read_run_series(project, run_id))
    return values


def test_a_run_pushed_to_collapse_loses_diversity_and_gets_the_warning(tmp_path, tiny_model):
    project = Project.create(tmp_path / "proj")
    add_repeated_pairs(project)
    # a high learning rate and a small beta on pairs whose chosen response is one word repeated
    v = train(project, tiny_model, learning_rate=1e-2, beta=0.01)
    first, last = 0, 30
    assert v[M.EVAL_DISTINCT_2][last] < 0.5 * v[M.EVAL_DISTINCT_2][first]
    assert v[M.EVAL_DISTINCT_1][last] < 0.5 * v[M.EVAL_DISTINCT_1][first]
    assert v[M.EVAL_SELF_SIMILARITY][last] > v[M.EVAL_SELF_SIMILARITY][first] + 0.3
    assert v[M.EVAL_REPETITION][last] > v[M.EVAL_REPETITION][first] + 0.3
    assert v[M.EVAL_SAMPLE_ENTROPY][last] < 0.5 * v[M.EVAL_SAMPLE_ENTROPY][first]
    assert v[M.EVAL_KL][first] == 0.0 and v[M.EVAL_KL][last] > 1.0
    warning = v["findings"]["diversity_collapse"]
    assert warning.startswith(f"Samples are getting repetitive: distinct-2 {v[M.EVAL_DISTINCT_2][first]:.2f} → "
                              f"{v[M.EVAL_DISTINCT_2][last]:.2f}")
    project.close()


def test_a_healthy_run_learns_and_keeps_its_samples_varied(tmp_path, tiny_model):
    project = Project.create(tmp_path / "proj")
    add_trait_pairs(project, n_train=12, n_eval=4)
    v = train(project, tiny_model, learning_rate=1e-3, beta=0.1)
    assert v[M.eval_name(M.REWARDS_MARGINS)][30] > 1.0  # it learned the preferred trait
    assert v[M.EVAL_DISTINCT_2][30] > 0.9 * v[M.EVAL_DISTINCT_2][0]
    assert v[M.EVAL_SELF_SIMILARITY][30] < v[M.EVAL_SELF_SIMILARITY][0] + 0.1
    assert "diversity_collapse" not in v["findings"]
    project.close()
