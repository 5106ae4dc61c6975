"""What a run will need, as the launch dialog says it: memory (`resources.estimate_memory`), optimizer steps from
the data size and the settings (`configs.planned_steps`, the engine's own rule), and time at the pace of a recent
run, scaled by how much more each step reads."""

from __future__ import annotations

import html
import math
from typing import Any

from studio.core.configs import flatten, planned_steps
from studio.ui.runs import resources
from studio.ui.runs.formatting import fmt_bytes, fmt_duration

CHARS_PER_TOKEN = 4.0
"""English text averages about four characters per token."""
NEEDED = ("max_steps", "epochs", "batch_size", "grad_accumulation", "max_length")


def steps_text(values: dict[str, Any], summary) -> tuple[str, int | None]:
    """The planned optimizer steps in words, and their number (None, with why or nothing, when unknown).
    `summary`: the data summary (train and eval pairs)."""
    if any(k not in values for k in NEEDED):
        return "", None
    n_train = summary.train
    if not summary.eval and values.get("eval_fraction", 0):
        n_train = n_train - math.ceil(n_train * values["eval_fraction"])
    if n_train <= 0:
        return "Steps: none until there are resolved preferences to train on.", None
    steps = planned_steps(values["max_steps"], values["epochs"], values["batch_size"],
                          values["grad_accumulation"], n_train)
    per_step = values["batch_size"] * values["grad_accumulation"]
    how = ("max steps set" if values["max_steps"] > 0 else
           f"{values['epochs']:g} epoch{'s' if values['epochs'] != 1 else ''} of {n_train:,} pairs, "
           f"{per_step:,} per step")
    return f"About {steps:,} optimizer steps ({how}).", steps


def pace_text(values: dict[str, Any], steps: int, pace, mean_chars: float) -> str:
    """The time of `steps` at the `pace` of a recent run (None: none logged its speed yet)."""
    if pace is None:
        return " Time: known once a run has logged its speed here."
    if pace.seconds_per_step:
        # the recent run's seconds per step, scaled by how much more each step reads (the same guess of
        # tokens per character on both sides, so its error cancels out)
        ratio = tokens_per_step(values, mean_chars) / max(1.0, tokens_per_step(pace.config, mean_chars))
        return (f" At the pace of run {html.escape(pace.run)} ({pace.tokens_per_second:,.0f} tokens/s, "
                f"{pace.seconds_per_step:.1f} s a step, evaluations included): about "
                f"{fmt_duration(steps * pace.seconds_per_step * ratio)}.")
    tokens = tokens_per_step(values, mean_chars) * steps
    return (f" At {pace.tokens_per_second:,.0f} tokens/s (run {html.escape(pace.run)}): about "
            f"{fmt_duration(tokens / max(pace.tokens_per_second, 1e-9))} for ~{tokens:,.0f} tokens.")


def tokens_per_step(config: dict, mean_chars: float) -> float:
    """Tokens one optimizer step reads under a config (flat or nested), from the data's mean text length."""
    flat = flatten(config)
    per_step = int(flat.get("batch_size", 4)) * int(flat.get("grad_accumulation", 1))
    tokens = min(int(flat.get("max_length", 1024)), max(1.0, (mean_chars or 0.0) / CHARS_PER_TOKEN))
    return tokens * 2 * per_step  # chosen and rejected


def memory_text(params, path, config: dict, gpus) -> str:
    """The memory a run needs, and whether it fits the GPU with the most free memory (`gpus`: none on CPU)."""
    need, how = resources.estimate_memory(params, path, config, on_gpu=bool(gpus))
    verdict = ""
    if gpus:
        free = max(g.free_bytes for g in gpus)
        verdict = " — fits" if need < free else " — likely does NOT fit: lower batch size or max length, or " \
                                               "turn on gradient checkpointing"
    return f"This run needs about {fmt_bytes(need)}{verdict}\n({how})"
