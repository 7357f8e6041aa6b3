"""Batched, retried writes: bounded by point count and by bytes, waiting for the last one.

A writer can be fenced (``fence``): every attempt to write a batch passes it through the fence first, which
drops the points of documents this run may no longer change (see ``indexer.leases``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from qdrant_client import models

from indexer.errors import TransientStoreError
from indexer.faults import crash_point
from indexer.models import PointRecord
from indexer.store import Store

logger = logging.getLogger(__name__)

Fence = Callable[[list[PointRecord]], list[PointRecord]]
T = TypeVar("T")


def retrying(
    what: str,
    fn: Callable[..., T],
    *args: object,
    retries: int,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn(*args)``, retried with exponential backoff (at most 30 s) on transient store errors."""
    for attempt in range(retries + 1):
        try:
            return fn(*args)
        except TransientStoreError as e:
            if attempt == retries:
                raise
            delay = min(30.0, backoff * 2**attempt)
            logger.warning("%s failed (%s); retry %d in %.1fs", what, e, attempt + 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


class Writer:
    """Buffers points and upserts them in batches of at most ``max_points`` points and ``max_bytes``.

    A server's REST limit is 32 MB per request and one ColBERT point of 256 tokens is about 5 MB as
    JSON, so the byte bound matters as much as the count. Transient errors are retried with
    exponential backoff; the last batch is written with ``wait=True`` and the store is finished.
    ``fence`` filters each batch right before each attempt (a retry may come long after the first).
    """

    def __init__(
        self,
        store: Store,
        max_points: int = 64,
        max_bytes: int = 8 * 1024 * 1024,
        retries: int = 5,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        fence: Fence | None = None,
    ) -> None:
        self.store = store
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.fence = fence
        self.buffer: list[PointRecord] = []
        self.buffer_bytes = 0
        self.written = 0
        self.batches = 0

    def add(self, point: PointRecord) -> None:
        size = point.estimated_bytes(self.store.bytes_per_float)
        if self.buffer and self.buffer_bytes + size > self.max_bytes:
            self.flush()
        self.buffer.append(point)
        self.buffer_bytes += size
        if len(self.buffer) >= self.max_points or self.buffer_bytes >= self.max_bytes:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        if not self.buffer:
            return
        batch, self.buffer, self.buffer_bytes = self.buffer, [], 0
        self._write(batch, wait)
        self.written += len(batch)
        self.batches += 1

    def delete(self, flt: models.Filter, check: Callable[[], None] | None = None) -> None:
        """Delete matching points after everything added before has been written (order is kept).

        ``check`` runs before each attempt and raises to call the delete off.
        """
        self.flush()
        self._retry(f"delete of {flt}", self._delete, flt, check)

    def _delete(self, flt: models.Filter, check: Callable[[], None] | None) -> None:
        if check is not None:
            check()
        self.store.delete(flt)

    def _write(self, batch: list[PointRecord], wait: bool) -> None:
        crash_point("write")
        self._retry(f"write of {len(batch)} points", self._upsert, batch, wait)

    def _upsert(self, batch: list[PointRecord], wait: bool) -> None:
        if self.fence is not None:
            batch = self.fence(batch)
        if batch:
            self.store.upsert(batch, wait)

    def _retry(self, what: str, fn: Callable[..., None], *args: object) -> None:
        retrying(what, fn, *args, retries=self.retries, backoff=self.backoff, sleep=self.sleep)

    def close(self) -> None:
        """Write what is buffered, wait for it, and make the store durable and searchable."""
        self.flush(wait=True)
        self.store.finish()
