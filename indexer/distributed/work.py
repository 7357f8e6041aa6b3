"""The steps of a distributed run, without Ray: plan (driver), parse and chunk (CPU workers), encode (model
workers), commit under leases (model workers on a server; the driver on an embedded store).

Each step is the single-process pipeline's own: ``load_if_changed`` decides, ``Chunker`` splits, the
encoder encodes, ``to_point`` makes the points (ids from doc id, content hash and chunk index), and
``indexer.versions`` changes each document under its lease (``indexer.leases``). So a distributed run
writes the very points and records a single-process run writes, and a step run twice (Ray's retries)
writes the same points again; a retried task takes over its earlier attempt's leases (same run id).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from indexer import versions
from indexer.changes import NO_FILE, Item, item_doc_id, load_if_changed
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.errors import DocumentBusy, EncodingError, IndexerError, LeaseLost, LoaderError, StoreError
from indexer.leases import Claim, Leases
from indexer.loaders import check_source, is_supported
from indexer.models import Chunk, Document, Embedding, EncodedChunk
from indexer.points import to_point
from indexer.records import COLLECTION_RECORD_ID, CollectionRecord
from indexer.report import FileResult
from indexer.schema import CollectionSpec
from indexer.store import Store
from indexer.versions import COMPLETE, DocumentRecord, FileStat
from indexer.writer import Writer

logger = logging.getLogger(__name__)

Encode = Callable[[list[Chunk]], list[Embedding]]


@dataclass(frozen=True, slots=True)
class Task:
    """One file the cluster has to look at, with the record the driver read for it (None: a new document)."""

    index: int  # its place in the run report
    item: Item
    known: DocumentRecord | None


@dataclass(slots=True)
class Parsed:
    """What a worker made of a task: a document to write (with its chunks), a record to refresh, or a result."""

    index: int
    item: Item
    result: FileResult
    document: Document | None = None
    chunks: tuple[Chunk, ...] = ()
    file_stat: FileStat = NO_FILE
    refresh: DocumentRecord | None = None  # an unchanged document whose file was touched
    embeddings: list[Embedding] | None = None  # set where the encoding worker does not write itself

    @property
    def doc_id(self) -> str:
        return item_doc_id(self.item)


@dataclass(slots=True)
class _Doc:
    parsed: Parsed
    claim: Claim
    remaining: int
    failed: bool = False


# ------------------------------------------------------------------------------------------- driver


def prepare_collection(store: Store, settings: Settings, spec: CollectionSpec, name: str, fingerprint: str) -> None:
    """Create or check the collection and its provenance record, as a single-process run does."""
    store.ensure_collection(spec)
    ours = CollectionRecord(
        model=name,
        model_fingerprint=fingerprint,
        dense_dim=spec.dense_dim,
        colbert_dim=spec.colbert_dim,
        chunk_size=settings.chunking.chunk_size,
        chunk_overlap=settings.chunking.chunk_overlap,
        chunk_headings=settings.chunking.headings,
        colbert_pool_factor=spec.colbert_pool_factor,
    )
    existing = store.retrieve([COLLECTION_RECORD_ID])
    if existing:
        CollectionRecord.from_payload(existing[0].payload).check_compatible(ours, store.collection)
    else:
        store.upsert([ours.point()], wait=True)


def plan(
    items: Iterable[Item], results: list[FileResult], known: dict[str, DocumentRecord], settings: Settings
) -> list[Task]:
    """The tasks for the cluster; files that are unchanged by size and time, unsupported or unreadable are
    decided here, from their names and ``stat``, and never read (their results are appended to ``results``)."""
    tasks = []
    for item in items:
        result = FileResult(source=item.source)
        results.append(result)
        record = known.get(item_doc_id(item))
        if item.file is not None:
            result.doc_id = item.file.rel_path
            if not is_supported(item.file.rel_path):  # as load_if_changed says it, without a remote task
                result.status = "skipped"
                result.error = f"unsupported file type {Path(item.file.rel_path).suffix or '(none)'!r}"
                continue
            try:
                st = check_source(item.file, settings.ingest.max_file_bytes)
            except LoaderError as e:
                result.status, result.error = "failed", str(e)
                continue
            if (
                record
                and record.is_complete()
                and (record.file_size, record.file_mtime_ns) == (st.st_size, st.st_mtime_ns)
            ):
                result.status, result.content_hash = "unchanged", record.content_hash
                continue
        tasks.append(Task(len(results) - 1, item, record))
    return tasks


# ------------------------------------------------------------------------------------------- CPU workers


def parse(task: Task, settings: Settings, chunker: Chunker) -> Parsed:
    """Read, hash, parse and chunk one file (if it changed); never raises for a bad file."""
    started = time.perf_counter()
    result = FileResult(source=task.item.source)
    parsed = Parsed(task.index, task.item, result)
    try:
        load = load_if_changed(task.item, result, settings, None, task.known)
        parsed.refresh, parsed.file_stat = load.refresh, load.file_stat
        if load.document is not None:
            chunks = tuple(chunker.split(load.document))
            if not chunks:
                raise LoaderError(f"{task.item.source}: no text to index")
            parsed.document, parsed.chunks = load.document, chunks
    except IndexerError as e:
        result.status, result.error = "failed", str(e)
    result.seconds = time.perf_counter() - started
    return parsed


# ------------------------------------------------------------------------------------------- model workers


def commit(
    docs: Sequence[Parsed],
    leases: Leases,
    writer: Writer,
    spec: CollectionSpec,
    encode: Encode,
    group_size: int,
    wait: float = 0.0,
) -> list[FileResult]:
    """Write parsed documents under their leases, as the single-process pipeline does; returns their results.

    Claims come first: a document another live writer holds is reported busy (``wait``: seconds to wait for
    them), one that another run completed meanwhile is unchanged, and only the rest is encoded (``encode``
    takes up to ``group_size`` chunks a call) and written: chunks, then ``versions.complete``.
    """
    wanted: dict[str, str | None] = {p.doc_id: p.document.content_hash for p in docs if p.document is not None}
    wanted |= {p.doc_id: None for p in docs if p.refresh is not None and p.document is None}
    held, refused = leases.claim_many(wanted)
    deadline = time.monotonic() + wait
    for doc_id in list(refused) if wait else []:
        with contextlib.suppress(DocumentBusy):
            held[doc_id] = leases.claim(doc_id, wanted[doc_id], wait=max(0.0, deadline - time.monotonic()))
            del refused[doc_id]
    writing: list[_Doc] = []
    for p in docs:
        if p.doc_id in refused:
            _busy(p.result, refused[p.doc_id])
        elif p.doc_id in held:
            doc = _start(p, held[p.doc_id], leases, writer)
            if doc is not None:
                writing.append(doc)
    group: list[tuple[_Doc, Chunk]] = []
    for doc in writing:
        for chunk in doc.parsed.chunks:
            group.append((doc, chunk))
            if len(group) >= group_size:
                _encode_group(group, leases, writer, spec, encode)
                group = []
    _encode_group(group, leases, writer, spec, encode)
    writer.flush()
    return [p.result for p in docs]


def _busy(result: FileResult, why: str) -> None:
    result.status, result.error, result.chunks, result.tokens = "busy", why, 0, 0


def _start(p: Parsed, claim: Claim, leases: Leases, writer: Writer) -> _Doc | None:
    """A held document: done at once when the store holds its version complete, else a document to write."""
    current, result = claim.record, p.result
    version = p.document.content_hash if p.document is not None else p.refresh.content_hash if p.refresh else None
    if current is not None and current.is_complete(version):
        result.status = "unchanged"
        fresh = current.with_file(p.file_stat if p.document is not None else _stat(p.refresh))
        fresh = fresh if p.item.file is not None else current
        versions.refresh(writer, leases, [(claim, fresh if fresh != current else None)])
        return None
    if p.document is None:  # touched, and another run wrote another version meanwhile: the next round redoes it
        versions.refresh(writer, leases, [(claim, None)])
        _busy(result, f"{p.item.source}: another writer changed it meanwhile")
        return None
    return _Doc(p, claim, remaining=len(p.chunks))


def _stat(record: DocumentRecord | None) -> FileStat:
    return (record.file_size, record.file_mtime_ns) if record is not None else NO_FILE


def _encode_group(
    group: list[tuple[_Doc, Chunk]], leases: Leases, writer: Writer, spec: CollectionSpec, encode: Encode
) -> None:
    group = [(d, c) for d, c in group if not d.failed]
    if not group:
        return
    started = time.perf_counter()
    try:
        embeddings = encode([c for _, c in group])
    except EncodingError as e:
        for doc in {id(d): d for d, _ in group}.values():
            doc.failed = True
            doc.parsed.result.status, doc.parsed.result.error = "failed", str(e)
            versions.abandon(writer, leases, doc.claim)
        return
    share = (time.perf_counter() - started) / len(group)
    for (doc, chunk), embedding in zip(group, embeddings, strict=True):
        if doc.failed:
            continue
        result = doc.parsed.result
        if doc.claim.lost is not None:
            _lost(doc, leases, writer)
            continue
        writer.add(to_point(EncodedChunk(chunk, embedding), spec))
        result.chunks += 1
        result.tokens += chunk.token_count
        result.seconds += share
        doc.remaining -= 1
        if doc.remaining == 0:
            _complete(doc, leases, writer)


def _complete(doc: _Doc, leases: Leases, writer: Writer) -> None:
    p, result = doc.parsed, doc.parsed.result
    assert p.document is not None
    done = DocumentRecord(p.doc_id, p.document.source, p.item.root, p.document.content_hash, COMPLETE)
    done = replace(done.with_file(p.file_stat), chunks=result.chunks, tokens=result.tokens)
    try:
        versions.complete(writer, leases, doc.claim, done)
    except LeaseLost:
        _lost(doc, leases, writer)


def _lost(doc: _Doc, leases: Leases, writer: Writer) -> None:
    doc.failed = True
    leases.release(doc.claim, writer)
    _busy(doc.parsed.result, f"{doc.parsed.item.source}: this run lost its lease ({doc.claim.lost})")


def precomputed(docs: Sequence[Parsed]) -> Encode:
    """An ``Encode`` answering from the embeddings the encoding workers attached to ``docs``."""
    table: dict[tuple[str, int], Embedding] = {}
    for p in docs:
        for chunk, embedding in zip(p.chunks, p.embeddings or [], strict=False):
            table[(p.doc_id, chunk.chunk_index)] = embedding
    return lambda chunks: [table[(c.doc_id, c.chunk_index)] for c in chunks]


def stopped_by(error: BaseException) -> StoreError | None:
    """The store error behind a failed remote task, if that is what stopped it."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, StoreError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None
