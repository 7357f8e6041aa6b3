"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store.

Every stage streams, so memory stays bounded by one document plus one encoding group, whatever the
corpus size; chunks of many documents share an encoding call. Runs are incremental and crash-safe:
an unchanged document is skipped before it is parsed, a changed one is written as a new version
before its old version is removed, and every step is recorded (``indexer.records``) so that a run
killed at any moment is repaired by the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qdrant_client import models
from tqdm import tqdm

from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.errors import EncodingError, IndexerError, LoaderError, StoreError
from indexer.faults import crash_point
from indexer.loaders import check_source, discover, is_supported, load_file, read_checked, sha256_bytes
from indexer.models import Chunk, Document, EncodedChunk, SourceFile
from indexer.points import to_point
from indexer.records import (
    CLEANUP,
    COLLECTION_RECORD_ID,
    COMPLETE,
    KIND_CHUNK,
    KIND_DOCUMENT,
    WRITING,
    CollectionRecord,
    DocumentRecord,
    chunks_filter,
    document_record_id,
    kind_filter,
    unfinished_filter,
)
from indexer.schema import CollectionSpec
from indexer.store import Store
from indexer.writer import Writer

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FileResult:
    source: str
    status: str = "ok"  # ok | unchanged | skipped | failed
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    doc_id: str | None = None
    content_hash: str | None = None


@dataclass(slots=True)
class IngestReport:
    collection: str
    files: list[FileResult] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    repaired: int = 0  # documents left unfinished by an earlier run and repaired by this one
    stopped: str | None = None  # why the run stopped before the end (--fail-fast), if it did
    seconds: float = 0.0

    def _count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def documents(self) -> int:
        """Documents written by this run (new or changed)."""
        return self._count("ok")

    @property
    def unchanged(self) -> int:
        return self._count("unchanged")

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "skipped"]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status == "ok")

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files if f.status == "ok")

    def summary(self) -> str:
        text = (
            f"{self.documents} documents ingested ({self.chunks} chunks, {self.tokens} tokens), "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped, {len(self.failed)} failed"
        )
        if self.pruned:
            text += f", {len(self.pruned)} pruned"
        if self.repaired:
            text += f", {self.repaired} repaired from an interrupted run"
        return f"{text}; collection {self.collection!r}, {self.seconds:.1f}s"

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "documents": self.documents,
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "chunks": self.chunks,
            "tokens": self.tokens,
            "pruned": self.pruned,
            "repaired": self.repaired,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "files": [
                {
                    "source": f.source,
                    "status": f.status,
                    "doc_id": f.doc_id,
                    "chunks": f.chunks,
                    "tokens": f.tokens,
                    "seconds": round(f.seconds, 3),
                    "error": f.error,
                }
                for f in self.files
            ],
        }


class IngestStopped(StoreError):
    """The store failed for good in the middle of a run; ``report`` says what was done before."""

    def __init__(self, message: str, report: IngestReport) -> None:
        super().__init__(message)
        self.report = report


