"""Sharing one store between threads and an event loop.

An embedded engine (an Edge shard, a local-mode client) takes one caller at a time: ``SerializedStore``
puts every call under one lock, and ``ThreadedAsyncStore`` runs its calls in a worker thread for the
event loop. ``concurrent(store)`` gives both views of one store, sharing that lock, and uses the
engine's native async client where it has one (a server).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from indexer.conditions import AnyFilter
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.requests import Request
from indexer.schema import CollectionInfo, CollectionSpec
from indexer.store.base import AsyncStore, Store

if TYPE_CHECKING:
    from indexer.store.groups import HitGroup


class SerializedStore:
    """A store whose every call takes one lock, so that threads can share it.

    ``defer_finish``: ``finish()`` only notes that writes happened, and ``finish_pending()`` (a service's
    timer) or ``close()`` makes them durable later. For an engine whose acknowledged writes already survive
    a crash of the process and are searchable at once (Edge logs every write in its WAL first), this keeps
    the flush, which blocks searches, off each upload's path, as a Qdrant server does with its
    ``flush_interval_sec``; what a machine crash can lose is the writes since the last flush.

    ``write_gate``: a context manager factory that writes wait for, one point at a time (and deferred
    finishes too). The service passes its model scheduler's ``upload``: an embedded engine's write holds
    the interpreter (converting a point's ColBERT rows takes tens of milliseconds), so uploads' writes
    take turns with searches like their forward passes, a point at a time, searches first.
    """

    def __init__(
        self,
        store: Store,
        defer_finish: bool = False,
        write_gate: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.inner = store
        self.lock = threading.Lock()
        self.defer_finish = defer_finish
        self.write_gate = write_gate
        self.unfinished = False  # writes finished (deferred) but not yet made durable
        self.collection = store.collection
        self.bytes_per_float = store.bytes_per_float
        self.location = store.location
        self.engine = store.engine
        self.server_version = store.server_version

    def check_available(self) -> None:
        with self.lock:
            self.inner.check_available()

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        with self.lock:
            self.inner.ensure_collection(spec, recreate)

    def open_collection(self) -> CollectionInfo:
        with self.lock:
            return self.inner.open_collection()

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        if self.write_gate is None:
            with self.lock:
                self.inner.upsert(points, wait)
            return
        for point in points:
            with self.write_gate(), self.lock:
                self.inner.upsert([point], wait)

    def delete(self, flt: AnyFilter) -> None:
        with self.lock:
            self.inner.delete(flt)

    def set_payload(self, flt: AnyFilter, payload: dict[str, Any]) -> None:
        with self.lock:
            self.inner.set_payload(flt, payload)

    def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        with self.lock:
            return self.inner.query_batch(requests)

    def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        with self.lock:
            return self.inner.query_groups(requests, group_by, group_size)

    def count(self, flt: AnyFilter | None = None) -> int:
        with self.lock:
            return self.inner.count(flt)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        with self.lock:
            return self.inner.retrieve(ids, with_vectors)

    def scroll(self, flt: AnyFilter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        with self.lock:  # read it all under the lock: a generator would outlive it
            return iter(list(self.inner.scroll(flt, page)))

    def finish(self) -> None:
        with self.lock:
            if self.defer_finish:
                self.unfinished = True
            else:
                self.inner.finish()

    def finish_pending(self) -> bool:
        """Finish what ``finish()`` deferred; True when there was something to finish."""
        with self.write_gate() if self.write_gate is not None else contextlib.nullcontext(), self.lock:
            if not self.unfinished:
                return False
            self.inner.finish()
            self.unfinished = False
            return True

    def open_async(self) -> AsyncStore | None:
        return self.inner.open_async()

    def close(self) -> None:
        with self.lock:
            try:
                if self.unfinished:
                    self.inner.finish()
                    self.unfinished = False
            finally:
                self.inner.close()


class ThreadedAsyncStore:
    """The async side of a serialized (embedded) store: each call runs in a worker thread."""

    def __init__(self, store: SerializedStore) -> None:
        self.store = store
        self.collection = store.collection

    async def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        return await asyncio.to_thread(self.store.query_batch, requests)

    async def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        return await asyncio.to_thread(self.store.query_groups, requests, group_by, group_size)

    async def count(self, flt: AnyFilter | None = None) -> int:
        return await asyncio.to_thread(self.store.count, flt)

    async def close(self) -> None:
        """The blocking store is closed by its owner."""


def concurrent(
    store: Store,
    defer_finish: bool = False,
    write_gate: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> tuple[SerializedStore, AsyncStore]:
    """A thread-safe view of ``store`` and an async view of it that share one lock (or a native async client).

    ``defer_finish``, ``write_gate``: see ``SerializedStore`` (for a store that is not one already)."""
    safe = store if isinstance(store, SerializedStore) else SerializedStore(store, defer_finish, write_gate)
    return safe, safe.open_async() or ThreadedAsyncStore(safe)
