"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store, overlapped.

Three threads, so that the model never waits for the CPU when there is work (``indexer.stages``):

- the feed (``indexer.prepare``) examines each item (a stat, a hash), parses and chunks changed documents
  (with token ids; in worker processes where that pays) and queues their chunks, bounded by tokens;
- the model thread encodes them, sorted by length across documents, and hands each pass over;
- this (the run's) thread claims each document's lease when its first chunk comes out of the model, and
  writes: points, then, per document once every chunk of it is *acknowledged* by the store, the
  document-version switch and cleanup (``versions.complete_many``), through one ordered, fenced writer.

Memory is bounded by the token queue, the write lag and one write batch, not by the corpus. Runs are
incremental and crash-safe: an unchanged document is skipped before it is parsed, and a changed one goes
through the document-version protocol (``indexer.versions``), so that a run killed at any moment is
repaired by the next one. Runs may share a collection: a run changes a document only under its lease
(``indexer.leases``); a document another live writer holds is tried again at the end of the run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexer import versions
from indexer.admin import prune, update_metadata
from indexer.changes import Item, find_items
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.encoder.m3 import WINDOW_BATCHES
from indexer.errors import DocumentBusy, StoreError
from indexer.faults import crash_point
from indexer.leases import Claim, Leases, LeaseTimings, Owner
from indexer.loaders import load_bytes
from indexer.models import Document, Embedding, EncodedChunk
from indexer.points import to_point
from indexer.prepare import Prepared, Preparer
from indexer.records import COLLECTION_RECORD_ID, CollectionRecord
from indexer.report import FileResult, IngestReport, IngestStopped
from indexer.runtime import collection_spec
from indexer.stages import Aborted, ModelStage, TokenQueue, Work, WriteGate, inbox
from indexer.store import SerializedStore, Store
from indexer.validation import check_metadata
from indexer.versions import COMPLETE, DocumentRecord, FileStat
from indexer.writer import Writer

__all__ = ["FileResult", "IngestReport", "IngestStopped", "Owner", "ingest", "ingest_bytes", "ingest_documents"]

logger = logging.getLogger(__name__)

REFRESH_BATCH = 64  # touched, unchanged files whose records are rewritten together
WRITE_LAG_BATCHES = 4  # with write_behind: encoded tokens the writer may trail by, in model batches per device


@dataclass(slots=True, eq=False)
class _Doc:
    """A changed document on its way through the model to the store."""

    item: Item
    result: FileResult
    done: DocumentRecord  # its record once complete (counts filled in then)
    total: int  # chunks
    claim: Claim | None = None  # taken when its first chunk comes out of the model
    encoded: int = 0  # chunks handed to the writer
    last: int = 0  # ``Writer.handed`` after its last chunk: acknowledged once ``Writer.written`` passes it
    live: bool = True  # False once completed, failed, deferred or found unchanged: later chunks are dropped


def streams(encoder: Encoder) -> bool:
    """Whether the encoder's class streams pre-tokenized input (a wrapper that overrides ``encode_passages``
    only is called with texts, as the ``Encoder`` protocol says)."""
    return callable(getattr(type(encoder), "iter_encode_batches", None))


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
        fail_fast: bool = False,
    ) -> None:
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
        self.again: list[tuple[Item, FileResult]] = []  # touched files whose version another run replaced
        self.inflight: dict[str, _Doc] = {}  # claimed, not complete yet
        self.finishing: list[_Doc] = []  # every chunk handed to the writer
        self.known: dict[str, DocumentRecord] = {}
        self.progress = progress
        self.files_bar = tqdm(unit="file", desc="files", disable=not progress)
        self.chunks_bar = tqdm(unit="chunk", desc="chunks", disable=not progress)
        self._planned: tuple[int, bool, int] | None = None
        self._plan_lock = threading.Lock()
        self.wait_until: float | None = None  # retries of busy documents wait for them until then
        self.processed = 0  # encoded tokens taken since the last idle moment (for the write gate)

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
        """(parsing processes, write behind, devices): chosen per device, on first need (it may import torch).

        On a GPU the CPU stages must keep up with tens of thousands of tokens/s: parsing in processes, writes
        overlapping the model. On a CPU torch uses every core for the forward pass: helpers steal from it, so
        one feed thread parses and writes run between passes (see the README for the measurements).
        """
        with self._plan_lock:
            if self._planned is None:
                ingest = self.settings.ingest
                devices: list[str] = ["cpu"]
                if ingest.prepare_workers is None or ingest.write_behind is None:
                    devices = list(getattr(self.encoder, "devices", None) or ["cpu"])
                gpu = any(d.startswith(("cuda", "mps")) for d in devices)
                cores = _cores()
                workers = ingest.prepare_workers if ingest.prepare_workers is not None else gpu * min(8, cores - 2)
                behind = ingest.write_behind if ingest.write_behind is not None else gpu
                self._planned = (max(0, workers), behind, len(devices))
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

        def plan_model() -> None:  # in the model thread, before its first pass
            _, behind, devices = self._plan()
            queue.max_tokens = size * devices
            gate.lag = WRITE_LAG_BATCHES * batch_tokens * devices if behind else 0

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

    def _doc(self, p: Prepared) -> _Doc:
        first = p.chunks[0]
        record = DocumentRecord(first.doc_id, first.source, p.item.root, first.content_hash, COMPLETE)
        return _Doc(p.item, p.result, record.with_file(p.file_stat), total=len(p.chunks))

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

    def _claim(self, docs: list[_Doc]) -> None:
        """Claim documents whose first chunks are encoded, before any of them is written (one claim write)."""
        wanted: dict[str, _Doc] = {}
        for doc in {id(d): d for d in docs}.values():
            if doc.done.doc_id in wanted:  # the same doc id twice (two roots): the second one after the first
                self._drop(doc, "busy", f"{doc.done.doc_id!r} is being written by this run already")
            else:
                wanted[doc.done.doc_id] = doc
        if not wanted:
            return
        held, refused = self.leases.claim_many({d: doc.done.content_hash for d, doc in wanted.items()})
        if self.wait_until is not None:  # retries wait for documents another writer holds
            for doc_id in list(refused):
                with contextlib.suppress(DocumentBusy):
                    remaining = max(0.0, self.wait_until - time.monotonic())
                    held[doc_id] = self.leases.claim(doc_id, wanted[doc_id].done.content_hash, wait=remaining)
                    del refused[doc_id]
        for doc_id, doc in wanted.items():
            claim = held.get(doc_id)
            if claim is None:
                self._drop(doc, "busy", refused[doc_id])
            elif claim.record is not None and claim.record.is_complete(doc.done.content_hash):
                self._drop(doc, "unchanged", None)  # written by another run meanwhile
                self._keep(claim, claim.record, doc.item, (doc.done.file_size, doc.done.file_mtime_ns))
            else:
                doc.claim = claim
                self.inflight[doc_id] = doc

    def _idle(self, gate: WriteGate) -> None:
        """Nothing to write right now: get what is buffered acknowledged, complete what it completes."""
        self.writer.flush()
        processed, self.processed = self.processed, 0
        for doc in [d for d in self.inflight.values() if d.claim is not None and d.claim.lost is not None]:
            self.lost(doc)
        ready = [d for d in self.finishing if d.live and self.writer.written >= d.last]
        self.finishing = [d for d in self.finishing if d.live and self.writer.written < d.last]
        if ready:
            for _ in ready:
                crash_point("finalize")
            records = [replace(d.done, chunks=d.result.chunks, tokens=d.result.tokens) for d in ready]
            claims = [(d.claim, r) for d, r in zip(ready, records, strict=True) if d.claim is not None]
            lost = versions.complete_many(self.writer, self.leases, claims)
            for doc, record in zip(ready, records, strict=True):
                if doc.claim in lost:
                    self.lost(doc)
                else:
                    doc.live = False
                    del self.inflight[record.doc_id]
                    self.known[record.doc_id] = record
        if len(self.touched) >= REFRESH_BATCH:
            self.refresh_touched()
        gate.written(processed)

    # --------------------------------------------------------------------------------------- outcomes

    def _drop(self, doc: _Doc, status: str, error: str | None) -> None:
        doc.live = False
        if status == "busy":
            self._defer(doc.item, doc.result, error or "")
        else:
            doc.result.status, doc.result.error = status, error

    def abandon(self, doc: _Doc, error: str) -> None:
        doc.live = False
        doc.result.status, doc.result.error = "failed", error
        if doc.claim is not None:
            self.inflight.pop(doc.done.doc_id, None)
            versions.abandon(self.writer, self.leases, doc.claim)

    def lost(self, doc: _Doc) -> None:
        """This run's lease on the document lapsed: leave it to whoever holds it next, try again at the end."""
        assert doc.claim is not None
        doc.live = False
        self.inflight.pop(doc.done.doc_id, None)
        self.leases.release(doc.claim, self.writer)
        self._defer(doc.item, doc.result, f"{doc.item.source}: this run lost its lease ({doc.claim.lost})")

    def _keep(self, claim: Claim, current: DocumentRecord, item: Item, file_stat: FileStat) -> None:
        """The document is complete as it is: record this file's size and modification time, release it."""
        fresh = current.with_file(file_stat) if item.file is not None else current
        versions.refresh(self.writer, self.leases, [(claim, fresh if fresh != current else None)])
        self.known[current.doc_id] = fresh

    def _defer(self, item: Item, result: FileResult, why: str) -> None:
        result.status, result.error, result.chunks, result.tokens = "busy", why, 0, 0
        self.deferred.append((item, result))

    def refresh_touched(self) -> None:
        """Record the new modification times of touched, unchanged files, many at once and under claims (the
        records may have changed since this run read them); documents another writer holds are deferred."""
        touched, self.touched = self.touched, []
        if not touched:
            return
        held, refused = self.leases.claim_many({record.doc_id: None for _, _, record in touched})
        if self.wait_until is not None:
            for doc_id in list(refused):
                with contextlib.suppress(DocumentBusy):
                    held[doc_id] = self.leases.claim(doc_id, None, wait=max(0.0, self.wait_until - time.monotonic()))
                    del refused[doc_id]
        changes = []
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
                self.again.append((item, result))
                self.known.pop(record.doc_id, None)
                if current is not None:
                    self.known[current.doc_id] = current
        versions.refresh(self.writer, self.leases, changes)

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
        if self.report.stopped is None:
            self.retry_deferred()
            for root, present in prune_roots.items():
                self.report.pruned.extend(prune(self.writer, self.leases, self.known.values(), root, present))
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


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
) -> IngestReport:
    """Index files and folders into the configured collection; returns what happened to each file.

    ``prune`` removes documents recorded under an ingested folder that are no longer there;
    ``fail_fast`` stops at the first file that fails (what was complete stays written); ``metadata`` is
    stored with every chunk under ``metadata.*``; ``owner`` names the run in its leases (jobs that are
    parts of one run, e.g. partitions or Ray tasks, pass ``Owner.new(label, run_id=<the run's id>)``).
    Raises ``IngestStopped`` (with the report) when the store fails for good mid-run.
    """
    metadata = check_metadata(metadata) if metadata else None  # refused once, not once per file
    report = IngestReport(collection=store.collection)
    items, found = find_items(paths, settings, report)
    owner = owner or Owner.new("ingest " + " ".join(str(p) for p in paths))
    run = _Run(settings, encoder, store, report, progress, owner, metadata, fail_fast)
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
        raise IngestStopped(
            f"the store failed and the run stopped: {e}. What was complete is kept; run the same command "
            "again to finish",
            report,
        ) from e
    finally:
        run.close()
    report.seconds = time.perf_counter() - started
    logger.info("ingest: %s", report.summary())
    return report
