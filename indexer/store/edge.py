"""Qdrant Edge backend: the real Rust engine in-process, one folder per collection.

Searches arrive as engine-neutral requests (``indexer.requests``) and are translated by
``indexer.store.edge_requests``, as the server and local mode translate them to qdrant-client models: every
engine runs the very same request, and neither a search nor an ingest run here imports qdrant-client.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.conditions import AnyFilter
from indexer.errors import QueryError, StoreError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.requests import Request
from indexer.schema import (
    COLBERT,
    DENSE,
    SPARSE,
    TENANT_INDEX,
    CollectionInfo,
    CollectionSpec,
    check_shape,
    payload_indexes,
)
from indexer.storage import distance_for
from indexer.store.base import AsyncStore, to_hit, to_stored
from indexer.store.edge_requests import edge_filter, edge_point, edge_request
from indexer.store.features import Version

if TYPE_CHECKING:
    from indexer.store.groups import HitGroup

logger = logging.getLogger(__name__)

META_FILE = "collection.json"  # our record of the collection's spec, next to Edge's own files
OWNER_FILE = "owner.json"  # which process has the store open
# Edge has no background optimizer: a run's finish() optimizes the shard (blocking, whole-shard) once this
# many points were written since the last optimize, and close() does whatever is left. Small uploads through
# the service so share one optimize instead of paying for one each.
OPTIMIZE_AFTER_POINTS = 1000


def edge_config(spec: CollectionSpec) -> Any:
    """The collection of ``spec`` as Edge's own config classes (the same choices as a server's, see
    ``indexer.store.qdrant_params.collection_params``)."""
    import qdrant_edge as qe

    datatypes = {
        "float32": qe.VectorStorageDatatype.Float32,
        "float16": qe.VectorStorageDatatype.Float16,
        "uint8": qe.VectorStorageDatatype.Uint8,
    }
    distances = {"cosine": qe.Distance.Cosine, "euclid": qe.Distance.Euclid}

    def quantization(kind: str) -> Any:
        if kind == "none":
            return None
        return qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=spec.quantization_quantile, always_ram=spec.quantization_always_ram
        )

    vectors = {
        DENSE: qe.EdgeVectorParams(
            size=spec.dense_dim,
            distance=distances[distance_for(spec.dense_datatype)],
            datatype=datatypes[spec.dense_datatype],
            quantization_config=quantization(spec.dense_quantization),
            on_disk=spec.dense_on_disk,
        )
    }
    if spec.colbert_dim is not None:
        vectors[COLBERT] = qe.EdgeVectorParams(
            size=spec.colbert_dim,
            distance=distances[distance_for(spec.colbert_datatype)],
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            datatype=datatypes[spec.colbert_datatype],
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            quantization_config=quantization(spec.colbert_quantization),
            on_disk=spec.colbert_on_disk,
        )
    # The same segment sizing as a server's (indexer.schema.optimizer_sizes): a segment is indexed (dense
    # HNSW, int8 copies) once its largest vector storage reaches indexing_threshold_kb.
    optimizers = qe.EdgeOptimizersConfig(
        max_segment_size=spec.max_segment_size_kb, indexing_threshold=spec.indexing_threshold_kb
    )
    return qe.EdgeConfig(vectors=vectors, sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()}, optimizers=optimizers)


def _edge_schema(kind: str) -> Any:
    import qdrant_edge as qe

    if kind == TENANT_INDEX:
        return qe.KeywordIndexParams(is_tenant=True)
    return {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}[kind]


def _edge_kind(info: Any) -> str:
    """An Edge payload index as ``"keyword"``, ``"integer"`` or ``"tenant"`` (a keyword index marked is_tenant)."""
    kind = str(info.data_type).rsplit(".", 1)[-1].lower()
    return TENANT_INDEX if kind == "keyword" and getattr(info.params, "is_tenant", None) else kind


def _recorded_info(name: str, meta: dict[str, Any]) -> CollectionInfo:
    """The collection as our record describes it: the full spec where recorded, else the shape alone."""
    if "spec" in meta:
        return replace(CollectionSpec.from_dict(meta["spec"]).info(), name=name)
    return CollectionInfo.from_dict(name, meta["shape"])


class EdgeStore:
    """One collection = one Edge shard in ``<root>/<collection>``; one process may open it at a time."""

    bytes_per_float = 4
    engine = "edge"
    server_version: Version | None = None  # not a server: the installed engine runs every feature

    def __init__(self, root: str | Path, collection: str) -> None:
        self.collection = collection
        self.path = Path(root) / collection
        self.location = str(self.path)
        self.shard: Any = None
        self.unoptimized = 0  # points written since the last optimize

    @staticmethod
    def list_collections(root: str | Path) -> list[str]:
        """The collections (sub-folders holding our collection record) under an embedded store folder."""
        folder = Path(root)
        return sorted(p.parent.name for p in folder.glob(f"*/{META_FILE}")) if folder.is_dir() else []

    def _meta(self) -> dict[str, Any] | None:
        meta = self.path / META_FILE
        return json.loads(meta.read_text()) if meta.is_file() else None

    def _load(self) -> None:
        import qdrant_edge as qe

        try:
            self.shard = qe.EdgeShard.load(str(self.path))
        except Exception as e:
            if "WouldBlock" in str(e):
                raise StoreError(
                    f"the embedded store {self.path} is already open in another process ({self._holder()}); only "
                    "one process may open it at a time. Stop that process, or use a Qdrant server for shared access"
                ) from e
            raise StoreError(f"cannot open the embedded store {self.path}: {e}") from e
        self._claim()

    def _claim(self) -> None:
        """Say who holds the store, for the message another process gets (the lock itself is Edge's)."""
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv), "since": time.time()}
        tmp = self.path / f"{OWNER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(owner))
        os.replace(tmp, self.path / OWNER_FILE)

    def _holder(self) -> str:
        try:
            owner = json.loads((self.path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            return "holder unknown"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
        return f"held by pid {owner.get('pid')} on {owner.get('host')}: {owner.get('command')!r}, since {since}"

    def check_available(self) -> None:
        """Take the store now if it exists, so a store held by another process fails before any slow work."""
        if self.shard is None and self._meta() is not None:
            self._load()

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        meta = self._meta()
        if meta is not None and recreate:
            self.close()
            shutil.rmtree(self.path)
            meta = None
        if meta is not None:
            check_shape(spec.info(), _recorded_info(self.collection, meta))
            if self.shard is None:
                self._load()
            self._create_missing_indexes(spec.tenant_field)
            return
        import qdrant_edge as qe

        if self.path.exists():  # a folder without our record: a crash during creation, or not ours
            if any(self.path.iterdir()) and not (self.path / "wal").exists():
                raise StoreError(f"{self.path} exists and is not a collection folder; refusing to touch it")
            shutil.rmtree(self.path)
        try:
            self.shard = qe.EdgeShard.create(str(self.path), edge_config(spec))
            self._claim()
            self._create_missing_indexes(spec.tenant_field)
        except Exception as e:
            raise StoreError(f"cannot create the embedded collection at {self.path}: {e}") from e
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps({"spec": spec.as_dict(), "shape": spec.info().vectors_dict()}, indent=2))
        os.replace(tmp, self.path / META_FILE)  # the record appears only once the shard is complete

    def _create_missing_indexes(self, tenant_field: str | None = None) -> None:
        """The payload indexes the shard lacks (a collection from an older build, or a creation cut short)."""
        import qdrant_edge as qe

        have = {field: _edge_kind(info) for field, info in self._shard().info().payload_schema.items()}
        for field, kind in payload_indexes(tenant_field).items():
            if have.get(field) != kind:
                op = qe.UpdateOperation.create_field_index(field, _edge_schema(kind))
                self._run(f"creating the payload index on {field!r}", self._shard().update, op)

    def open_collection(self) -> CollectionInfo:
        meta = self._meta()
        if meta is None:
            raise StoreError(f"collection {self.collection!r} does not exist at {self.path}; ingest first")
        if self.shard is None:
            self._load()
        return _recorded_info(self.collection, meta)

    def _shard(self) -> Any:
        if self.shard is None:
            raise StoreError(f"collection {self.collection!r} is not open")
        return self.shard

    def _run(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except QueryError:
            raise
        except Exception as e:  # Edge raises plain Exception with the engine's message
            raise StoreError(f"{what} failed in {self.path}: {e}") from e

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        import qdrant_edge as qe

        op = qe.UpdateOperation.upsert_points([edge_point(p) for p in points])
        self._run(f"writing {len(points)} points", self._shard().update, op)
        self.unoptimized += len(points)

    def delete(self, flt: AnyFilter) -> None:
        import qdrant_edge as qe

        self._run(
            "deleting points",
            self._shard().update,
            qe.UpdateOperation.delete_points_by_filter(edge_filter(flt)),
        )

    def set_payload(self, flt: AnyFilter, payload: dict[str, Any]) -> None:
        import qdrant_edge as qe

        op = qe.UpdateOperation.set_payload_by_filter(edge_filter(flt), payload)
        self._run("setting payload", self._shard().update, op)

    def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        import qdrant_edge as qe

        try:
            batch = qe.QueryBatchRequest([edge_request(r) for r in requests])
        except (ValueError, TypeError) as e:  # what the engine's own classes refuse (a malformed id or path)
            raise QueryError(f"the embedded engine cannot run this request: {e}") from e
        results = self._run("query", self._shard().query_batch, batch)
        return [[to_hit(p) for p in r] for r in results]

    def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        """Edge has no query groups: over-fetch and group on the client (``indexer.store.groups``)."""
        from indexer.store.groups import overfetch_groups

        return overfetch_groups(self.query_batch, lambda ids: self.retrieve(ids), requests, group_by, group_size)

    def count(self, flt: AnyFilter | None = None) -> int:
        import qdrant_edge as qe

        return int(self._run("count", self._shard().count, qe.CountRequest(exact=True, filter=edge_filter(flt))))

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._run("retrieve", self._shard().retrieve, list(ids), True, with_vectors)
        return [to_stored(r) for r in records]

    def scroll(self, flt: AnyFilter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        import qdrant_edge as qe

        offset = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=page, filter=edge_filter(flt), with_payload=True)
            records, offset = self._run("scroll", self._shard().scroll, request)
            for r in records:
                yield to_stored(r, with_vectors=False)
            if offset is None:
                return

    def finish(self) -> None:
        """Flush; optimize once enough points were written (Edge has no background optimizer)."""
        shard = self._shard()
        self._run("flush", shard.flush)
        if self.unoptimized >= OPTIMIZE_AFTER_POINTS:
            self._optimize()

    def _optimize(self) -> None:
        self._run("optimize", self._shard().optimize)
        self.unoptimized = 0

    def open_async(self) -> AsyncStore | None:
        return None  # one process, one shard: searches run in a worker thread (see SerializedStore)

    def close(self) -> None:
        if self.shard is not None:
            try:
                if self.unoptimized:  # what a run or the service's uploads left unoptimized
                    self._run("flush", self.shard.flush)
                    self._optimize()
            finally:
                self.shard.close()
                self.shard = None
                (self.path / OWNER_FILE).unlink(missing_ok=True)