def doc_filter(doc_id: str, keep_hash: str | None = None) -> models.Filter:
    """Chunk points of ``doc_id``; with ``keep_hash``, only those of other versions than that one."""
    return chunks_filter(doc_id, other_than=keep_hash)


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing to ingest: a file found under a root, or a document already in memory."""

    source: str
    root: str
    file: SourceFile | None = None
    document: Document | None = None


@dataclass(slots=True)
class _Doc:
    """A document being written by this run."""

    result: FileResult
    record: DocumentRecord  # its record as the store has it now (state "writing")
    remaining: int  # chunks not yet handed to the writer
    file_stat: tuple[int | None, int | None] = (None, None)  # (size, mtime) of the file this version was read from
    failed: bool = False


class _Run:
    def __init__(
        self,
        settings: Settings,
        encoder: Encoder,
        store: Store,
        report: IngestReport,
        progress: bool,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.settings, self.encoder, self.store, self.report = settings, encoder, store, report
        self.metadata = metadata
        self.optimize = True  # uploads of a few documents skip Edge's (whole-shard) optimize
        self.spec = CollectionSpec.for_model(settings.collection, encoder.dense_dim, encoder.colbert_dim)
        c = settings.chunking
        self.chunker = Chunker(encoder.tokenizer, c.chunk_size, c.chunk_overlap, headings=c.headings)
        self.writer = Writer(
            store,
            max_points=settings.ingest.write_batch_points,
            max_bytes=settings.ingest.write_batch_bytes,
            retries=settings.ingest.write_retries,
        )
        self.group: list[tuple[_Doc, Chunk]] = []
        self.group_size = settings.model.batch_size * BATCHES_PER_CALL
        self.known: dict[str, DocumentRecord] = {}
        self.progress = progress
        self.chunks_bar = tqdm(unit="chunk", desc="chunks", disable=not progress)
        self.tokens = 0

    # --------------------------------------------------------------------------------------- set-up

    def prepare(self, recreate: bool) -> None:
        self.store.ensure_collection(self.spec, recreate=recreate)
        ours = CollectionRecord(
            model=self.encoder.name,
            model_fingerprint=self.encoder.fingerprint,
            dense_dim=self.encoder.dense_dim,
            colbert_dim=self.spec.colbert_dim,
            chunk_size=self.settings.chunking.chunk_size,
            chunk_overlap=self.settings.chunking.chunk_overlap,
        )
        existing = self.store.retrieve([COLLECTION_RECORD_ID])
        if existing:
            CollectionRecord.from_payload(existing[0].payload).check_compatible(ours, self.store.collection)
        else:
            self.store.upsert([ours.point()], wait=True)
        self.report.repaired = recover(self.store, self.writer)
        self.known = {r.doc_id: r for r in document_records(self.store)}

    # --------------------------------------------------------------------------------------- documents

    def process(self, item: _Item) -> FileResult:
        started = time.perf_counter()
        result = FileResult(source=item.source)
        self.report.files.append(result)
        try:
            doc, file_stat = self._load_if_changed(item, result)
            if doc is None:
                return result
            chunks = list(self.chunker.split(doc))
            if not chunks:
                raise LoaderError(f"{item.source}: no text to index")
        except IndexerError as e:
            result.status, result.error = "failed", str(e)
            logger.warning("failed: %s", e)
            return result
        finally:
            result.seconds += time.perf_counter() - started
        crash_point("document")
        previous = self.known.get(doc.doc_id)
        # Until the new version is complete, the record keeps describing the previous one.
        record = DocumentRecord(
            doc_id=doc.doc_id,
            source=doc.source,
            root=item.root,
            content_hash=previous.content_hash if previous else None,
            state=WRITING,
            pending_hash=doc.content_hash,
            file_size=previous.file_size if previous else None,
            file_mtime_ns=previous.file_mtime_ns if previous else None,
        )
        self.writer.add(record.point())  # written before any chunk of the new version
        state = _Doc(result, record, remaining=len(chunks), file_stat=file_stat)
        for chunk in chunks:
            if state.failed:
                break
            self.group.append((state, chunk))
            if len(self.group) >= self.group_size:
                self.encode_group()
        return result

    def _load_if_changed(
        self, item: _Item, result: FileResult
    ) -> tuple[Document | None, tuple[int | None, int | None]]:
        """The document and the (size, mtime) of its file, or None (status "unchanged" or "skipped").

        A file whose size and modification time match its record is not read at all; otherwise its
        bytes are hashed, and only a changed hash leads to parsing.
        """
        if item.document is not None:
            doc = item.document
            result.doc_id, result.content_hash = doc.doc_id, doc.content_hash
            if self._unchanged(doc.doc_id, doc.content_hash):
                result.status = "unchanged"
                return None, (None, None)
            return doc, (None, None)
        assert item.file is not None
        if not is_supported(item.file.rel_path):
            result.status = "skipped"
            result.error = f"unsupported file type {Path(item.file.rel_path).suffix or '(none)'!r}"
            return None, (None, None)
        st = check_source(item.file, self.settings.ingest.max_file_bytes)
        known = self.known.get(item.file.rel_path)
        result.doc_id = item.file.rel_path
        if known and known.state == COMPLETE and (known.file_size, known.file_mtime_ns) == (st.st_size, st.st_mtime_ns):
            result.status, result.content_hash = "unchanged", known.content_hash
            return None, (None, None)
        data = read_checked(item.file)
        result.content_hash = sha256_bytes(data)
        file_stat = (len(data), st.st_mtime_ns)
        if self._unchanged(result.doc_id, result.content_hash):
            result.status = "unchanged"
            assert known is not None
            self.writer.add(replace(known, file_size=file_stat[0], file_mtime_ns=file_stat[1]).point())
            return None, (None, None)
        ingest = self.settings.ingest
        doc = load_file(
            item.file,
            self.metadata,
            pdf_password=ingest.pdf_password,
            data=data,
            max_unpacked_bytes=ingest.max_unpacked_bytes,
        )
        return doc, file_stat

    def _unchanged(self, doc_id: str, content_hash: str) -> bool:
        known = self.known.get(doc_id)
        return known is not None and known.state == COMPLETE and known.content_hash == content_hash

    # --------------------------------------------------------------------------------------- encoding

    def encode_group(self) -> None:
        group, self.group = self.group, []
        group = [(d, c) for d, c in group if not d.failed]
        if not group:
            return
        started = time.perf_counter()
        try:
            embeddings = self.encoder.encode_passages([c.text for _, c in group])
        except EncodingError as e:
            for doc in {id(d): d for d, _ in group}.values():
                self.abandon(doc, str(e))
            return
        share = (time.perf_counter() - started) / len(group)
        colbert = self.spec.colbert_dim is not None
        for (doc, chunk), embedding in zip(group, embeddings, strict=True):
            if doc.failed:
                continue
            self.writer.add(to_point(EncodedChunk(chunk, embedding), colbert))
            doc.result.chunks += 1
            doc.result.tokens += chunk.token_count
            doc.result.seconds += share
            doc.remaining -= 1
            self.tokens += chunk.token_count
            if doc.remaining == 0:
                self.finalize(doc)
        self.chunks_bar.update(len(group))
        self.chunks_bar.set_postfix(tokens=self.tokens)

    def finalize(self, doc: _Doc) -> None:
        """The new version is complete (its chunks are ahead in the write order): switch, then clean up."""
        crash_point("finalize")
        new_hash = doc.record.pending_hash
        done = replace(
            doc.record,
            content_hash=new_hash,
            pending_hash=None,
            chunks=doc.result.chunks,
            tokens=doc.result.tokens,
            state=COMPLETE,
            file_size=doc.file_stat[0],
            file_mtime_ns=doc.file_stat[1],
        )
        self.writer.add(replace(done, state=CLEANUP).point())
        self.writer.delete(chunks_filter(done.doc_id, other_than=new_hash))
        self.writer.add(done.point())
        self.known[done.doc_id] = done

    def abandon(self, doc: _Doc, error: str) -> None:
        """Undo a version that cannot be completed; the previous one, if any, stays as it was."""
        doc.failed = True
        doc.result.status, doc.result.error = "failed", error
        self.writer.delete(chunks_filter(doc.record.doc_id, doc.record.pending_hash))
        restore_record(self.writer, doc.record)

    def close(self) -> None:
        self.encode_group()
        crash_point("end")
        self.writer.close(optimize=self.optimize)
        self.chunks_bar.close()


def restore_record(writer: Writer, record: DocumentRecord) -> None:
    if record.content_hash is None:
        writer.delete(_record_filter(record.doc_id))
    else:
        writer.add(replace(record, state=COMPLETE, pending_hash=None).point())


def _record_filter(doc_id: str) -> models.Filter:
    return models.Filter(must=[models.HasIdCondition(has_id=[document_record_id(doc_id)])])


def document_records(store: Store, flt: models.Filter | None = None) -> Iterable[DocumentRecord]:
    for p in store.scroll(flt or kind_filter(KIND_DOCUMENT)):
        yield DocumentRecord.from_payload(p.payload)


def recover(store: Store, writer: Writer) -> int:
    """Repair what an interrupted run left: returns the number of documents repaired.

    - ``writing``: the new version may be partial; remove it and go back to the previous one.
    - ``cleanup``: the new version is complete; finish removing the older ones.
    """
    repaired = 0
    for record in list(document_records(store, unfinished_filter())):
        if record.state == WRITING:
            writer.delete(chunks_filter(record.doc_id, record.pending_hash))
            restore_record(writer, record)
        else:
            writer.delete(chunks_filter(record.doc_id, other_than=record.content_hash))
            writer.add(replace(record, state=COMPLETE, pending_hash=None).point())
        repaired += 1
    writer.flush(wait=True)
    if repaired:
        logger.warning("repaired %d documents left unfinished by an interrupted run", repaired)
    return repaired


def _items(
    paths: Sequence[Path | str], settings: Settings, report: IngestReport
) -> tuple[list[_Item], dict[str, set[str]]]:
    """Files under each path, and per folder root the doc ids found there (for --prune)."""
    items: list[_Item] = []
    found: dict[str, set[str]] = {}
    for path in paths:
        p = Path(path)
        root = str(p.resolve() if p.is_dir() else p.resolve().parent)
        try:
            sources = list(discover([p], settings.ingest.include, settings.ingest.exclude))
        except LoaderError as e:
            report.files.append(FileResult(source=str(path), status="failed", error=str(e)))
            continue
        if p.is_dir():
            found.setdefault(root, set()).update(s.rel_path for s in sources)
        items.extend(_Item(source=s.rel_path, root=root, file=s) for s in sources)
    return items, found


def ingest(
    paths: Sequence[Path | str],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    recreate: bool = False,
    progress: bool = True,
    prune: bool = False,
    fail_fast: bool = False,
    metadata: dict[str, Any] | None = None,
) -> IngestReport:
    """Index files and folders into the configured collection; returns what happened to each file.

    ``prune`` removes documents recorded under an ingested folder that are no longer there;
    ``fail_fast`` stops at the first file that fails (what was complete stays written); ``metadata`` is
    stored with every chunk under ``metadata.*``.
    Raises ``IngestStopped`` (with the report) when the store fails for good mid-run.
    """
    report = IngestReport(collection=store.collection)
    items, found = _items(paths, settings, report)
    run = _Run(settings, encoder, store, report, progress, metadata)
    return _execute(run, items, found if prune else {}, recreate, fail_fast)


def ingest_documents(
    documents: Sequence[Document],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    progress: bool = False,
) -> IngestReport:
    """Index documents already in memory (uploads): same chunking, ids, versions and report as files."""
    report = IngestReport(collection=store.collection)
    items = [_Item(source=doc.doc_id, root="", document=doc) for doc in documents]
    run = _Run(settings, encoder, store, report, progress)
    run.optimize = False
    return _execute(run, items, {}, False, False)


def _execute(
    run: _Run, items: list[_Item], prune_roots: dict[str, set[str]], recreate: bool, fail_fast: bool
) -> IngestReport:
    started = time.perf_counter()
    report = run.report
    files_bar = tqdm(total=len(items), unit="file", desc="files", disable=not run.progress)
    try:
        run.prepare(recreate)  # a schema or provenance mismatch stops here, as itself
    except BaseException:
        files_bar.close()
        run.chunks_bar.close()
        raise
    try:
        for item in items:
            result = run.process(item)
            files_bar.update(1)
            if fail_fast and result.status == "failed":
                report.stopped = f"--fail-fast: {result.source}: {result.error}"
                break
        if report.stopped is None:
            for root, seen in prune_roots.items():
                gone = [r for r in run.known.values() if r.root == root and r.doc_id not in seen]
                for record in gone:
                    run.writer.delete(chunks_filter(record.doc_id))
                    run.writer.delete(_record_filter(record.doc_id))
                    report.pruned.append(record.doc_id)
        run.close()
    except StoreError as e:
        report.seconds = time.perf_counter() - started
        raise IngestStopped(
            f"the store failed and the run stopped: {e}. What was complete is kept; run the same command "
            "again to finish",
            report,
        ) from e
    finally:
        files_bar.close()
        run.chunks_bar.close()
    report.seconds = time.perf_counter() - started
    logger.info("ingest: %s", report.summary())
    return report


def delete_documents(
    store: Store, doc_ids: Iterable[str] = (), sources: Iterable[str] = (), writer: Writer | None = None
) -> list[str]:
    """Remove documents (chunks and records) by doc id or by source path; returns the doc ids removed."""
    wanted_ids, wanted_sources = set(doc_ids), {str(s) for s in sources}
    resolved = {str(Path(s).resolve()) for s in wanted_sources}
    hits = [
        r.doc_id
        for r in document_records(store)
        if r.doc_id in wanted_ids or r.source in wanted_sources or str(Path(r.source).resolve()) in resolved
    ]
    writer = writer or Writer(store)
    for doc_id in hits:
        writer.delete(chunks_filter(doc_id))
        writer.delete(_record_filter(doc_id))
    writer.close()
    return hits


def collection_status(store: Store) -> dict[str, Any]:
    """Counts and provenance of one collection (opened for reading)."""
    store.open_collection()
    record = store.retrieve([COLLECTION_RECORD_ID])
    built = CollectionRecord.from_payload(record[0].payload) if record else None
    return {
        "collection": store.collection,
        "location": store.location,
        "documents": store.count(kind_filter(KIND_DOCUMENT)),
        "chunks": store.count(kind_filter(KIND_CHUNK)),
        "points": store.count(),
        "unfinished": store.count(unfinished_filter()),
        "model": built.model if built else None,
        "chunk_size": built.chunk_size if built else None,
        "chunk_overlap": built.chunk_overlap if built else None,
    }
