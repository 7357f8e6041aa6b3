"""Vector stores behind one interface: Qdrant Edge (embedded default) and qdrant-client (server, local mode)."""

from __future__ import annotations

from indexer.config import QdrantSettings
from indexer.store.base import AsyncStore, Store
from indexer.store.serialized import SerializedStore, ThreadedAsyncStore, concurrent

__all__ = [
    "AsyncStore",
    "SerializedStore",
    "Store",
    "ThreadedAsyncStore",
    "concurrent",
    "list_collections",
    "open_store",
]


def _uses_qdrant_client(settings: QdrantSettings) -> bool:
    return bool(settings.url) or settings.engine == "local"


def open_store(settings: QdrantSettings, collection: str) -> Store:
    """The store the settings name: a server URL, else the embedded engine (Edge or local mode).

    A server is contacted here, so an unreachable one fails before any model is loaded.
    """
    if _uses_qdrant_client(settings):
        from indexer.store.qdrant import QdrantStore

        return QdrantStore.connect(settings, collection)
    from indexer.store.edge import EdgeStore

    return EdgeStore(settings.path, collection)


def list_collections(settings: QdrantSettings) -> list[str]:
    """Names of the collections at the configured location."""
    if _uses_qdrant_client(settings):
        from indexer.store.qdrant import QdrantStore

        return QdrantStore.list_collections(settings)
    from indexer.store.edge import EdgeStore

    return EdgeStore.list_collections(settings.path)
