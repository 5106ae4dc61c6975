"""What the benchmarks share: latency summaries, memory readings and a folder to work in."""

from __future__ import annotations

import contextlib
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


def summarize_ms(ms: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile (nearest rank below) and max of timings in ms, and how many there were."""
    ms = sorted(ms)
    if not ms:
        return {"median_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan"), "calls": 0}
    return {"median_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))], "max_ms": ms[-1],
            "calls": len(ms)}


def format_ms(ms: Sequence[float]) -> str:
    """'median 1.23 ms, p95 2.34 ms, max 3.45 ms (n=200)', or 'none' for no timings."""
    if not ms:
        return "none (n=0)"
    s = summarize_ms(ms)
    return f"median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, max {s['max_ms']:.2f} ms (n={s['calls']})"


def time_calls(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """summarize_ms of `calls` calls of fn."""
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return summarize_ms(times)


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far (it never goes down), in MiB."""
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The resident memory of this process now, in MiB (the peak where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


@contextlib.contextmanager
def work_folder(keep: str | Path | None, prefix: str) -> Iterator[Path]:
    """`keep` (created if missing, left in place), else a temporary folder removed afterwards."""
    if keep is not None:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
