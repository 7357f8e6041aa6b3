"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store.

Every stage streams, so memory stays bounded by one document plus one encoding group, whatever the
corpus size; chunks of many documents share an encoding call. Runs are incremental and crash-safe:
an unchanged document is skipped before it is parsed, and a changed one goes through the
document-version protocol (``indexer.versions``), so that a run killed at any moment is repaired by
the next one. Runs may share a collection: a run changes a document only under its lease
(``indexer.leases``); a document another live writer holds is tried again at the end of the run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexer import versions
from indexer.admin import prune, update_metadata
from indexer.changes import Item, find_items, item_doc_id, load_if_changed
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.distributed.partition import Partition
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.errors import DocumentBusy, EncodingError, IndexerError, LeaseLost, LoaderError, StoreError
from indexer.faults import crash_point
from indexer.leases import Claim, Leases, LeaseTimings, Owner
from indexer.loaders import load_bytes
from indexer.models import Chunk, Document, EncodedChunk
from indexer.points import to_point
from indexer.records import COLLECTION_RECORD_ID, CollectionRecord
from indexer.report import FileResult, IngestReport, IngestStopped
from indexer.runtime import collection_spec
from indexer.store import SerializedStore, Store
from indexer.validation import check_metadata
from indexer.versions import COMPLETE, DocumentRecord, FileStat
from indexer.writer import Writer

__all__ = ["FileResult", "IngestReport", "IngestStopped", "Owner", "ingest", "ingest_bytes", "ingest_documents"]

logger = logging.getLogger(__name__)

REFRESH_BATCH = 64  # touched, unchanged files whose records are rewritten together


@dataclass(slots=True)
class _Doc:
    """A document being written by this run."""

    item: Item
    result: FileResult
    claim: Claim  # this run's lease on it
    done: DocumentRecord  # its record once complete (counts filled in then)
    remaining: int  # chunks not yet handed to the writer
    failed: bool = False


