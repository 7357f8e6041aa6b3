"""Our engine-neutral searches (``indexer.requests``) as qdrant-client models, for the server and local mode;
and query groups in qdrant-client's terms."""

from __future__ import annotations

from typing import Any

from qdrant_client import models

from indexer import requests as rq
from indexer.models import SparseVec
from indexer.store.groups import HitGroup
from indexer.store.qdrant_filters import to_qdrant_filter


def to_qdrant_request(r: rq.Request) -> models.QueryRequest:
    return models.QueryRequest(
        prefetch=[to_qdrant_prefetch(p) for p in r.prefetch] or None,
        query=_query(r.query),
        using=r.using,
        filter=to_qdrant_filter(r.filter),
        params=_params(r.params),
        score_threshold=r.score_threshold,
        limit=r.limit,
        offset=r.offset,
        with_payload=list(r.with_payload) if isinstance(r.with_payload, tuple) else r.with_payload,
    )


def to_qdrant_prefetch(p: rq.Prefetch) -> models.Prefetch:
    return models.Prefetch(
        prefetch=[to_qdrant_prefetch(n) for n in p.prefetch] or None,
        query=_query(p.query),
        using=p.using,
        filter=to_qdrant_filter(p.filter),
        params=_params(p.params),
        score_threshold=p.score_threshold,
        limit=p.limit,
    )


def _vector(v: rq.Vector) -> Any:
    if isinstance(v, SparseVec):
        return models.SparseVector(indices=list(v.indices), values=list(v.values))
    return v


def _query(q: rq.Query | None) -> Any:
    if q is None:
        return None
    if isinstance(q, rq.Nearest):
        if q.mmr is None:
            return _vector(q.vector)  # a plain vector: the server's nearest search
        mmr = models.Mmr(diversity=q.mmr.diversity, candidates_limit=q.mmr.candidates_limit)
        return models.NearestQuery(nearest=_vector(q.vector), mmr=mmr)
    if isinstance(q, rq.Rrf):
        return models.RrfQuery(rrf=models.Rrf(k=q.k, weights=list(q.weights) if q.weights else None))
    if isinstance(q, rq.Dbsf):
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    if isinstance(q, rq.Formula):
        return models.FormulaQuery(formula=_expression(q.expression), defaults=dict(q.defaults))
    raise TypeError(f"not a query: {q!r}")


def _expression(e: rq.Expression) -> Any:
    if isinstance(e, rq.Sum):
        return models.SumExpression(sum=[_expression(t) for t in e.terms])
    if isinstance(e, rq.Mult):
        return models.MultExpression(mult=[_expression(t) for t in e.factors])
    return e  # a constant or a variable


def _params(p: rq.Rescoring | None) -> models.SearchParams | None:
    if p is None:
        return None
    quantization = models.QuantizationSearchParams(rescore=p.rescore, oversampling=p.oversampling)
    return models.SearchParams(quantization=quantization)


def groups_arguments(request: models.QueryRequest, group_by: str, group_size: int) -> dict:
    """A query request as the arguments of qdrant-client's ``query_points_groups`` (servers, local mode)."""
    return {
        "query": request.query,
        "using": request.using,
        "prefetch": request.prefetch,
        "query_filter": request.filter,
        "search_params": request.params,
        "limit": request.limit or 10,
        "group_by": group_by,
        "group_size": group_size,
        "with_payload": request.with_payload if request.with_payload is not None else True,
        "score_threshold": request.score_threshold,
    }


def from_groups_result(result: models.GroupsResult) -> list[HitGroup]:
    from indexer.store.base import to_hit

    return [HitGroup(g.id, tuple(to_hit(p) for p in g.hits)) for g in result.groups]
