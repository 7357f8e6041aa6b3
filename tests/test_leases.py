"""Leases and the version protocol, step by step, on both in-process engines (no model needed).

Writers are ``Leases`` objects on one store. Those that judge like a server (``exclusive=False``) are how a
writer on another machine is simulated; a lease written as by another process stands for such a writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import CollectionSettings, QdrantSettings
from indexer.errors import DocumentBusy, LeaseLost, StoreError
from indexer.leases import Leases, LeaseTimings, Owner, lease_point_id
from indexer.models import PointRecord
from indexer.points import point_id
from indexer.records import KIND_LEASE, chunks_filter, kind_filter
from indexer.schema import CollectionSpec
from indexer.store import SerializedStore, Store, open_store
from indexer.versions import COMPLETE, WRITING, DocumentRecord, abandon, complete, document_records, recover
from indexer.writer import Writer
from tests.helpers import ENGINES

DOC = "contracts/supply.txt"


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SerializedStore]:
    path = str(tmp_path / "store") if request.param == "edge" else ":memory:"
    inner = open_store(QdrantSettings(engine=request.param, path=path), "leases")
    inner.ensure_collection(CollectionSpec.for_model(CollectionSettings(name="leases", colbert=False), 4, 4))
    s = SerializedStore(inner)
    yield s
    s.close()


def writer_of(store: Store, leases: Leases) -> Writer:
    return Writer(store, max_points=2, fence=leases.fence)


def leases(store: Store, run: str = "run", exclusive: bool = False, **timings: float) -> Leases:
    return Leases(store, Owner.new(run), LeaseTimings(**timings), exclusive=exclusive)


def chunk(doc_id: str, version: str, i: int) -> PointRecord:
    payload = {"kind": "chunk", "doc_id": doc_id, "content_hash": version, "chunk_index": i}
    return PointRecord(id=point_id(doc_id, version, i), payload=payload)


def versions_of(store: Store, doc_id: str = DOC) -> dict[str, int]:
    """Chunks per version of a document."""
    out: dict[str, int] = {}
    for p in store.scroll(chunks_filter(doc_id)):
        out[p.payload["content_hash"]] = out.get(p.payload["content_hash"], 0) + 1
    return out


def record_of(store: Store, doc_id: str = DOC) -> DocumentRecord | None:
    return next((r for r in document_records(store) if r.doc_id == doc_id), None)


def write_version(store: Store, owner: Leases, version: str, n: int, doc_id: str = DOC) -> None:
    """A complete write of ``n`` chunks of ``version`` under a claim."""
    claim = owner.claim(doc_id, version)
    w = writer_of(store, owner)
    for i in range(n):
        w.add(chunk(doc_id, version, i))
    complete(w, owner, claim, DocumentRecord(doc_id, doc_id, "", version, chunks=n))
    w.close()


def remote_lease(store: Store, doc_id: str, version: str | None, expires_in: float, run: str = "remote") -> str:
    """A lease as a writer on another machine writes it; returns its point id."""
    from indexer.leases import LeaseRecord

    lease = LeaseRecord(doc_id, "c0ffee", run, version, time.time() + expires_in, "elsewhere/1/x", "elsewhere", 1, "r")
    store.upsert([lease.point()], wait=True)
    return lease.id


def test_a_held_document_is_busy_for_others_until_released(store: SerializedStore) -> None:
    a, b = leases(store, "a"), leases(store, "b")
    claim = a.claim(DOC, "v1")
    with pytest.raises(DocumentBusy, match="being changed by another writer: run .* \\(a; pid"):
        b.claim(DOC, "v2")
    waited = time.monotonic()
    with pytest.raises(DocumentBusy):
        b.claim(DOC, "v2", wait=0.5)
    assert time.monotonic() - waited >= 0.5
    a.release(claim, writer_of(store, a))
    assert store.count(kind_filter(KIND_LEASE)) == 0
    b.release(b.claim(DOC, "v2"), writer_of(store, b))
    a.close(), b.close()


def claim_together(writers: list[Leases], wait: float = 0.0) -> tuple[list, list]:
    """Each writer claims DOC in its own thread, all at once: (claims held, writers told it is busy)."""
    start, held, busy = threading.Barrier(len(writers)), [], []

    def claim(w: Leases) -> None:
        start.wait()
        try:
            held.append(w.claim(DOC, w.owner.label, wait=wait))
        except DocumentBusy:
            busy.append(w)

    threads = [threading.Thread(target=claim, args=(w,)) for w in writers]
    [t.start() for t in threads], [t.join() for t in threads]
    return held, busy


def test_simultaneous_claims_never_both_hold(store: SerializedStore) -> None:
    """Both write their lease before either reads back (a margin makes sure): never may both hold it."""
    for _ in range(3):
        writers = [leases(store, name, claim_margin_seconds=0.3) for name in ("a", "b")]
        held, busy = claim_together(writers)
        assert len(held) <= 1 and len(held) + len(busy) == 2
        for w in writers:
            w.close()
        for c in held:  # close gave it up: a judge sees it dead at once
            assert store.retrieve([c.lease.id])[0].payload["expires"] == 0
        store.delete(kind_filter(KIND_LEASE))
    # Waiting, both get it in turn.
    writers = [leases(store, name) for name in ("a", "b")]
    first, _ = claim_together(writers[:1])
    later = threading.Timer(0.5, lambda: writers[0].release(first[0], writer_of(store, writers[0])))
    later.start()
    second, busy = claim_together(writers[1:], wait=10)
    later.join()
    assert [c.version for c in second] == ["b"] and not busy


def test_recovery_leaves_a_live_writer_alone_and_repairs_an_expired_one(store: SerializedStore) -> None:
    first = leases(store, "first")
    write_version(store, first, "v1", 3)
    second = leases(store, "second")  # writing v2 now, half-way
    claim = second.claim(DOC, "v2")
    w = writer_of(store, second)
    for i in range(2):
        w.add(chunk(DOC, "v2", i))
    w.flush()
    third = leases(store, "third")
    assert recover(store, third, writer_of(store, third)) == 0  # the old code deleted v2 here
    assert versions_of(store) == {"v1": 3, "v2": 2}
    # A writer on another machine, writing v3, then gone: its lease expires.
    remote_lease(store, DOC + ".2", "v3", expires_in=1.0)
    store.upsert([chunk(DOC + ".2", "v3", 0)], wait=True)
    assert recover(store, third, writer_of(store, third)) == 0
    time.sleep(1.1)
    assert recover(store, third, writer_of(store, third)) == 1
    assert versions_of(store, DOC + ".2") == {} and store.count(kind_filter(KIND_LEASE)) == 1  # second's
    # The live writer finishes: exactly its version is left.
    for i in range(2, 4):
        w.add(chunk(DOC, "v2", i))
    complete(w, second, claim, DocumentRecord(DOC, DOC, "", "v2", chunks=4))
    w.close()
    assert versions_of(store) == {"v2": 4} and record_of(store).content_hash == "v2"
    assert store.count(kind_filter(KIND_LEASE)) == 0


def test_on_an_embedded_store_another_process_lease_is_dead_at_once(store: SerializedStore) -> None:
    remote_lease(store, DOC, "v9", expires_in=600)
    store.upsert([chunk(DOC, "v9", 0)], wait=True)
    assert recover(store, leases(store, "shared"), Writer(store)) == 0
    embedded = Leases(store, Owner.new("embedded"))  # the default for an embedded engine
    assert embedded.exclusive
    assert recover(store, embedded, writer_of(store, embedded)) == 1
    assert versions_of(store) == {} and store.count(kind_filter(KIND_LEASE)) == 0


def test_a_run_given_up_is_repaired_at_once(store: SerializedStore) -> None:
    stopped = leases(store, "stopped")
    stopped.claim(DOC, "v1")
    store.upsert([chunk(DOC, "v1", 0)], wait=True)
    stopped.close()  # what a run that stops on an error does
    judge = leases(store, "judge")
    assert recover(store, judge, writer_of(store, judge)) == 1
    assert versions_of(store) == {}


class LeaseRenewalsFail(SerializedStore):
    """A store that stops taking lease writes (a writer cut off from the server, or frozen) once told."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.cut = False

    def upsert(self, points, wait=True):  # noqa: ANN001, ANN201
        if self.cut and any(p.payload.get("kind") == KIND_LEASE for p in points):
            raise StoreError("connection lost")
        super().upsert(points, wait)


