"""Seed groups drawn as one: the mean curve of several runs with a band of +-1 standard deviation, aligned by
step, and the mean +- standard deviation of their final values.

The standard deviation is the sample one (n - 1 in the denominator): with three seeds it is what a reader
would compute by hand to judge whether two methods differ. Where fewer than two runs have a value, there is
a mean but no band.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Band:
    """The runs of a group at each step any of them logged: mean, sample std (NaN where n < 2), runs counted."""

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray

    @property
    def lower(self) -> np.ndarray:
        return self.mean - self.std

    @property
    def upper(self) -> np.ndarray:
        return self.mean + self.std

    def __len__(self) -> int:
        return int(self.steps.size)


def seed_band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> Band:
    """Mean and std across runs at each step, from each run's (steps, values). A run counts at a step when it
    logged a finite value there: a run that stopped early, or one still training, leaves the later steps to
    the others (the band then narrows to nothing where one run is left). Steps are matched exactly: runs of a
    seed group share their logging and evaluation steps."""
    curves = [(np.asarray(s, dtype=np.float64), np.asarray(v, dtype=np.float64)) for s, v in curves]
    if not curves or all(s.size == 0 for s, _ in curves):
        empty = np.empty(0)
        return Band(empty, empty, empty, np.empty(0, dtype=np.int64))
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    grid = np.full((len(curves), steps.size), np.nan)  # one row per run, NaN where it logged nothing
    for row, (s, v) in zip(grid, curves, strict=True):
        # a resumed run may log a step twice: the later value wins, as in its own curve
        _, last = np.unique(s[::-1], return_index=True)
        keep = s.size - 1 - last
        row[np.searchsorted(steps, s[keep])] = v[keep]
    count = np.isfinite(grid).sum(axis=0)
    logged = count > 0  # a step where every run's value is missing (NaN) has no mean: left out
    steps, grid, count = steps[logged], grid[:, logged], count[logged]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(grid, axis=0) / count
        deviations = np.where(np.isfinite(grid), grid - mean, 0.0)
        std = np.where(count >= 2, np.sqrt((deviations ** 2).sum(axis=0) / np.maximum(count - 1, 1)), np.nan)
    return Band(steps, mean, std, count)


def fmt_number(value: float, digits: int = 4) -> str:
    """`digits` significant digits, without an exponent for numbers a table shows whole (-1749, not -1.75e+03)."""
    text = f"{value:.{digits}g}"
    if "e+" in text and abs(value) < 1e9:
        return f"{value:.0f}"
    return text


@dataclass(frozen=True)
class MeanStd:
    """The mean and sample standard deviation of n values (std None when n < 2)."""

    mean: float
    std: float | None
    n: int

    def text(self, digits: int = 4, of: int | None = None) -> str:
        """'0.5123 ± 0.031 (n=3)' with `digits` significant digits (the std one fewer); the std left out when
        n < 2, and n when it is `of` (every run of the group counted)."""
        mean = fmt_number(self.mean, digits)
        std = "" if self.std is None else f" ± {fmt_number(self.std, max(2, digits - 1))}"
        return f"{mean}{std}" + ("" if of == self.n else f" (n={self.n})")

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def mean_std(values: Iterable[float | None]) -> MeanStd | None:
    """Mean +- sample std of the finite values given; None when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) >= 2 else None
    return MeanStd(mean, std, len(xs))
