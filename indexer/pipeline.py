"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store.

Every stage streams, so memory stays bounded by one document plus one encoding group, whatever the
corpus size; chunks of many documents share an encoding call. Runs are incremental and crash-safe:
an unchanged document is skipped before it is parsed, and a changed one goes through the
document-version protocol (``indexer.versions``), so that a run killed at any moment is repaired by
the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexer import versions
from indexer.admin import prune
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.errors import EncodingError, IndexerError, LoaderError, StoreError
from indexer.faults import crash_point
from indexer.loaders import check_source, discover, is_supported, load_bytes, load_file, read_checked, sha256_bytes
from indexer.models import Chunk, Document, EncodedChunk, SourceFile
from indexer.points import to_point
from indexer.records import COLLECTION_RECORD_ID, CollectionRecord
from indexer.report import FileResult, IngestReport, IngestStopped
from indexer.runtime import collection_spec
from indexer.store import Store
from indexer.versions import DocumentRecord, FileStat
from indexer.writer import Writer

__all__ = ["FileResult", "IngestReport", "IngestStopped", "ingest", "ingest_bytes", "ingest_documents"]

logger = logging.getLogger(__name__)

NO_FILE: FileStat = (None, None)


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing to ingest: a file found under a root, or a document already in memory."""

    source: str
    root: str
    file: SourceFile | None = None
    document: Document | None = None


@dataclass(frozen=True, slots=True)
class _Load:
    """What to do with an item: write ``document`` (read from a file of ``file_stat``), or nothing.

    ``refresh`` is the record of an unchanged document whose file was touched: rewriting it with the new
    modification time lets the next run skip the file without reading it.
    """

    document: Document | None = None
    file_stat: FileStat = NO_FILE
    refresh: DocumentRecord | None = None


@dataclass(slots=True)
class _Doc:
    """A document being written by this run."""

    result: FileResult
    record: DocumentRecord  # its record as the store has it now (state "writing")
    remaining: int  # chunks not yet handed to the writer
    file_stat: FileStat = NO_FILE
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
        self.spec = collection_spec(settings, encoder)
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
            chunk_headings=self.settings.chunking.headings,
            colbert_pool_factor=self.spec.colbert_pool_factor,
        )
        existing = self.store.retrieve([COLLECTION_RECORD_ID])
        if existing:
            CollectionRecord.from_payload(existing[0].payload).check_compatible(ours, self.store.collection)
        else:
            self.store.upsert([ours.point()], wait=True)
        self.report.repaired = versions.recover(self.store, self.writer)
        self.known = {r.doc_id: r for r in versions.document_records(self.store)}

    # --------------------------------------------------------------------------------------- documents

    def process(self, item: _Item) -> FileResult:
        started = time.perf_counter()
        result = FileResult(source=item.source)
        self.report.files.append(result)
        try:
            load = self._load_if_changed(item, result)
            if load.refresh is not None:
                self.writer.add(load.refresh.point())
            doc = load.document
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
        record = versions.begin(self.writer, doc, item.root, self.known.get(doc.doc_id))
        state = _Doc(result, record, remaining=len(chunks), file_stat=load.file_stat)
        for chunk in chunks:
            if state.failed:
                break
            self.group.append((state, chunk))
            if len(self.group) >= self.group_size:
                self.encode_group()
        return result

    def _load_if_changed(self, item: _Item, result: FileResult) -> _Load:
        """Decide what to do with an item (``result`` gets its status); writes nothing.

        A file whose size and modification time match its record is not read at all; otherwise its
        bytes are hashed, and only a changed hash leads to parsing.
        """
        if item.document is not None:
            doc = item.document
            result.doc_id, result.content_hash = doc.doc_id, doc.content_hash
            if self._unchanged(doc.doc_id, doc.content_hash):
                result.status = "unchanged"
                return _Load()
            return _Load(document=doc)
        assert item.file is not None
        if not is_supported(item.file.rel_path):
            result.status = "skipped"
            result.error = f"unsupported file type {Path(item.file.rel_path).suffix or '(none)'!r}"
            return _Load()
        st = check_source(item.file, self.settings.ingest.max_file_bytes)
        known = self.known.get(item.file.rel_path)
        result.doc_id = item.file.rel_path
        if known and known.is_complete() and (known.file_size, known.file_mtime_ns) == (st.st_size, st.st_mtime_ns):
            result.status, result.content_hash = "unchanged", known.content_hash
            return _Load()
        data = read_checked(item.file)
        result.content_hash = sha256_bytes(data)
        file_stat = (len(data), st.st_mtime_ns)
        if known is not None and known.is_complete(result.content_hash):
            result.status = "unchanged"
            return _Load(refresh=known.with_file(file_stat))
        ingest = self.settings.ingest
        doc = load_file(
            item.file,
            self.metadata,
            pdf_password=ingest.pdf_password,
            data=data,
            max_unpacked_bytes=ingest.max_unpacked_bytes,
        )
        return _Load(document=doc, file_stat=file_stat)

    def _unchanged(self, doc_id: str, content_hash: str) -> bool:
        known = self.known.get(doc_id)
        return known is not None and known.is_complete(content_hash)

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
        for (doc, chunk), embedding in zip(group, embeddings, strict=True):
            if doc.failed:
                continue
            self.writer.add(to_point(EncodedChunk(chunk, embedding), self.spec))
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
        done = versions.complete(self.writer, doc.record, doc.result.chunks, doc.result.tokens, doc.file_stat)
        self.known[done.doc_id] = done

    def abandon(self, doc: _Doc, error: str) -> None:
        doc.failed = True
        doc.result.status, doc.result.error = "failed", error
        versions.abandon(self.writer, doc.record)

    def close(self) -> None:
        self.encode_group()
        crash_point("end")
        self.writer.close()
        self.chunks_bar.close()


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
    return _execute(run, items, {}, False, False)


def ingest_bytes(
    data: bytes,
    name: str,
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    doc_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Document, FileResult]:
    """Index one file's bytes (an upload); the same doc id again replaces its previous version.

    Raises ``LoaderError`` for bytes that cannot be read as a document of ``name``'s type.
    """
    doc = load_bytes(
        data,
        name,
        doc_id=doc_id or name,
        source=name,
        metadata=metadata,
        pdf_password=settings.ingest.pdf_password,
        max_unpacked_bytes=settings.ingest.max_unpacked_bytes,
    )
    [result] = ingest_documents([doc], settings, encoder, store).files
    return doc, result


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
            for root, present in prune_roots.items():
                report.pruned.extend(prune(run.writer, run.known.values(), root, present))
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