def test_a_lapsed_claim_writes_nothing_more_and_cannot_complete(store: SerializedStore) -> None:
    flaky = LeaseRenewalsFail(store.inner)
    slow = leases(flaky, "slow", lease_seconds=1.0)
    claim = slow.claim(DOC, "v1")
    w = writer_of(flaky, slow)
    w.add(chunk(DOC, "v1", 0))
    w.flush()
    flaky.cut = True
    time.sleep(1.2)  # trusted for 0.5 s, expired after 1 s
    w.add(chunk(DOC, "v1", 1))
    w.flush()
    assert versions_of(store) == {"v1": 1}  # the fence held the second chunk back
    with pytest.raises(LeaseLost, match="not renewed within 0.5s"):
        complete(w, slow, claim, DocumentRecord(DOC, DOC, "", "v1", chunks=2))
    assert record_of(store) is None
    other = leases(store, "other")  # the lease expired: another writer takes the document over
    write_version(store, other, "v2", 2)
    assert versions_of(store) == {"v2": 2} and store.count(kind_filter(KIND_LEASE)) == 0  # slow's taken over
    slow.release(claim, w)  # a lost claim deletes nothing
    assert versions_of(store) == {"v2": 2}
    slow.close()


@pytest.mark.slow
def test_a_renewed_lease_outlives_its_first_expiry(store: SerializedStore) -> None:
    holder = leases(store, "holder", lease_seconds=2.0)  # renewed every 0.4 s, trusted for 1 s
    claim = holder.claim(DOC, "v1")
    first = claim.lease.expires
    time.sleep(4.5)
    stored = store.retrieve([claim.lease.id])[0].payload["expires"]
    assert stored > first + 2.0
    judge = leases(store, "judge")
    with pytest.raises(DocumentBusy):
        judge.claim(DOC, "v2")
    w = writer_of(store, holder)
    w.add(chunk(DOC, "v1", 0))
    complete(w, holder, claim, DocumentRecord(DOC, DOC, "", "v1", chunks=1))
    assert versions_of(store) == {"v1": 1}
    holder.close()


