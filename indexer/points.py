"""Chunks and their embeddings to engine-neutral points: pure functions."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from indexer.encoder.vectors import pool_multivector
from indexer.models import Chunk, EncodedChunk, PointRecord
from indexer.storage import to_uint8

if TYPE_CHECKING:
    from indexer.schema import CollectionSpec

# Fixed namespace: the same document version and chunk index give the same id on every machine.
POINT_NAMESPACE = uuid.UUID("6f1c0e52-3b7a-5d1e-9a43-2b7e64c1d0f5")


def point_id(doc_id: str, content_hash: str, chunk_index: int) -> str:
    """uuid5 of the document's identity (id + content hash) and the chunk index.

    Ingesting the same file twice overwrites the same points; a changed file gets new ids, so its
    old version stays searchable until the new one is complete.
    """
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{content_hash}\x1f{chunk_index}"))


# Top-level payload fields of chunks and bookkeeping records (the tenant field must be none of them).
_RESERVED = (
    "kind doc_id source content_hash chunk_index text pages page start end token_count headings metadata state "
    "root pending_hash chunks tokens file_size file_mtime_ns claim owner version expires process host pid label"
)
RESERVED_FIELDS = frozenset(_RESERVED.split())


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    return {
        "kind": "chunk",
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "content_hash": chunk.content_hash,
        "chunk_index": chunk.chunk_index,
        "text": chunk.text,
        "pages": list(chunk.pages),
        "page": chunk.pages[0],
        "start": chunk.start,
        "end": chunk.end,
        "token_count": chunk.token_count,
        "headings": list(chunk.headings),
        "metadata": dict(chunk.metadata),
    }


def to_point(encoded: EncodedChunk, spec: CollectionSpec | None = None) -> PointRecord:
    """The point of one chunk, its vectors as the collection ``spec`` stores them (None: as encoded).

    A spec without ColBERT leaves ColBERT out; ``colbert_pool_factor`` mean-pools the chunk's ColBERT vectors
    (``indexer.encoder.pool_multivector``); a ``uint8`` vector becomes uint8 codes (``indexer.storage``).
    """
    c, e = encoded.chunk, encoded.embedding
    dense, colbert = e.dense, e.colbert
    if spec is not None:
        if spec.colbert_dim is None:
            colbert = None
        elif colbert is not None:
            colbert = pool_multivector(colbert, spec.colbert_pool_factor)
            colbert = to_uint8(colbert) if spec.colbert_datatype == "uint8" else colbert
        dense = to_uint8(dense) if spec.dense_datatype == "uint8" else dense
    return PointRecord(
        id=point_id(c.doc_id, c.content_hash, c.chunk_index),
        dense=dense,
        sparse=e.sparse,
        colbert=colbert,
        payload=chunk_payload(c),
    )
