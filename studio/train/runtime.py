"""What every training recipe runs on, whatever its method: the context the worker hands it, device and
precision, the learning-rate schedule, the step count, peak memory, the training clock behind tokens/s,
the stop check all processes agree on, and the thread cap."""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from studio.core.configs import TrainConfig, planned_steps
from studio.store import Project
from studio.train.preflight import TrainingError


@dataclass
class RunContext:
    """What the worker hands a recipe's `train()`."""

    project: Project
    run_id: int
    config: TrainConfig
    model_path: Path
    resume: bool = False
    should_stop: Callable[[], bool] = lambda: False
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None


def pick_precision(config: TrainConfig) -> str:
    """accelerate's mixed_precision for the config on this machine ('auto' follows the device)."""
    cuda = torch.cuda.is_available()
    if config.precision == "fp32":
        return "no"
    if config.precision == "fp16" and not cuda:
        # accelerate would load the weights in fp16 but run no autocast and no loss scaling off CUDA
        raise TrainingError("precision: fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32 on this machine")
    if config.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise TrainingError(f"precision: bf16 is not supported by {torch.cuda.get_device_name()}; use fp16 or auto")
    if config.precision in ("bf16", "fp16"):
        return config.precision
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # CPU and MPS: fp32 is the safe default


def weights_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype frozen base weights are loaded in: the compute dtype (half the memory), fp32 without
    mixed precision. LoRA weights stay fp32 whatever this is (peft upcasts them)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=pick_precision(config),
                       gradient_accumulation_steps=1)  # recipes accumulate themselves


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return str(device.type)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def total_steps_for(config: TrainConfig, n_train: int) -> int:
    """Optimizer steps of a run over `n_train` examples (this process's share): max_steps, else the epochs
    (one rule with the launch dialog's estimate, configs.planned_steps)."""
    return planned_steps(config.max_steps, config.epochs, config.batch_size, config.grad_accumulation, n_train)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class TrainingClock:
    """Seconds of training since the last log, with pauses (evaluations, checkpoints) left out, and the
    micro-batches trained meanwhile: what tokens/s is measured over."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._start = time.perf_counter()
        self.micro_batches = 0

    def seconds(self) -> float:
        return time.perf_counter() - self._start

    @contextmanager
    def paused(self) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self._start += time.perf_counter() - began


def any_process(accelerator, flag: bool) -> bool:
    """True when `flag` is set on any process. Every process must leave together (one stopping alone would
    leave the others waiting in all-reduce), so collective points ask all of them."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def apply_thread_cap() -> None:
    """Respect an explicit thread cap, STUDIO_TORCH_THREADS (tests share small CI machines)."""
    n = os.environ.get("STUDIO_TORCH_THREADS")
    if n:
        torch.set_num_threads(int(n))
