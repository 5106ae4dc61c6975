"""Checks of a run's inputs that need no torch, made before any model is loaded: a mistake costs a second.

The CLI runs them before it creates a run, the worker again before it loads the model (the app creates
runs without the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Any of these makes a folder loadable by AutoTokenizer (fast, sentencepiece, BPE and WordPiece layouts).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")


class TrainingError(RuntimeError):
    """A problem with the run's inputs (empty snapshot, bad model, bad settings); the message says what to do."""


def check_model_folder(path: Path) -> None:
    """The model folder must hold a tokenizer next to its weights (training tokenizes with it and saves it
    with the adapter), and a config whose logits the log-prob head can reproduce."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise TrainingError(
            f"{path}: no tokenizer files in the model folder (looked for {', '.join(TOKENIZER_FILES)}); copy the "
            f"tokenizer of the model these weights came from into it (tokenizer.save_pretrained(folder))")
    check_model_folder_config(path)


def check_model_folder_config(path: Path) -> None:
    """The model's config.json, when there is one, must not ask for a logit transform the log-prob head cannot
    apply (see `logits_multiplier`)."""
    file = Path(path) / "config.json"
    if not file.is_file():
        return
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers names what is wrong with it when it loads the model
    if isinstance(config, dict):
        try:
            logits_multiplier(config)
        except TrainingError as e:
            raise TrainingError(f"{file}: {e}") from None


# Config fields by which a causal LM's own forward scales the lm_head's output. The log-prob head (logps.py)
# runs the decoder and applies the lm_head itself, so it must apply them too. Multiplied in:
MULTIPLYING_FIELDS = ("logit_scale",  # Cohere, Cohere2: logits * logit_scale
                      "lm_head_multiplier")  # Falcon-H1: logits * lm_head_multiplier
# Granite and MiniCPM3 divide by `logits_scaling`; HyperCLOVA X multiplies by the field of the same name.
DIVIDING_FIELD = "logits_scaling"
MULTIPLYING_FIELD_TYPES = {"logits_scaling": ("hyperclovax",)}
# Non-linear transforms the head does not apply: such a model is refused, by field, before it trains wrongly.
REFUSED_FIELDS = {"final_logit_softcapping": "caps the logits with cap * tanh(logits / cap) (Gemma 2 and 3 style)"}


def _field(config: Any, name: str) -> Any:
    return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)


def logits_multiplier(config: Any) -> float:
    """The factor by which the model's own forward scales its lm_head's output (1.0 for most models), from its
    config (a transformers config or config.json's dict), a field missing at the top read from text_config
    (multimodal wrappers). Raises TrainingError naming a field whose transform the head cannot apply."""
    text = _field(config, "text_config")
    factor = 1.0
    for name in (*MULTIPLYING_FIELDS, DIVIDING_FIELD, *REFUSED_FIELDS):
        where, value = name, _field(config, name)
        if value is None and text is not None:
            where, value = f"text_config.{name}", _field(text, name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name in REFUSED_FIELDS:
            if value:
                raise TrainingError(f"{where} = {value:g}: this model {REFUSED_FIELDS[name]}, which the completion-"
                                    f"only log-prob head does not apply, so its log-probs would be wrong; train a "
                                    f"model without {name}")
            continue
        if value == 0:
            raise TrainingError(f"{where} = 0: a logit scale of 0 leaves the model no prediction; fix the model's "
                                f"config.json")
        types = [str(_field(c, "model_type") or "") for c in (config, text) if c is not None]
        multiplies = name in MULTIPLYING_FIELDS or any(
            t.startswith(prefix) for t in types for prefix in MULTIPLYING_FIELD_TYPES.get(name, ()))
        factor = factor * value if multiplies else factor / value
    return factor


def probe_ids(text: str) -> list[int]:
    """The prompt ids of the `probe_prompt_ids` setting ('3, 17,42'); an empty list when it is empty."""
    ids = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise TrainingError(f"probe_prompt_ids: {part!r} is not a prompt id; give ids separated by commas, "
                                f"such as '3,17,42'")
        if int(part) not in ids:
            ids.append(int(part))
    return ids


def check_settings(config) -> None:
    """Combinations of settings that are each valid alone but cannot train."""
    probe_ids(getattr(config, "probe_prompt_ids", ""))
    if getattr(config, "method", None) in ("ppo", "rloo"):
        check_rl_settings(config)
        return
    if getattr(config, "loss_type", None) == "robust" and not config.label_smoothing < 0.5:
        # the robust loss divides by 1 - 2 * label_smoothing
        raise TrainingError(f"label_smoothing: {config.label_smoothing} is not below 0.5, which the robust loss "
                            f"needs (it divides by 1 - 2 * label_smoothing); 0.1 to 0.3 are usual")


# The losses that read label_smoothing (see losses.py); the others ignore it.
SMOOTHED_LOSSES = ("robust",)


def settings_warnings(config) -> list[str]:
    """Settings that are valid but have no effect with the others chosen: the run starts, the user is told."""
    out = []
    if getattr(config, "label_smoothing", 0) > 0 and config.loss_type not in SMOOTHED_LOSSES:  # DPO's settings
        out.append(f"label_smoothing: {config.label_smoothing:g} has no effect with loss_type {config.loss_type!r} "
                   f"(only {', '.join(SMOOTHED_LOSSES)} reads it); set loss_type=robust for rDPO or leave it at 0")
    return out


def config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'name: old -> new' for each setting present in both configs whose value differs (nested names dotted).

    Settings only one side has are left out: a field added or removed by a newer version of the app takes
    its default and must not block resuming an older run."""
    out = []
    for key in saved.keys() & current.keys():
        old, new = saved[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(config_changes(old, new, f"{prefix}{key}."))
        elif isinstance(old, bool) and new in ("on", "off"):
            # a setting that was true/false and became auto|on|off (gradient_checkpointing, ...)
            if ("on" if old else "off") != new:
                out.append(f"{prefix}{key}: {old!r} -> {new!r}")
        elif old != new:
            out.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return sorted(out)


def check_rl_settings(config) -> None:
    """What PPO and RLOO need beyond each field's own range."""
    if not str(config.reward_model).strip():
        raise TrainingError("reward_model: a PPO/RLOO run needs a reward: the id of a finished reward run of this "
                            "project, or a sequence-classification model folder (--reward)")
    if config.lora.dropout != 0:
        raise TrainingError(f"lora.dropout: {config.lora.dropout} is not 0; PPO and RLOO need it at 0, so the "
                            f"log-probs of the rollouts and of the update are the same function (the first ratio "
                            f"is exactly 1)")
    responses = config.batch_size * getattr(config, "rloo_k", 1)
    if config.num_mini_batches * config.grad_accumulation > responses:
        raise TrainingError(f"num_mini_batches: {config.num_mini_batches} minibatches of {config.grad_accumulation} "
                            f"micro-batch(es) need at least that many responses per rollout batch, which has "
                            f"{responses}; raise batch_size or lower num_mini_batches / grad_accumulation")
