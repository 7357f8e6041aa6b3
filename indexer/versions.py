"""The document-version protocol: how a document changes from one version to the next, crash-safely.

Each document has one record (a point without vectors) naming its complete version (content hash).
A run changes a document in steps, all through one ordered write stream (``indexer.writer``), so a
record never claims more than the store holds:

1. ``begin``: the record goes to state ``writing`` with the new version as ``pending_hash``, before any
   chunk of that version is written; it still names the previous version as complete.
2. The new version's chunks are written (point ids depend on the content hash: old and new coexist).
3. ``complete``: state ``cleanup`` (the new version is complete), every other version's chunks are
   deleted, then state ``complete`` naming the new version.

``abandon`` undoes a version that cannot be completed. A run that dies at any moment leaves records from
which ``recover`` repairs the collection: ``writing`` -> the partial version is removed and the previous
one restored; ``cleanup`` -> the older versions are removed. Nothing complete is ever lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from qdrant_client import models

from indexer.models import Document, PointRecord
from indexer.points import POINT_NAMESPACE
from indexer.records import KIND, KIND_DOCUMENT, chunks_filter, kind_filter, match
from indexer.store import Store

if TYPE_CHECKING:
    from indexer.writer import Writer

logger = logging.getLogger(__name__)

COMPLETE, WRITING, CLEANUP = "complete", "writing", "cleanup"

FileStat = tuple[int | None, int | None]  # (size, mtime in ns) of the file a version was read from


def document_record_id(doc_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"\x1fdocument\x1f{doc_id}"))


def record_filter(doc_id: str) -> models.Filter:
    """The record point of one document."""
    return models.Filter(must=[models.HasIdCondition(has_id=[document_record_id(doc_id)])])


def unfinished_filter() -> models.Filter:
    """Document records a run left in the middle of a change."""
    return models.Filter(must=[match(KIND, KIND_DOCUMENT)], must_not=[match("state", COMPLETE)])


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    doc_id: str
    source: str
    root: str  # the ingest root the document was found under ("" for uploads); --prune works per root
    content_hash: str | None  # the complete version, if any
    state: str = COMPLETE
    pending_hash: str | None = None  # the version being written while state is "writing"
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


def document_records(store: Store, flt: models.Filter | None = None) -> Iterable[DocumentRecord]:
    for p in store.scroll(flt or kind_filter(KIND_DOCUMENT)):
        yield DocumentRecord.from_payload(p.payload)


# ------------------------------------------------------------------------------------ transitions


def begin(writer: Writer, doc: Document, root: str, previous: DocumentRecord | None) -> DocumentRecord:
    """Step 1: announce the new version; until it is complete the record keeps describing the previous one."""
    record = DocumentRecord(
        doc_id=doc.doc_id,
        source=doc.source,
        root=root,
        content_hash=previous.content_hash if previous else None,
        state=WRITING,
        pending_hash=doc.content_hash,
        file_size=previous.file_size if previous else None,
        file_mtime_ns=previous.file_mtime_ns if previous else None,
    )
    writer.add(record.point())  # ahead of every chunk of the new version in the write order
    return record


def complete(writer: Writer, record: DocumentRecord, chunks: int, tokens: int, file_stat: FileStat) -> DocumentRecord:
    """Step 3: every chunk of the pending version is ahead in the write order; switch, then clean up."""
    new_hash = record.pending_hash
    done = replace(
        record, content_hash=new_hash, pending_hash=None, chunks=chunks, tokens=tokens, state=COMPLETE
    ).with_file(file_stat)
    writer.add(replace(done, state=CLEANUP).point())
    writer.delete(chunks_filter(done.doc_id, other_than=new_hash))
    writer.add(done.point())
    return done


def restore(writer: Writer, record: DocumentRecord) -> None:
    """Go back to the version the record names as complete (or to no record at all)."""
    if record.content_hash is None:
        writer.delete(record_filter(record.doc_id))
    else:
        writer.add(replace(record, state=COMPLETE, pending_hash=None).point())


def abandon(writer: Writer, record: DocumentRecord) -> None:
    """Undo a version that cannot be completed; the previous one, if any, stays as it was."""
    writer.delete(chunks_filter(record.doc_id, record.pending_hash))
    restore(writer, record)


def remove(writer: Writer, doc_id: str) -> None:
    """A document's every chunk of every version, then its record."""
    writer.delete(chunks_filter(doc_id))
    writer.delete(record_filter(doc_id))


def recover(store: Store, writer: Writer) -> int:
    """Repair what an interrupted run left: returns the number of documents repaired."""
    repaired = 0
    for record in list(document_records(store, unfinished_filter())):
        if record.state == WRITING:
            abandon(writer, record)
        else:
            writer.delete(chunks_filter(record.doc_id, other_than=record.content_hash))
            writer.add(replace(record, state=COMPLETE, pending_hash=None).point())
        repaired += 1
    writer.flush(wait=True)
    if repaired:
        logger.warning("repaired %d documents left unfinished by an interrupted run", repaired)
    return repaired
