"""Query building: pure functions from query vectors to one Qdrant Query API request.

Requests are engine-neutral records (``indexer.requests``); each store translates them (to qdrant-client
models for a server and local mode, to Edge's own classes for Edge), so every engine runs the same
request and none of this imports an engine's client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer import requests as rq
from indexer.conditions import AnyFilter
from indexer.errors import QueryError
from indexer.models import Embedding
from indexer.modes import DEFAULT_M3_WEIGHTS, SearchMode, check_limit, valid_m3_weights
from indexer.schema import COLBERT, DENSE, SPARSE
from retriever.filters import check_filter, parse_filter
from retriever.stored import PLAIN, Storage

__all__ = [
    "SearchMode",
    "build_request",
    "check_filter",
    "diversify",
    "final_threshold",
    "m3_formula",
    "parse_filter",
    "score_divisor",
]


def score_divisor(mode: SearchMode | str, query: Embedding) -> float:
    """What the engine's score must be divided by to be on the reported scale.

    Qdrant's MAX_SIM sums the best similarity of every query vector; FlagEmbedding's ``colbert_score``
    takes their mean. The colbert modes report FlagEmbedding's scale, so their scores are divided by
    the number of query ColBERT vectors. Every other mode is reported as the engine computes it (m3
    divides inside its formula).
    """
    mode = SearchMode.parse(mode)
    if mode.colbert_final and query.colbert is not None and len(query.colbert) > 0:
        return float(len(query.colbert))
    return 1.0


def final_threshold(
    mode: SearchMode | str,
    query: Embedding,
    min_score: float | None = None,
    min_dense_score: float | None = None,
    min_sparse_score: float | None = None,
) -> float | None:
    """The threshold on the engine's final score (its own scale, before ``score_divisor``), or None.

    dense / sparse: the strictest of the leg's minimum and ``min_score``; colbert and hybrid_colbert:
    ``min_score`` times the number of query vectors (MAX_SIM is a sum, the reported score a mean); m3:
    ``min_score``; RRF and DBSF have none. The request carries it, and ``SearchPlan`` applies it again to the
    answer: servers before 1.17 drop the threshold of formula queries (Qdrant PR 8097).
    """
    mode = SearchMode.parse(mode)
    legs = {SearchMode.DENSE: min_dense_score, SearchMode.SPARSE: min_sparse_score}
    if mode in legs:
        present = [v for v in (legs[mode], min_score) if v is not None]
        return max(present) if present else None
    if min_score is None or not mode.score_is_similarity:
        return None
    return min_score * score_divisor(mode, query)


def m3_formula(weights: Sequence[float], n_query_vectors: int, storage: Storage = PLAIN) -> rq.Formula:
    """w_d*dense + w_s*sparse + w_c*MAX_SIM/N_q over three prefetches (dense, sparse, ColBERT rescoring).

    A candidate that a rescoring leg did not return (e.g. no shared token for sparse) scores 0 there. Vectors
    stored as uint8 codes score distances, which the formula turns into cosines (``retriever.stored``).
    """
    w_dense, w_sparse, w_colbert = (float(w) for w in weights)
    dense, dense_default = storage.dense.term("$score[0]")
    colbert, colbert_default = storage.colbert.term("$score[2]", n_query_vectors)
    terms = (
        rq.Mult((w_dense, dense)),
        rq.Mult((w_sparse, "$score[1]")),
        rq.Mult((w_colbert / n_query_vectors, colbert)),
    )
    return rq.Formula(
        rq.Sum(terms), defaults={"$score[0]": dense_default, "$score[1]": 0.0, "$score[2]": colbert_default}
    )


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    try:
        return valid_m3_weights(weights)
    except ValueError as e:
        raise QueryError(str(e)) from None


def build_request(
    mode: SearchMode | str,
    query: Embedding,
    *,
    limit: int = 10,
    prefetch_limit: int = 100,
    rrf_k: int = 60,
    rrf_weights: Sequence[float] | None = None,
    m3_weights: Sequence[float] = DEFAULT_M3_WEIGHTS,
    min_dense_score: float | None = None,
    min_sparse_score: float | None = None,
    min_score: float | None = None,
    flt: AnyFilter | None = None,
    storage: Storage = PLAIN,
) -> rq.Request:
    """The whole search, candidates and fusion included, as one request.

    The filter is applied inside every prefetch (so fusion and reranking see only matching points)
    and again at the top level. Each prefetch fetches ``max(prefetch_limit, limit)`` candidates.

    Thresholds: ``min_dense_score`` / ``min_sparse_score`` drop candidates inside the dense / sparse
    legs (in the single-leg modes, at the top level). ``min_score`` applies to the final score on the
    scale the retriever reports (see ``score_divisor``); it is refused for RRF and DBSF, whose scores
    are rank artefacts.

    ``storage`` says how the collection stores its vectors: quantized ones get rescoring parameters on
    every request or prefetch that searches them, uint8 codes get the query as codes and their distances
    turned into cosines (a formula) wherever a score, not a rank, is used.
    """
    mode = SearchMode.parse(mode)
    check_limit(limit)
    if min_score is not None and not mode.score_is_similarity:
        raise QueryError(
            f"a final score threshold is meaningless for mode {mode.value}: its score is a fusion artefact "
            "(depends on ranks and on the other candidates), not a similarity; use min_dense_score / "
            "min_sparse_score, which apply inside the prefetches"
        )
    weights = _check_weights(m3_weights)
    depth = max(prefetch_limit, limit)
    dense, colbert = storage.dense, storage.colbert
    dense_q = rq.Nearest(dense.query(query.dense))
    sparse_q = rq.Nearest(query.sparse)

    def leg(vector: rq.Nearest, using: str) -> rq.Prefetch:
        if using == DENSE:
            return rq.Prefetch(
                query=vector,
                using=using,
                filter=flt,
                limit=depth,
                score_threshold=dense.threshold(min_dense_score),
                params=dense.params(),
            )
        return rq.Prefetch(query=vector, using=using, filter=flt, limit=depth, score_threshold=min_sparse_score)

    def fused() -> tuple[rq.Prefetch, ...]:
        return (leg(dense_q, DENSE), leg(sparse_q, SPARSE))

    threshold = final_threshold(mode, query, min_score, min_dense_score, min_sparse_score)
    rrf = rq.Rrf(k=rrf_k, weights=tuple(rrf_weights) if rrf_weights else None)
    common: dict[str, Any] = {"filter": flt, "limit": limit, "with_payload": True}
    if mode is SearchMode.DENSE:
        formula = dense.similarity()
        if formula is not None:  # codes: the distances of the nearest codes, as cosines
            nearest = rq.Prefetch(query=dense_q, using=DENSE, filter=flt, limit=limit, params=dense.params())
            return rq.Request(prefetch=(nearest,), query=formula, score_threshold=threshold, **common)
        return rq.Request(query=dense_q, using=DENSE, score_threshold=threshold, params=dense.params(), **common)
    if mode is SearchMode.SPARSE:
        return rq.Request(query=sparse_q, using=SPARSE, score_threshold=threshold, **common)
    if mode is SearchMode.HYBRID:
        return rq.Request(prefetch=fused(), query=rrf, **common)
    if mode is SearchMode.HYBRID_DBSF:
        similarities = (dense.as_similarity(leg(dense_q, DENSE)), leg(sparse_q, SPARSE))
        return rq.Request(prefetch=similarities, query=rq.Dbsf(), **common)
    if query.colbert is None or len(query.colbert) == 0:
        raise QueryError(f"mode {mode.value} needs the query's ColBERT vectors")
    colbert_vectors = colbert.query(query.colbert)
    colbert_q = rq.Nearest(colbert_vectors)
    n_q = len(colbert_vectors)
    if mode is SearchMode.M3:
        # The candidates: the union of the dense and the sparse top-`depth` (the fused limit, 2*depth, never
        # truncates, so no RRF tie can make the three rescoring legs see different sets). Each leg rescores
        # exactly those candidates; the formula adds the three scores.
        candidates = rq.Prefetch(prefetch=fused(), query=rrf, filter=flt, limit=2 * depth)

        def rescore(vector: rq.Nearest, using: str, params: rq.Rescoring | None = None) -> rq.Prefetch:
            return rq.Prefetch(
                prefetch=(candidates,), query=vector, using=using, filter=flt, limit=2 * depth, params=params
            )

        legs = (
            rescore(dense_q, DENSE, dense.params()),
            rescore(sparse_q, SPARSE),
            rescore(colbert_q, COLBERT, colbert.params()),
        )
        formula = m3_formula(weights, n_q, storage)
        return rq.Request(prefetch=legs, query=formula, score_threshold=threshold, **common)
    if mode is SearchMode.HYBRID_COLBERT:
        candidates = rq.Prefetch(prefetch=fused(), query=rrf, filter=flt, limit=depth)
    else:
        candidates = leg(dense_q, DENSE)
    # MAX_SIM is a sum over the query vectors; the reported score (and so min_score) is the mean.
    formula = colbert.similarity(n_q)
    if formula is not None:  # codes: the reranked candidates' summed distances, as summed cosines
        rerank = rq.Prefetch(
            prefetch=(candidates,), query=colbert_q, using=COLBERT, filter=flt, limit=limit, params=colbert.params()
        )
        return rq.Request(prefetch=(rerank,), query=formula, score_threshold=threshold, **common)
    return rq.Request(
        prefetch=(candidates,),
        query=colbert_q,
        using=COLBERT,
        score_threshold=threshold,
        params=colbert.params(),
        **common,
    )


def diversify(
    request: rq.Request, query: Embedding, diversity: float, candidates: int, storage: Storage = PLAIN
) -> rq.Request:
    """MMR after any mode: the mode's request becomes the candidates (its ``candidates`` best points, its own
    thresholds kept), and MMR over the dense vector picks ``request.limit`` of them.

    ``diversity`` is Qdrant's: 0 ranks by relevance alone, 1 by difference from the points already picked
    alone (MMR's lambda is 1 - diversity). The engine then reports each pick's dense cosine to the query
    (a quantized dense vector takes its rescoring parameters; uint8 codes are refused by the retriever).
    """
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0.0 <= diversity <= 1.0:
        raise QueryError(f"diversity must be a number between 0 and 1, got {diversity!r}")
    limit = request.limit
    pool = rq.Prefetch(
        prefetch=request.prefetch,
        query=request.query,
        using=request.using,
        filter=request.filter,
        params=request.params,
        score_threshold=request.score_threshold,
        limit=max(candidates, limit),
    )
    mmr = rq.Mmr(diversity=float(diversity), candidates_limit=max(candidates, limit))
    return rq.Request(
        prefetch=(pool,),
        query=rq.Nearest(storage.dense.query(query.dense), mmr=mmr),
        using=DENSE,
        params=storage.dense.params(),
        filter=request.filter,
        limit=limit,
        with_payload=request.with_payload,
    )
