"""Gradient checkpointing 'auto': measure what a decoder layer keeps for the backward pass, and recompute only
as many layers as the memory budget needs.

The measurement runs the policy forward once on the run's longest pair (in the run's layout, with
gradients, nothing stepped) and sums the bytes of the tensors autograd saves inside each decoder layer
(parameters left out). A micro-batch of B pairs keeps at most B times that. With the first k of L layers
checkpointed the forward ends holding (L - k) full layers and k layer inputs, and the backward, which
recomputes one checkpointed layer at a time once the later layers have freed theirs, k inputs and one
full layer; `layers_to_checkpoint` picks the smallest k whose larger figure fits the budget:
the memory the device has free once the weights are loaded, less what the step still allocates (AdamW's
state and the gradients of the adapter, the lm_head's tiles) and a tenth of the device as headroom.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from studio.train.logps import completion_logps, head_transient_bytes
from studio.train.model import checkpointed_layers, enable_checkpointing

log = logging.getLogger("studio.train")


@dataclass(frozen=True)
class ActivationProfile:
    """Bytes one decoder layer keeps for the backward pass on the measured batch, in full and checkpointed."""

    per_layer: int  # the largest layer's saved tensors
    boundary: int  # a checkpointed layer keeps only its input hidden states
    layers: int


def measure_activations(model: nn.Module, batch, attention) -> ActivationProfile:
    """Run `batch` (a data.Batch on the model's device) through the policy with gradients and count the bytes
    autograd saves per decoder layer; the graph is dropped afterwards (no backward)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = checkpointed_layers(base) or list(getattr(base.get_decoder(), "layers", []))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    saved = [0] * len(layers)
    boundary = [0] * len(layers)
    current: list[int] = []

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if current and ptr not in params and ptr not in seen:
            seen.add(ptr)
            saved[current[-1]] += t.untyped_storage().nbytes()
        return t

    with ExitStack() as stack:
        for i, layer in enumerate(layers):
            def enter(_module, args, kwargs, i=i):
                current.append(i)
                hidden = args[0] if args else kwargs.get("hidden_states")
                if isinstance(hidden, torch.Tensor):
                    boundary[i] = hidden.nbytes

            def leave(*_):
                current.pop()  # (a forward hook's return value would replace the layer's output)

            stack.enter_context(layer.register_forward_pre_hook(enter, with_kwargs=True))
            stack.enter_context(layer.register_forward_hook(leave))
        stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
        stack.enter_context(torch.enable_grad())
        out = completion_logps(model, batch.input_ids, batch.head, attention, batch.position_ids)
        del out
    return ActivationProfile(max(saved, default=0), max(boundary, default=0), len(layers))


def layers_to_checkpoint(profile: ActivationProfile, scale: float, budget: int) -> int:
    """The fewest decoder layers to recompute so that the activations of a micro-batch `scale` times the
    measured one fit `budget` bytes; all of them when even that does not fit."""
    full, kept = profile.per_layer * scale, profile.boundary * scale
    n = profile.layers
    for k in range(n + 1):
        # the first k layers are checkpointed: the forward ends holding (n - k) full layers and k inputs; the
        # backward recomputes one checkpointed layer at a time, after the later layers have freed theirs
        need = k * kept + max(n - k, 1 if k else 0) * full
        if need <= budget:
            return k
    return n


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give, less a tenth of it as headroom; None where that is unknown."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free - 0.1 * total)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
            return int(0.9 * info["MemAvailable"])
        except (OSError, KeyError, ValueError):
            return None
    return None


def step_reserve(model: nn.Module, rows: int, compute_bytes: int) -> int:
    """What a step allocates besides the activations: AdamW's two moments and the gradients of the trainable
    weights (float32), and the lm_head's transient tiles for `rows` scored rows."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    vocab, hidden = head.weight.shape
    t = head_transient_bytes(rows, vocab, hidden, compute_bytes)
    return 12 * trainable + max(t["forward"], t["backward"]) + t["grad_hidden"]


def auto_checkpointing(model: nn.Module, longest, batch_size: int, attention, device: torch.device,
                       compute_bytes: int, budget: int | None = None) -> tuple[int, int, str]:
    """Measure, decide and apply gradient checkpointing 'auto'. `longest` is a batch of the run's longest pair
    in its layout; `budget` (bytes for activations) defaults to the device's free memory less `step_reserve`.
    Returns (layers checkpointed, layers, why) and leaves the model with that many layers checkpointed."""
    profile = measure_activations(model, longest, attention)
    scale = float(batch_size)
    if budget is None:
        free = free_memory(device)
        if free is None:
            return 0, profile.layers, f"no memory figure for {device.type}: no layer checkpointed"
        budget = free - step_reserve(model, int(longest.head.index.numel()) * batch_size, compute_bytes)
    if os.environ.get("STUDIO_CHECKPOINT_BUDGET"):  # for trying the policy without a smaller GPU
        budget = int(float(os.environ["STUDIO_CHECKPOINT_BUDGET"]))
    k = layers_to_checkpoint(profile, scale, budget)
    gib = 2**30
    why = (f"activations {profile.per_layer * scale / gib:.2f} GiB per layer x {profile.layers} layers "
           f"({profile.boundary * scale / gib:.3f} GiB checkpointed) against {budget / gib:.2f} GiB free")
    if k:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        selective = bool(checkpointed_layers(base))
        enable_checkpointing(base, k if selective else None)
        if not selective:
            k = profile.layers
    return k, profile.layers, why
