"""Per-step statistics keyed by their metric names, summed on the device and read back with one sync.

Every statistic is a mean: a recipe adds, per micro-batch, each metric's sum and what it is averaged over
(1 per micro-batch for the loss, pairs for rewards, completion tokens for KL and entropy); `read()` gives
sum / count per metric. Nothing is read back between logging steps, so the host queues the next step's
kernels while the device still runs this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

# a metric's sum over a micro-batch and what it is averaged over: a device tensor, or a number the host knows
Mean = tuple[torch.Tensor, torch.Tensor | float]


class StepStats:
    """Sums and counts of the metrics `names`, kept as one device tensor; `.read()` syncs once.

    Counts the host already knows (pairs per batch) stay host numbers: turning a Python number into a CUDA
    tensor is a copy from pageable memory, which waits for the stream to drain (a hidden sync per batch)."""

    def __init__(self, device: torch.device, names: Sequence[str]):
        self.names = tuple(names)
        # one device vector: each metric's sum, then each metric's device-side count, then the real tokens
        self._device_sums = torch.zeros(2 * len(self.names) + 1, device=device, dtype=torch.float64)
        self._zero = torch.zeros((), device=device, dtype=torch.float64)
        self._host_counts = dict.fromkeys(self.names, 0.0)
        self._host_tokens = 0.0
        self.tokens = 0.0  # real (unpadded) tokens added, set by read()

    def add(self, means: Mapping[str, Mean], tokens: torch.Tensor | float | None = None) -> None:
        """Add one micro-batch: `means` maps metric names to (sum, count); `tokens` counts the batch's real
        tokens (for tokens/s; a host number stays on the host). One stack and one add on the device."""
        if tokens is not None and not isinstance(tokens, torch.Tensor):
            self._host_tokens += float(tokens)
            tokens = None
        unknown = set(means) - set(self.names)
        if unknown:
            raise KeyError(f"unknown statistics: {sorted(unknown)} (this StepStats keeps {', '.join(self.names)})")
        as_float64: dict[int, torch.Tensor] = {}  # a count shared by several metrics is converted once

        def on_device(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in as_float64:
                as_float64[id(t)] = t.detach().to(torch.float64).reshape(())
            return as_float64[id(t)]

        sums, counts = [], []
        for name in self.names:
            total, count = means.get(name, (self._zero, 0.0))
            sums.append(on_device(total))
            if isinstance(count, torch.Tensor):
                counts.append(on_device(count))
            else:
                self._host_counts[name] += float(count)
                counts.append(self._zero)
        self._device_sums += torch.stack([*sums, *counts, self._zero if tokens is None else on_device(tokens)])

    def read(self) -> dict[str, float]:
        """Each metric's mean over what was added, by name; metrics nothing was counted for are left out."""
        values = self._device_sums.tolist()  # the one sync
        n = len(self.names)
        self.tokens = values[-1] + self._host_tokens
        out = {}
        for i, name in enumerate(self.names):
            count = values[n + i] + self._host_counts[name]
            if count > 0:
                out[name] = values[i] / count
        return out