def test_cleanup_keeps_a_version_another_live_writer_announces(store: SerializedStore) -> None:
    """Should two writers ever hold one document (clocks far apart, stale replica reads), neither deletes the
    other's version: hazard 2 of the design notes."""
    first = leases(store, "first")
    write_version(store, first, "v1", 2)
    holder = leases(store, "holder")
    claim = holder.claim(DOC, "v2")
    remote_lease(store, DOC, "v3", expires_in=600)  # a writer the claim did not see
    store.upsert([chunk(DOC, "v3", 0)], wait=True)
    w = writer_of(store, holder)
    w.add(chunk(DOC, "v2", 0))
    complete(w, holder, claim, DocumentRecord(DOC, DOC, "", "v2", chunks=1))
    assert versions_of(store) == {"v2": 1, "v3": 1}  # v1 is gone, v3 is kept


def test_the_same_run_takes_over_its_earlier_attempt(store: SerializedStore) -> None:
    """A retried task (same run, another process) replaces its own lease; another run's lease blocks."""
    retry = Leases(store, Owner("run-7", "task retry"), exclusive=False)
    remote_lease(store, DOC, "v1", expires_in=600, run="run-7")
    store.upsert([chunk(DOC, "v1", 0)], wait=True)
    assert recover(store, retry, Writer(store)) == 0  # recovery never takes a live lease
    claim = retry.claim(DOC, "v1")
    w = writer_of(store, retry)
    w.add(chunk(DOC, "v1", 1))
    complete(w, retry, claim, DocumentRecord(DOC, DOC, "", "v1", chunks=2))
    assert versions_of(store) == {"v1": 2} and store.count(kind_filter(KIND_LEASE)) == 0
    remote_lease(store, DOC, "v2", expires_in=600, run="run-8")
    with pytest.raises(DocumentBusy):
        retry.claim(DOC, "v1")


def test_a_record_left_mid_change_by_an_older_build_is_repaired(store: SerializedStore) -> None:
    old = DocumentRecord(DOC, DOC, "", "v1", state=WRITING, pending_hash="v2", chunks=1)
    store.upsert([old.point(), chunk(DOC, "v1", 0), chunk(DOC, "v2", 0)], wait=True)
    judge = leases(store, "judge")
    assert recover(store, judge, writer_of(store, judge)) == 1
    assert versions_of(store) == {"v1": 1}
    assert record_of(store).state == COMPLETE and record_of(store).content_hash == "v1"


def test_abandon_keeps_the_recorded_version(store: SerializedStore) -> None:
    write_version(store, leases(store, "first"), "v1", 2)
    w_leases = leases(store, "second")
    claim = w_leases.claim(DOC, "v2")
    w = writer_of(store, w_leases)
    w.add(chunk(DOC, "v2", 0))
    abandon(w, w_leases, claim)
    assert versions_of(store) == {"v1": 2} and store.count(kind_filter(KIND_LEASE)) == 0
    assert lease_point_id(DOC, claim.lease.claim) == claim.lease.id
