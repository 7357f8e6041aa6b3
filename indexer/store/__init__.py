"""Vector stores behind one interface: Qdrant Edge (embedded default) and qdrant-client (server, local mode)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from qdrant_client import models

from indexer.config import QdrantSettings
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.schema import CollectionSpec


class Store(Protocol):
    """One collection in one engine. Requests are qdrant-client models; each backend translates them."""

    collection: str
    bytes_per_float: int  # wire size estimate, to bound write batches by bytes
    location: str  # for messages: a URL or a folder

    def check_available(self) -> None:
        """Fail now, with a clear message, if the store cannot be used (unreachable, held by another process)."""

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        """Create the collection, or check that the existing one has the same vectors."""

    def open_collection(self) -> dict[str, Any]:
        """Open an existing collection for reading; return its vector shape (see ``CollectionSpec``)."""

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None: ...

    def delete(self, flt: models.Filter) -> None: ...

    def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]: ...

    def count(self, flt: models.Filter | None = None) -> int: ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]: ...

    def scroll(self, flt: models.Filter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        """Every matching point's payload (no vectors), page by page."""

    def finish(self, optimize: bool = True) -> None:
        """Make every write durable and searchable (waits, flushes; optimizes unless told not to)."""

    def close(self) -> None: ...


def open_store(settings: QdrantSettings, collection: str) -> Store:
    """The store the settings name: a server URL, else the embedded engine (Edge or local mode).

    A server is contacted here, so an unreachable one fails before any model is loaded.
    """
    if settings.url or settings.engine == "local":
        from indexer.store.qdrant import QdrantStore

        return QdrantStore.connect(settings, collection)
    from indexer.store.edge import EdgeStore

    return EdgeStore(settings.path, collection)


def list_collections(settings: QdrantSettings) -> list[str]:
    """Names of the collections at the configured location."""
    if settings.url or settings.engine == "local":
        from indexer.store.qdrant import QdrantStore

        store = QdrantStore.connect(settings, "")
        try:
            return sorted(c.name for c in store.client.get_collections().collections)
        finally:
            store.close()
    from indexer.store.edge import META_FILE

    root = Path(settings.path)
    return sorted(p.parent.name for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []
