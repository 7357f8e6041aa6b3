"""Operations on a collection's documents outside an ingest run: delete, status, prune."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from indexer.records import (
    COLLECTION_RECORD_ID,
    KIND_CHUNK,
    KIND_DOCUMENT,
    CollectionRecord,
    chunks_filter,
    kind_filter,
)
from indexer.store import Store
from indexer.versions import DocumentRecord, document_records, remove, unfinished_filter
from indexer.writer import Writer


def _resolved(path: str) -> str | None:
    try:
        return str(Path(path).resolve())
    except (OSError, ValueError):  # a stored source that is no valid path here (another machine, odd bytes)
        return None


def delete_documents(
    store: Store, doc_ids: Iterable[str] = (), sources: Iterable[str] = (), writer: Writer | None = None
) -> list[str]:
    """Remove documents (chunks and records) by doc id or by source path; returns the doc ids removed."""
    wanted_ids, wanted_sources = set(doc_ids), {str(s) for s in sources}
    resolved = {_resolved(s) for s in wanted_sources} - {None}
    hits = [
        r.doc_id
        for r in document_records(store)
        if r.doc_id in wanted_ids or r.source in wanted_sources or (resolved and _resolved(r.source) in resolved)
    ]
    writer = writer or Writer(store)
    for doc_id in hits:
        remove(writer, doc_id)
    writer.close()
    return hits


def delete_document(store: Store, doc_id: str) -> int | None:
    """Remove one document by id: the number of chunks removed, or None when there was no such document."""
    chunks = store.count(chunks_filter(doc_id))
    removed = delete_documents(store, [doc_id])
    return chunks if removed or chunks else None


def prune(writer: Writer, known: Iterable[DocumentRecord], root: str, present: set[str]) -> list[str]:
    """Remove the documents recorded under ``root`` whose doc ids are not ``present``; returns them."""
    gone = [r.doc_id for r in known if r.root == root and r.doc_id not in present]
    for doc_id in gone:
        remove(writer, doc_id)
    return gone


@dataclass(frozen=True, slots=True)
class CollectionStatus:
    collection: str
    location: str
    engine: str
    documents: int
    chunks: int
    points: int  # chunks plus one record per document and one for the collection
    unfinished: int  # documents an interrupted run left mid-change (the next ingest repairs them)
    model: str | None
    chunk_size: int | None
    chunk_overlap: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collection_status(store: Store) -> CollectionStatus:
    """Counts and provenance of one collection (opened for reading)."""
    store.open_collection()
    record = store.retrieve([COLLECTION_RECORD_ID])
    built = CollectionRecord.from_payload(record[0].payload) if record else None
    return CollectionStatus(
        collection=store.collection,
        location=store.location,
        engine=store.engine,
        documents=store.count(kind_filter(KIND_DOCUMENT)),
        chunks=store.count(kind_filter(KIND_CHUNK)),
        points=store.count(),
        unfinished=store.count(unfinished_filter()),
        model=built.model if built else None,
        chunk_size=built.chunk_size if built else None,
        chunk_overlap=built.chunk_overlap if built else None,
    )
