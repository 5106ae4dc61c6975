"""Resumable checkpoints as one plain dict: config, adapter, optimizer, scheduler, RNG, data position, step.

Resume is the mirror of save: `state_dict()` gathers what `load_state()` puts back, nothing else.
The final adapter goes to `runs/<id>/adapter/` in PEFT's own format (`PeftModel.from_pretrained`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def adapter_state(model, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model, adapter_name=adapter_name).items()}


def load_adapter_state(model, state: dict[str, torch.Tensor], adapter_name: str = "default") -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise RuntimeError(f"checkpoint: adapter weights do not fit this model: {missing[:3]}")


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write the checkpoint atomically: a crash while saving leaves the previous one intact."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from (the run stopped before its first "
                                f"checkpoint, or its folder {folder.parent} was deleted); start a new run")
    # our own file, holding RNG tuples and numpy state, so not weights_only
    return torch.load(path, map_location="cpu", weights_only=False)


def save_adapter(model, tokenizer, folder: Path, adapter_name: str | None = None) -> Path:
    """The PEFT adapter (+ tokenizer, so the folder is self-contained for chat templates); of a model with
    several named adapters, the one named (PEFT writes the adapter named 'default' to the folder itself)."""
    folder.mkdir(parents=True, exist_ok=True)
    if adapter_name is None:
        model.save_pretrained(folder, safe_serialization=True)
    else:
        model.save_pretrained(folder, safe_serialization=True, selected_adapters=[adapter_name])
    tokenizer.save_pretrained(folder)
    return folder
