"""qdrant-client backend: a Qdrant server (REST or gRPC), or the client's local mode for tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from indexer.config import QdrantSettings
from indexer.errors import StoreError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.schema import (
    COLBERT,
    DENSE,
    PAYLOAD_INDEXES,
    SPARSE,
    CollectionInfo,
    CollectionSpec,
    VectorInfo,
    check_shape,
)
from indexer.store.base import AsyncStore, to_hit, to_stored
from indexer.store.errors import store_error

logger = logging.getLogger(__name__)

_DATATYPES = {"float32": models.Datatype.FLOAT32, "float16": models.Datatype.FLOAT16}
_PAYLOAD_TYPES = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER}


def client_options(settings: QdrantSettings) -> dict[str, Any]:
    """Connection arguments for a server, the same for ``QdrantClient`` and ``AsyncQdrantClient``."""
    return {
        "url": settings.url,
        "api_key": settings.api_key,
        "prefer_grpc": settings.prefer_grpc,
        "grpc_port": settings.grpc_port,
        "timeout": int(settings.timeout),
    }


def collection_params(spec: CollectionSpec) -> dict[str, Any]:
    """``create_collection`` arguments for the spec: named dense, sparse and ColBERT vectors."""
    dense = {
        DENSE: models.VectorParams(
            size=spec.dense_dim, distance=models.Distance.COSINE, datatype=_DATATYPES[spec.dense_datatype]
        )
    }
    if spec.colbert_dim is not None:
        dense[COLBERT] = models.VectorParams(
            size=spec.colbert_dim,
            distance=models.Distance.COSINE,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),  # rerank only: no graph (Qdrant's own advice)
            datatype=_DATATYPES[spec.colbert_datatype],
            on_disk=spec.colbert_on_disk,
        )
    # No IDF modifier: BGE-M3 lexical weights are learned and scored by a plain dot product.
    sparse = {SPARSE: models.SparseVectorParams(index=models.SparseIndexParams(on_disk=False), modifier=None)}
    return {"vectors_config": dense, "sparse_vectors_config": sparse}


def collection_info(name: str, info: models.CollectionInfo) -> CollectionInfo:
    """An existing qdrant-client collection, engine-neutral."""
    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors} if params.vectors else {}
    found = [
        VectorInfo(n, "multivector" if v.multivector_config is not None else "dense", v.size)
        for n, v in vectors.items()
    ]
    found += [VectorInfo(n, "sparse") for n in params.sparse_vectors or {}]
    return CollectionInfo(name, tuple(sorted(found, key=lambda v: v.name)))


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

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        location: str,
        server: bool,
        grpc: bool = False,
        settings: QdrantSettings | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.location = location
        self.server = server
        self.engine = "server" if server else "local"
        self.settings = settings
        # gRPC sends floats as 4 bytes; JSON spends up to 20 characters on one ("-0.012345678901234,").
        self.bytes_per_float = 20 if server and not grpc else 4

    @classmethod
    def connect(cls, settings: QdrantSettings, collection: str) -> QdrantStore:
        if settings.url:
            client = QdrantClient(**client_options(settings))
            try:
                client.get_collections()
            except Exception as e:
                raise StoreError(
                    f"cannot reach the Qdrant server at {settings.url}: {type(e).__name__}: {e}. "
                    "Is it running (docker compose up -d qdrant) and is QDRANT_API_KEY right?"
                ) from e
            return cls(client, collection, settings.url, server=True, grpc=settings.prefer_grpc, settings=settings)
        if settings.path == ":memory:":
            return cls(QdrantClient(location=":memory:"), collection, ":memory:", server=False)
        try:
            client = QdrantClient(path=settings.path)
        except RuntimeError as e:  # portalocker: another client holds the folder
            raise StoreError(f"the local Qdrant folder {settings.path} is already open in another process: {e}") from e
        return cls(client, collection, settings.path, server=False)

    @classmethod
    def list_collections(cls, settings: QdrantSettings) -> list[str]:
        store = cls.connect(settings, "")
        try:
            return sorted(c.name for c in store._call("listing collections", store.client.get_collections).collections)
        finally:
            store.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise store_error(e, what) from e

    def check_available(self) -> None:
        """A server was reached in ``connect``; local mode locked its folder there."""

    def _exists(self) -> bool:
        what = f"checking collection {self.collection!r}"
        return bool(self._call(what, self.client.collection_exists, self.collection))

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        if self._exists():
            if not recreate:
                check_shape(spec.info(), self.open_collection())
                return
            self._call(f"deleting collection {self.collection!r}", self.client.delete_collection, self.collection)
        what = f"creating collection {self.collection!r}"
        self._call(what, self.client.create_collection, self.collection, **collection_params(spec))
        if self.server:  # local mode has no payload indexes (it warns); create them before any upload
            for field, kind in PAYLOAD_INDEXES.items():
                schema = _PAYLOAD_TYPES[kind]
                create = self.client.create_payload_index
                self._call(what, create, self.collection, field, field_schema=schema, wait=True)

    def open_collection(self) -> CollectionInfo:
        if not self._exists():
            raise StoreError(f"collection {self.collection!r} does not exist at {self.location}; ingest first")
        info = self._call(f"reading collection {self.collection!r}", self.client.get_collection, self.collection)
        return collection_info(self.collection, info)

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        structs = [to_point_struct(p) for p in points]
        self._call(f"writing {len(points)} points", self.client.upsert, self.collection, points=structs, wait=wait)

    def delete(self, flt: models.Filter) -> None:
        selector = models.FilterSelector(filter=flt)
        self._call("deleting points", self.client.delete, self.collection, points_selector=selector, wait=True)

    def set_payload(self, flt: models.Filter, payload: dict[str, Any]) -> None:
        selector = models.FilterSelector(filter=flt)
        what = "setting payload"
        self._call(what, self.client.set_payload, self.collection, payload=payload, points=selector, wait=True)

    def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]:
        responses = self._call("query", self.client.query_batch_points, self.collection, requests=list(requests))
        return [[to_hit(p) for p in r.points] for r in responses]

    def count(self, flt: models.Filter | None = None) -> int:
        return int(self._call("count", self.client.count, self.collection, count_filter=flt, exact=True).count)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._call(
            "retrieve", self.client.retrieve, self.collection, list(ids), with_payload=True, with_vectors=with_vectors
        )
        return [to_stored(r) for r in records]

    def scroll(self, flt: models.Filter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                self.client.scroll,
                self.collection,
                scroll_filter=flt,
                limit=page,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            for r in records:
                yield to_stored(r, with_vectors=False)
            if offset is None:
                return

    def finish(self) -> None:
        """Server writes were acknowledged with ``wait=True`` on the last batch; nothing more to do."""

    def open_async(self) -> AsyncStore | None:
        if not self.server or self.settings is None:
            return None
        from indexer.store.qdrant_async import AsyncQdrantStore

        return AsyncQdrantStore.connect(self.settings, self.collection)

    def close(self) -> None:
        self.client.close()
