"""Batched, retried, acknowledged writes: bounded by point count and by bytes, in order.

A writer can be fenced (``fence``): every attempt to write a batch passes it through the fence first, which
drops the points of documents this run may no longer change (see ``indexer.leases``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from indexer.conditions import AnyFilter
from indexer.errors import TransientStoreError
from indexer.faults import crash_point
from indexer.models import PointRecord
from indexer.store import Store

logger = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
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
    """``fn(*args)``, retried on transient store errors: exponential backoff (at most 30 s), or at least
    the delay the server asked for (429 Retry-After)."""
    for attempt in range(retries + 1):
        try:
            return fn(*args)
        except TransientStoreError as e:
            if attempt == retries:
                raise
            delay = max(min(MAX_BACKOFF, backoff * 2**attempt), e.retry_after or 0.0)
            logger.warning("%s failed (%s); retry %d in %.1fs", what, e, attempt + 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


class Writer:
    """Buffers points and upserts them in batches of at most ``max_points`` points and ``max_bytes``.

    A server's REST limit is 32 MB per request and one ColBERT point of 256 tokens is about 5 MB as
    JSON, so the byte bound matters as much as the count. Every batch is acknowledged before the next
    is sent: the store returns only once the engine has applied it (a server: on every shard and on
    ``write_consistency_factor`` replicas of each, see the README), so a failure anywhere surfaces as an
    error here and no later step (a "complete" record, a cleanup) can overtake an unacknowledged write.
    Transient errors are retried with exponential backoff, or after the delay the server asked for.
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

    @property
    def handed(self) -> int:
        """Points added so far. Writes keep their order, so the first ``written`` of them are acknowledged:
        a point added when ``handed`` was n is acknowledged once ``written`` > n."""
        return self.written + len(self.buffer)

    def add(self, point: PointRecord) -> None:
        size = point.estimated_bytes(self.store.bytes_per_float)
        if self.buffer and self.buffer_bytes + size > self.max_bytes:
            self.flush()
        self.buffer.append(point)
        self.buffer_bytes += size
        if len(self.buffer) >= self.max_points or self.buffer_bytes >= self.max_bytes:
            self.flush()

    def flush(self, wait: bool = True) -> None:
        """Write what is buffered. ``wait``: return only once every write so far is acknowledged; writes are
        synchronous, so that holds either way (a writer with batches in flight would wait for them here)."""
        if not self.buffer:
            return
        batch, self.buffer, self.buffer_bytes = self.buffer, [], 0
        self._write(batch)
        self.written += len(batch)
        self.batches += 1

    def delete(self, flt: AnyFilter, check: Callable[[], None] | None = None) -> None:
        """Delete matching points after everything added before has been written (order is kept).

        ``check`` runs before each attempt and raises to call the delete off.
        """
        self.flush()
        self._retry(f"delete of {flt}", self._delete, flt, check)

    def _delete(self, flt: AnyFilter, check: Callable[[], None] | None) -> None:
        if check is not None:
            check()
        self.store.delete(flt)

    def set_payload(self, flt: AnyFilter, payload: dict[str, Any], check: Callable[[], None] | None = None) -> None:
        """Set payload keys on matching points after everything added before has been written.

        ``check`` runs before each attempt and raises to call the update off.
        """
        self.flush()
        self._retry("payload update", self._set_payload, flt, payload, check)

    def _set_payload(self, flt: AnyFilter, payload: dict[str, Any], check: Callable[[], None] | None) -> None:
        if check is not None:
            check()
        self.store.set_payload(flt, payload)

    def _write(self, batch: list[PointRecord]) -> None:
        crash_point("write")
        self._retry(f"write of {len(batch)} points", self._upsert, batch)

    def _upsert(self, batch: list[PointRecord]) -> None:
        if self.fence is not None:
            batch = self.fence(batch)
        if batch:
            self.store.upsert(batch, True)

    def _retry(self, what: str, fn: Callable[..., None], *args: object) -> None:
        retrying(what, fn, *args, retries=self.retries, backoff=self.backoff, sleep=self.sleep)

    def close(self) -> None:
        """Write what is buffered and make the store durable and searchable."""
        self.flush(wait=True)
        self.store.finish()
