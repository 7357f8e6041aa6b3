"""Bytes a Qdrant Edge collection folder holds, by component, and which of them Qdrant keeps in RAM.

Counted: the blocks the files of the shard's segments occupy on disk (``st_blocks * 512``, not the
apparent size: Qdrant preallocates its chunked mmap files sparsely, 32 MiB at a time), grouped by what
they hold. The write-ahead log is reported apart (it holds recent writes until they are flushed into the
segments, and is truncated afterwards; a server's is bounded by ``wal_capacity_mb``).

Where each component lives is Qdrant's layout as this tool configures it: vectors and indexes whose
config says ``on_disk`` are mmapped files the OS pages in on demand (page cache, not resident); the
others are loaded in RAM: dense vectors (unless ``dense_on_disk``), the dense HNSW graph, int8 copies
(``always_ram``), the sparse vectors' inverted index, payload indexes and the point id tracker.
Payloads are on disk (a server's default, ``on_disk_payload``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from indexer.schema import COLBERT, DENSE, SPARSE, CollectionSpec


def component(relative: Path) -> str:
    """The component a file under ``segments/<id>/`` belongs to."""
    top = relative.parts[0]
    if top.startswith("vector_storage-"):
        name = top.removeprefix("vector_storage-")
        return f"{name}.int8" if relative.name.startswith("quantized") else f"{name}.vectors"
    if top.startswith("vector_index-"):
        return f"{top.removeprefix('vector_index-')}.index"
    if top == "payload_storage":
        return "payload"
    if top == "payload_index":
        return "payload_index"
    return "ids"  # id tracker, segment and version files


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def measure(folder: Path) -> dict[str, int]:
    """Allocated bytes per component of one Edge collection folder (``wal`` apart; ``collection.json`` and
    Edge's config are left out: a few KiB per collection)."""
    out: dict[str, int] = defaultdict(int)
    for segment in (folder / "segments").iterdir():
        for path in segment.rglob("*"):
            if path.is_file():
                out[component(path.relative_to(segment))] += allocated(path)
    out["wal"] = sum(allocated(p) for p in (folder / "wal").rglob("*") if p.is_file())
    return dict(out)


def in_ram(name: str, spec: CollectionSpec) -> bool:
    """Whether Qdrant keeps component ``name`` resident for a collection of ``spec`` (see the module doc)."""
    vector, _, part = name.partition(".")
    if part == "int8":
        return spec.quantization_always_ram
    if vector == DENSE:
        return part == "index" or not spec.dense_on_disk
    if vector == COLBERT:  # its "index" is the empty graph of m = 0
        return part == "index" or not spec.colbert_on_disk
    if vector == SPARSE:
        return part == "index"
    return name in ("payload_index", "ids")


def split(measured: dict[str, int], spec: CollectionSpec) -> tuple[int, int]:
    """(bytes in RAM, bytes on disk only) of the segments; ``wal`` left out."""
    ram = sum(v for k, v in measured.items() if k != "wal" and in_ram(k, spec))
    disk = sum(v for k, v in measured.items() if k != "wal" and not in_ram(k, spec))
    return ram, disk
