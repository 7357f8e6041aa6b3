"""qdrant-client backend: a Qdrant server (REST or gRPC), or the client's local mode for tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from indexer.config import QdrantSettings
from indexer.errors import StoreError, TransientStoreError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.schema import (
    COLBERT,
    DENSE,
    PAYLOAD_INDEXES,
    SPARSE,
    CollectionSpec,
    check_shape,
    qdrant_vectors,
    shape_of_qdrant_collection,
)

logger = logging.getLogger(__name__)

_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def is_transient(e: BaseException) -> bool:
    """Errors worth a retry: the connection, a timeout, an overloaded or restarting server."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        return e.status_code is not None and (e.status_code >= 500 or e.status_code == 429)
    if isinstance(e, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import grpc

        if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
            return e.code().name in _TRANSIENT_GRPC
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        pass
    import httpx

    return isinstance(e, httpx.TransportError)


def _wrap(e: Exception, what: str) -> StoreError:
    cls = TransientStoreError if is_transient(e) else StoreError
    return cls(f"{what} failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")


def to_point_struct(p: PointRecord) -> models.PointStruct:
    vector: dict[str, Any] = {}
    if p.dense is not None:
        vector[DENSE] = p.dense.tolist()
    if p.sparse is not None:
        vector[SPARSE] = models.SparseVector(indices=list(p.sparse.indices), values=list(p.sparse.values))
    if p.colbert is not None:
        vector[COLBERT] = p.colbert.tolist()
    return models.PointStruct(id=p.id, vector=vector, payload=p.payload)


class QdrantStore:
    """A collection reached through qdrant-client."""

    def __init__(self, client: QdrantClient, collection: str, location: str, server: bool, grpc: bool = False) -> None:
        self.client = client
        self.collection = collection
        self.location = location
        self.server = server
        # gRPC sends floats as 4 bytes; JSON spends up to 20 characters on one ("-0.012345678901234,").
        self.bytes_per_float = 20 if server and not grpc else 4

    @classmethod
    def connect(cls, settings: QdrantSettings, collection: str) -> QdrantStore:
        if settings.url:
            client = QdrantClient(
                url=settings.url,
                api_key=settings.api_key,
                prefer_grpc=settings.prefer_grpc,
                grpc_port=settings.grpc_port,
                timeout=int(settings.timeout),
            )
            try:
                client.get_collections()
            except Exception as e:
                raise StoreError(
                    f"cannot reach the Qdrant server at {settings.url}: {type(e).__name__}: {e}. "
                    "Is it running (docker compose up -d qdrant) and is QDRANT_API_KEY right?"
                ) from e
            return cls(client, collection, settings.url, server=True, grpc=settings.prefer_grpc)
        if settings.path == ":memory:":
            return cls(QdrantClient(location=":memory:"), collection, ":memory:", server=False)
        try:
            client = QdrantClient(path=settings.path)
        except RuntimeError as e:  # portalocker: another client holds the folder
            raise StoreError(f"the local Qdrant folder {settings.path} is already open in another process: {e}") from e
        return cls(client, collection, settings.path, server=False)

    def check_available(self) -> None:
        """A server was reached in ``connect``; local mode locked its folder there."""

    def _exists(self) -> bool:
        try:
            return self.client.collection_exists(self.collection)
        except Exception as e:
            raise _wrap(e, f"checking collection {self.collection!r}") from e

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        if self._exists():
            if not recreate:
                check_shape(self.collection, spec.vector_shape(), self.open_collection())
                return
            self.client.delete_collection(self.collection)
        dense, sparse = qdrant_vectors(spec)
        try:
            self.client.create_collection(self.collection, vectors_config=dense, sparse_vectors_config=sparse)
            if self.server:  # local mode has no payload indexes (it warns); create them before any upload
                for field, schema in PAYLOAD_INDEXES.items():
                    self.client.create_payload_index(self.collection, field, field_schema=schema, wait=True)
        except Exception as e:
            raise _wrap(e, f"creating collection {self.collection!r}") from e

    def open_collection(self) -> dict[str, Any]:
        if not self._exists():
            raise StoreError(f"collection {self.collection!r} does not exist at {self.location}; ingest first")
        return shape_of_qdrant_collection(self.client.get_collection(self.collection))

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        try:
            self.client.upsert(self.collection, points=[to_point_struct(p) for p in points], wait=wait)
        except Exception as e:
            raise _wrap(e, f"writing {len(points)} points") from e

    def delete(self, flt: models.Filter) -> None:
        try:
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)
        except Exception as e:
            raise _wrap(e, "deleting points") from e

    def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]:
        try:
            responses = self.client.query_batch_points(self.collection, requests=list(requests))
        except Exception as e:
            raise _wrap(e, "query") from e
        return [[Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r.points] for r in responses]

    def count(self, flt: models.Filter | None = None) -> int:
        try:
            return self.client.count(self.collection, count_filter=flt, exact=True).count
        except Exception as e:
            raise _wrap(e, "count") from e

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self.client.retrieve(self.collection, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [StoredPoint(id=str(r.id), payload=r.payload or {}, vectors=dict(r.vector or {})) for r in records]

    def scroll(self, flt: models.Filter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        offset = None
        while True:
            try:
                records, offset = self.client.scroll(
                    self.collection, scroll_filter=flt, limit=page, offset=offset, with_payload=True, with_vectors=False
                )
            except Exception as e:
                raise _wrap(e, "scroll") from e
            for r in records:
                yield StoredPoint(id=str(r.id), payload=r.payload or {}, vectors={})
            if offset is None:
                return

    def finish(self, optimize: bool = True) -> None:
        """Server writes were acknowledged with ``wait=True`` on the last batch; nothing more to do."""

    def close(self) -> None:
        self.client.close()
