"""Growing numpy buffers for live metric curves, and the EMA smoothing drawn over them."""

from __future__ import annotations

import itertools
import math

import numpy as np

_CHUNK = 128  # EMA is computed in chunks so alpha**-k stays far from float64 overflow


def ema(values: np.ndarray, weight: float, start: float | None = None) -> np.ndarray:
    """Exponential moving average with smoothing `weight` in [0, 1) (TensorBoard's slider).

    s_0 = start (or the first value), s_t = weight * s_{t-1} + (1 - weight) * x_t. A missing value
    (NaN) repeats the last known one. Vectorised per chunk: within a chunk
    s_j = w^(j+1) s_prev + (1 - w) * w^j * cumsum(x_k w^-k), so 100k points take a few ms."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or weight <= 0:
        return x.copy()
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            return x.copy()
        idx = np.where(finite, np.arange(x.size), 0)
        np.maximum.accumulate(idx, out=idx)
        x = x[idx]
        x[: int(np.argmax(finite))] = x[int(np.argmax(finite))]  # leading NaNs take the first value
    prev = float(x[0]) if start is None or not math.isfinite(start) else float(start)
    out = np.empty_like(x)
    k = np.arange(_CHUNK, dtype=np.float64)
    w_pow = weight ** k
    w_inv = weight ** -k
    for lo in range(0, x.size, _CHUNK):
        chunk = x[lo:lo + _CHUNK]
        n = chunk.size
        acc = np.cumsum(chunk * w_inv[:n])
        seg = w_pow[:n] * (weight * prev + (1 - weight) * acc)
        out[lo:lo + n] = seg
        prev = float(seg[-1])
    return out


class Series:
    """One metric of one run: steps, wall times and values in buffers that grow by doubling.

    Steps only increase: a resumed run re-logs the steps after its last checkpoint, and those new
    points replace the old tail (as TensorBoard does), so x stays sorted for search and drawing."""

    __slots__ = ("_ema", "_ema_n", "_ema_weight", "n", "step", "time", "value")

    def __init__(self, capacity: int = 256):
        self.step = np.empty(capacity, dtype=np.float64)
        self.time = np.empty(capacity, dtype=np.float64)
        self.value = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self._ema = np.empty(capacity, dtype=np.float64)
        self._ema_n = 0
        self._ema_weight = 0.0

    def __len__(self) -> int:
        return self.n

    def _reserve(self, need: int) -> None:
        cap = self.step.size
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("step", "time", "value", "_ema"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=np.float64)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def extend(self, steps, times, values) -> None:
        """Append points in logging order (values may be NaN for a missing value)."""
        steps = np.asarray(steps, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if steps.size == 0:
            return
        # split where the step goes back (a resume): each later segment truncates what it overlaps
        back = np.flatnonzero(np.diff(steps) <= 0) + 1
        bounds = [0, *back.tolist(), steps.size]
        for lo, hi in itertools.pairwise(bounds):
            first = steps[lo]
            if self.n and first <= self.step[self.n - 1]:
                self.n = int(np.searchsorted(self.step[: self.n], first, side="left"))
                self._ema_n = min(self._ema_n, self.n)
            m = hi - lo
            self._reserve(self.n + m)
            self.step[self.n:self.n + m] = steps[lo:hi]
            self.time[self.n:self.n + m] = times[lo:hi]
            self.value[self.n:self.n + m] = values[lo:hi]
            self.n += m

    def x(self, by: str = "step", t0: float = 0.0) -> np.ndarray:
        """The x values: optimizer steps, or minutes since t0 when by == 'time'."""
        if by == "time":
            return (self.time[: self.n] - t0) / 60.0
        return self.step[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self.value[: self.n]

    def smoothed(self, weight: float) -> np.ndarray:
        """The EMA of the values, extended incrementally: only new points are computed per redraw."""
        if weight <= 0:
            return self.y
        if weight != self._ema_weight:
            self._ema_weight = weight
            self._ema_n = 0
        if self._ema_n < self.n:
            start = self._ema[self._ema_n - 1] if self._ema_n else None
            self._ema[self._ema_n:self.n] = ema(self.value[self._ema_n:self.n], weight, start)
            self._ema_n = self.n
        return self._ema[: self.n]

    def last(self) -> float | None:
        return float(self.value[self.n - 1]) if self.n else None

    def value_at(self, x: float, by: str = "step", t0: float = 0.0) -> tuple[float, float] | None:
        """The point nearest to x (for the hover readout): (x, value), or None when empty."""
        if not self.n:
            return None
        xs = self.x(by, t0)
        i = int(np.searchsorted(xs, x))
        if i >= self.n or (i > 0 and abs(xs[i - 1] - x) <= abs(xs[i] - x)):
            i -= 1
        i = max(i, 0)
        return float(xs[i]), float(self.value[i])
