"""A run's metrics as numpy series grouped by name, the EMA drawn over them, and its samples."""

from __future__ import annotations

import itertools
import math
from operator import itemgetter

import numpy as np

from studio.core import metrics as M

_MAX_LOG_SCALE = 200.0
"""Per block, the scan multiplies by a**-k up to e**200: far from float64 overflow (e**709), and
summands that small relative to the newest term are exactly those the EMA has forgotten."""
_MAX_BLOCK = 4096


def _scan(b: np.ndarray, a: float, p0: float) -> np.ndarray:
    """p_j = a * p_{j-1} + b_j with p_{-1} = p0, for 0 < a < 1, without a Python loop per point.

    Within a block of length L: p_j = a^j (a p0 + sum_{k<=j} b_k a^-k), one cumsum. Blocks are
    solved at once (each from 0), then their carries are themselves a scan with factor a^L over the
    blocks, solved the same way (recursively), so the work is a few numpy passes at any length."""
    n = b.size
    if a < 1e-100:  # nothing carries over (the carries of long blocks get here)
        out = b.copy()
        out[0] += a * p0
        return out
    block = int(min(_MAX_BLOCK, max(2.0, _MAX_LOG_SCALE / -math.log(a))))
    k = np.arange(min(n, block), dtype=np.float64)
    a_pow = a ** k
    if n <= block:
        return a_pow * (a * p0 + np.cumsum(b / a_pow))
    m = -(-n // block)
    padded = np.zeros(m * block)
    padded[:n] = b
    local = a_pow * np.cumsum(padded.reshape(m, block) / a_pow, axis=1)  # each block started from 0
    carry = _scan(local[:, -1], a ** block, p0)  # p at the end of each block
    before = np.concatenate(([p0], carry[:-1]))  # p just before each block
    return (local + (a * a_pow) * before[:, None]).ravel()[:n]


def ema(values: np.ndarray, weight: float, start: float | None = None) -> np.ndarray:
    """Exponential moving average with smoothing `weight` in [0, 1) (TensorBoard's slider).

    s_0 = start (or the first value), s_t = weight * s_{t-1} + (1 - weight) * x_t. A missing value
    (NaN) repeats the last known one. Vectorised (see _scan): 100k points take about a millisecond."""
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
    return _scan((1.0 - weight) * x, weight, prev)


class Series:
    """One metric of one run: steps, wall times and values in buffers that grow by doubling.

    Steps only increase: a resumed run re-logs the steps after its last checkpoint, and those new
    points replace the old tail (as TensorBoard does), so x stays sorted for search and drawing.
    What the charts need per redraw is kept incrementally: the EMA, the value range (to scale the
    axes without scanning 100k points) and the time axis in minutes."""

    __slots__ = ("_bounds", "_bounds_n", "_ema", "_ema_n", "_ema_weight", "_minutes", "_minutes_n",
                 "_minutes_t0", "all_finite", "n", "step", "time", "value", "version")

    def __init__(self, capacity: int = 256):
        capacity = max(1, capacity)
        self.step = np.empty(capacity, dtype=np.float64)
        self.time = np.empty(capacity, dtype=np.float64)
        self.value = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.version = 0
        """Bumped on every change, so a view can tell whether it has drawn the latest points."""
        self.all_finite = True
        """False once a NaN or inf value arrived (curves then check for gaps when drawing)."""
        self._ema = np.empty(capacity, dtype=np.float64)
        self._ema_n = 0
        self._ema_weight = 0.0
        self._bounds: tuple[float, float] | None = None
        self._bounds_n = 0
        self._minutes = np.empty(0, dtype=np.float64)
        self._minutes_n = 0
        self._minutes_t0 = 0.0

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
        self.version += 1
        if self.all_finite and not np.isfinite(values).all():
            self.all_finite = False
        # split where the step goes back (a resume): each later segment truncates what it overlaps
        back = np.flatnonzero(np.diff(steps) <= 0) + 1
        bounds = [0, *back.tolist(), steps.size]
        for lo, hi in itertools.pairwise(bounds):
            first = steps[lo]
            if self.n and first <= self.step[self.n - 1]:
                self.n = int(np.searchsorted(self.step[: self.n], first, side="left"))
                self._ema_n = min(self._ema_n, self.n)
                self._minutes_n = min(self._minutes_n, self.n)
                if self._bounds_n > self.n:  # the range may shrink: recompute from scratch
                    self._bounds, self._bounds_n = None, 0
            m = hi - lo
            self._reserve(self.n + m)
            self.step[self.n:self.n + m] = steps[lo:hi]
            self.time[self.n:self.n + m] = times[lo:hi]
            self.value[self.n:self.n + m] = values[lo:hi]
            self.n += m

    def x(self, by: str = "step", t0: float = 0.0) -> np.ndarray:
        """The x values: optimizer steps, or minutes since t0 when by == 'time' (kept, not recomputed)."""
        if by != "time":
            return self.step[: self.n]
        if t0 != self._minutes_t0 or self._minutes.size < self.n:
            if t0 != self._minutes_t0:
                self._minutes_n = 0
            grown = np.empty(self.step.size, dtype=np.float64)
            grown[: self._minutes_n] = self._minutes[: self._minutes_n]
            self._minutes, self._minutes_t0 = grown, t0
        lo = self._minutes_n
        self._minutes[lo:self.n] = (self.time[lo:self.n] - t0) / 60.0
        self._minutes_n = self.n
        return self._minutes[: self.n]

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

    def value_range(self) -> tuple[float, float] | None:
        """(lowest, highest) finite value, extended incrementally; None while there is none."""
        if self._bounds_n < self.n:
            new = self.value[self._bounds_n:self.n]
            if not self.all_finite:
                new = new[np.isfinite(new)]
            if new.size:
                lo, hi = float(new.min()), float(new.max())
                if self._bounds is not None:
                    lo, hi = min(lo, self._bounds[0]), max(hi, self._bounds[1])
                self._bounds = (lo, hi)
            self._bounds_n = self.n
        return self._bounds

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


def untied(steps: np.ndarray, margin_steps: np.ndarray, margin_values: np.ndarray) -> np.ndarray:
    """Per accuracy point (by its step), whether the mean reward margin logged at that step was not exactly 0.

    With the adapter still at zero (the step-0 evaluation, the first training step) the policy is the
    reference: every margin is exactly 0 and "chosen above rejected" counts 0% of the pairs, which reads as
    a model ranking every pair wrong. Such points are not drawn, nor counted as a run's best."""
    tied = np.asarray(margin_steps, dtype=np.float64)[np.asarray(margin_values, dtype=np.float64) == 0]
    return ~np.isin(np.asarray(steps, dtype=np.float64), tied)


class RunSeries:
    """Everything logged by one run so far, by metric name, filled incrementally from metric rows.

    The monitor keeps one per watched run (its poller adds the rows it reads) and the CLI fills one to
    judge a run's health: both group rows the same way, and the health rules read only this."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.samples: list[dict] = []
        self.t0: float | None = None
        """Wall time of the first metric row: the origin of the time axis."""
        self.last_metric_id = 0
        self.last_sample_id = 0

    def add_rows(self, rows: list[tuple]) -> set[str]:
        """Add metric rows (id, step, value, time, name), oldest first, as Project.metrics_since returns
        them; returns the names of the metrics that got points. Grouped by metric with numpy, not a
        Python loop per row."""
        n = len(rows)
        if not n:
            return set()
        self.last_metric_id = rows[-1][0]
        if self.t0 is None:
            self.t0 = float(rows[0][3])
        codes: dict[str, int] = {}
        code = np.fromiter((codes.setdefault(r[4], len(codes)) for r in rows), np.int64, n)
        steps = np.fromiter(map(itemgetter(1), rows), np.float64, n)
        values = np.fromiter(map(itemgetter(2), rows), np.float64, n)  # NULL becomes NaN
        times = np.fromiter(map(itemgetter(3), rows), np.float64, n)
        if len(codes) == 1:
            groups = {next(iter(codes)): slice(None)}
        else:
            order = np.argsort(code, kind="stable")  # stable: keeps logging order within a metric
            cuts = np.searchsorted(code[order], np.arange(len(codes) + 1))
            groups = {name: order[cuts[c]:cuts[c + 1]] for name, c in codes.items()}
        for name, idx in groups.items():
            s_steps = steps[idx]
            series = self.series.get(name)
            if series is None:
                series = self.series[name] = Series(max(256, s_steps.size))
            series.extend(s_steps, times[idx], values[idx])
        return set(codes)

    def defined(self, name: str) -> np.ndarray | None:
        """Which points of a metric mean something: for an accuracy, those whose margin was not exactly 0
        (see `untied`); None when all do."""
        margin_name = M.margin_of(name)
        series, margins = self.series.get(name), self.series.get(margin_name) if margin_name else None
        if series is None or margins is None:
            return None
        keep = untied(series.step[:series.n], margins.step[:margins.n], margins.y)
        return None if keep.all() else keep

    def add_samples(self, samples: list[dict]) -> bool:
        """Add generations (dicts from Project.samples, oldest first); False when there were none."""
        if not samples:
            return False
        self.last_sample_id = samples[-1]["id"]
        self.samples.extend(samples)
        return True

    def latest_samples(self) -> list[dict]:
        """The generations of the most recent evaluation step, one per eval prompt."""
        if not self.samples:
            return []
        step = self.samples[-1]["step"]
        return [s for s in self.samples if s["step"] == step]
