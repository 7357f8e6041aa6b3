"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store, overlapped.

Three threads, so that the model never waits for the CPU when there is work (``indexer.stages``):

- the feed (``indexer.prepare``) examines each item (a stat, a hash), parses and chunks changed documents
  (with token ids; in worker processes where that pays) and queues their chunks, bounded by tokens;
- the model thread encodes them, sorted by length across documents, and hands each pass over;
- this (the run's) thread claims each document's lease when its first chunk comes out of the model, and
  writes: points, then, per document once every chunk of it is *acknowledged* by the store, the
  document-version switch and cleanup (``versions.complete_many``), through one ordered, fenced writer.

Memory is bounded by the token queue, the write lag and one write batch, not by the corpus (and glibc's heap
by a fixed mmap threshold, ``indexer.heap``). Runs are
incremental and crash-safe: an unchanged document is skipped before it is parsed, and a changed one goes
through the document-version protocol (``indexer.versions``), so that a run killed at any moment is
repaired by the next one. Runs may share a collection: a run changes a document only under its lease
(``indexer.leases``); a document another live writer holds is tried again at the end of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexer import versions
from indexer.admin import prune, update_metadata
from indexer.changes import Item, find_items, item_doc_id
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.distributed.partition import Partition
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.encoder.m3 import WINDOW_BATCHES
from indexer.errors import StoreError
from indexer.faults import crash_point
from indexer.heap import pin_mmap_threshold
from indexer.leases import Leases, LeaseTimings, Owner
from indexer.loaders import load_bytes
from indexer.models import Document, Embedding, EncodedChunk
from indexer.outcomes import Doc, Documents
from indexer.points import to_point
from indexer.prepare import Prepared, Preparer
from indexer.records import COLLECTION_RECORD_ID, CollectionRecord
from indexer.report import FileResult, IngestReport, IngestStopped
from indexer.runtime import collection_spec
from indexer.stages import Aborted, ModelStage, TokenQueue, Work, WriteGate, inbox, plan_stages, streams
from indexer.store import SerializedStore, Store
from indexer.validation import check_metadata
from indexer.versions import COMPLETE, DocumentRecord
from indexer.writer import Writer

__all__ = ["FileResult", "IngestReport", "IngestStopped", "Owner", "ingest", "ingest_bytes", "ingest_documents"]

logger = logging.getLogger(__name__)

WRITE_LAG_BATCHES = 4  # with write_behind: encoded tokens the writer may trail by, in model batches per device


class _Run(Documents):
    def __init__(
        self,
        settings: Settings,
        encoder: Encoder,
        store: Store,
        report: IngestReport,
        progress: bool,
        owner: Owner,
        metadata: dict[str, Any] | None = None,
        fail_fast: bool = False,
    ) -> None:
        pin_mmap_threshold(settings.ingest.malloc_mmap_threshold_kb)  # the heap must not grow with the corpus
        # The lease renewal thread calls the store too: one lock for both (shared if the caller has one).
        self.store = store if isinstance(store, SerializedStore) else SerializedStore(store)
        self.settings, self.encoder, self.report = settings, encoder, report
        self.metadata, self.fail_fast = metadata, fail_fast
        self.spec = collection_spec(settings, encoder)
        self.streaming = streams(encoder)
        self.preparer = Preparer(
            settings,
            metadata,
            self._chunker,
            lambda: self._plan()[0],
            getattr(encoder, "model_dir", None) if self.streaming else None,
        )
        timings = LeaseTimings.from_settings(settings.ingest)
        leases = Leases(self.store, owner, timings, retries=settings.ingest.write_retries)
        writer = Writer(
            self.store,
            max_points=settings.ingest.write_batch_points,
            max_bytes=settings.ingest.write_batch_bytes,
            retries=settings.ingest.write_retries,
            fence=leases.fence,
        )
        super().__init__(leases, timings, writer, report)
        self.progress = progress
        self.files_bar = tqdm(unit="file", desc="files", disable=not progress)
        self.chunks_bar = tqdm(unit="chunk", desc="chunks", disable=not progress)
        self._planned: tuple[int, bool, int] | None = None
        self._plan_lock = threading.Lock()
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

    def _chunker(self) -> Chunker:
        c = self.settings.chunking
        tokenizer = self.encoder.tokenizer  # built on the first changed document: no tokenizer for unchanged runs
        return Chunker(tokenizer, c.chunk_size, c.chunk_overlap, headings=c.headings, ids=self.streaming)

    def _plan(self) -> tuple[int, bool, int]:
        """(parsing processes, write behind, devices), on first need (``plan_stages``: it may import torch)."""
        with self._plan_lock:
            if self._planned is None:
                self._planned = plan_stages(self.settings.ingest, self.encoder)
            return self._planned

    # --------------------------------------------------------------------------------------- the stream

    def stream(self, entries: list[tuple[Item, FileResult]]) -> None:
        """Feed, encode and write ``entries``; returns once each is written, unchanged, failed or deferred."""
        batch_tokens = getattr(self.encoder, "max_batch_tokens", self.settings.model.max_batch_tokens)
        group = self.settings.model.batch_size * BATCHES_PER_CALL
        size = 2 * WINDOW_BATCHES * batch_tokens if self.streaming else 2 * group * self.settings.chunking.chunk_size
        queue: TokenQueue[Work] = TokenQueue(size)
        gate = WriteGate()
        messages = inbox()
        stop = threading.Event()

        def plan_model() -> int:  # in the model thread, before its first pass: the first window's tokens
            _, behind, devices = self._plan()
            queue.max_tokens = size * devices
            gate.lag = WRITE_LAG_BATCHES * batch_tokens * devices if behind else 0
            return WINDOW_BATCHES * batch_tokens * devices if self.streaming else 0

        model = ModelStage(
            self.encoder, queue, gate, messages.put, stream=self.streaming, group=group, prepare=plan_model
        )
        feed = threading.Thread(target=self._feed, args=(entries, queue, messages.put, stop), name="ingest-feed")
        feed.start()
        model.start()
        done = 0
        try:
            while done < 2:
                kind, payload = messages.get()
                if kind in ("feed-done", "model-done"):
                    done += 1
                elif kind == "error":
                    raise payload
                else:
                    self._handle(kind, payload, stop)
                payload = None  # written: its vectors must not live on while this thread waits for the next
                if messages.empty():
                    self._idle(gate)
            self._idle(gate)
        except BaseException:
            stop.set()
            queue.abort()
            gate.abort()
            raise
        finally:
            feed.join()
            self._account(model)
        model.thread.join()  # it has said it is done

    def _feed(
        self, entries: list[tuple[Item, FileResult]], queue: TokenQueue[Work], out: Any, stop: threading.Event
    ) -> None:
        try:
            wanted = ((item, result) for item, result in entries if not stop.is_set())
            for p in self.preparer.prepared(wanted, lambda doc_id: self.known.get(doc_id)):
                self.files_bar.update(1)
                if p.refresh is not None:
                    out(("touched", (p.item, p.result, p.refresh)))
                elif p.result.status == "failed" and self.fail_fast:
                    out(("stop", f"--fail-fast: {p.result.source}: {p.result.error}"))
                    break
                elif p.chunks:
                    crash_point("document")
                    doc = self._doc(p)
                    queue.put_many([(Work(doc, c), c.token_count) for c in p.chunks])
        except Aborted:
            pass
        except BaseException as e:  # handed to the run's thread, which raises it
            out(("error", e))
        finally:
            queue.close()
            out(("feed-done", None))

    def _doc(self, p: Prepared) -> Doc:
        first = p.chunks[0]
        record = DocumentRecord(first.doc_id, first.source, p.item.root, first.content_hash, COMPLETE)
        return Doc(p.item, p.result, record.with_file(p.file_stat), total=len(p.chunks))

    def _handle(self, kind: str, payload: Any, stop: threading.Event) -> None:
        if kind == "encoded":
            self._write(*payload)
        elif kind == "failed":
            works, error = payload
            self.processed += sum(w.tokens for w in works)
            for doc in {id(w.doc): w.doc for w in works}.values():
                if doc.live:
                    self.abandon(doc, error)
                    if self.fail_fast and self.report.stopped is None:
                        self.report.stopped = f"--fail-fast: {doc.result.source}: {error}"
                        stop.set()
        elif kind == "touched":
            self.touched.append(payload)
        elif kind == "stop":
            self.report.stopped = payload
            stop.set()

    def _account(self, model: ModelStage) -> None:
        s, r = model.stats, self.report
        r.model_load_seconds += s.load_seconds
        r.encode_seconds += s.encode_seconds
        r.model_input_wait_seconds += s.input_wait_seconds
        r.model_write_wait_seconds += s.write_wait_seconds

    # --------------------------------------------------------------------------------------- writing

    def _write(self, batch: list[tuple[Work, Embedding]], seconds: float) -> None:
        self.processed += sum(w.tokens for w, _ in batch)
        self._claim([w.doc for w, _ in batch if w.doc.live and w.doc.claim is None])
        share = seconds / max(1, len(batch))
        written = 0
        for work, embedding in batch:
            doc = work.doc
            if not doc.live:
                continue
            assert doc.claim is not None
            if doc.claim.lost is not None:
                self.lost(doc)
                continue
            self.writer.add(to_point(EncodedChunk(work.chunk, embedding), self.spec))
            doc.encoded += 1
            doc.result.chunks += 1
            doc.result.tokens += work.chunk.token_count
            doc.result.seconds += share
            written += 1
            if doc.encoded == doc.total:
                doc.last = self.writer.handed
                self.finishing.append(doc)
        self.chunks_bar.update(written)

    # --------------------------------------------------------------------------------------- the run

    def run(self, items: list[Item], prune_roots: dict[str, set[str]]) -> None:
        entries = []
        for item in items:
            result = FileResult(source=item.source)
            self.report.files.append(result)
            entries.append((item, result))
        self.files_bar.reset(total=len(entries))
        self.stream(entries)
        self.refresh_touched()
        while self.again and self.report.stopped is None:  # written again: another run replaced their version
            again, self.again = self.again, []
            for _, result in again:
                result.status = "ok"
            self.stream(again)
            self.refresh_touched()
        if self.report.stopped is not None:
            self.unreached()
        else:
            self.retry_deferred()
            known = [r for r in self.known.values() if self.share is None or self.share.holds(r.doc_id)]
            for root, present in prune_roots.items():
                self.report.pruned.extend(prune(self.writer, self.leases, known, root, present))
        crash_point("end")
        self.writer.close()

    def retry_deferred(self) -> None:
        """Documents that another writer held get another try, waiting for them up to ``busy_wait_seconds``."""
        if not self.deferred:
            return
        self.wait_until = time.monotonic() + self.timings.busy_wait_seconds
        deferred, self.deferred = self.deferred, []
        for _, result in deferred:
            result.status, result.error = "ok", None
        self.stream(deferred)
        self.refresh_touched()
        self.wait_until = None

    def close(self) -> None:
        self.preparer.close()
        self.files_bar.close()
        self.chunks_bar.close()
        self.leases.close()  # gives up what a run that stopped midway still holds


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
    run = _Run(settings, encoder, store, report, progress, owner, metadata, fail_fast)
    run.share = partition
    return _execute(run, items, found if prune else {}, recreate)


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
    return _execute(run, items, {}, False)


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


def _execute(run: _Run, items: list[Item], prune_roots: dict[str, set[str]], recreate: bool) -> IngestReport:
    started = time.perf_counter()
    report = run.report
    try:
        run.prepare(recreate)  # a schema or provenance mismatch stops here, as itself
    except BaseException:
        run.close()
        raise
    try:
        run.run(items, prune_roots)
    except StoreError as e:
        report.seconds = time.perf_counter() - started
        raise IngestStopped.by_store(e, report) from e
    finally:
        run.close()
    report.seconds = time.perf_counter() - started
    logger.info("ingest: %s", report.summary())
    return report
