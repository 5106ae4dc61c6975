"""Line charts as SVG text, written by hand from the series (no plotting library): what a report embeds, so it
opens anywhere with nothing to fetch. A line may carry a band (a seed group's +-1 std) and markers (metrics
logged only at evaluations)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
"""Colours of the compared runs, in order (the Compare view's)."""


@dataclass(frozen=True)
class ChartLine:
    label: str
    color: str
    x: np.ndarray
    y: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    markers: bool = False


def nice_ticks(lo: float, hi: float, target: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi], about `target` of them (1, 2 or 5 times a power of ten apart;
    whole numbers only with `integer`, for steps)."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = max(span / max(1, target), 1.0) if integer else span / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most max_points points spread over n, first and last included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _runs_of_finite(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each stretch where mask is True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart_svg(title: str, lines: Sequence[ChartLine], width: int = 400, height: int = 230,
                   x_label: str = "step", max_points: int = 400) -> str:
    """An SVG document of the lines on shared axes, with the title above and ticks on both axes."""
    left, right, top, bottom = 54, 12, 26, 34
    pw, ph = width - left - right, height - top - bottom
    xs, ys = [], []
    for ln in lines:
        for arr in (ln.y, ln.lower, ln.upper):
            if arr is not None:
                ok = np.isfinite(arr) & np.isfinite(ln.x)
                xs.append(ln.x[ok])
                ys.append(arr[ok])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="12" font-weight="bold" '
           f'fill="#222">{escape(title)}</text>']
    all_x = np.concatenate(xs) if xs else np.empty(0)
    all_y = np.concatenate(ys) if ys else np.empty(0)
    if all_x.size == 0:
        out.append(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" font-size="11" '
                   f'fill="#888">no data</text></svg>')
        return "".join(out)
    x0, x1 = float(all_x.min()), float(all_x.max())
    y0, y1 = float(all_y.min()), float(all_y.max())
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.06 if y1 > y0 else max(abs(y0) * 0.1, 0.5)
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + (np.asarray(x, dtype=np.float64) - x0) / (x1 - x0) * pw

    def py(y):
        return top + (y1 - np.asarray(y, dtype=np.float64)) / (y1 - y0) * ph

    # axes, grid, ticks
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    for t in nice_ticks(y0, y1):
        y = float(py(t))
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 3.5:.1f}" text-anchor="end" font-size="9" fill="#444">'
                   f'{escape(_fmt(t))}</text>')
    for t in nice_ticks(x0, x1, 6, integer=x_label == "step"):
        x = float(px(t))
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#f2f2f2"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 12}" text-anchor="middle" font-size="9" fill="#444">'
                   f'{escape(_fmt(t))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="9" '
               f'fill="#666">{escape(x_label)}</text>')

    # bands first, then the lines over them
    for ln in lines:
        if ln.lower is None or ln.upper is None:
            continue
        idx = _thin(ln.x.size, max_points)
        x, lo, hi = ln.x[idx], ln.lower[idx], ln.upper[idx]
        ok = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
        for a, b in _runs_of_finite(ok):
            if b - a < 2:
                continue
            xa, la, ha = px(x[a:b]), py(lo[a:b]), py(hi[a:b])
            points = [f"{u:.1f},{v:.1f}" for u, v in zip(xa, ha, strict=True)]
            points += [f"{u:.1f},{v:.1f}" for u, v in zip(xa[::-1], la[::-1], strict=True)]
            out.append(f'<polygon points="{" ".join(points)}" fill="{ln.color}" fill-opacity="0.18" stroke="none"/>')
    for ln in lines:
        idx = _thin(ln.x.size, max_points)
        x, y = ln.x[idx], ln.y[idx]
        ok = np.isfinite(x) & np.isfinite(y)
        for a, b in _runs_of_finite(ok):
            xa, ya = px(x[a:b]), py(y[a:b])
            d = "M" + " L".join(f"{u:.1f},{v:.1f}" for u, v in zip(xa, ya, strict=True))
            out.append(f'<path d="{d}" fill="none" stroke="{ln.color}" stroke-width="1.6"/>')
            if ln.markers or b - a == 1:
                out.extend(f'<circle cx="{u:.1f}" cy="{v:.1f}" r="2.4" fill="{ln.color}"/>'
                           for u, v in zip(xa, ya, strict=True))
    out.append("</svg>")
    return "".join(out)
