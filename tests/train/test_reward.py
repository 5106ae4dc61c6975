"""The reward model: it learns a preference with a clear trait, its scores are read back by `studio score` (from
the run or exported as a sequence-classification model), and label strength sets its margin."""

import json

import pytest

from studio.cli import main as studio
from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import RewardConfig, apply_overrides, to_dict
from studio.store import Project
from studio.train.worker import run_worker

from .conftest import SUBJECTS, add_trait_pairs

FAST = {"learning_rate": 3e-3, "max_steps": 15, "batch_size": 8, "warmup_ratio": 0.0, "lora.r": 8,
        "eval_interval": 5, "checkpoint_interval": 0}


def make_reward_run(project, model, **overrides):
    config = apply_overrides(RewardConfig(), {**FAST, **overrides})
    return project.create_run("reward", str(model), to_dict(config))


def eval_values(project, run_id, name):
    return {step: v for _, step, n, v, _ in project.metrics(run_id) if n == M.eval_name(name)}


def write_pairs(path, first: int, n: int) -> None:
    """Trait pairs the run never saw (other question numbers), as a TRL preference file."""
    with open(path, "w") as f:
        for i in range(first, first + n):
            s = SUBJECTS[i % len(SUBJECTS)]
            f.write(json.dumps({"prompt": f"Question {i}: tell me about the {s}.",  # as add_trait_pairs(
                                "chosen": f" sure the {s} is big.", "rejected": f" no the {s} is big."})  # spaced
                    + "\n")


def test_the_reward_model_learns_the_trait_and_scores_new_pairs(tmp_path, tiny_model, capsys):
    project = Project.create(tmp_path / "proj")
    add_trait_pairs(project, n_train=24, n_eval=12, spaced_answers=True)  # chosen: " sure ...", rejected: " no ..."
    run_id = make_reward_run(project, tiny_model)
    assert run_worker(project.folder, run_id) == "done"

    loss, accuracy = eval_values(project, run_id, M.LOSS), eval_values(project, run_id, M.ACCURACY)
    assert sorted(accuracy) == [0, 5, 10, 15]
    assert accuracy[15] >= 0.9  # held-out pairs
    assert loss[15] < loss[0] / 4  # learned, not guessed: the untrained head's loss was near ln 2
    train_names = {n for _, _, n, _, _ in project.metrics(run_id)}
    assert {M.LOSS, M.ACCURACY, M.MARGIN, M.MEAN_REWARD, M.STD_REWARD, M.GRAD_NORM} <= train_names
    assert eval_values(project, run_id, M.MARGIN)[15] > 1.0
    # what an eval accuracy is over (the runs list shows "of N" with the best)
    assert {v for _, _, n, v, _ in project.metrics(run_id) if n == M.EVAL_PAIRS} == {12}
    adapter = paths.adapter_dir(project.folder, run_id)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "score_head.safetensors").is_file()

    # `studio score` on pairs from a file: chosen above rejected on (nearly) every row
    pairs = tmp_path / "new.jsonl"
    write_pairs(pairs, 100, 10)
    assert studio(["score", str(project.folder), str(run_id), str(pairs), "--json"]) == 0
    by_run = json.loads(capsys.readouterr().out)
    assert by_run["accuracy"] >= 0.9 and len(by_run["rows"]) == 10
    assert [r["line"] for r in by_run["rows"]] == list(range(1, 11))
    assert studio(["score", str(project.folder), str(run_id), str(pairs)]) == 0
    text = capsys.readouterr().out
    assert "accuracy:" in text and f"reward run {run_id}" in text

    # the run exported as a sequence-classification model scores the same (the tiny tokenizer pads with its own
    # pad token, so the classifier reads the same last token)
    folder = tmp_path / "classifier"
    assert studio(["export-model", str(project.folder), str(run_id), str(folder), "--merged"]) == 0
    capsys.readouterr()
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    assert studio(["score", str(project.folder), str(folder), str(pairs), "--json"]) == 0
    by_folder = json.loads(capsys.readouterr().out)
    for a, b in zip(by_run["rows"], by_folder["rows"], strict=True):
        assert a["chosen"] == pytest.approx(b["chosen"], abs=1e-4)
        assert a["rejected"] == pytest.approx(b["rejected"], abs=1e-4)
    project.close()


def test_score_explains_what_it_cannot_score(trait_project, tiny_model, tmp_path, capsys):
    folder = str(trait_project.folder)
    unlabeled = tmp_path / "pairs.jsonl"
    unlabeled.write_text(json.dumps({"prompt": "p", "response_a": "x", "response_b": "y"}) + "\n")
    dpo_run = trait_project.create_run("dpo", str(tiny_model), {})
    assert studio(["score", folder, str(dpo_run), str(unlabeled)]) == 2
    assert "without a preference" in capsys.readouterr().err
    labeled = tmp_path / "labeled.jsonl"
    write_pairs(labeled, 0, 2)
    assert studio(["score", folder, str(dpo_run), str(labeled)]) == 2
    assert f"run {dpo_run} is a dpo run, not a reward model" in capsys.readouterr().err
    assert studio(["score", folder, str(tiny_model), str(labeled)]) == 2
    assert "not a sequence-classification model" in capsys.readouterr().err


def test_label_strength_is_the_margin(tmp_path, tiny_model):
    from studio.store.rlhf import preference_strengths

    project = Project.create(tmp_path / "proj")
    pid = project.add_prompt("Question: tell me about the cat.")
    good, bad = project.add_response(pid, "sure the cat is nice."), project.add_response(pid, "no the cat is nice.")
    pair = project.add_pair(pid, good, bad)
    project.record_label(pair, "ann", "a", shown_left="a", strength="decisive")
    project.record_label(pair, "bob", "a", shown_left="a", strength="slight")
    project.record_label(pair, "cid", "b", shown_left="a", strength="decisive")  # the minority's strength: no
    pid2 = project.add_prompt("Question: tell me about the dog.")
    r1, r2 = project.add_response(pid2, "no the dog."), project.add_response(pid2, "sure the dog.")
    pair2 = project.add_pair(pid2, r1, r2)
    project.record_label(pair2, "ann", "b", shown_left="b")  # no strength given: no margin
    plain = make_reward_run(project, tiny_model, max_steps=1, eval_interval=0, learning_rate=0.0, eval_fraction=0.0)
    assert preference_strengths(project, plain) == {pair: pytest.approx((1.0 + 1 / 3) / 2), pair2: 0.0}

    # the same step with a margin asks more of the same scores: its loss is higher
    margin = make_reward_run(project, tiny_model, max_steps=1, eval_interval=0, learning_rate=0.0,
                             strength_margin=2.0, eval_fraction=0.0)
    for run_id in (plain, margin):
        assert run_worker(project.folder, run_id) == "done"
    loss = {r: next(v for _, _, n, v, _ in project.metrics(r) if n == M.LOSS) for r in (plain, margin)}
    assert loss[margin] > loss[plain] + 0.1
    project.close()
