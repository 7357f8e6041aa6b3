"""Qdrant Edge backend: the real Rust engine in-process, one folder per collection.

Requests arrive as qdrant-client models (built once, see ``retriever.query``) and are translated
here to Edge's own classes, so both engines run the very same request.
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
from pathlib import Path
from typing import Any

from qdrant_client import models

from indexer.errors import QueryError, StoreError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.schema import COLBERT, DENSE, PAYLOAD_INDEXES, SPARSE, CollectionSpec, check_shape, edge_config

logger = logging.getLogger(__name__)

META_FILE = "collection.json"  # our record of the collection's spec, next to Edge's own files
OWNER_FILE = "owner.json"  # which process has the store open
QDRANT_RRF_K = 2  # the server's default k; Edge requires k explicitly


# ------------------------------------------------------------------------------ request translation


def edge_filter(f: models.Filter | None) -> Any:
    import qdrant_edge as qe

    if f is None:
        return None

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        return [edge_condition(c) for c in (items if isinstance(items, list) else [items])]

    min_should = None
    if f.min_should is not None:
        min_should = qe.MinShould(conditions=conds(f.min_should.conditions) or [], min_count=f.min_should.min_count)
    return qe.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not), min_should=min_should)


def edge_condition(c: Any) -> Any:
    import qdrant_edge as qe

    if isinstance(c, models.Filter):
        return edge_filter(c)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition(point_ids={str(i) for i in c.has_id})
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(key=c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(key=c.is_null.key)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(key=c.nested.key, filter=edge_filter(c.nested.filter))
    if isinstance(c, models.FieldCondition):
        match = None
        m = c.match
        if isinstance(m, models.MatchValue):
            match = qe.MatchValue(m.value)
        elif isinstance(m, models.MatchAny):
            match = qe.MatchAny(list(m.any))
        elif isinstance(m, models.MatchExcept):
            match = qe.MatchExcept(list(m.except_))
        elif isinstance(m, models.MatchText):
            match = qe.MatchText(m.text)
        elif m is not None:
            raise QueryError(f"filter match {type(m).__name__} is not supported by the embedded engine")
        rng = None
        if isinstance(c.range, models.Range):
            rng = qe.RangeFloat(gte=c.range.gte, gt=c.range.gt, lte=c.range.lte, lt=c.range.lt)
        elif isinstance(c.range, models.DatetimeRange):
            rng = qe.RangeDateTime(
                **{
                    k: None if v is None else str(v)
                    for k, v in c.range.model_dump().items()
                    if k in ("gte", "gt", "lte", "lt")
                }
            )
        return qe.FieldCondition(key=c.key, match=match, range=rng, is_empty=c.is_empty, is_null=c.is_null)
    raise QueryError(f"filter condition {type(c).__name__} is not supported by the embedded engine")


def edge_query(query: Any, using: str | None) -> Any:
    import qdrant_edge as qe

    if query is None:
        return None
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    if isinstance(query, models.SparseVector):
        return qe.Query.Nearest(qe.SparseVector(list(query.indices), list(query.values)), using=using)
    if isinstance(query, list):  # dense, or a multivector (list of lists)
        return qe.Query.Nearest(query, using=using)
    if isinstance(query, models.FusionQuery):
        if query.fusion == models.Fusion.RRF:
            return qe.Fusion.Rrf(k=QDRANT_RRF_K)
        if query.fusion == models.Fusion.DBSF:
            return qe.Fusion.Dbsf()
    if isinstance(query, models.RrfQuery):
        return qe.Fusion.Rrf(k=query.rrf.k if query.rrf.k is not None else QDRANT_RRF_K, weights=query.rrf.weights)
    if isinstance(query, models.FormulaQuery):
        return qe.Formula(edge_expression(query.formula), defaults=dict(query.defaults or {}) or None)
    raise QueryError(f"query {type(query).__name__} is not supported by the embedded engine")


def edge_expression(e: Any) -> Any:
    """A formula expression (constants, ``$score[n]``/payload variables, sum, mult, neg, div) for Edge."""
    import qdrant_edge as qe

    x = qe.Expression
    if isinstance(e, bool):
        raise QueryError("a formula term cannot be a boolean")
    if isinstance(e, (int, float)):
        return x.Constant(float(e))
    if isinstance(e, str):
        return x.Variable(e)
    if isinstance(e, models.SumExpression):
        return x.Sum([edge_expression(t) for t in e.sum])
    if isinstance(e, models.MultExpression):
        return x.Mult([edge_expression(t) for t in e.mult])
    if isinstance(e, models.NegExpression):
        return x.Neg(edge_expression(e.neg))
    if isinstance(e, models.DivExpression):
        return x.Div(edge_expression(e.div.left), edge_expression(e.div.right), e.div.by_zero_default)
    raise QueryError(f"formula expression {type(e).__name__} is not supported by the embedded engine")


def edge_prefetch(p: models.Prefetch) -> Any:
    import qdrant_edge as qe

    nested = p.prefetch if isinstance(p.prefetch, list) else [p.prefetch] if p.prefetch else []
    return qe.Prefetch(
        limit=p.limit if p.limit is not None else 10,  # the server's default prefetch limit
        query=edge_query(p.query, p.using),
        prefetches=[edge_prefetch(n) for n in nested] or None,
        filter=edge_filter(p.filter),
        score_threshold=p.score_threshold,
    )


def edge_request(r: models.QueryRequest) -> Any:
    import qdrant_edge as qe

    nested = r.prefetch if isinstance(r.prefetch, list) else [r.prefetch] if r.prefetch else []
    with_payload = r.with_payload if isinstance(r.with_payload, (bool, list)) else True
    return qe.QueryRequest(
        limit=r.limit if r.limit is not None else 10,
        offset=r.offset,
        query=edge_query(r.query, r.using),
        prefetches=[edge_prefetch(n) for n in nested] or None,
        filter=edge_filter(r.filter),
        score_threshold=r.score_threshold,
        with_payload=with_payload,
        with_vector=bool(r.with_vector) if r.with_vector is not None else False,
    )


def edge_point(p: PointRecord) -> Any:
    import qdrant_edge as qe

    vector: dict[str, Any] = {}
    if p.dense is not None:
        vector[DENSE] = p.dense
    if p.sparse is not None:
        vector[SPARSE] = qe.SparseVector(list(p.sparse.indices), list(p.sparse.values))
    if p.colbert is not None:
        vector[COLBERT] = p.colbert
    return qe.Point(p.id, vector, p.payload)


# ------------------------------------------------------------------------------ the store


class EdgeStore:
    """One collection = one Edge shard in ``<root>/<collection>``; one process may open it at a time."""

    bytes_per_float = 4

    def __init__(self, root: str | Path, collection: str) -> None:
        self.collection = collection
        self.path = Path(root) / collection
        self.location = str(self.path)
        self.shard: Any = None

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
            check_shape(self.collection, spec.vector_shape(), meta["shape"])
            if self.shard is None:
                self._load()
            return
        import qdrant_edge as qe

        if self.path.exists():  # a folder without our record: a crash during creation, or not ours
            if any(self.path.iterdir()) and not (self.path / "wal").exists():
                raise StoreError(f"{self.path} exists and is not a collection folder; refusing to touch it")
            shutil.rmtree(self.path)
        try:
            self.shard = qe.EdgeShard.create(str(self.path), edge_config(spec))
            self._claim()
            for field, schema in PAYLOAD_INDEXES.items():
                self.shard.update(qe.UpdateOperation.create_field_index(field, _edge_schema(schema)))
        except Exception as e:
            raise StoreError(f"cannot create the embedded collection at {self.path}: {e}") from e
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps({"spec": spec.as_dict(), "shape": spec.vector_shape()}, indent=2))
        os.replace(tmp, self.path / META_FILE)  # the record appears only once the shard is complete

    def open_collection(self) -> dict[str, Any]:
        meta = self._meta()
        if meta is None:
            raise StoreError(f"collection {self.collection!r} does not exist at {self.path}; ingest first")
        if self.shard is None:
            self._load()
        return meta["shape"]

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

    def delete(self, flt: models.Filter) -> None:
        import qdrant_edge as qe

        self._run(
            "deleting points",
            self._shard().update,
            qe.UpdateOperation.delete_points_by_filter(edge_filter(flt)),
        )

    def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]:
        import qdrant_edge as qe

        try:
            batch = qe.QueryBatchRequest([edge_request(r) for r in requests])
        except (ValueError, TypeError) as e:  # what the engine's own classes refuse (a malformed id or path)
            raise QueryError(f"the embedded engine cannot run this request: {e}") from e
        results = self._run("query", self._shard().query_batch, batch)
        return [[Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r] for r in results]

    def count(self, flt: models.Filter | None = None) -> int:
        import qdrant_edge as qe

        return int(self._run("count", self._shard().count, qe.CountRequest(exact=True, filter=edge_filter(flt))))

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._run("retrieve", self._shard().retrieve, list(ids), True, with_vectors)
        return [StoredPoint(id=str(r.id), payload=r.payload or {}, vectors=dict(r.vector or {})) for r in records]

    def scroll(self, flt: models.Filter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        import qdrant_edge as qe

        offset = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=page, filter=edge_filter(flt), with_payload=True)
            records, offset = self._run("scroll", self._shard().scroll, request)
            for r in records:
                yield StoredPoint(id=str(r.id), payload=r.payload or {}, vectors={})
            if offset is None:
                return

    def finish(self, optimize: bool = True) -> None:
        shard = self._shard()
        self._run("flush", shard.flush)
        if optimize:  # Edge has no background optimizer; a small upload can leave it for the next ingest
            self._run("optimize", shard.optimize)

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None
            (self.path / OWNER_FILE).unlink(missing_ok=True)


def _edge_schema(schema: models.PayloadSchemaType) -> Any:
    import qdrant_edge as qe

    return {
        models.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
        models.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
        models.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
        models.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    }[schema]
