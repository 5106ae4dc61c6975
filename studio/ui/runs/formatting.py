"""Small text helpers shared by the runs table and the monitor (no pyqtgraph, so the table loads fast)."""

from __future__ import annotations

import datetime as _dt


def training_seconds(run: dict) -> float | None:
    """Time spent training: the finished worker sessions plus the current one. A pause between a stop and
    a resume is not counted. Runs from before this was recorded fall back to start-to-end wall time."""
    if not run.get("started_at"):
        return None
    done = float(run.get("active_seconds") or 0.0)
    if run.get("resumed_at") and run.get("status") in ("running", "stopping"):
        since = _dt.datetime.fromisoformat(run["resumed_at"])
        return done + max(0.0, (_dt.datetime.now(_dt.UTC) - since).total_seconds())
    if done:
        return done
    start = _dt.datetime.fromisoformat(run["started_at"])
    end = _dt.datetime.fromisoformat(run["ended_at"]) if run.get("ended_at") else _dt.datetime.now(_dt.UTC)
    return max(0.0, (end - start).total_seconds())


def fmt_elapsed(run: dict) -> str:
    """Training time so far, like '3m 05s' or '2h 10m' (pauses between stop and resume left out)."""
    seconds = training_seconds(run)
    return "–" if seconds is None else fmt_duration(seconds)


def fmt_duration(seconds: float) -> str:
    """'45s', '3m 05s', '2h 10m'."""
    secs = int(seconds)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


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
