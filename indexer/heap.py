"""The C heap of an ingest process: glibc's allocator told to hand large blocks back to the system.

glibc serves a request of at least its mmap threshold (128 KiB at start) with a mapping of its own, unmapped
when freed; but each such free raises the threshold to the freed block's size (up to 32 MiB), and from then
on blocks below it come from the malloc arenas, where what is freed stays resident unless it happens to sit
at an arena's top. An ingest run allocates and frees blocks of every size from 100 KiB to tens of MiB (the
forward pass's activations for batches of every shape, each chunk's ColBERT matrix and the engine's copy of
it), so its arenas kept growing with the corpus although what was in use did not: at 10x the benchmark corpus
the arenas held about 200 MiB more free memory than at 1x, with the same memory in use (README, "Peak memory
at 10x the corpus"). A fixed threshold (``ingest.malloc_mmap_threshold_kb``) keeps large blocks out of the
arenas; elsewhere than on glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
_lock = threading.Lock()
_pinned: int | None = None


def pin_mmap_threshold(kib: int) -> bool:
    """Fix glibc's mmap threshold at ``kib`` KiB for this process (0: leave it as it is); True if set.

    Process-wide and idempotent: the first value set stays (a process is one ingest's or one service's).
    """
    global _pinned
    if kib <= 0 or not sys.platform.startswith("linux"):
        return False
    with _lock:
        if _pinned is not None:
            return _pinned == kib
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):  # not glibc (musl has a mallopt that does nothing)
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        if not mallopt(M_MMAP_THRESHOLD, kib * 1024):
            logger.debug("mallopt(M_MMAP_THRESHOLD, %d KiB) refused", kib)
            return False
        _pinned = kib
        return True
