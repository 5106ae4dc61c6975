"""Peak bytes of the tensors a stretch of torch code allocates, on any device: the CPU has no allocator
statistics like `torch.cuda.max_memory_allocated`, so the benchmark and the memory tests count here.

Every tensor an operator returns is counted once by its storage, from the operator call until the storage
is freed (a weak reference says when); views and in-place results share their input's storage and add
nothing, and storages that existed before (weights, inputs) are not counted. Autograd's backward runs on
the calling thread for CPU tensors, so a backward inside the block is counted too.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemory(TorchDispatchMode):
    """`with TensorMemory() as m: ...` then `m.peak` (bytes): the most the block's own tensors held at once.
    `m.current` is what they hold now; `m.reset_peak()` starts a new peak from there."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.current

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self._live or key in inputs:
                continue
            self._live[key] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key)
        return out
