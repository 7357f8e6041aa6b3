"""``Leases``: one writer's claims on one store, their renewal, the fencing of its writes, and its judging of
other writers' leases. See ``indexer.leases`` for the protocol."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace

from indexer.conditions import Filter, HasId
from indexer.errors import DocumentBusy, LeaseLost, StoreError
from indexer.leases.records import (
    GIVEN_UP,
    Claim,
    DocumentState,
    LeaseRecord,
    LeaseTimings,
    Owner,
    drop,
    hold,
    is_held,
    process_id,
)
from indexer.models import PointRecord
from indexer.records import KIND, KIND_CHUNK, KIND_DOCUMENT, KIND_LEASE, kind_filter, match, match_any
from indexer.store import Store
from indexer.versions import DocumentRecord
from indexer.writer import Writer, retrying

logger = logging.getLogger(__name__)

_READ_BATCH = 256  # documents per read of leases and records


class Leases:
    """One writer's leases on one store: claims, renewal, fencing of its writes, and judging others' leases.

    ``exclusive`` says that no other process can open the store (the embedded engines); by default it is
    true for every engine but a server. A store shared by threads must be one ``SerializedStore``: the
    renewal thread calls it too.
    """

    def __init__(
        self,
        store: Store,
        owner: Owner,
        timings: LeaseTimings | None = None,
        *,
        exclusive: bool | None = None,
        retries: int = 5,
    ) -> None:
        self.store = store
        self.retries = retries  # claims retry transient store errors as the writer does
        self.owner = owner
        self.timings = timings or LeaseTimings()
        self.exclusive = store.engine != "server" if exclusive is None else exclusive
        self.process = process_id()
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()  # the held claims; renewal holds it while it writes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- judging

    def is_live(self, lease: LeaseRecord, now: float | None = None) -> bool:
        """Whether ``lease``'s holder may still be writing (see the module docstring)."""
        if lease.expires <= (time.time() if now is None else now):
            return False
        if lease.process == self.process:
            return is_held(lease.claim)
        return not self.exclusive

    def _blocks(self, lease: LeaseRecord, now: float) -> bool:
        """Whether ``lease`` keeps this writer from claiming its document."""
        if not self.is_live(lease, now):
            return False
        # The same run in another process: an earlier attempt at this document (a retried task), replaced now.
        return not (lease.owner == self.owner.run_id and lease.process != self.process)

    # ------------------------------------------------------------------------------- reading

    def read(self, doc_ids: Iterable[str]) -> dict[str, DocumentState]:
        """The records and leases of some documents, read now."""
        ids = sorted(set(doc_ids))
        found: dict[str, tuple[list[DocumentRecord], list[LeaseRecord]]] = {d: ([], []) for d in ids}
        for i in range(0, len(ids), _READ_BATCH):
            part = ids[i : i + _READ_BATCH]
            doc = match("doc_id", part[0]) if len(part) == 1 else match_any("doc_id", part)
            flt = Filter(must=(doc, match_any(KIND, [KIND_DOCUMENT, KIND_LEASE])))
            for p in self.store.scroll(flt):
                records, leases = found[p.payload["doc_id"]]
                if p.payload[KIND] == KIND_LEASE:
                    leases.append(LeaseRecord.from_payload(p.payload))
                else:
                    records.append(DocumentRecord.from_payload(p.payload))
        return {d: DocumentState(d, r[0] if r else None, tuple(ls)) for d, (r, ls) in found.items()}

    def all_leases(self) -> list[LeaseRecord]:
        return [LeaseRecord.from_payload(p.payload) for p in self.store.scroll(kind_filter(KIND_LEASE))]

    # ------------------------------------------------------------------------------- claiming

    def claim(self, doc_id: str, version: str | None, *, wait: float = 0.0) -> Claim:
        """Hold ``doc_id`` to write ``version`` of it (None: to repair, refresh or remove it).

        Waits up to ``wait`` seconds while another live writer holds it, then raises ``DocumentBusy``.
        """
        if doc_id in self._held:  # e.g. the same relative path under two roots of one run: one after the other
            raise DocumentBusy(f"{doc_id!r} is being written by this run already")
        deadline = time.monotonic() + wait
        delay, look_first = 0.1, False
        while True:
            blocking: list[LeaseRecord] = []
            if look_first:  # waiting: look before writing a lease again
                state = retrying("reading leases", self.read, [doc_id], retries=self.retries)[doc_id]
                now = time.time()
                blocking = [lease for lease in state.leases if self._blocks(lease, now)]
            if not blocking:
                held, refused = self._claim_batch({doc_id: version})
                if doc_id in held:
                    return held[doc_id]
                blocking = refused[doc_id]
            look_first = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DocumentBusy(_busy_message(doc_id, blocking))
            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(2 * delay, 2.0)

    def claim_many(self, wanted: dict[str, str | None]) -> tuple[dict[str, Claim], dict[str, str]]:
        """Claims on many documents ({doc id: version}) in one write and one read, without waiting.

        Returns the claims held and, for the others, why not (as ``DocumentBusy`` would say).
        """
        mine = {d: f"{d!r} is being written by this run already" for d in wanted if d in self._held}
        held, refused = self._claim_batch({d: v for d, v in wanted.items() if d not in mine})
        return held, mine | {d: _busy_message(d, blocking) for d, blocking in refused.items()}

    def _claim_batch(self, wanted: dict[str, str | None]) -> tuple[dict[str, Claim], dict[str, list[LeaseRecord]]]:
        """Write a lease per document, wait the margin, read back: held claims, and the leases in the way."""
        if not wanted:
            return {}, {}
        sent, sent_wall = time.monotonic(), time.time()
        ours = {
            doc_id: LeaseRecord(
                doc_id=doc_id,
                claim=uuid.uuid4().hex,
                owner=self.owner.run_id,
                version=version,
                expires=sent_wall + self.timings.lease_seconds,
                process=self.process,
                host=socket.gethostname(),
                pid=os.getpid(),
                label=self.owner.label,
            )
            for doc_id, version in wanted.items()
        }
        for lease in ours.values():
            hold(lease.claim)  # live to the runs of this process before anyone can read it
        try:
            points = [lease.point() for lease in ours.values()]
            retrying("claiming documents", self.store.upsert, points, True, retries=self.retries)
            if self.timings.claim_margin_seconds:
                time.sleep(self.timings.claim_margin_seconds)
            states = retrying("reading leases", self.read, ours, retries=self.retries)
        except BaseException:
            for lease in ours.values():
                drop(lease.claim)
            raise
        now, trusted = time.time(), self.timings.trusted_for
        held: dict[str, Claim] = {}
        refused: dict[str, list[LeaseRecord]] = {}
        for doc_id, lease in ours.items():
            state = states[doc_id]
            others = [other for other in state.leases if other.claim != lease.claim]
            blocking = [other for other in others if self._blocks(other, now)]
            if blocking or len(others) == len(state.leases):  # contended, or my own lease not visible yet
                drop(lease.claim)
                refused[doc_id] = blocking
            else:
                taken = tuple(o.id for o in others)
                held[doc_id] = Claim(lease, state.record, taken, sent + trusted, sent_wall + trusted)
        with self._lock:
            self._held.update(held)
        if held:
            self._start_renewing()
        if refused:
            withdrawn = _ids_filter(ours[d].id for d in refused)
            retrying("withdrawing claims", self.store.delete, withdrawn, retries=self.retries)
        return held, refused

    # ------------------------------------------------------------------------------- holding

    def _trusted(self, claim: Claim, now: float, now_wall: float) -> bool:
        return claim.lost is None and now < claim.trusted_until and now_wall < claim.trusted_until_wall

    def _lose(self, claim: Claim, why: str) -> None:
        if claim.lost is None:
            claim.lost = why
            drop(claim.lease.claim)
            logger.warning("%s: %s; this run leaves it to whoever holds it next", claim.doc_id, why)

    def check(self, claim: Claim) -> None:
        """Raise ``LeaseLost`` unless this writer may still change the claim's document."""
        if not self._trusted(claim, time.monotonic(), time.time()):
            self._lose(claim, f"its lease was not renewed within {self.timings.trusted_for:g}s")
        if claim.lost is not None:
            raise LeaseLost(f"{claim.doc_id!r}: {claim.lost}")

    def fence(self, batch: list[PointRecord]) -> list[PointRecord]:
        """``batch`` less the points of documents this writer may no longer change (for ``Writer(fence=)``)."""
        now, now_wall = time.monotonic(), time.time()
        kept = []
        for p in batch:
            if p.payload.get(KIND) not in (KIND_CHUNK, KIND_DOCUMENT):
                kept.append(p)
                continue
            claim = self._held.get(p.payload["doc_id"])
            if claim is None:
                raise RuntimeError(f"a write of document {p.payload['doc_id']!r} without a claim on it")
            if self._trusted(claim, now, now_wall):
                kept.append(p)
            else:
                self._lose(claim, f"its lease was not renewed within {self.timings.trusted_for:g}s")
        return kept

    def others_writing(self, claim: Claim) -> set[str]:
        """Versions of the claim's document that other live writers announce, read now (normally none).

        A cleanup keeps them. Raises ``LeaseLost`` when this claim's lease is gone from the store.
        """
        versions = self.others_writing_many([claim])[claim.doc_id]
        if versions is None:
            raise LeaseLost(f"{claim.doc_id!r}: {claim.lost}")
        return versions

    def others_writing_many(self, claims: list[Claim]) -> dict[str, set[str] | None]:
        """``others_writing`` of many claims, from one read: per document, the versions other live writers
        announce, or None when this claim's lease is gone from the store (the claim is lost then)."""
        states = retrying("reading leases", self.read, [c.doc_id for c in claims], retries=self.retries)
        now = time.time()
        out: dict[str, set[str] | None] = {}
        for claim in claims:
            leases = states[claim.doc_id].leases
            if not any(lease.claim == claim.lease.claim for lease in leases):
                self._lose(claim, "its lease is gone from the store (another writer judged it dead)")
                out[claim.doc_id] = None
                continue
            versions = {
                lease.version
                for lease in leases
                if lease.claim != claim.lease.claim and lease.version and self.is_live(lease, now)
            }
            if versions:
                logger.warning("%s: other live writers write it too (%s)", claim.doc_id, ", ".join(sorted(versions)))
            out[claim.doc_id] = versions
        return out

    def release(self, claim: Claim, writer: Writer) -> None:
        """Done with the document: what was written for it goes out, then its lease and those it took over go.

        A lost claim deletes nothing: its lease stays until it expires, for whoever repairs the document.
        """
        self.release_many([claim], writer)

    def release_many(self, claims: list[Claim], writer: Writer) -> None:
        writer.flush()
        with self._lock:  # after this, no renewal rewrites the leases
            for claim in claims:
                if self._held.get(claim.doc_id) is claim:
                    del self._held[claim.doc_id]
        for claim in claims:
            drop(claim.lease.claim)
        ids = [i for c in claims if c.lost is None for i in (c.lease.id, *c.taken_over)]
        if ids:
            writer.delete(_ids_filter(ids))

    @property
    def held(self) -> list[Claim]:
        with self._lock:
            return list(self._held.values())

    # ------------------------------------------------------------------------------- renewal

    def _start_renewing(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
            self._thread.start()

    def _renew_loop(self) -> None:
        interval = self.timings.renew_every
        while not self._stop.wait(interval):
            try:
                ok = self.renew()
            except Exception:  # never let the thread die: claims that are not renewed lapse, safely
                logger.exception("lease renewal failed")
                ok = False
            interval = self.timings.renew_every if ok else self.timings.renew_every / 4

    def renew(self) -> bool:
        """Extend the lease of every claim still trusted; False when the store refused (they are tried again)."""
        with self._lock:
            now, now_wall = time.monotonic(), time.time()
            claims = []
            for claim in self._held.values():
                if claim.lost is None and not self._trusted(claim, now, now_wall):
                    self._lose(claim, f"its lease was not renewed within {self.timings.trusted_for:g}s")
                if claim.lost is None:
                    claims.append(claim)
            if not claims:
                return True
            renewed = [replace(c.lease, expires=now_wall + self.timings.lease_seconds) for c in claims]
            try:
                self.store.upsert([lease.point() for lease in renewed], wait=True)
            except StoreError as e:
                logger.warning("could not renew %d leases: %s", len(claims), e)
                return False
            trusted = self.timings.trusted_for
            for claim, lease in zip(claims, renewed, strict=True):
                claim.lease, claim.trusted_until, claim.trusted_until_wall = lease, now + trusted, now_wall + trusted
        return True

    def close(self) -> None:
        """Stop renewing; claims still held (a run that stopped midway) are given up, so others repair them now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            left = [c for c in self._held.values() if c.lost is None]
            self._held.clear()
        for claim in left:
            drop(claim.lease.claim)
        if left:
            try:
                self.store.upsert([replace(c.lease, expires=GIVEN_UP).point() for c in left], wait=True)
            except StoreError as e:
                logger.warning("could not give up %d leases (they expire by themselves): %s", len(left), e)


def _ids_filter(ids: Iterable[str]) -> Filter:
    return Filter(must=(HasId(tuple(ids)),))


def _busy_message(doc_id: str, blocking: list[LeaseRecord]) -> str:
    if not blocking:
        return (
            f"{doc_id!r}: a claim on it could not be confirmed (its own lease was not visible when read back: "
            "set ingest.claim_margin_seconds above the store's replication delay)"
        )
    return f"{doc_id!r} is being changed by another writer: {blocking[0].describe()}"
