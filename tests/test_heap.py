"""glibc's mmap threshold, pinned by an ingest run (indexer.heap): large blocks freed go back to the system."""

from __future__ import annotations

import os
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


# In a fresh process (torch reads THP_MEM_ALLOC_ENABLE at its first CPU allocation): load the encoder with
# model.huge_pages set as given, encode a passage, then allocate a 64 MiB tensor and report the process's
# anonymous memory on transparent huge pages.
HUGE_PAGES_PROBE = textwrap.dedent(
    """
    import sys
    from indexer.encoder import BGEM3Encoder
    from tests.helpers import make_settings

    settings = make_settings(sys.argv[1], ":memory:", model={"huge_pages": sys.argv[2] == "on"})
    encoder = BGEM3Encoder(settings.model, max_length=64)
    [e] = encoder.encode_passages(["A sentence about memory."])
    import torch
    block = torch.ones(64 << 18)  # 64 MiB, every page touched
    lines = open("/proc/self/smaps").read().splitlines()
    print(sum(int(line.split()[1]) for line in lines if line.startswith("AnonHugePages:")), e.dense.shape[0])
    """
)


def _thp_mode() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "absent"


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always"), reason="Linux transparent huge pages not offered")
def test_model_huge_pages_puts_large_cpu_tensors_on_huge_pages(tiny_model_dir: Path) -> None:
    def huge_kib(setting: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
        cmd = [sys.executable, "-c", HUGE_PAGES_PROBE, str(tiny_model_dir), setting]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=True).stdout.split()
        return int(out[0])

    assert huge_kib("on") >= 32 << 10  # at least half of the 64 MiB block on 2 MiB pages
    if _thp_mode() == "madvise":  # the control: without torch's madvise the kernel gives 4 KiB pages
        assert huge_kib("off") == 0


def test_a_users_own_setting_of_torchs_variable_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.heap import TORCH_HUGE_PAGES, ask_huge_pages

    monkeypatch.setenv(TORCH_HUGE_PAGES, "0")
    assert ask_huge_pages() is False
    assert os.environ[TORCH_HUGE_PAGES] == "0"
