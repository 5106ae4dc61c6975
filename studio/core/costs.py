"""What a run cost: wall and training time, GPU time, tokens, throughput, peak memory, samples, and money.

Computed from the run's row (times, device) and what its recipe logged (`RunUsage`: the `num_tokens` and
`samples_generated` counters and the `memory` metric), so it works for any recipe that logs those.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import asdict, dataclass

ACTIVE = ("running", "stopping")


@dataclass(frozen=True)
class RunUsage:
    """What a run's recipe logged about its own work (None where it logged nothing)."""

    num_tokens: float | None = None
    """The last value of the cumulative `num_tokens` counter: tokens in the training batches."""
    samples_generated: float | None = None
    """The last value of the cumulative `samples_generated` counter."""
    samples_stored: int = 0
    """Generations kept in the project (eval samples): the count when a recipe logs no counter."""
    peak_memory_gib: float | None = None
    """The highest `memory` value logged: GPU memory allocated on a GPU, the process's peak RSS on CPU."""


@dataclass(frozen=True)
class RunCost:
    """A run's cost. Times in seconds; None where unknown (a run that never started, old runs without counters)."""

    wall_seconds: float | None
    """From the run's creation to its end (now while it is active): time waiting in the queue included."""
    queue_seconds: float | None
    """From creation to the first start: time waiting in the queue (or for a worker)."""
    training_seconds: float | None
    """Time its workers trained (evaluations included), the pauses between a stop and a resume left out."""
    gpus: int
    """CUDA GPUs it trained on (0 on CPU and Apple MPS)."""
    gpu_seconds: float | None
    """training_seconds x gpus: 0 for a CPU run."""
    num_tokens: float | None
    tokens_per_second: float | None
    """num_tokens / training_seconds: throughput over the whole training time, evaluations included (the
    `tokens_per_second` metric measures the optimizer steps alone)."""
    peak_memory_gib: float | None
    samples_generated: float | None
    price_per_gpu_hour: float | None
    money: float | None
    """gpu_seconds / 3600 x price_per_gpu_hour; None without a price."""

    def as_dict(self) -> dict:
        return asdict(self)


def _time(text: str | None) -> _dt.datetime | None:
    return _dt.datetime.fromisoformat(text) if text else None


def _seconds(start: _dt.datetime | None, end: _dt.datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def training_seconds(run: dict, now: _dt.datetime | None = None) -> float | None:
    """Time spent training: the finished worker sessions plus the current one. A pause between a stop and
    a resume is not counted. Runs from before this was recorded fall back to start-to-end wall time."""
    if not run.get("started_at"):
        return None
    now = now or _dt.datetime.now(_dt.UTC)
    done = float(run.get("active_seconds") or 0.0)
    if run.get("resumed_at") and run.get("status") in ACTIVE:
        return done + (_seconds(_time(run["resumed_at"]), now) or 0.0)
    if done:
        return done
    return _seconds(_time(run["started_at"]), _time(run.get("ended_at")) or now)


DEVICE_COUNT = re.compile(r"\sx(\d+)$")


def gpu_count(device: str | None) -> int:
    """CUDA GPUs named by a run's `device` ('cuda:0 (NVIDIA H200)', '... x2' under several processes); 0 for
    'cpu', 'mps' or a run that never started. Apple's MPS is not billed per GPU-hour, so it counts 0."""
    if not device or not device.startswith("cuda"):
        return 0
    m = DEVICE_COUNT.search(device)
    return int(m.group(1)) if m else 1


def run_cost(run: dict, usage: RunUsage, price_per_gpu_hour: float | None = None,
             now: _dt.datetime | None = None) -> RunCost:
    """The cost of `run` (a row of Project.runs) from what it logged, at `price_per_gpu_hour` (None: no money)."""
    now = now or _dt.datetime.now(_dt.UTC)
    created, started = _time(run.get("created_at")), _time(run.get("started_at"))
    active = run.get("status") in (*ACTIVE, "queued")
    end = now if active else (_time(run.get("ended_at")) or now)
    trained = training_seconds(run, now)
    gpus = gpu_count(run.get("device"))
    gpu_seconds = None if trained is None else trained * gpus
    samples = usage.samples_generated
    if samples is None and usage.samples_stored:
        samples = float(usage.samples_stored)
    tokens = usage.num_tokens
    money = None
    if price_per_gpu_hour is not None and gpu_seconds is not None:
        money = gpu_seconds / 3600.0 * price_per_gpu_hour
    return RunCost(
        wall_seconds=_seconds(created, end), queue_seconds=_seconds(created, started or (now if active else None)),
        training_seconds=trained, gpus=gpus, gpu_seconds=gpu_seconds, num_tokens=tokens,
        tokens_per_second=tokens / trained if tokens is not None and trained else None,
        peak_memory_gib=usage.peak_memory_gib, samples_generated=samples,
        price_per_gpu_hour=price_per_gpu_hour, money=money)


def parse_price(text: str | float | None, where: str = "price_per_gpu_hour") -> float | None:
    """A price per GPU-hour from user input: None when blank, else a finite number >= 0 (named error else)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number such as 2.5, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: must be a number of at least 0, got {text!r}")
    return value


def fmt_duration(seconds: float | None) -> str:
    """'45s', '3m 05s', '2h 10m'; '–' when unknown."""
    if seconds is None:
        return "–"
    secs = int(seconds)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def fmt_count(n: float | None) -> str:
    """12,345 / 1.2M / 3.4B; '–' when unknown."""
    if n is None:
        return "–"
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f}B"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n:,.0f}"


COST_ROWS: tuple[tuple[str, str], ...] = (
    ("wall_seconds", "wall time"), ("training_seconds", "training time"), ("gpu_seconds", "GPU time"),
    ("num_tokens", "tokens"), ("tokens_per_second", "tokens/s"), ("peak_memory_gib", "peak memory"),
    ("samples_generated", "samples generated"), ("money", "cost"),
)
"""The cost fields shown in tables, with their labels, in order."""


def fmt_cost_field(field: str, value: float | None) -> str:
    """One cost field as a table shows it."""
    if value is None:
        return "–"
    if field.endswith("_seconds"):
        return fmt_duration(value)
    if field == "peak_memory_gib":
        return f"{value:.2f} GiB"
    if field == "tokens_per_second":
        return f"{value:,.0f}"
    if field == "money":
        return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.4f}"
    return fmt_count(value)
