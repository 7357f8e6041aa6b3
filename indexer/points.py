"""Chunks and their embeddings to engine-neutral points: pure functions."""

from __future__ import annotations

import uuid
from typing import Any

from indexer.models import Chunk, EncodedChunk, PointRecord

# Fixed namespace: the same document version and chunk index give the same id on every machine.
POINT_NAMESPACE = uuid.UUID("6f1c0e52-3b7a-5d1e-9a43-2b7e64c1d0f5")


def point_id(doc_id: str, content_hash: str, chunk_index: int) -> str:
    """uuid5 of the document's identity (id + content hash) and the chunk index.

    Ingesting the same file twice overwrites the same points; a changed file gets new ids, so its
    old version stays searchable until the new one is complete.
    """
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{content_hash}\x1f{chunk_index}"))


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


def to_point(encoded: EncodedChunk, colbert: bool = True) -> PointRecord:
    """The point of one chunk; ``colbert=False`` leaves ColBERT out, for collections without it."""
    c, e = encoded.chunk, encoded.embedding
    return PointRecord(
        id=point_id(c.doc_id, c.content_hash, c.chunk_index),
        dense=e.dense,
        sparse=e.sparse,
        colbert=e.colbert if colbert else None,
        payload=chunk_payload(c),
    )
