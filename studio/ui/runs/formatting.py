"""Small text helpers shared by the runs table and the monitor (no pyqtgraph, so the table loads fast)."""

from __future__ import annotations

from studio.core.costs import fmt_duration, training_seconds

__all__ = ["fmt_bytes", "fmt_duration", "fmt_elapsed", "fmt_params", "training_seconds"]


def fmt_elapsed(run: dict) -> str:
    """Training time so far, like '3m 05s' or '2h 10m' (pauses between stop and resume left out)."""
    return fmt_duration(training_seconds(run))


def fmt_eta(run: dict) -> str:
    """' · ETA 4m 10s' while a run trains: the time so far per step times the steps left, as the CLI
    estimates it; empty when it is not running or has no step yet."""
    seconds, step, total = training_seconds(run), run.get("step") or 0, run.get("total_steps") or 0
    if run.get("status") not in ("running", "stopping") or seconds is None or step <= 0 or total <= step:
        return ""
    return f" · ETA {fmt_duration(seconds / step * (total - step))}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def fmt_params(n: int | None) -> str:
    if not n:
        return "? params"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B params"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M params"
    return f"{n / 1e3:.0f}K params"
