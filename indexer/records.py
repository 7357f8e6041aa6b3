"""Bookkeeping kept inside the collection itself: one record per document and one for the collection.

Records are points without vectors (no search can return them), written through the same ordered
write stream as the chunks, so a record never claims more than the store holds:

- a document record says which version (content hash) of the document is complete, and which one is
  being written (``state = "writing"``) or whose older versions are being removed (``"cleanup"``);
- the collection record says which model and chunking built the collection.

A run that dies at any moment leaves records from which the next run repairs the collection (see
``pipeline.recover``): half-written versions are removed, old versions whose replacement is complete
are removed, and nothing complete is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from qdrant_client import models

from indexer.errors import SchemaMismatchError
from indexer.models import PointRecord
from indexer.points import POINT_NAMESPACE

KIND = "kind"
KIND_CHUNK = "chunk"
KIND_DOCUMENT = "document"
KIND_COLLECTION = "collection"

COMPLETE, WRITING, CLEANUP = "complete", "writing", "cleanup"
COLLECTION_RECORD_ID = str(uuid.uuid5(POINT_NAMESPACE, "\x1fcollection"))


def document_record_id(doc_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"\x1fdocument\x1f{doc_id}"))


def _match(key: str, value: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def kind_filter(kind: str) -> models.Filter:
    return models.Filter(must=[_match(KIND, kind)])


def chunks_filter(
    doc_id: str | None = None, content_hash: str | None = None, *, other_than: str | None = None
) -> models.Filter:
    """Chunk points: all, of one document, of one version, or of every version but ``other_than``."""
    must = [_match(KIND, KIND_CHUNK)]
    if doc_id is not None:
        must.append(_match("doc_id", doc_id))
    if content_hash is not None:
        must.append(_match("content_hash", content_hash))
    must_not = [_match("content_hash", other_than)] if other_than is not None else None
    return models.Filter(must=must, must_not=must_not)


def unfinished_filter() -> models.Filter:
    """Document records a run left in the middle of a change."""
    return models.Filter(must=[_match(KIND, KIND_DOCUMENT)], must_not=[_match("state", COMPLETE)])


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    doc_id: str
    source: str
    root: str  # the ingest root the document was found under ("" for uploads); --prune works per root
    content_hash: str | None  # the complete version, if any
    state: str = COMPLETE
    pending_hash: str | None = None  # the version being written while state is "writing"
    chunks: int = 0
    tokens: int = 0
    file_size: int | None = None  # with the modification time: an untouched file is not even read again
    file_mtime_ns: int | None = None

    def point(self) -> PointRecord:
        return PointRecord(id=document_record_id(self.doc_id), payload={KIND: KIND_DOCUMENT, **asdict(self)})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocumentRecord:
        return cls(
            **{k: payload.get(k) for k in cls.__dataclass_fields__}
            | {
                "chunks": int(payload.get("chunks") or 0),
                "tokens": int(payload.get("tokens") or 0),
                "state": payload.get("state") or COMPLETE,
                "root": payload.get("root") or "",
            }
        )


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    """What built the collection: chunks of another model or chunking must not be mixed into it."""

    model: str
    model_fingerprint: str
    dense_dim: int
    colbert_dim: int | None
    chunk_size: int
    chunk_overlap: int

    def point(self) -> PointRecord:
        return PointRecord(id=COLLECTION_RECORD_ID, payload={KIND: KIND_COLLECTION, **asdict(self)})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CollectionRecord:
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__})

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
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r}: {'; '.join(problems)}. Ingest with the same settings, into another "
                "collection, or rebuild it with --recreate"
            )
