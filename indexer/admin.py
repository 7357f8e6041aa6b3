"""Operations on a collection's documents outside an ingest run: delete, status, prune."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qdrant_client import models

from indexer.models import Document
from indexer.records import (
    COLLECTION_RECORD_ID,
    KIND_CHUNK,
    KIND_DOCUMENT,
    CollectionRecord,
    chunks_filter,
    kind_filter,
    match,
)
from indexer.store import Store
from indexer.validation import check_metadata, check_source_name
from indexer.versions import (
    COMPLETE,
    DocumentRecord,
    document_record_id,
    document_records,
    remove,
    unfinished_filter,
)
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


def update_metadata(store: Store, doc: Document, writer: Writer | None = None) -> DocumentRecord | None:
    """Give the stored version of ``doc`` its metadata and source without encoding it again.

    For a document whose complete version has ``doc``'s content hash (the same bytes uploaded again):
    every chunk of that version gets ``doc.metadata`` and ``doc.source`` in one payload update, then
    the record gets the source. Each step is one idempotent operation conditional on that version: a
    crash between them leaves each chunk searchable with the old or the new metadata and the same call
    again finishes the job, and a version another writer replaced meanwhile is not touched. Returns the
    document's record, or None when the store holds no complete version with that content hash.
    """
    metadata, source = check_metadata(doc.metadata), check_source_name(doc.source)
    found = store.retrieve([document_record_id(doc.doc_id)])
    record = DocumentRecord.from_payload(found[0].payload) if found else None
    if record is None or not record.is_complete(doc.content_hash):
        return None
    writer = writer or Writer(store)
    writer.set_payload(chunks_filter(doc.doc_id, doc.content_hash), {"metadata": metadata, "source": source})
    if record.source != source:
        this_version = models.Filter(
            must=[
                models.HasIdCondition(has_id=[document_record_id(doc.doc_id)]),
                match("state", COMPLETE),
                match("content_hash", doc.content_hash),
            ]
        )
        writer.set_payload(this_version, {"source": source})
    writer.close()
    return replace(record, source=source)


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
