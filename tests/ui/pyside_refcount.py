"""Work around a PySide6 6.12 bug on Python 3.11: many bindings return None/True/False without taking
a reference. From Python 3.12 on these objects are immortal so nothing happens; on 3.11 each call
steals one reference and the process aborts ("none_dealloc") after a few thousand calls.
Only the test process is kept alive here; the app itself needs Python >= 3.12 or another PySide6."""

from __future__ import annotations

import ctypes
import sys

TOP_UP = 10_000_000


def top_up_singletons() -> None:
    if sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        # ob_refcnt is the first field of every object (CPython < 3.12 layout)
        ctypes.c_ssize_t.from_address(id(obj)).value += TOP_UP
