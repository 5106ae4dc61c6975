"""What every training recipe runs on, whatever its method: the context the worker hands it, device and
precision, the learning-rate schedule, the step count, peak memory, the training clock behind tokens/s,
the stop check all processes agree on, the thread cap, the launches refused by name (`check_distributed`),
and the progress of the work before training (`Progress`)."""

from __future__ import annotations

import logging
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
from studio.store.db import ProjectBusy, now_iso
from studio.train.preflight import TrainingError

log = logging.getLogger("studio.train")


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
    # a line of progress while the run prepares (reading data, the reference pass), for a console to show
    on_status: Callable[[str], None] | None = None


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


def launched_processes() -> int:
    """How many processes the launcher started (torchrun and `accelerate launch` set WORLD_SIZE); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_accelerator(config: TrainConfig):
    """accelerate's Accelerator for the run. Several processes on a machine without a GPU (`accelerate launch
    --multi_gpu` or torchrun there) train data-parallel on the CPU over gloo: accelerate does so only when told
    to run on the CPU, else every process would train the whole run alone."""
    from accelerate import Accelerator

    several_on_cpu = launched_processes() > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=pick_precision(config), cpu=several_on_cpu,
                              gradient_accumulation_steps=1)  # recipes accumulate themselves
    if accelerator.num_processes == 1 and os.environ.get("MASTER_ADDR") and launched_processes() == 1:
        # `accelerate launch --cpu --num_processes N` without an MPI hostfile starts one process only
        log.warning("launched for several processes, but this is the only one: on a machine without a GPU start "
                    "them with `accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`")
    return accelerator


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return str(device.type)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def total_steps_for(config: TrainConfig, n_train: int, processes: int = 1) -> int:
    """Optimizer steps of a run over `n_train` examples shared by `processes`: max_steps, else the epochs
    (one rule with the launch dialog's estimate, configs.planned_steps)."""
    return planned_steps(config.max_steps, config.epochs, config.batch_size, config.grad_accumulation, n_train,
                         processes)


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


def sum_over_processes(accelerator, value: float) -> float:
    """`value` summed over every process (a collective: every process must call it); `value` alone in one."""
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([float(value)], device=accelerator.device, dtype=torch.float64)
    return float(accelerator.reduce(t, reduction="sum").item())


def apply_thread_cap() -> None:
    """Respect an explicit thread cap, STUDIO_TORCH_THREADS (tests share small CI machines)."""
    n = os.environ.get("STUDIO_TORCH_THREADS")
    if n:
        torch.set_num_threads(int(n))


def check_distributed(accelerator) -> None:
    """Several processes train data-parallel (DDP). Sharded set-ups are refused by name rather than trained
    wrong: the reference forward and the log-prob head read the whole weights outside the wrapped module, and
    a checkpoint holds the main process's optimizer state as the whole of it."""
    kind = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if kind in ("DEEPSPEED", "FSDP"):
        raise TrainingError(f"distributed_type {kind}: this engine trains several processes data-parallel only "
                            f"(each holds the whole model, as LoRA training of models that fit one GPU does); "
                            f"launch without the {kind} config, e.g. `accelerate launch --config_file "
                            f"docs/accelerate/multi_gpu.yaml -m studio train PROJECT --run ID`")


class Progress:
    """Progress of the work before and around training (reading the snapshot, loading the model, the reference
    pass): a log line, a status line for the console and the run's heartbeat, at most every `interval` seconds,
    so a long preparation shows that it is alive. Only the main process reports."""

    def __init__(self, ctx: RunContext, main: bool, interval: float = 2.0):
        self.ctx, self.main, self.interval = ctx, main, interval
        self._last = -math.inf

    def __call__(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self.main or (not force and now - self._last < self.interval):
            return
        self._last = now
        log.info("%s", message)
        if self.ctx.on_status:
            self.ctx.on_status(message)
        try:
            self.ctx.project.update_run(self.ctx.run_id, heartbeat_at=now_iso())
        except ProjectBusy:
            pass  # a long write by someone else; the next report tries again

    def counter(self, what: str) -> Callable[[int, int], None]:
        """A `progress(done, total)` for a pass over rows: 'what: done/total pairs'."""
        return lambda done, total: self(f"{what}: {done}/{total} pairs", force=done == total)
