"""What a lease is: the writer (``Owner``), its timings, the stored lease, a held ``Claim``, and this process.

See ``indexer.leases`` for the protocol.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from indexer.models import PointRecord
from indexer.points import POINT_NAMESPACE
from indexer.records import KIND, KIND_LEASE
from indexer.versions import DocumentRecord

if TYPE_CHECKING:
    from indexer.config import IngestSettings

GIVEN_UP = 0.0  # the expiry of a lease its holder gave up: dead at once

# ------------------------------------------------------------------------------------ this process

_process: tuple[int, str] | None = None
_held_lock = threading.Lock()
_held_tokens: set[str] = set()  # claims that runs of this process hold now


def process_id() -> str:
    """This process, distinct from every other one on any host and at any time (a fork gets a new one)."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}/{pid}/{uuid.uuid4().hex[:12]}")
    return _process[1]


def hold(token: str) -> None:
    with _held_lock:
        _held_tokens.add(token)


def drop(token: str) -> None:
    with _held_lock:
        _held_tokens.discard(token)


def is_held(token: str) -> bool:
    with _held_lock:
        return token in _held_tokens


# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class Owner:
    """A writer: one run, which may span processes and machines (Ray workers, partition jobs share its id)."""

    run_id: str
    label: str  # what the run is, for messages: "ingest ./docs", "upload report.pdf"

    @classmethod
    def new(cls, label: str, run_id: str | None = None) -> Owner:
        return cls(run_id=run_id or uuid.uuid4().hex, label=label[:200])


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    lease_seconds: float = 600.0
    claim_margin_seconds: float = 0.0
    busy_wait_seconds: float = 60.0

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> LeaseTimings:
        return cls(ingest.lease_seconds, ingest.claim_margin_seconds, ingest.busy_wait_seconds)

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 5

    @property
    def trusted_for(self) -> float:
        return self.lease_seconds / 2


def lease_point_id(doc_id: str, claim: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"\x1flease\x1f{doc_id}\x1f{claim}"))


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One claim on one document, as stored (a point without vectors)."""

    doc_id: str
    claim: str  # this claim's id
    owner: str  # the run
    version: str | None  # the content hash being written; None: a repair, refresh or removal
    expires: float  # unix seconds by the holder's clock; 0: given up
    process: str  # see ``process_id``
    host: str
    pid: int
    label: str

    @property
    def id(self) -> str:
        return lease_point_id(self.doc_id, self.claim)

    def point(self) -> PointRecord:
        return PointRecord(id=self.id, payload={KIND: KIND_LEASE, **asdict(self)})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> LeaseRecord:
        return cls(
            doc_id=str(payload["doc_id"]),
            claim=str(payload["claim"]),
            owner=str(payload.get("owner") or ""),
            version=payload.get("version"),
            expires=float(payload.get("expires") or GIVEN_UP),
            process=str(payload.get("process") or ""),
            host=str(payload.get("host") or "?"),
            pid=int(payload.get("pid") or 0),
            label=str(payload.get("label") or ""),
        )

    def describe(self) -> str:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.expires)) if self.expires else "given up"
        return f"run {self.owner[:8]} ({self.label}; pid {self.pid} on {self.host}), lease until {until}"


@dataclass(frozen=True, slots=True)
class DocumentState:
    """A document's record and leases, as read at one moment."""

    doc_id: str
    record: DocumentRecord | None
    leases: tuple[LeaseRecord, ...]


@dataclass(slots=True, eq=False)
class Claim:
    """A document this writer holds: what it saw when the claim was confirmed, and until when it may act."""

    lease: LeaseRecord
    record: DocumentRecord | None  # the record as confirmed; nobody else changes it while the claim holds
    taken_over: tuple[str, ...] = ()  # point ids of the dead leases seen then, deleted on release
    trusted_until: float = 0.0  # time.monotonic()
    trusted_until_wall: float = 0.0  # time.time(): a suspended machine's monotonic clock may stand still
    lost: str | None = None  # why this writer may no longer change the document

    @property
    def doc_id(self) -> str:
        return self.lease.doc_id

    @property
    def version(self) -> str | None:
        return self.lease.version
