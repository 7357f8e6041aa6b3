"""Records passed between pipeline stages. Immutable, typed, no dicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file found under an ingest root. ``rel_path`` (POSIX) is the document's identity."""

    path: Path
    rel_path: str


@dataclass(frozen=True, slots=True)
class PageSpan:
    """Where one page of a document lies in the document's text."""

    number: int  # 1-based page number; text files are one page
    start: int  # character offset of the page's first character
    end: int  # character offset one past the page's last character


@dataclass(frozen=True, slots=True)
class SectionSpan:
    """Where one section of a document lies in its text, and the headings above it (outermost first).

    A document's sections are in order and do not overlap; text before the first heading is a section
    with no headings. A section ends where the next heading (of any level) begins.
    """

    start: int
    end: int
    headings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """The full text of one source, with the page layout needed to place chunks."""

    doc_id: str
    source: str
    content_hash: str  # sha256 of the file's bytes
    text: str
    pages: tuple[PageSpan, ...]
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    sections: tuple[SectionSpan, ...] = ()  # from headings (Markdown, HTML, Office, a PDF's outline); () if none

    def pages_between(self, start: int, end: int) -> tuple[int, ...]:
        """Page numbers that overlap the character range [start, end)."""
        return tuple(p.number for p in self.pages if p.start < end and start < p.end) or (self.pages[-1].number,)

    def headings_between(self, start: int, end: int) -> tuple[str, ...]:
        """The heading path of the range [start, end): its section's, or what the sections it spans share."""
        paths = [s.headings for s in self.sections if s.start < end and start < s.end]
        return common_prefix(paths)


def common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The longest heading path that starts every one of ``paths`` (() for none)."""
    if not paths:
        return ()
    first = paths[0]
    n = len(first)
    for other in paths[1:]:
        n = min(n, len(other))
        while n and other[:n] != first[:n]:
            n -= 1
    return first[:n]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document, at most the configured number of model tokens."""

    doc_id: str
    source: str
    content_hash: str
    chunk_index: int
    text: str
    start: int
    end: int
    pages: tuple[int, ...]
    token_count: int  # as the model sees it, special tokens included
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    headings: tuple[str, ...] = ()  # the section the chunk belongs to, outermost heading first
    # What the model sees (special tokens included; len == token_count), when the chunker was asked for
    # them: the pipeline encodes these, so that no chunk is tokenized a second time.
    token_ids: Sequence[int] | np.ndarray | None = field(default=None, hash=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A learned lexical vector: token ids (unique, ascending) and their positive weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values, strict=True))


@dataclass(frozen=True, slots=True)
class Embedding:
    """The three BGE-M3 representations of one text."""

    dense: np.ndarray  # float32 [dim], L2-normalised
    sparse: SparseVec
    colbert: np.ndarray | None  # float32 [n_vectors, colbert_dim], L2-normalised rows


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    chunk: Chunk
    embedding: Embedding


@dataclass(frozen=True, slots=True)
class PointRecord:
    """One Qdrant point, engine-neutral: each store turns it into its own type.

    Chunks carry all vectors; bookkeeping records (documents, the collection) carry none, so no
    search can ever return them.
    """

    id: str
    payload: dict[str, Any]
    dense: np.ndarray | None = None
    sparse: SparseVec | None = None
    colbert: np.ndarray | None = None

    def estimated_bytes(self, bytes_per_float: int) -> int:
        floats = sum(v.size for v in (self.dense, self.colbert) if v is not None)
        floats += 2 * len(self.sparse.indices) if self.sparse is not None else 0
        return floats * bytes_per_float + len(str(self.payload).encode()) + 64


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result as a store returns it."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point read back from a store (tests, audits)."""

    id: str
    payload: dict[str, Any]
    vectors: dict[str, Any]
