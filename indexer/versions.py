"""The document-version protocol: how a document changes from one version to the next, crash-safely,
while other writers may share the collection.

Each document has one record (a point without vectors) naming its complete version (content hash). A
writer changes a document only while it holds the document's lease (``indexer.leases``: a point per claim,
naming the version being written), and through one ordered write stream (``indexer.writer``), so that a
record never claims more than the store holds:

1. ``Leases.claim``: the lease names the new version before any chunk of it is written; the record still
   names the previous version, and searches still find it.
2. The new version's chunks are written (point ids depend on the content hash: old and new coexist).
3. ``complete``: the record names the new version; every other version's chunks are deleted, except a
   version another live writer announces; then the lease is deleted.

``abandon`` undoes a version that cannot be completed. A writer that dies at any moment leaves its lease,
from which the next holder of the document repairs it (``recover``, at the start of every run, looks for
leases nobody holds any more): every chunk of a version other than the one the record names is deleted,
then the dead lease. Nothing complete is ever lost: a record changes only once the version it names is
complete, and is removed before the chunks it names. Records in state "writing" or "cleanup", which
builds before leases wrote, are repaired the same way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from indexer.conditions import Filter, HasId
from indexer.errors import DocumentBusy, LeaseLost
from indexer.models import PointRecord
from indexer.points import POINT_NAMESPACE
from indexer.records import KIND, KIND_DOCUMENT, chunks_filter, kind_filter, match
from indexer.store import Store

if TYPE_CHECKING:
    from indexer.leases import Claim, Leases
    from indexer.writer import Writer

logger = logging.getLogger(__name__)

COMPLETE = "complete"
WRITING, CLEANUP = "writing", "cleanup"  # states of records written by builds before leases (repaired on sight)

FileStat = tuple[int | None, int | None]  # (size, mtime in ns) of the file a version was read from


def document_record_id(doc_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"\x1fdocument\x1f{doc_id}"))


def record_filter(doc_id: str) -> Filter:
    """The record point of one document."""
    return Filter(must=(HasId((document_record_id(doc_id),)),))


def unfinished_filter() -> Filter:
    """Document records a build before leases left in the middle of a change."""
    return Filter(must=(match(KIND, KIND_DOCUMENT),), must_not=(match("state", COMPLETE),))


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    doc_id: str
    source: str
    root: str  # the ingest root the document was found under ("" for uploads); --prune works per root
    content_hash: str | None  # the complete version, if any
    state: str = COMPLETE  # always complete since leases; "writing" or "cleanup" in records of older builds
    pending_hash: str | None = None  # the version an older build was writing
    chunks: int = 0
    tokens: int = 0
    file_size: int | None = None  # with the modification time: an untouched file is not even read again
    file_mtime_ns: int | None = None

    def point(self) -> PointRecord:
        return PointRecord(id=document_record_id(self.doc_id), payload={KIND: KIND_DOCUMENT, **asdict(self)})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocumentRecord:
        return cls(
            **{k: payload.get(k) for k in cls.__dataclass_fields__}
            | {
                "chunks": int(payload.get("chunks") or 0),
                "tokens": int(payload.get("tokens") or 0),
                "state": payload.get("state") or COMPLETE,
                "root": payload.get("root") or "",
            }
        )

    def is_complete(self, content_hash: str | None = None) -> bool:
        """Complete (and, given a hash, holding exactly that version)."""
        return self.state == COMPLETE and (content_hash is None or self.content_hash == content_hash)

    def with_file(self, file_stat: FileStat) -> DocumentRecord:
        return replace(self, file_size=file_stat[0], file_mtime_ns=file_stat[1])


def document_records(store: Store, flt: Filter | None = None) -> Iterable[DocumentRecord]:
    for p in store.scroll(flt or kind_filter(KIND_DOCUMENT)):
        yield DocumentRecord.from_payload(p.payload)


# ------------------------------------------------------------------------------------ transitions
# Each runs under a held claim (``Leases.claim``) and ends by releasing it.


def complete(writer: Writer, leases: Leases, claim: Claim, done: DocumentRecord) -> DocumentRecord:
    """Step 3: every chunk of ``done``'s version was handed to ``writer``; switch to it, then clean up.

    Raises ``LeaseLost`` when the claim lapsed; whatever was written by then is repaired like a crash.
    """
    if complete_many(writer, leases, [(claim, done)]):
        raise LeaseLost(f"{claim.doc_id!r}: {claim.lost}")
    return done


def complete_many(writer: Writer, leases: Leases, done: list[tuple[Claim, DocumentRecord]]) -> list[Claim]:
    """``complete`` for many documents at once (one write of records, one read of leases, one delete of old
    versions, one of leases); returns the claims found lapsed, whose documents are left as a crash leaves them.

    What was handed to ``writer`` before is acknowledged first: a record never names a version before the
    store has confirmed all of its chunks.
    """
    writer.flush()
    lost: list[Claim] = []
    live: list[tuple[Claim, DocumentRecord]] = []
    for claim, record in done:
        try:
            leases.check(claim)
            live.append((claim, record))
        except LeaseLost:
            lost.append(claim)
    for _, record in live:
        writer.add(record.point())
    others = leases.others_writing_many([claim for claim, _ in live]) if live else {}
    cleanups: list[tuple[Claim, Filter]] = []
    for claim, record in live:
        versions = others[claim.doc_id]
        if versions is None:
            lost.append(claim)
            continue
        keep = {h for h in [record.content_hash] if h} | versions
        cleanups.append((claim, chunks_filter(record.doc_id, other_than=keep)))
    finished = [claim for claim, _ in cleanups]
    try:  # one delete for all (the records go first: the writer writes what it holds before a delete)
        if cleanups:  # (an empty ``should`` would match every point)
            either = Filter(should=tuple(f for _, f in cleanups))
            writer.delete(either, check=lambda: _check_all(leases, finished))
    except LeaseLost:  # some claim lapsed meanwhile: each document on its own
        finished = []
        for claim, flt in cleanups:
            try:
                writer.delete(flt, check=lambda claim=claim: leases.check(claim))  # type: ignore[misc]
                finished.append(claim)
            except LeaseLost:
                lost.append(claim)
    leases.release_many(finished, writer)
    return lost


def _check_all(leases: Leases, claims: list[Claim]) -> None:
    for claim in claims:
        leases.check(claim)


def abandon(writer: Writer, leases: Leases, claim: Claim) -> None:
    """Undo what this or an earlier writer left of other versions: keep only the version the record names.

    A record an older build left mid-change is completed (or removed, if it named no complete version).
    A lost claim changes nothing: its lease stays for whoever holds the document next.
    """
    if claim.lost is None:
        try:
            leases.check(claim)
            record = claim.record
            keep = {record.content_hash} if record is not None and record.content_hash else set()
            keep |= leases.others_writing(claim)
            writer.delete(chunks_filter(claim.doc_id, other_than=keep), check=lambda: leases.check(claim))
            if record is not None and not record.is_complete():
                if record.content_hash is None:
                    writer.delete(record_filter(claim.doc_id), check=lambda: leases.check(claim))
                else:
                    writer.add(replace(record, state=COMPLETE, pending_hash=None).point())
        except LeaseLost:
            pass
    leases.release(claim, writer)


def refresh(writer: Writer, leases: Leases, changes: list[tuple[Claim, DocumentRecord | None]]) -> None:
    """Rewrite complete records (a new modification time of the same content), each under its claim, then
    release the claims (None: nothing to rewrite)."""
    for _, record in changes:
        if record is not None:
            writer.add(record.point())  # the fence drops it if the claim lapsed meanwhile
    leases.release_many([claim for claim, _ in changes], writer)


def remove(writer: Writer, leases: Leases, claim: Claim) -> None:
    """A document's record, then every chunk of every version (a crash in between leaves no record naming
    deleted chunks), then its lease."""
    leases.check(claim)
    writer.delete(record_filter(claim.doc_id), check=lambda: leases.check(claim))
    writer.delete(chunks_filter(claim.doc_id), check=lambda: leases.check(claim))
    leases.release(claim, writer)


def recover(store: Store, leases: Leases, writer: Writer) -> int:
    """Repair what writers that are gone left; returns the number of documents repaired.

    A document is repaired when it has leases and none is live (or its record is mid-change from an older
    build); one that another live writer holds is left to it.
    """
    now_leases: dict[str, list[bool]] = {}
    for lease in leases.all_leases():
        now_leases.setdefault(lease.doc_id, []).append(leases.is_live(lease))
    candidates = {doc_id for doc_id, live in now_leases.items() if not any(live)}
    candidates |= {r.doc_id for r in document_records(store, unfinished_filter()) if r.doc_id not in now_leases}
    repaired = 0
    for doc_id in sorted(candidates):
        try:
            claim = leases.claim(doc_id, None)
        except DocumentBusy:
            continue  # someone took it meanwhile: its holder repairs it
        abandon(writer, leases, claim)
        repaired += 1
    writer.flush(wait=True)
    if repaired:
        logger.warning("repaired %d documents left unfinished by writers that are gone", repaired)
    return repaired
