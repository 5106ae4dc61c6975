"""A finished training run with a LoRA adapter that visibly changes the tiny model, made without training."""

from __future__ import annotations

from pathlib import Path

import torch

from studio.core import paths
from studio.core.configs import DPOConfig, to_dict
from studio.store import Project


def adapter_run(project: Project, model: Path, seed: int, step: int = 10) -> int:
    """A 'done' DPO run whose saved adapter has random LoRA B weights (a fresh adapter is the identity)."""
    from transformers import AutoModelForCausalLM

    from studio.train.model import wrap_lora

    config = DPOConfig(seed=seed)
    run_id = project.create_run("dpo", str(model), to_dict(config), snapshot=[])
    peft = wrap_lora(AutoModelForCausalLM.from_pretrained(model), config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, w in peft.named_parameters():
            if "lora_B" in name:
                w.copy_(torch.randn(w.shape, generator=g) * 0.5)
    peft.save_pretrained(paths.adapter_dir(project.folder, run_id))
    project.update_run(run_id, status="done", step=step)
    return run_id
