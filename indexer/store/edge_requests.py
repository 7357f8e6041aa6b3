"""Request translation for Qdrant Edge: our neutral searches (``indexer.requests``) and filters
(``indexer.conditions``) to Edge's own pyo3 classes.

The server and local mode translate the same neutral records to qdrant-client models, so every engine
runs the very same search, and a search or an ingest run on Edge never imports qdrant-client. A filter
in Qdrant's own syntax (a user's ``{"must": [...]}``, validated by qdrant-client) is translated here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import conditions as nc
from indexer import requests as rq
from indexer.errors import QueryError
from indexer.models import PointRecord, SparseVec
from indexer.schema import COLBERT, DENSE, SPARSE

if TYPE_CHECKING:
    from qdrant_client import models


def _models() -> Any:
    from qdrant_client import models

    return models


def edge_filter(f: nc.AnyFilter | None) -> Any:
    import qdrant_edge as qe

    if f is None:
        return None
    if isinstance(f, nc.Filter):
        return _neutral_filter(f)

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        return [edge_condition(c) for c in (items if isinstance(items, list) else [items])]

    min_should = None
    if f.min_should is not None:
        min_should = qe.MinShould(conditions=conds(f.min_should.conditions) or [], min_count=f.min_should.min_count)
    return qe.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not), min_should=min_should)


def _neutral_filter(f: nc.Filter) -> Any:
    import qdrant_edge as qe

    def conds(items: tuple[nc.Condition, ...]) -> list[Any] | None:
        return [_neutral_condition(x) for x in items] or None

    return qe.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not))


def _neutral_condition(x: nc.Condition) -> Any:
    import qdrant_edge as qe

    if isinstance(x, nc.Match):
        return qe.FieldCondition(key=x.key, match=qe.MatchValue(x.value))
    if isinstance(x, nc.MatchAny):
        return qe.FieldCondition(key=x.key, match=qe.MatchAny(list(x.values)))  # type: ignore[arg-type]
    if isinstance(x, nc.HasId):
        return qe.HasIdCondition(point_ids=set(x.ids))
    if isinstance(x, nc.IsEmpty):
        return qe.IsEmptyCondition(key=x.key)
    if isinstance(x, nc.Range):
        return qe.FieldCondition(key=x.key, range=qe.RangeFloat(gte=x.gte, gt=x.gt, lte=x.lte, lt=x.lt))
    if isinstance(x, nc.Filter):
        return _neutral_filter(x)
    if nc.is_qdrant_filter(x):  # a filter in Qdrant's syntax within ours (e.g. a tenant's scope)
        return edge_filter(x)
    raise QueryError(f"filter condition {type(x).__name__} is not supported by the embedded engine")


def edge_condition(c: Any) -> Any:
    import qdrant_edge as qe

    models = _models()
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
        match: Any = None
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
        rng: Any = None
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
        return qe.FieldCondition(
            key=c.key,
            match=match,
            range=rng,
            is_empty=c.is_empty,
            is_null=c.is_null,
            **_edge_geo_and_count(c),
        )
    raise QueryError(f"filter condition {type(c).__name__} is not supported by the embedded engine")


def _edge_geo_and_count(c: models.FieldCondition) -> dict[str, Any]:
    """The geo and values-count parts of a field condition (each translated, never dropped)."""
    import qdrant_edge as qe

    def point(p: models.GeoPoint) -> Any:
        return qe.GeoPoint(lon=p.lon, lat=p.lat)

    out: dict[str, Any] = {}
    if c.values_count is not None:
        v = c.values_count
        out["values_count"] = qe.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
    if c.geo_bounding_box is not None:
        box = c.geo_bounding_box
        out["geo_bounding_box"] = qe.GeoBoundingBox(point(box.top_left), point(box.bottom_right))
    if c.geo_radius is not None:
        out["geo_radius"] = qe.GeoRadius(point(c.geo_radius.center), c.geo_radius.radius)
    if c.geo_polygon is not None:
        poly = c.geo_polygon
        out["geo_polygon"] = qe.GeoPolygon(
            [point(p) for p in poly.exterior.points],
            [[point(p) for p in ring.points] for ring in poly.interiors] if poly.interiors else None,
        )
    return out


def edge_vector(vector: rq.Vector) -> Any:
    import qdrant_edge as qe

    if isinstance(vector, SparseVec):
        return qe.SparseVector(list(vector.indices), list(vector.values))
    return vector


def edge_query(query: rq.Query | None, using: str | None) -> Any:
    import qdrant_edge as qe

    if query is None:
        return None
    if isinstance(query, rq.Nearest):
        if query.mmr is not None:  # Edge's lambda is Qdrant's 1 - diversity
            mmr = query.mmr
            return qe.Mmr(
                edge_vector(query.vector),
                lambda_=1.0 - mmr.diversity,
                candidates_limit=mmr.candidates_limit,
                using=using,
            )
        return qe.Query.Nearest(edge_vector(query.vector), using=using)
    if isinstance(query, rq.Rrf):
        return qe.Fusion.Rrf(k=query.k, weights=list(query.weights) if query.weights else None)
    if isinstance(query, rq.Dbsf):
        return qe.Fusion.Dbsf()
    if isinstance(query, rq.Formula):
        return qe.Formula(edge_expression(query.expression), defaults=dict(query.defaults) or None)
    raise QueryError(f"query {type(query).__name__} is not supported by the embedded engine")


def edge_expression(e: rq.Expression) -> Any:
    """A formula expression (constants, ``$score[n]``/payload variables, sum, mult) for Edge."""
    import qdrant_edge as qe

    x = qe.Expression
    if isinstance(e, bool):
        raise QueryError("a formula term cannot be a boolean")
    if isinstance(e, (int, float)):
        return x.Constant(float(e))
    if isinstance(e, str):
        return x.Variable(e)
    if isinstance(e, rq.Sum):
        return x.Sum([edge_expression(t) for t in e.terms])
    if isinstance(e, rq.Mult):
        return x.Mult([edge_expression(t) for t in e.factors])
    raise QueryError(f"formula expression {type(e).__name__} is not supported by the embedded engine")


def edge_params(p: rq.Rescoring | None) -> Any:
    """Search parameters (quantization rescoring) for Edge."""
    import qdrant_edge as qe

    if p is None:
        return None
    quantization = qe.QuantizationSearchParams(ignore=False, rescore=p.rescore, oversampling=p.oversampling)
    return qe.SearchParams(hnsw_ef=None, exact=False, quantization=quantization, indexed_only=False)


def edge_prefetch(p: rq.Prefetch) -> Any:
    import qdrant_edge as qe

    return qe.Prefetch(
        limit=p.limit,
        query=edge_query(p.query, p.using),
        prefetches=[edge_prefetch(n) for n in p.prefetch] or None,
        filter=edge_filter(p.filter),
        params=edge_params(p.params),
        score_threshold=p.score_threshold,
    )


def edge_request(r: rq.Request) -> Any:
    import qdrant_edge as qe

    return qe.QueryRequest(
        limit=r.limit,
        offset=r.offset,
        query=edge_query(r.query, r.using),
        prefetches=[edge_prefetch(n) for n in r.prefetch] or None,
        filter=edge_filter(r.filter),
        params=edge_params(r.params),
        score_threshold=r.score_threshold,
        with_payload=list(r.with_payload) if isinstance(r.with_payload, tuple) else r.with_payload,
        with_vector=False,
    )


def edge_point(p: PointRecord) -> Any:
    import qdrant_edge as qe

    vector: dict[str, Any] = {}
    if p.dense is not None:
        vector[DENSE] = np.ascontiguousarray(p.dense, dtype=np.float32).data
    if p.sparse is not None:
        vector[SPARSE] = qe.SparseVector(list(p.sparse.indices), list(p.sparse.values))
    if p.colbert is not None:
        vector[COLBERT] = edge_rows(p.colbert)
    return qe.Point(p.id, vector, p.payload)


def edge_rows(matrix: np.ndarray) -> list[memoryview]:
    """A multivector as Edge reads it fastest: one float32 memoryview per row.

    Edge's binding reads a vector float by float, as a sequence. Items of a memoryview are plain Python
    floats, made in about 20 ns each here; an array's items are numpy scalars, and nested lists must be made
    first, both about 60-80 ns a float. A 1,024-token chunk's ColBERT matrix (1M floats) thus takes about 20
    ms instead of 70, on the model's cores (README, "Throughput"). uint8 codes widen to float32 exactly.
    """
    return [row.data for row in np.ascontiguousarray(matrix, dtype=np.float32)]
