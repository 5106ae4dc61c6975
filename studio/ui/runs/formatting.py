"""Small text helpers shared by the runs table and the monitor (no pyqtgraph, so the table loads fast)."""

from __future__ import annotations

import datetime as _dt


def fmt_elapsed(run: dict) -> str:
    """Wall time from start to end (or now, while it runs), like '3m 05s' or '2h 10m'."""
    if not run.get("started_at"):
        return "–"
    start = _dt.datetime.fromisoformat(run["started_at"])
    end = _dt.datetime.fromisoformat(run["ended_at"]) if run.get("ended_at") else _dt.datetime.now(_dt.UTC)
    secs = max(0, int((end - start).total_seconds()))
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
