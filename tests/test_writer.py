"""The writer's batching and retry policy, against a recording store at the edge."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import StoreError, TransientStoreError
from indexer.models import PointRecord, SparseVec
from indexer.writer import Writer


class RecordingStore:
    collection = "c"
    location = "memory"

    def __init__(self, bytes_per_float: int = 4, failures: list[Exception] | None = None) -> None:
        self.bytes_per_float = bytes_per_float
        self.failures = list(failures or [])
        self.batches: list[tuple[list[str], bool]] = []
        self.finished = False

    def upsert(self, points, wait=True):
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(([p.id for p in points], wait))

    def finish(self):
        self.finished = True


def point(i: int, colbert_rows: int = 0) -> PointRecord:
    return PointRecord(
        id=str(i),
        dense=np.zeros(1024, np.float32),
        sparse=SparseVec((1,), (0.5,)),
        colbert=np.zeros((colbert_rows, 1024), np.float32) if colbert_rows else None,
        payload={"text": "x" * 100},
    )


def test_batches_are_bounded_by_count() -> None:
    store = RecordingStore()
    w = Writer(store, max_points=3, max_bytes=10**9)
    for i in range(7):
        w.add(point(i))
    w.close()
    assert [ids for ids, _ in store.batches] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert [wait for _, wait in store.batches] == [True, True, True]  # every batch's outcome is known
    assert store.finished
    assert w.written == 7


def test_batches_are_bounded_by_bytes() -> None:
    store = RecordingStore(bytes_per_float=20)  # JSON over REST
    w = Writer(store, max_points=64, max_bytes=16 * 1024 * 1024)
    for i in range(7):
        w.add(point(i, colbert_rows=255))  # about 5 MB each as JSON
    w.close()
    assert [len(ids) for ids, _ in store.batches] == [3, 3, 1]
    assert 3 * point(0, 255).estimated_bytes(20) <= 16 * 1024 * 1024 < 4 * point(0, 255).estimated_bytes(20)


def test_a_point_larger_than_the_byte_bound_goes_alone() -> None:
    store = RecordingStore()
    w = Writer(store, max_points=64, max_bytes=64 * 1024)
    w.add(point(0))
    w.add(point(1, colbert_rows=100))
    w.add(point(2))
    w.close()
    assert [ids for ids, _ in store.batches] == [["0"], ["1"], ["2"]]


def test_transient_errors_are_retried_with_backoff() -> None:
    sleeps: list[float] = []
    store = RecordingStore(failures=[TransientStoreError("503"), TransientStoreError("timeout")])
    w = Writer(store, max_points=2, retries=3, backoff=0.5, sleep=sleeps.append)
    w.add(point(0))
    w.add(point(1))
    w.close()
    assert sleeps == [0.5, 1.0]
    assert store.batches == [(["0", "1"], True)]


def test_a_server_asking_to_wait_is_waited_for() -> None:
    sleeps: list[float] = []
    store = RecordingStore(failures=[TransientStoreError("429", retry_after=7.0), TransientStoreError("503")])
    w = Writer(store, max_points=1, retries=3, backoff=0.5, sleep=sleeps.append)
    w.add(point(0))
    assert sleeps == [7.0, 1.0]
    assert store.batches == [(["0"], True)]


def test_retries_are_bounded_and_other_errors_are_not_retried() -> None:
    store = RecordingStore(failures=[TransientStoreError("x")] * 3)
    w = Writer(store, max_points=1, retries=2, sleep=lambda _: None)
    with pytest.raises(TransientStoreError):
        w.add(point(0))
    store = RecordingStore(failures=[StoreError("bad request")])
    w = Writer(store, max_points=1, retries=5, sleep=lambda _: pytest.fail("must not retry"))
    with pytest.raises(StoreError, match="bad request"):
        w.add(point(0))
