"""Checks of a run's inputs that need no torch, made before any model is loaded: a mistake costs a second.

The CLI runs them before it creates a run, the worker again before it loads the model (the app creates
runs without the CLI).
"""

from __future__ import annotations

from pathlib import Path

# Any of these makes a folder loadable by AutoTokenizer (fast, sentencepiece, BPE and WordPiece layouts).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")


class TrainingError(RuntimeError):
    """A problem with the run's inputs (empty snapshot, bad model, bad settings); the message says what to do."""


def check_model_folder(path: Path) -> None:
    """The model folder must hold a tokenizer next to its weights (training tokenizes with it and saves it
    with the adapter)."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise TrainingError(
            f"{path}: no tokenizer files in the model folder (looked for {', '.join(TOKENIZER_FILES)}); copy the "
            f"tokenizer of the model these weights came from into it (tokenizer.save_pretrained(folder))")


def check_settings(config) -> None:
    """Combinations of settings that are each valid alone but cannot train."""
    if getattr(config, "method", None) in ("ppo", "rloo"):
        check_rl_settings(config)
        return
    if getattr(config, "loss_type", None) == "robust" and not config.label_smoothing < 0.5:
        # the robust loss divides by 1 - 2 * label_smoothing
        raise TrainingError(f"label_smoothing: {config.label_smoothing} is not below 0.5, which the robust loss "
                            f"needs (it divides by 1 - 2 * label_smoothing); 0.1 to 0.3 are usual")


def config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'name: old -> new' for each setting present in both configs whose value differs (nested names dotted).

    Settings only one side has are left out: a field added or removed by a newer version of the app takes
    its default and must not block resuming an older run."""
    out = []
    for key in saved.keys() & current.keys():
        old, new = saved[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(config_changes(old, new, f"{prefix}{key}."))
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
