"""``--partition I/N``: a stable share of a corpus's documents, by a hash of the doc id.

N plain processes (a Kubernetes indexed Job, a Slurm array) that each take ``I/N`` for I = 0..N-1 ingest
every document exactly once between them, into one collection, under the usual leases. The share depends
on the doc id only (SHA-256, not Python's salted ``hash``), so every process, machine and later run agrees
on it; a document keeps its share as long as its doc id stays the same.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from indexer.errors import ConfigError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def share_of(doc_id: str, count: int) -> int:
    """The share (0..count-1) that ``doc_id`` belongs to: the first 8 bytes of its SHA-256, modulo ``count``."""
    digest = hashlib.sha256(doc_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Partition:
    """Share ``index`` of ``count`` (0-based, as a Kubernetes indexed Job's ``JOB_COMPLETION_INDEX``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"partition {self.index}/{self.count}: need 0 <= I < N (I counts from 0)")

    def holds(self, doc_id: str) -> bool:
        return self.count == 1 or share_of(doc_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_partition(text: str) -> Partition:
    """``"I/N"`` (e.g. ``"2/8"``) as a Partition; ``ConfigError`` saying the form otherwise."""
    m = _SPEC.fullmatch(text)
    if m is None:
        raise ConfigError(f"--partition {text!r}: expected I/N, e.g. 0/4 (shares 0, 1, 2 and 3 of four)")
    return Partition(int(m.group(1)), int(m.group(2)))
