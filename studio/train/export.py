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
