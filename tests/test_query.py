"""Query building and filter parsing: pure, no engine."""

import numpy as np
import pytest

from indexer import conditions as nc
from indexer import requests as rq
from indexer.errors import QueryError
from indexer.models import Embedding, SparseVec
from retriever.query import SearchMode, build_request, parse_filter

Q = Embedding(
    dense=np.array([0.6, 0.8], dtype=np.float32),
    sparse=SparseVec(indices=(3, 7), values=(0.5, 0.25)),
    colbert=np.eye(2, dtype=np.float32),
)
F = nc.Filter(must=(nc.Match("source", "a.pdf"),))


def legs(prefetch: tuple[rq.Prefetch, ...]) -> list[str | None]:
    return [p.using for p in prefetch]


def test_dense_and_sparse_are_single_stage() -> None:
    r = build_request("dense", Q, limit=5, flt=F)
    assert r.using == "dense"
    assert r.prefetch == ()
    assert r.limit == 5
    assert r.filter == F
    assert isinstance(r.query, rq.Nearest) and r.query.mmr is None
    assert r.query.vector == pytest.approx([0.6, 0.8])
    assert all(type(x) is float for x in r.query.vector)
    r = build_request("sparse", Q)
    assert r.using == "sparse"
    assert r.query == rq.Nearest(SparseVec(indices=(3, 7), values=(0.5, 0.25)))


def test_hybrid_fuses_two_filtered_prefetches_with_rrf_k() -> None:
    r = build_request("hybrid", Q, limit=10, prefetch_limit=100, rrf_k=60, rrf_weights=[2.0, 1.0], flt=F)
    assert legs(r.prefetch) == ["dense", "sparse"]
    assert all(p.filter == F and p.limit == 100 for p in r.prefetch)
    assert r.query == rq.Rrf(k=60, weights=(2.0, 1.0))
    assert r.filter == F
    assert r.with_payload is True


def test_dbsf() -> None:
    r = build_request("hybrid_dbsf", Q)
    assert r.query == rq.Dbsf()
    assert legs(r.prefetch) == ["dense", "sparse"]


def test_hybrid_colbert_reranks_fused_candidates_in_one_request() -> None:
    r = build_request("hybrid_colbert", Q, limit=10, prefetch_limit=50, rrf_k=60, flt=F)
    assert r.using == "colbert"
    assert r.query == rq.Nearest([[1.0, 0.0], [0.0, 1.0]])
    [fused] = r.prefetch
    assert isinstance(fused.query, rq.Rrf)
    assert fused.limit == 50
    assert fused.filter == F
    assert legs(fused.prefetch) == ["dense", "sparse"]
    assert all(p.filter == F for p in fused.prefetch)


def test_colbert_reranks_dense_candidates() -> None:
    r = build_request("colbert", Q, prefetch_limit=30, flt=F)
    [cand] = r.prefetch
    assert (cand.using, cand.limit, cand.filter) == ("dense", 30, F)
    assert r.using == "colbert"


def test_prefetch_is_never_shallower_than_the_limit() -> None:
    r = build_request("hybrid", Q, limit=200, prefetch_limit=100)
    assert all(p.limit == 200 for p in r.prefetch)


def test_bad_mode_and_limit() -> None:
    with pytest.raises(QueryError, match="unknown mode 'fancy'"):
        build_request("fancy", Q)
    with pytest.raises(QueryError, match="limit"):
        build_request("dense", Q, limit=0)
    no_colbert = Embedding(dense=Q.dense, sparse=Q.sparse, colbert=None)
    with pytest.raises(QueryError, match="ColBERT"):
        build_request(SearchMode.COLBERT, no_colbert)


def test_parse_filter_forms() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) is None
    f = parse_filter({"source": "a.pdf", "pages": [1, 2], "page": {"gte": 3}})
    assert f == nc.Filter(must=(nc.Match("source", "a.pdf"), nc.MatchAny("pages", (1, 2)), nc.Range("page", gte=3.0)))
    f = parse_filter(["doc_id=2025", "page>=2", "page<5", "metadata.lang!=ru"])
    assert f.must[0] == nc.Match("doc_id", "2025")  # doc ids stay strings
    assert f.must[1] == nc.Range("page", gte=2.0)
    assert f.must[2] == nc.Range("page", lt=5.0)
    assert f.must_not == (nc.Match("metadata.lang", "ru"),)
    assert parse_filter("source=dir/a=b.pdf").must[0] == nc.Match("source", "dir/a=b.pdf")
    assert parse_filter(F) is F


def test_qdrant_syntax_is_read_by_qdrant_client() -> None:
    from qdrant_client import models

    f = parse_filter('{"must": [{"key": "doc_id", "match": {"value": "x"}}]}')
    assert isinstance(f, models.Filter) and f.must[0].key == "doc_id"
    assert parse_filter(f) is f


