"""The store interface: one collection in one engine, with a blocking and an async side.

Searches are engine-neutral requests (``indexer.requests``, built once by ``retriever.query``); each backend
translates them for its engine, so the rest of the code never branches on the engine. Searches, deletes,
counts, scrolls and payload updates take our engine-neutral filters (``indexer.conditions``) or qdrant-client
ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from indexer.conditions import AnyFilter
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.requests import Request
from indexer.schema import CollectionInfo, CollectionSpec
from indexer.store.features import Version

if TYPE_CHECKING:
    from indexer.store.groups import HitGroup


class Store(Protocol):
    """One collection in one engine, used from one thread at a time (see ``SerializedStore``)."""

    collection: str
    bytes_per_float: int  # wire size estimate, to bound write batches by bytes
    location: str  # for messages: a URL or a folder
    engine: str  # "server", "edge" or "local", for reports
    server_version: Version | None  # a server's version, read when it was opened; None for the embedded engines

    def check_available(self) -> None:
        """Fail now, with a clear message, if the store cannot be used (unreachable, held by another process)."""

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        """Open the collection for writing: create it, or check that the existing one has the same vectors;
        either way, create the payload indexes it lacks."""

    def open_collection(self) -> CollectionInfo:
        """Open an existing collection for reading; return what it holds."""

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        """Write points; a server write returns once the server has applied it (every batch, see README)."""

    def delete(self, flt: AnyFilter) -> None: ...

    def set_payload(self, flt: AnyFilter, payload: dict[str, Any]) -> None:
        """Set these top-level payload keys on every matching point (one operation; other keys are kept)."""

    def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]: ...

    def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        """Each request's best ``limit`` groups of up to ``group_size`` hits sharing a value of payload field
        ``group_by``, best group first (Qdrant's query groups; see ``indexer.store.groups`` for Edge)."""

    def count(self, flt: AnyFilter | None = None) -> int: ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]: ...

    def scroll(self, flt: AnyFilter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        """Every matching point's payload (no vectors), page by page."""

    def finish(self) -> None:
        """Make every write so far durable and searchable; the engine decides what that takes."""

    def open_async(self) -> AsyncStore | None:
        """A native async client for the same collection, or None when the engine has none (embedded)."""

    def close(self) -> None: ...


class AsyncStore(Protocol):
    """The async side: what a service's request handlers call from the event loop."""

    collection: str

    async def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]: ...

    async def query_groups(
        self, requests: Sequence[Request], group_by: str, group_size: int
    ) -> list[list[HitGroup]]: ...

    async def count(self, flt: AnyFilter | None = None) -> int: ...

    async def close(self) -> None: ...


def to_hit(point: Any) -> Hit:
    """A scored point of any engine (qdrant-client model or Edge's own class) as a ``Hit``."""
    return Hit(id=str(point.id), score=float(point.score), payload=point.payload or {})


def to_stored(record: Any, with_vectors: bool = True) -> StoredPoint:
    """A record of any engine as a ``StoredPoint``."""
    vectors = dict(record.vector or {}) if with_vectors else {}
    return StoredPoint(id=str(record.id), payload=record.payload or {}, vectors=vectors)
