"""The model a recipe trains: the tokenizer and base model from a local folder, a seeded LoRA adapter on the
projections the architecture has, and the base model's own dropout off. The reference model of every
method is this model with its adapter disabled, never a second copy of the weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from studio.core.configs import DPOConfig
from studio.train import preflight
from studio.train.logps import HeadRows, completion_logps, sequence_logps
from studio.train.preflight import TrainingError
from studio.train.runtime import weights_dtype

# Module names of the attention and MLP projections, across the common architectures.
KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",  # llama, qwen, mistral
                 "c_attn", "c_proj", "c_fc",  # gpt2
                 "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",  # gpt-neox, falcon
                 "fc1", "fc2", "out_proj", "Wqkv", "qkv_proj", "gate_up_proj")  # opt, phi


def load_tokenizer(model_path: Path):
    """The model folder's tokenizer, padding with EOS when it has no pad token."""
    from transformers import AutoTokenizer

    preflight.check_model_folder(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(f"{model_path}: its tokenizer does not load ({first})") from e
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise TrainingError(f"{model_path}: the tokenizer has neither a pad nor an EOS token; set eos_token "
                                f"in its tokenizer_config.json (completions end with EOS)")
        # pad positions are masked out everywhere, so EOS can stand in (as TRL does)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(model_path: Path, config: DPOConfig, mixed_precision: str):
    """The tokenizer and the causal LM base model wrapped with a fresh LoRA adapter (seeded)."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=weights_dtype(mixed_precision))
    return tokenizer, wrap_lora(base, config)


def wrap_lora(base: nn.Module, config: DPOConfig):
    """Freeze the base model and add a seeded LoRA adapter (the reference is this model, adapter off)."""
    from peft import LoraConfig, get_peft_model

    base.config.use_cache = False
    disable_dropout(base)
    if config.gradient_checkpointing in ("on", True):  # 'auto' is decided once the data is known (memory.py)
        enable_checkpointing(base)
    torch.manual_seed(config.seed)  # adapter initialisation
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=lora_targets(base, config.lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def enable_checkpointing(base: nn.Module, layers: int | None = None) -> None:
    """Recompute decoder layers in the backward pass (non-reentrant, so LoRA needs no input gradients): all of
    them, or the first `layers` of them (the selective policy of gradient_checkpointing 'auto')."""
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers 5
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if layers is not None:
        for i, layer in enumerate(checkpointed_layers(base)):
            layer.gradient_checkpointing = i < layers


def checkpointed_layers(base: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks that gradient checkpointing can recompute one by one (its decoder layers);
    empty where transformers only switches checkpointing for the whole model (before 4.52)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return []
    return [m for m in base.modules() if isinstance(m, GradientCheckpointingLayer)]


def compile_layers(base: nn.Module) -> int:
    """torch.compile each decoder layer in place (shapes marked dynamic: batch widths vary); returns how many."""
    layers = checkpointed_layers(base)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def lora_targets(model: nn.Module, setting: str) -> str | list[str]:
    """The module names `lora.target_modules` stands for: 'auto' finds the known projections in the model."""
    if setting == "all-linear":
        return "all-linear"
    if setting != "auto":
        return [s.strip() for s in setting.split(",") if s.strip()]
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    found = [t for t in KNOWN_TARGETS if t in names]
    return found or "all-linear"


def disable_dropout(base: nn.Module) -> None:
    """Switch off the base model's own dropout (LoRA's dropout is added later and stays), as TRL does: the
    reference forward runs in train mode, and with dropout on (GPT-2 has 0.1) the reference log-probs, and
    so the loss, would be noisy and differ from precomputed ones."""
    for module in base.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        # attention dropout is a float on the attention module in most HF architectures (Llama, Qwen, ...)
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout"):
        if isinstance(getattr(base.config, name, None), float):
            setattr(base.config, name, 0.0)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (LoRA dropout off) for a pass over data, back in train mode afterwards."""
    model.eval()
    try:
        yield
    finally:
        model.train()


class PolicyLogps(nn.Module):
    """The policy's per-sequence log-probs as a module, so `accelerate` (DDP) can wrap the whole forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, completion_mask, stats: bool = False, rows: HeadRows | None = None,
                position_ids=None):
        """(logps, tokens, entropy_sum, logits_sum) per sequence. With `rows` (laid out on the host, see
        data.Batch) the head takes them and `attention_mask` may be a packed layout's 4D mask."""
        if rows is None:
            out = sequence_logps(self.model, input_ids, attention_mask, completion_mask, stats=stats)
        else:
            out = completion_logps(self.model, input_ids, rows, attention_mask, position_ids, stats=stats)
        return out.logps, out.tokens, out.entropy_sum, out.logits_sum
