"""Cost accounting on a real tiny run: tokens counted exactly, samples, memory, times, and `studio compare`."""

from __future__ import annotations

import json

from studio.cli import main as studio
from studio.core import metrics as M
from studio.core.configs import DPOConfig, apply_overrides, to_dict
from studio.store.comparison import run_usage
from studio.train import data
from studio.train.model import load_tokenizer
from studio.train.worker import run_worker


def test_a_tiny_run_counts_its_tokens_and_samples_and_costs_no_gpu_time(trait_project, tiny_model, capsys):
    # 16 train pairs in batches of 4: max_steps=4 is exactly one pass, so every train pair is trained on once
    config = apply_overrides(DPOConfig(), {"batch_size": 4, "max_steps": 4, "lora.r": 4, "eval_interval": 2,
                                           "eval_samples": 2, "sample_max_new_tokens": 4, "checkpoint_interval": 0})
    run_id = trait_project.create_run("dpo", str(tiny_model), to_dict(config))
    assert run_worker(trait_project.folder, run_id) == "done"

    tokenizer = load_tokenizer(tiny_model)
    train = data.tokenize_rows(trait_project.run_snapshot(run_id, split="train"), tokenizer,
                               max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                               truncation=config.truncation)
    assert len(train) == 16
    expected_tokens = sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in train)

    usage = run_usage(trait_project, run_id)
    assert usage.num_tokens == expected_tokens
    assert usage.samples_generated == usage.samples_stored == 6  # 2 prompts at steps 0, 2 and 4
    memory = [v for _, _, _, v, _ in trait_project.metrics(run_id, names=[M.MEMORY])]
    assert usage.peak_memory_gib == max(memory) > 0

    assert studio(["compare", str(trait_project.folder), str(run_id), "--json", "--price-per-gpu-hour", "4"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    cost, run = row["cost"], trait_project.run(run_id)
    assert cost["num_tokens"] == expected_tokens and cost["samples_generated"] == 6
    assert cost["training_seconds"] == run["active_seconds"] > 0
    assert cost["wall_seconds"] >= cost["training_seconds"]
    assert cost["gpus"] == 0 and cost["gpu_seconds"] == 0 and cost["money"] == 0  # a CPU run: no GPU-hours
    assert cost["tokens_per_second"] == expected_tokens / run["active_seconds"]
    assert row["final"][M.NUM_TOKENS] == expected_tokens and row["final"][M.LOSS] < 1
