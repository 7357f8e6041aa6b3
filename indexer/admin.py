"""Operations on a collection's documents outside an ingest run: delete, status, prune."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from indexer.conditions import Filter, HasId
from indexer.errors import DocumentBusy
from indexer.leases import Leases, LeaseTimings, Owner
from indexer.models import Document
from indexer.records import (
    COLLECTION_RECORD_ID,
    KIND_CHUNK,
    KIND_DOCUMENT,
    KIND_LEASE,
    CollectionRecord,
    chunks_filter,
    kind_filter,
    match,
)
from indexer.store import SerializedStore, Store
from indexer.validation import check_metadata, check_source_name
from indexer.versions import DocumentRecord, document_record_id, document_records, remove, unfinished_filter
from indexer.writer import Writer


def _resolved(path: str) -> str | None:
    try:
        return str(Path(path).resolve())
    except (OSError, ValueError):  # a stored source that is no valid path here (another machine, odd bytes)
        return None


def delete_documents(
    store: Store,
    doc_ids: Iterable[str] = (),
    sources: Iterable[str] = (),
    *,
    timings: LeaseTimings | None = None,
    owner: Owner | None = None,
) -> list[str]:
    """Remove documents (chunks and records) by doc id or by source path; returns the doc ids removed.

    Each is removed under its lease: one that another writer is changing is waited for (up to
    ``busy_wait_seconds``), then ``DocumentBusy`` is raised (documents removed before it stay removed).
    """
    wanted_ids, wanted_sources = set(doc_ids), {str(s) for s in sources}
    resolved = {_resolved(s) for s in wanted_sources} - {None}
    hits = [
        r.doc_id
        for r in document_records(store)
        if r.doc_id in wanted_ids or r.source in wanted_sources or (resolved and _resolved(r.source) in resolved)
    ]
    timings = timings or LeaseTimings()
    store = store if isinstance(store, SerializedStore) else SerializedStore(store)  # renewal shares it
    removed = []
    with Leases(store, owner or Owner.new("delete " + " ".join(hits)), timings) as leases:
        writer = Writer(store, fence=leases.fence)
        for doc_id in hits:
            claim = leases.claim(doc_id, None, wait=timings.busy_wait_seconds)
            if claim.record is None:  # removed by another writer meanwhile
                leases.release(claim, writer)
                continue
            remove(writer, leases, claim)
            removed.append(doc_id)
        writer.close()
    return removed


def delete_document(store: Store, doc_id: str, timings: LeaseTimings | None = None) -> int | None:
    """Remove one document by id: the number of chunks removed, or None when there was no such document."""
    chunks = store.count(chunks_filter(doc_id))
    removed = delete_documents(store, [doc_id], timings=timings)
    return chunks if removed or chunks else None


def update_metadata(
    store: Store, doc: Document, *, timings: LeaseTimings | None = None, owner: Owner | None = None
) -> DocumentRecord | None:
    """Give the stored version of ``doc`` its metadata and source without encoding it again.

    For a document whose complete version has ``doc``'s content hash (the same bytes uploaded again),
    under the document's lease: every chunk of that version gets ``doc.metadata`` and ``doc.source`` in
    one payload update, then the record gets the source. A crash between the steps leaves every chunk
    searchable (with the old or the new metadata) and the same call again finishes the job. Returns the
    document's record, or None when the store holds no complete version with that content hash.
    Raises ``DocumentBusy`` when another writer holds the document past ``busy_wait_seconds``.
    """
    metadata, source = check_metadata(doc.metadata), check_source_name(doc.source)
    timings = timings or LeaseTimings()
    store = store if isinstance(store, SerializedStore) else SerializedStore(store)  # renewal shares it
    with Leases(store, owner or Owner.new(f"metadata {doc.doc_id}"), timings) as leases:
        writer = Writer(store, fence=leases.fence)
        claim = leases.claim(doc.doc_id, None, wait=timings.busy_wait_seconds)
        record = claim.record
        if record is None or not record.is_complete(doc.content_hash):
            leases.release(claim, writer)
            writer.close()
            return None
        check = lambda: leases.check(claim)  # noqa: E731 - called before each attempt
        writer.set_payload(chunks_filter(doc.doc_id, doc.content_hash), {"metadata": metadata, "source": source}, check)
        if record.source != source:
            record_id = HasId((document_record_id(doc.doc_id),))
            this_version = Filter(must=(record_id, match("content_hash", doc.content_hash)))
            writer.set_payload(this_version, {"source": source}, check)
        leases.release(claim, writer)
        writer.close()
    return replace(record, source=source)


def prune(writer: Writer, leases: Leases, known: Iterable[DocumentRecord], root: str, present: set[str]) -> list[str]:
    """Remove the documents recorded under ``root`` whose doc ids are not ``present``; returns them.

    A document another writer holds now is left alone (it is being written, so it exists somewhere).
    """
    gone = []
    for doc_id in [r.doc_id for r in known if r.root == root and r.doc_id not in present]:
        try:
            claim = leases.claim(doc_id, None)
        except DocumentBusy:
            continue
        if claim.record is None or claim.record.root != root:  # removed, or written from another root, meanwhile
            leases.release(claim, writer)
            continue
        remove(writer, leases, claim)
        gone.append(doc_id)
    return gone


@dataclass(frozen=True, slots=True)
class CollectionStatus:
    collection: str
    location: str
    engine: str
    documents: int
    chunks: int
    points: int  # chunks plus one record per document and one for the collection
    unfinished: int  # leases of documents being changed now, or left by writers that are gone (repaired later)
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
        unfinished=store.count(kind_filter(KIND_LEASE)) + store.count(unfinished_filter()),
        model=built.model if built else None,
        chunk_size=built.chunk_size if built else None,
        chunk_overlap=built.chunk_overlap if built else None,
    )
