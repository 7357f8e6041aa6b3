"""Bookkeeping kept inside the collection itself: what kind a point is, and which model built the collection.

Besides chunks, the collection holds points without vectors (no search can return them): one record per
document (its complete version, see ``indexer.versions``), one lease per document a writer is changing
now (see ``indexer.leases``) and one record for the collection, saying which model and chunking built it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from indexer.conditions import Condition, Filter, Match, MatchAny
from indexer.errors import SchemaMismatchError
from indexer.models import PointRecord
from indexer.points import POINT_NAMESPACE

KIND = "kind"
KIND_CHUNK = "chunk"
KIND_DOCUMENT = "document"
KIND_COLLECTION = "collection"
KIND_LEASE = "lease"

COLLECTION_RECORD_ID = str(uuid.uuid5(POINT_NAMESPACE, "\x1fcollection"))


def match(key: str, value: Any) -> Match:
    return Match(key, value)


def match_any(key: str, values: Collection[Any]) -> MatchAny:
    return MatchAny.of(key, values)


def kind_filter(kind: str) -> Filter:
    return Filter(must=(match(KIND, kind),))


def chunks_filter(
    doc_id: str | None = None, content_hash: str | None = None, *, other_than: str | Collection[str] | None = None
) -> Filter:
    """Chunk points: all, of one document, of one version, or of every version but ``other_than`` (one or more)."""
    must: list[Condition] = [match(KIND, KIND_CHUNK)]
    if doc_id is not None:
        must.append(match("doc_id", doc_id))
    if content_hash is not None:
        must.append(match("content_hash", content_hash))
    keep = [other_than] if isinstance(other_than, str) else sorted(other_than or ())
    return Filter(must=tuple(must), must_not=tuple(match("content_hash", h) for h in keep))


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    """What built the collection: chunks of another model or chunking must not be mixed into it."""

    model: str
    model_fingerprint: str
    dense_dim: int
    colbert_dim: int | None
    chunk_size: int
    chunk_overlap: int
    chunk_headings: bool = False  # sections split at headings first (collections built before that: plain)
    colbert_pool_factor: int = 1  # ColBERT vectors mean-pooled in windows of this many tokens (older builds: 1)

    def point(self) -> PointRecord:
        return PointRecord(id=COLLECTION_RECORD_ID, payload={KIND: KIND_COLLECTION, **asdict(self)})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CollectionRecord:
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__ if k in payload})

    def check_compatible(self, other: CollectionRecord, collection: str) -> None:
        """Refuse to add chunks made by another model or chunking to this collection."""
        problems = []
        if self.model_fingerprint != other.model_fingerprint:
            problems.append(f"model {self.model!r} built it, this run uses {other.model!r}")
        if (self.chunk_size, self.chunk_overlap) != (other.chunk_size, other.chunk_overlap):
            problems.append(
                f"it was chunked with chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap}; this run "
                f"uses {other.chunk_size}, {other.chunk_overlap}"
            )
        if self.chunk_headings != other.chunk_headings:
            how = "at headings first" if self.chunk_headings else "without regard to headings"
            problems.append(
                f"its chunks were split {how}; this run sets chunking.headings = {str(other.chunk_headings).lower()}"
            )
        if self.colbert_pool_factor != other.colbert_pool_factor:
            problems.append(
                f"its ColBERT vectors were pooled by {self.colbert_pool_factor}; this run sets "
                f"collection.colbert_pool_factor = {other.colbert_pool_factor}"
            )
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r}: {'; '.join(problems)}. Ingest with the same settings, into another "
                "collection, or rebuild it with --recreate"
            )