@pytest.mark.parametrize(
    "bad",
    [
        "page",
        "=3",
        "page>=abc",
        {"page": {"near": 3}},
        {"page": []},
        '{"must": 3}',
        "{broken",
        [3],
        {"p": 1.5},
    ],
)
def test_parse_filter_rejects_bad_input(bad) -> None:
    with pytest.raises(QueryError):
        parse_filter(bad)


def test_m3_rescores_one_candidate_set_with_three_legs_and_a_formula() -> None:
    r = build_request("m3", Q, limit=10, prefetch_limit=30, flt=F, m3_weights=(0.4, 0.2, 0.4))
    assert legs(r.prefetch) == ["dense", "sparse", "colbert"]
    for p in r.prefetch:
        [cand] = p.prefetch
        assert cand.limit == 60
        assert p.limit == 60
        assert legs(cand.prefetch) == ["dense", "sparse"]
        assert all(x.limit == 30 for x in cand.prefetch)
        assert p.filter == F
        assert cand.filter == F
        assert all(x.filter == F for x in cand.prefetch)
    assert r.prefetch[2].query == rq.Nearest([[1.0, 0.0], [0.0, 1.0]])
    formula = r.query
    assert isinstance(formula, rq.Formula)
    assert formula.defaults == {"$score[0]": 0.0, "$score[1]": 0.0, "$score[2]": 0.0}
    assert isinstance(formula.expression, rq.Sum)
    terms = [(t.factors[0], t.factors[1]) for t in formula.expression.terms if isinstance(t, rq.Mult)]
    assert terms == [(0.4, "$score[0]"), (0.2, "$score[1]"), (pytest.approx(0.2), "$score[2]")]  # 0.4 / 2 vectors
    assert r.using is None
    assert r.limit == 10


def test_thresholds_go_where_they_mean_something() -> None:
    r = build_request("hybrid", Q, min_dense_score=0.3, min_sparse_score=0.1)
    assert [p.score_threshold for p in r.prefetch] == [0.3, 0.1]
    assert r.score_threshold is None
    r = build_request("m3", Q, min_dense_score=0.3, min_sparse_score=0.1, min_score=0.5)
    assert r.score_threshold == 0.5
    assert [p.score_threshold for p in r.prefetch[0].prefetch[0].prefetch] == [0.3, 0.1]
    assert all(p.score_threshold is None for p in r.prefetch)  # rescoring legs keep every candidate
    r = build_request("colbert", Q, min_dense_score=0.3, min_score=0.5)
    assert r.prefetch[0].score_threshold == 0.3
    assert r.score_threshold == 1.0
    assert build_request("dense", Q, min_dense_score=0.3, min_score=0.5).score_threshold == 0.5
    assert build_request("sparse", Q, min_sparse_score=0.3).score_threshold == 0.3
    for mode in ("hybrid", "hybrid_dbsf"):
        with pytest.raises(QueryError, match="not a similarity"):
            build_request(mode, Q, min_score=0.1)
    for bad in [(0.4, 0.2), (-1, 1, 1), (0, 0, 0), ("a", 1, 1)]:
        with pytest.raises(QueryError, match="m3 weights"):
            build_request("m3", Q, m3_weights=bad)


@pytest.mark.parametrize(
    "mode, retrieval, engine_cut",
    [
        ("dense", {"min_score": 0.5, "min_dense_score": 0.3}, 0.5),
        ("sparse", {"min_sparse_score": 0.2}, 0.2),
        ("colbert", {"min_score": 0.5}, 1.0),  # MAX_SIM: 0.5 x 2 query vectors
        ("hybrid_colbert", {"min_score": 0.5}, 1.0),
        ("m3", {"min_score": 0.4}, 0.4),
    ],
)
def test_the_final_threshold_is_applied_to_the_answer_too(mode: str, retrieval: dict, engine_cut: float) -> None:
    """Servers before 1.17 drop the threshold of m3's formula query: the plan applies it to what comes back."""
    from indexer.config import RetrievalSettings
    from indexer.models import Hit
    from retriever.api import SearchPlan

    plan = SearchPlan(SearchMode(mode), 10, None, RetrievalSettings(mode=mode, **retrieval))
    assert plan.requests([Q])[0].score_threshold == pytest.approx(engine_cut)
    just_below = float(np.nextafter(np.float32(engine_cut), np.float32(0)))
    answer = [Hit("a", engine_cut * 1.5, {}), Hit("b", engine_cut, {}), Hit("c", just_below, {}), Hit("d", 0.0, {})]
    [hits] = plan.hits([Q], [answer])
    assert [h.id for h in hits] == ["a", "b"]  # what an engine that applies the threshold keeps


def test_modes_without_a_final_threshold_keep_every_hit() -> None:
    from indexer.config import RetrievalSettings
    from indexer.models import Hit
    from retriever.api import SearchPlan

    plan = SearchPlan(SearchMode.HYBRID, 10, None, RetrievalSettings(min_dense_score=0.9))
    [hits] = plan.hits([Q], [[Hit("a", 0.01, {}), Hit("b", 0.001, {})]])
    assert [h.id for h in hits] == ["a", "b"]
