"""Operations on a collection's documents outside an ingest run: delete, status, prune."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.conditions import AnyFilter, Filter, HasId, has_conditions
from indexer.errors import DocumentBusy, InvalidInputError
from indexer.leases import Claim, Leases, LeaseTimings, Owner
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

if TYPE_CHECKING:
    from qdrant_client import models


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


@dataclass(frozen=True, slots=True)
class WhereReport:
    """What an operation on the documents matching a filter did: the documents changed (with their chunks),
    and those another writer held past ``busy_wait_seconds`` (left as they were: send it again)."""

    done: tuple[str, ...] = ()
    chunks: int = 0
    busy: tuple[str, ...] = ()


def _serialized(store: Store) -> SerializedStore:
    """The store as the lease renewal timer shares it (one request at a time)."""
    return store if isinstance(store, SerializedStore) else SerializedStore(store)


def matching_documents(store: Store, flt: AnyFilter) -> list[str]:
    """The doc ids of the documents with a chunk matching ``flt`` (any payload field: metadata.*, source,
    pages, ...), in order."""
    found = {p.payload.get("doc_id") for p in store.scroll(Filter(must=(chunks_filter(), flt)))}
    return sorted(d for d in found if isinstance(d, str))


def where_filter(pairs: Sequence[str] = (), qdrant_json: str | None = None) -> models.Filter | None:
    """A payload filter from ``FIELD=VALUE`` pairs (all must hold; VALUE is JSON when it reads as a number
    or boolean, else text) and/or a filter in Qdrant's JSON syntax; None when neither is given."""
    from qdrant_client import models

    must: list[models.Condition] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--where {pair!r}: write FIELD=VALUE, e.g. metadata.project=apollo")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, float):
            must.append(models.FieldCondition(key=key.strip(), range=models.Range(gte=value, lte=value)))
        else:
            exact = models.MatchValue(value=value if isinstance(value, (bool, int)) else raw)
            must.append(models.FieldCondition(key=key.strip(), match=exact))
    if qdrant_json is not None:
        try:
            must.append(models.Filter.model_validate_json(qdrant_json))
        except ValueError as e:
            first = str(e).splitlines()[1:2] or [str(e)]
            raise InvalidInputError(f"--where-json is not a Qdrant filter: {first[0].strip()}") from None
    return models.Filter(must=must) if must else None


def _for_each_match(
    store: Store,
    flt: AnyFilter,
    what: str,
    act: Callable[[Writer, Leases, Claim], int | None],
    timings: LeaseTimings | None,
    owner: Owner | None,
) -> WhereReport:
    """``act`` on every document matching ``flt``, each under its claim (``act`` releases it and returns the
    chunks it changed, or None when it changed nothing). A document that no longer matches once claimed
    (changed meanwhile) is left alone; one another writer holds past ``busy_wait_seconds`` is reported."""
    if not has_conditions(flt):
        raise InvalidInputError(f"a filter without conditions would {what} every document; name at least one")
    hits = matching_documents(store, flt)
    timings = timings or LeaseTimings()
    store = _serialized(store)
    done: list[str] = []
    busy: list[str] = []
    chunks = 0
    with Leases(store, owner or Owner.new(f"{what} where ({len(hits)} documents)"), timings) as leases:
        writer = Writer(store, fence=leases.fence)
        for doc_id in hits:
            try:
                claim = leases.claim(doc_id, None, wait=timings.busy_wait_seconds)
            except DocumentBusy:
                busy.append(doc_id)
                continue
            if not store.count(Filter(must=(chunks_filter(doc_id), flt))):
                leases.release(claim, writer)
                continue
            changed = act(writer, leases, claim)
            if changed is not None:
                chunks += changed
                done.append(doc_id)
        writer.close()
    return WhereReport(tuple(done), chunks, tuple(busy))


def delete_where(
    store: Store, flt: AnyFilter, *, timings: LeaseTimings | None = None, owner: Owner | None = None
) -> WhereReport:
    """Remove every document with a chunk matching ``flt`` (chunks of every version, and record).

    Each under its lease and crash-safe as ``delete_documents`` (the record goes first, then the chunks);
    busy documents are reported in ``busy``, the others removed. A filter without conditions is refused.
    """

    store = _serialized(store)

    def delete(writer: Writer, leases: Leases, claim: Claim) -> int:
        chunks = store.count(chunks_filter(claim.doc_id))
        remove(writer, leases, claim)
        return chunks

    return _for_each_match(store, flt, "delete", delete, timings, owner)


def _set_metadata(store: Store, metadata: dict[str, Any]) -> Callable[[Writer, Leases, Claim], int | None]:
    def act(writer: Writer, leases: Leases, claim: Claim) -> int | None:
        record = claim.record
        if record is None or not record.is_complete() or record.content_hash is None:
            leases.release(claim, writer)
            return None
        version = chunks_filter(claim.doc_id, record.content_hash)
        chunks = store.count(version)
        writer.set_payload(version, {"metadata": metadata}, lambda: leases.check(claim))
        leases.release(claim, writer)
        return chunks

    return act


def set_metadata(
    store: Store,
    doc_id: str,
    metadata: Any,
    *,
    timings: LeaseTimings | None = None,
    owner: Owner | None = None,
) -> int | None:
    """Replace a document's user metadata (every chunk of its current version, one payload update) without
    encoding it; returns the chunks updated, or None when there is no such document. Under its lease: raises
    ``DocumentBusy`` when another writer holds it past ``busy_wait_seconds``. A crash midway leaves every
    chunk searchable with the old or the new metadata; the same call again finishes the job."""
    meta = check_metadata(metadata)
    timings = timings or LeaseTimings()
    store = _serialized(store)
    with Leases(store, owner or Owner.new(f"metadata {doc_id}"), timings) as leases:
        writer = Writer(store, fence=leases.fence)
        claim = leases.claim(doc_id, None, wait=timings.busy_wait_seconds)
        changed = _set_metadata(store, meta)(writer, leases, claim)
        writer.close()
    return changed


def update_metadata_where(
    store: Store,
    flt: AnyFilter,
    metadata: Any,
    *,
    timings: LeaseTimings | None = None,
    owner: Owner | None = None,
) -> WhereReport:
    """``set_metadata`` on every document with a chunk matching ``flt`` (busy ones reported, as ``delete_where``)."""
    store = _serialized(store)
    return _for_each_match(store, flt, "update", _set_metadata(store, check_metadata(metadata)), timings, owner)


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
