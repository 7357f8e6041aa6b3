"""The documents of an ingest run between the model and the store: claims, completion, deferral.

``Documents`` is the part of the run (``indexer.pipeline``) that decides each changed document's fate
once its chunks come out of the model: it claims the document's lease (``indexer.leases``) before any
of it is written, completes it through the document-version protocol (``versions.complete_many``) only
once the store has acknowledged every chunk of it, abandons it when encoding fails, and defers it when
another live writer holds it or this run's lease lapsed (tried again at the end of the run). Touched,
unchanged files get their new modification time recorded, many at a time, under claims.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

from indexer import versions
from indexer.changes import Item
from indexer.errors import DocumentBusy
from indexer.faults import crash_point
from indexer.leases import Claim, Leases, LeaseTimings
from indexer.report import FileResult, IngestReport
from indexer.stages import WriteGate
from indexer.versions import DocumentRecord, FileStat
from indexer.writer import Writer

REFRESH_BATCH = 64  # touched, unchanged files whose records are rewritten together


@dataclass(slots=True, eq=False)
class Doc:
    """A changed document on its way through the model to the store."""

    item: Item
    result: FileResult
    done: DocumentRecord  # its record once complete (counts filled in then)
    total: int  # chunks
    claim: Claim | None = None  # taken when its first chunk comes out of the model
    encoded: int = 0  # chunks handed to the writer
    last: int = 0  # ``Writer.handed`` after its last chunk: acknowledged once ``Writer.written`` passes it
    live: bool = True  # False once completed, failed, deferred or found unchanged: later chunks are dropped


class Documents:
    """The run's bookkeeping of documents (see the module docstring); ``indexer.pipeline._Run`` extends it."""

    def __init__(self, leases: Leases, timings: LeaseTimings, writer: Writer, report: IngestReport) -> None:
        self.leases, self.timings, self.writer, self.report = leases, timings, writer, report
        self.deferred: list[tuple[Item, FileResult]] = []  # documents another writer held
        self.touched: list[tuple[Item, FileResult, DocumentRecord]] = []  # unchanged files with a new mtime
        self.again: list[tuple[Item, FileResult]] = []  # touched files whose version another run replaced
        self.inflight: dict[str, Doc] = {}  # claimed, not complete yet
        self.finishing: list[Doc] = []  # every chunk handed to the writer
        self.known: dict[str, DocumentRecord] = {}
        self.wait_until: float | None = None  # retries of busy documents wait for them until then
        self.processed = 0  # encoded tokens taken since the last idle moment (for the write gate)
        self.completed: set[int] = set()  # ``id`` of the results of documents this run completed

    def _claim(self, docs: list[Doc]) -> None:
        """Claim documents whose first chunks are encoded, before any of them is written (one claim write)."""
        wanted: dict[str, Doc] = {}
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
                    self.completed.add(id(doc.result))
        if len(self.touched) >= REFRESH_BATCH:
            self.refresh_touched()
        gate.written(processed)

    # --------------------------------------------------------------------------------------- outcomes

    def unreached(self) -> None:
        """A run stopped by ``--fail-fast`` reports only the files it settled: documents it read ahead, or
        never reached, and did not complete are left out (a later run takes them, as if this one never saw
        them)."""
        settled = [f for f in self.report.files if f.status != "ok" or id(f) in self.completed]
        self.report.files[:] = settled

    def _drop(self, doc: Doc, status: str, error: str | None) -> None:
        doc.live = False
        if status == "busy":
            self._defer(doc.item, doc.result, error or "")
        else:
            doc.result.status, doc.result.error = status, error

    def abandon(self, doc: Doc, error: str) -> None:
        doc.live = False
        doc.result.status, doc.result.error = "failed", error
        if doc.claim is not None:
            self.inflight.pop(doc.done.doc_id, None)
            versions.abandon(self.writer, self.leases, doc.claim)

    def lost(self, doc: Doc) -> None:
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
