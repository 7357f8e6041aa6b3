"""Request translation for Qdrant Edge: our neutral filters and qdrant-client models to Edge's own pyo3 classes.

Requests are built once as qdrant-client models (see ``retriever.query``); translating them here lets
Edge run the very same request as a server or local mode. The indexer's bookkeeping filters
(``indexer.conditions``) are translated directly: qdrant-client is imported only when one of its models
is met (a search, a user's filter), so that an ingest run on Edge never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from indexer import conditions as nc
from indexer.errors import QueryError
from indexer.models import PointRecord
from indexer.schema import COLBERT, DENSE, SPARSE

if TYPE_CHECKING:
    from qdrant_client import models

QDRANT_RRF_K = 2  # the server's default k; Edge requires k explicitly


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
    if isinstance(x, nc.Filter):
        return _neutral_filter(x)
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


def edge_vector(vector: Any) -> Any:
    import qdrant_edge as qe

    models = _models()
    if isinstance(vector, models.SparseVector):
        return qe.SparseVector(list(vector.indices), list(vector.values))
    return vector


def edge_query(query: Any, using: str | None) -> Any:
    import qdrant_edge as qe

    models = _models()
    if query is None:
        return None
    if isinstance(query, models.NearestQuery):
        if query.mmr is not None:  # Edge's lambda is Qdrant's 1 - diversity (0.5 when unset)
            diversity = 0.5 if query.mmr.diversity is None else query.mmr.diversity
            limit = query.mmr.candidates_limit
            if limit is None:
                raise QueryError("an MMR query for the embedded engine needs candidates_limit")
            return qe.Mmr(edge_vector(query.nearest), lambda_=1.0 - diversity, candidates_limit=limit, using=using)
        query = query.nearest
    if isinstance(query, (models.SparseVector, list)):  # sparse, dense, or a multivector (list of lists)
        return qe.Query.Nearest(edge_vector(query), using=using)
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

    models = _models()
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


def edge_params(p: models.SearchParams | None) -> Any:
    """Search parameters (HNSW ef, exact search, quantization rescoring) for Edge."""
    import qdrant_edge as qe

    if p is None:
        return None
    quantization = None
    if p.quantization is not None:
        q = p.quantization
        quantization = qe.QuantizationSearchParams(
            ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling
        )
    return qe.SearchParams(
        hnsw_ef=p.hnsw_ef, exact=bool(p.exact), quantization=quantization, indexed_only=bool(p.indexed_only)
    )


def edge_prefetch(p: models.Prefetch) -> Any:
    import qdrant_edge as qe

    nested = p.prefetch if isinstance(p.prefetch, list) else [p.prefetch] if p.prefetch else []
    return qe.Prefetch(
        limit=p.limit if p.limit is not None else 10,  # the server's default prefetch limit
        query=edge_query(p.query, p.using),
        prefetches=[edge_prefetch(n) for n in nested] or None,
        filter=edge_filter(p.filter),
        params=edge_params(p.params),
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
        params=edge_params(r.params),
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
