"""glibc's mmap threshold, pinned by an ingest run (indexer.heap): large blocks freed go back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, make_settings

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

# In a fresh process (the setting is process-wide): free a 24 MiB block, which raises glibc's sliding threshold
# to 24 MiB, then allocate 1 MiB blocks: mapped apart (mallinfo2's hblkhd grows) only under a pinned threshold.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from indexer.heap import pin_mmap_threshold

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.mallinfo2.restype = Info
    kib = int(sys.argv[1])
    pinned = pin_mmap_threshold(kib)
    libc.free(libc.malloc(24 << 20))
    before = libc.mallinfo2().hblkhd
    blocks = [libc.malloc(1 << 20) for _ in range(8)]
    print(pinned, libc.mallinfo2().hblkhd - before)
    """
)


def _probe(kib: int) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(kib)], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_a_pinned_threshold_maps_large_blocks_apart_after_a_larger_one_was_freed() -> None:
    pinned, mapped = _probe(128)
    assert pinned == "True"
    assert mapped >= 8 << 20  # each 1 MiB block has its own mapping, unmapped when freed


def test_zero_leaves_glibcs_sliding_threshold() -> None:
    pinned, mapped = _probe(0)
    assert pinned == "False"
    assert mapped == 0  # the freed 24 MiB raised the threshold: the blocks came from the heap (the control)


def test_an_ingest_run_pins_the_configured_threshold(tiny_model_dir: Path, encoder: Any, tmp_path: Path) -> None:
    from indexer import heap
    from indexer.pipeline import ingest
    from indexer.store import open_store

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A sentence about memory.\n", encoding="utf-8")
    settings = make_settings(tiny_model_dir, tmp_path / "store")
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        report = ingest([tmp_path / "docs"], settings, encoder, store, progress=False)
    finally:
        store.close()
    assert report.chunks == 1
    assert heap._pinned == settings.ingest.malloc_mmap_threshold_kb == 128
