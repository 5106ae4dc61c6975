"""Export a run's result: the PEFT adapter, or the base model with the adapter merged in, plus tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path


def export_adapter(adapter: Path, out: Path) -> Path:
    """Copy the adapter folder (adapter_config.json, adapter_model.safetensors, tokenizer files)."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new folder")
    shutil.copytree(adapter, out, dirs_exist_ok=True)
    return out


def export_merged(base_model: Path, adapter: Path, out: Path) -> Path:
    """Load the base model, merge the LoRA update into its weights, save safetensors + tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new folder")
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tok_source = adapter if (adapter / "tokenizer_config.json").is_file() else base_model
    AutoTokenizer.from_pretrained(tok_source).save_pretrained(out)
    return out


def export_reward_classifier(base_model: Path, adapter: Path, out: Path) -> Path:
    """A reward run as a sequence-classification model (transformers' `*ForSequenceClassification`, one label):
    the base with the adapter merged in, and the score head as its `score` layer. Loadable by any tool that
    reads reward models (and by `studio score` / PPO's `reward_model` as a folder). The classifier reads the
    last token that is not the pad token: with a tokenizer padding with EOS it reads the token before the EOS,
    one earlier than the run did, so its scores differ from the run's."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from studio.train.reward_model import load_head

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new folder")
    head = load_head(adapter)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    tok_source = adapter if (adapter / "tokenizer_config.json").is_file() else base_model
    tokenizer = AutoTokenizer.from_pretrained(tok_source)
    config = AutoConfig.from_pretrained(base_model, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    classifier = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    classifier.base_model.load_state_dict(merged.get_decoder().state_dict())
    with torch.no_grad():
        classifier.score.weight.copy_(head.linear.weight)
    out.mkdir(parents=True, exist_ok=True)
    classifier.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