class _Run:
    def __init__(
        self,
        settings: Settings,
        encoder: Encoder,
        store: Store,
        report: IngestReport,
        progress: bool,
        owner: Owner,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        # The lease renewal thread calls the store too: one lock for both (shared if the caller has one).
        self.store = store if isinstance(store, SerializedStore) else SerializedStore(store)
        self.settings, self.encoder, self.report = settings, encoder, report
        self.metadata = metadata
        self.spec = collection_spec(settings, encoder)
        c = settings.chunking
        self.chunker = Chunker(encoder.tokenizer, c.chunk_size, c.chunk_overlap, headings=c.headings)
        self.timings = LeaseTimings.from_settings(settings.ingest)
        self.leases = Leases(self.store, owner, self.timings, retries=settings.ingest.write_retries)
        self.writer = Writer(
            self.store,
            max_points=settings.ingest.write_batch_points,
            max_bytes=settings.ingest.write_batch_bytes,
            retries=settings.ingest.write_retries,
            fence=self.leases.fence,
        )
        self.deferred: list[tuple[Item, FileResult]] = []  # documents another writer held
        self.touched: list[tuple[Item, FileResult, DocumentRecord]] = []  # unchanged files with a new mtime
        self.group: list[tuple[_Doc, Chunk]] = []
        self.group_size = settings.model.batch_size * BATCHES_PER_CALL
        self.known: dict[str, DocumentRecord] = {}
        self.progress = progress
        self.chunks_bar = tqdm(unit="chunk", desc="chunks", disable=not progress)
        self.tokens = 0
        self.share: Partition | None = None  # --partition: only this share of the documents (prune too)

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
        self.report.repaired = versions.recover(self.store, self.leases, self.writer)
        self.known = {r.doc_id: r for r in versions.document_records(self.store)}

    # --------------------------------------------------------------------------------------- documents

    def process(self, item: Item, result: FileResult | None = None, wait: float = 0.0) -> FileResult:
        """Write one item if it changed; ``wait``: how long to wait for a document another writer holds."""
        started = time.perf_counter()
        if result is None:
            result = FileResult(source=item.source)
            self.report.files.append(result)
        try:
            doc, file_stat = self._load(item, result, wait)
            if doc is None:
                return result
            chunks = list(self.chunker.split(doc))
            if not chunks:
                raise LoaderError(f"{item.source}: no text to index")
            crash_point("document")
            claim = self.leases.claim(doc.doc_id, doc.content_hash, wait=wait)
        except DocumentBusy as e:
            self._defer(item, result, str(e))
            return result
        except StoreError:
            raise
        except IndexerError as e:
            result.status, result.error = "failed", str(e)
            logger.warning("failed: %s", e)
            return result
        finally:
            result.seconds += time.perf_counter() - started
        current = claim.record
        if current is not None and current.is_complete(doc.content_hash):  # written by another run meanwhile
            result.status = "unchanged"
            self._keep(claim, current, item, file_stat)
            return result
        done = DocumentRecord(doc.doc_id, doc.source, item.root, doc.content_hash, COMPLETE).with_file(file_stat)
        state = _Doc(item, result, claim, done, remaining=len(chunks))
        for chunk in chunks:
            if state.failed:
                break
            self.group.append((state, chunk))
            if len(self.group) >= self.group_size:
                self.encode_group()
        return result

    def _load(self, item: Item, result: FileResult, wait: float) -> tuple[Document | None, FileStat]:
        """The document to write, if the item changed; a touched but unchanged file joins the next refresh."""
        doc_id = item.document.doc_id if item.document is not None else item.file.rel_path if item.file else ""
        load = load_if_changed(item, result, self.settings, self.metadata, self.known.get(doc_id))
        if load.refresh is not None:
            self.touched.append((item, result, load.refresh))
            if wait or len(self.touched) >= REFRESH_BATCH:
                self.refresh_touched(wait)
        return load.document, load.file_stat

    def refresh_touched(self, wait: float = 0.0) -> None:
        """Record the new modification times of touched, unchanged files, many at once and under claims (the
        records may have changed since this run read them); ``wait``: for documents another writer holds."""
        touched, self.touched = self.touched, []
        if not touched:
            return
        held, refused = self.leases.claim_many({record.doc_id: None for _, _, record in touched})
        for doc_id in list(refused) if wait else []:
            with contextlib.suppress(DocumentBusy):
                held[doc_id] = self.leases.claim(doc_id, None, wait=wait)
                del refused[doc_id]
        changes, again = [], []
        for item, result, record in touched:
            claim = held.get(record.doc_id)
            if claim is None:
                self._defer(item, result, refused[record.doc_id])
                continue
            current = claim.record
            if current is not None and current.is_complete(record.content_hash):
                fresh = current.with_file((record.file_size, record.file_mtime_ns))
                changes.append((claim, fresh if fresh != current else None))
                self.known[record.doc_id] = fresh
            else:  # another run wrote another version meanwhile: this file's version replaces it
                changes.append((claim, None))
                again.append((item, result))
                self.known.pop(record.doc_id, None)
                if current is not None:
                    self.known[current.doc_id] = current
        versions.refresh(self.writer, self.leases, changes)
        for item, result in again:
            result.status = "ok"
            self.process(item, result, wait)

    def _keep(self, claim: Claim, current: DocumentRecord, item: Item, file_stat: FileStat) -> None:
        """The document is complete as it is: record this file's size and modification time, release it."""
        fresh = current.with_file(file_stat) if item.file is not None else current
        versions.refresh(self.writer, self.leases, [(claim, fresh if fresh != current else None)])
        self.known[current.doc_id] = fresh

    def _defer(self, item: Item, result: FileResult, why: str) -> None:
        result.status, result.error, result.chunks, result.tokens = "busy", why, 0, 0
        self.deferred.append((item, result))

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
            if doc.claim.lost is not None:
                self.lost(doc)
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
        done = replace(doc.done, chunks=doc.result.chunks, tokens=doc.result.tokens)
        try:
            versions.complete(self.writer, self.leases, doc.claim, done)
        except LeaseLost:
            self.lost(doc)
            return
        self.known[done.doc_id] = done

    def abandon(self, doc: _Doc, error: str) -> None:
        doc.failed = True
        doc.result.status, doc.result.error = "failed", error
        versions.abandon(self.writer, self.leases, doc.claim)

    def lost(self, doc: _Doc) -> None:
        """This run's lease on the document lapsed: leave it to whoever holds it next, try again at the end."""
        doc.failed = True
        self.leases.release(doc.claim, self.writer)
        self._defer(doc.item, doc.result, f"{doc.item.source}: this run lost its lease ({doc.claim.lost})")

    def retry_deferred(self) -> None:
        """Documents that another writer held get another try, waiting for them up to ``busy_wait_seconds``."""
        if not self.deferred:
            return
        self.encode_group()  # finish what this run holds before waiting on others
        deadline = time.monotonic() + self.timings.busy_wait_seconds
        deferred, self.deferred = self.deferred, []
        for item, result in deferred:
            result.status, result.error = "ok", None
            self.process(item, result, wait=max(0.0, deadline - time.monotonic()))
        self.encode_group()

    def close(self) -> None:
        self.encode_group()
        crash_point("end")
        self.writer.close()
        self.chunks_bar.close()


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
    owner: Owner | None = None,
    partition: Partition | None = None,
) -> IngestReport:
    """Index files and folders into the configured collection; returns what happened to each file.

    ``prune`` removes documents recorded under an ingested folder that are no longer there;
    ``fail_fast`` stops at the first file that fails (what was complete stays written); ``metadata`` is
    stored with every chunk under ``metadata.*``; ``owner`` names the run in its leases (jobs that are
    parts of one run, e.g. partitions or Ray tasks, pass ``Owner.new(label, run_id=<the run's id>)``);
    ``partition`` takes only its share of the documents (and prunes only that share).
    Raises ``IngestStopped`` (with the report) when the store fails for good mid-run.
    """
    metadata = check_metadata(metadata) if metadata else None  # refused once, not once per file
    report = IngestReport(collection=store.collection)
    items, found = find_items(paths, settings, report)
    if partition is not None:
        items = [item for item in items if partition.holds(item_doc_id(item))]
    owner = owner or Owner.new("ingest " + " ".join(str(p) for p in paths))
    run = _Run(settings, encoder, store, report, progress, owner, metadata)
    run.share = partition
    return _execute(run, items, found if prune else {}, recreate, fail_fast)


