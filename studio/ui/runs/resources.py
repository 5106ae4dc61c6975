"""What the launch dialog says about hardware and data: GPUs (via nvidia-smi, no torch), a memory
estimate for a run, and the training data with its bias warnings."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from studio.ui.runs.formatting import fmt_bytes

CPU_ONLY = "no GPU: CPU training (slow; fine for tiny models)"


@dataclass(frozen=True)
class Gpu:
    name: str
    free_bytes: int
    total_bytes: int


def gpus(timeout: float = 3.0) -> list[Gpu]:
    """GPUs from nvidia-smi; empty when there is none (the GUI must not import torch to ask)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                found.append(Gpu(parts[0], int(float(parts[1])) * 1024**2, int(float(parts[2])) * 1024**2))
            except ValueError:
                continue
    return found


def device_text(found: list[Gpu]) -> str:
    if not found:
        return CPU_ONLY
    return "; ".join(f"{g.name}: {fmt_bytes(g.free_bytes)} free of {fmt_bytes(g.total_bytes)}" for g in found)


def _model_shape(model_path: Path | None) -> dict:
    if model_path is None:
        return {}
    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    cfg = cfg.get("text_config", cfg)
    return {
        "hidden": cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model"),
        "layers": cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers"),
        "intermediate": cfg.get("intermediate_size") or cfg.get("n_inner"),
        "vocab": cfg.get("vocab_size"),
    }


def estimate_memory(parameters: int | None, model_path: Path | None, config: dict, on_gpu: bool) -> tuple[int, str]:
    """A rough estimate of the peak memory of a LoRA DPO run, with how it was reached.

    weights (frozen, in the run's precision) + adapter with AdamW state (fp32: 16 bytes/param)
    + activations (two sequences per pair; ~34 * hidden bytes per token per layer in half precision,
    Korthikanti et al. 2022; one layer's worth with gradient checkpointing) + fp32 logits over the vocabulary.
    The reference pass shares the weights (adapter disabled) and keeps no activations."""
    shape = _model_shape(model_path)
    precision = config.get("precision", "auto")
    half = precision in ("bf16", "fp16") or (precision == "auto" and on_gpu)
    bpp = 2 if half else 4
    params = parameters or 0
    weights = params * bpp
    hidden, layers = shape.get("hidden") or 0, shape.get("layers") or 0
    inter = shape.get("intermediate") or 4 * hidden
    r = int(config.get("lora", {}).get("r", 16))
    adapter_params = layers * r * (4 * 2 * hidden + 3 * (hidden + inter)) if hidden and layers else params // 200
    adapter = adapter_params * 16
    tokens = int(config.get("batch_size", 4)) * 2 * int(config.get("max_length", 1024))
    act_layers = 1 if config.get("gradient_checkpointing") in (True, "on") else layers
    activations = int(tokens * 34 * hidden * act_layers * bpp / 2)
    logits = tokens * (shape.get("vocab") or 32000) * 4 * 2  # logits + their log-softmax
    total = int((weights + adapter + activations + logits) * 1.1)  # +10%: allocator slack, buffers
    how = (f"estimate: weights {fmt_bytes(weights)} + adapter and optimizer {fmt_bytes(adapter)} + activations "
           f"{fmt_bytes(activations)} + logits {fmt_bytes(logits)}")
    if not params:
        how += " (parameter count unknown: weights not counted)"
    return total, how


@dataclass
class DataSummary:
    train: int
    eval: int
    left_out: dict[str, int]
    warnings: list[str]

    def text(self, eval_fraction: float = 0.0) -> str:
        lines = [f"{self.train} resolved preferences for training, {self.eval} for evaluation"]
        if not self.eval and eval_fraction > 0:
            lines[0] += f" ({eval_fraction:.0%} of the train ones will be held out)"
        left = {k: v for k, v in self.left_out.items() if v}
        if left:
            lines.append("left out: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in left.items()))
        return "\n".join(lines)


def summarize_data(project) -> DataSummary:
    """Counts of what a run launched now would train on, and the project's bias warnings in words (the
    same ones `studio stats` prints)."""
    from studio.store import statistics

    prefs, left_out = project.resolve()
    n_eval = sum(1 for p in prefs if p.split == "eval")
    return DataSummary(len(prefs) - n_eval, n_eval, left_out, statistics.bias_warnings(project))
