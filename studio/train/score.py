"""`studio score`: a reward model's scores of the chosen and rejected responses of a preference file's rows.

A reward run is loaded as it trained (its base model, adapter and score head; rows tokenized and truncated
with the run's settings, as its evaluations are); a sequence-classification folder as `ClassifierReward`
reads any reward model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from studio.core.configs import config_for, from_dict
from studio.core.models import resolve_model
from studio.train import data
from studio.train.reward_model import ClassifierReward, load_head, scores_of_batch


def _rows_as_snapshot(rows: Sequence) -> list[dict]:
    """Parsed file rows (store.formats.Row: a = chosen, b = rejected) in the shape of snapshot rows."""
    return [{"pair_id": i, "prompt_id": i, "prompt": r.prompt_text,
             "messages": json.loads(r.messages) if r.messages else None, "chosen": r.a, "rejected": r.b}
            for i, r in enumerate(rows)]


@torch.no_grad()
def score_pairs(source, run: dict | None, rows: Sequence, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Rewards of each row's chosen and rejected response, by a reward run (`run`, with `source.path` its
    adapter folder) or a sequence-classification folder (`source.path`)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from studio.train import runtime

    runtime.apply_thread_cap()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    snapshot = _rows_as_snapshot(rows)
    if run is None:
        reward = ClassifierReward(source.path, device)
        chosen = [reward.token_rows(r["prompt"], r["messages"], r["chosen"]) for r in snapshot]
        rejected = [reward.token_rows(r["prompt"], r["messages"], r["rejected"]) for r in snapshot]
        return reward.score_rows(chosen, batch_size).tolist(), reward.score_rows(rejected, batch_size).tolist()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.train.model import load_tokenizer

    config = from_dict(config_for("reward"), run["config"])
    adapter, model_path = source.path, resolve_model(run["model"])
    tokenizer = load_tokenizer(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).to(device).eval()
    head = load_head(adapter).to(device)
    examples = data.tokenize_rows(snapshot, tokenizer, max_length=config.max_length,
                                  max_prompt_length=config.max_prompt_length, truncation=config.truncation)
    return score_examples(model, head, examples, tokenizer.pad_token_id, device, batch_size)


@torch.no_grad()
def score_examples(model, head, examples: Sequence[data.Example], pad_id: int, device: torch.device,
                   batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Rewards of tokenized pairs' chosen and rejected responses under the model's active adapter and `head`."""
    chosen, rejected = [], []
    for lo in range(0, len(examples), batch_size):
        batch = data.collate(list(examples[lo:lo + batch_size]), pad_id).to(device)
        scores = scores_of_batch(model, head, batch).tolist()
        chosen += scores[:batch.n_pairs]
        rejected += scores[batch.n_pairs:]
    return chosen, rejected