def ingest_documents(
    documents: Sequence[Document],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    progress: bool = False,
    owner: Owner | None = None,
) -> IngestReport:
    """Index documents already in memory (uploads): same chunking, ids, versions and report as files."""
    report = IngestReport(collection=store.collection)
    items = [Item(source=doc.doc_id, root="", document=doc) for doc in documents]
    owner = owner or Owner.new(f"ingest {len(documents)} documents")
    run = _Run(settings, encoder, store, report, progress, owner)
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

    The same bytes again are not encoded again: the stored version takes the new metadata and name
    (``indexer.admin.update_metadata``) and the result says "unchanged". Raises ``InvalidInputError``
    for a name, doc id or metadata that cannot be stored, ``LoaderError`` for bytes that cannot be read
    as a document of ``name``'s type.
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
    [result] = ingest_documents([doc], settings, encoder, store, owner=Owner.new(f"upload {name}")).files
    if result.status == "unchanged":
        record = update_metadata(store, doc)
        if record is None:  # another writer changed the document since the run read its record
            result.status, result.error = "failed", "the document changed meanwhile; upload it again"
        else:
            result.chunks, result.tokens = record.chunks, record.tokens
    return doc, result


def _execute(
    run: _Run, items: list[Item], prune_roots: dict[str, set[str]], recreate: bool, fail_fast: bool
) -> IngestReport:
    started = time.perf_counter()
    report = run.report
    files_bar = tqdm(total=len(items), unit="file", desc="files", disable=not run.progress)
    try:
        run.prepare(recreate)  # a schema or provenance mismatch stops here, as itself
    except BaseException:
        files_bar.close()
        run.chunks_bar.close()
        run.leases.close()
        raise
    try:
        for item in items:
            result = run.process(item)
            files_bar.update(1)
            if fail_fast and result.status == "failed":
                report.stopped = f"--fail-fast: {result.source}: {result.error}"
                break
        run.refresh_touched()
        if report.stopped is None:
            run.retry_deferred()
            for root, present in prune_roots.items():
                known = [r for r in run.known.values() if run.share is None or run.share.holds(r.doc_id)]
                report.pruned.extend(prune(run.writer, run.leases, known, root, present))
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
        run.leases.close()  # gives up what a run that stopped midway still holds
    report.seconds = time.perf_counter() - started
    logger.info("ingest: %s", report.summary())
    return report
