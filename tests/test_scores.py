"""Score parity with FlagEmbedding's own scoring, the m3 mode's ranking, and score thresholds.

Every chunk of the samples is indexed once per engine; the retriever's scores are compared with
FlagEmbedding's functions applied to the same query and chunk text, on the tiny model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import ConfigError, QueryError
from retriever import Retriever
from tests.helpers import ENGINES, SAMPLES, retrievers_on_every_engine

pytestmark = pytest.mark.slow  # score parity on every engine, mode and weight set

QUERIES = [
    "How much did revenue grow?",
    "неустойка за просрочку поставки",
    "reciprocal rank fusion of dense and sparse results",
    "права субъекта персональных данных",
    "remote work equipment",
    "supplier delivery terms",
    "обработка обращений граждан",
    "ColBERT late interaction",
]
ALL = 1000  # more than the samples' chunks: every chunk is a candidate and a hit

# Tolerances. Dense and sparse vectors are stored as float32 on both engines: only summation order
# differs. Edge stores ColBERT vectors as float16 (the default; local mode ignores the datatype): each
# stored component is rounded with a relative error of at most 2**-11, so for unit vectors a cosine
# moves by at most |q|*|d - fp16(d)| <= 2**-11 ~ 4.9e-4, and so does a mean of maxima of such cosines.
FP32 = {"rel": 1e-5, "abs": 1e-5}
FP16_COLBERT = 2**-11 + 1e-5


@pytest.fixture(scope="module")
def indexed(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("scores")
    sections = {"collection": {"colbert_datatype": "float16"}, "retrieval": {"prefetch_limit": ALL}}
    with retrievers_on_every_engine(tiny_model_dir, encoder, root, [SAMPLES], **sections) as retrievers:
        yield retrievers


@pytest.fixture(scope="module")
def flag_model(tiny_model_dir: Path, encoder: BGEM3Encoder):
    """FlagEmbedding's own model on the same folder: the reference for vectors and scores."""
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(
        str(tiny_model_dir),
        use_fp16=False,
        devices=["cpu"],
        pooling_method="cls",
        passage_max_length=encoder.max_length,
        query_max_length=encoder.settings.query_max_length,
    )


def reference(model, texts: list[str], max_length: int) -> dict:
    return model.encode(texts, max_length=max_length, return_dense=True, return_sparse=True, return_colbert_vecs=True)


def with_settings(r: Retriever, **retrieval: object) -> Retriever:
    return Retriever(r.settings.replace(retrieval=retrieval), encoder=r.encoder, store=r.store)


@pytest.mark.parametrize("engine", ENGINES)
def test_scores_equal_flagembedding_scoring(indexed: dict, encoder: BGEM3Encoder, flag_model, engine: str) -> None:
    r = indexed[engine]
    model = flag_model
    q = reference(model, QUERIES, encoder.settings.query_max_length)
    colbert_tol = FP16_COLBERT if engine == "edge" else FP32["abs"]
    pairs = {"dense": 0, "sparse": 0, "colbert": 0}
    for i, query in enumerate(QUERIES):
        hits = {mode: r.search(query, limit=ALL, mode=mode) for mode in pairs}
        texts = sorted({h.text for hs in hits.values() for h in hs})
        p = reference(model, texts, encoder.max_length)
        at = {t: j for j, t in enumerate(texts)}
        for h in hits["dense"]:
            expected = float(np.dot(q["dense_vecs"][i], p["dense_vecs"][at[h.text]]))
            assert h.score == pytest.approx(expected, **FP32)
        for h in hits["sparse"]:
            expected = model.compute_lexical_matching_score(q["lexical_weights"][i], p["lexical_weights"][at[h.text]])
            assert h.score == pytest.approx(float(expected), **FP32)
        for h in hits["colbert"]:
            expected = float(model.colbert_score(q["colbert_vecs"][i], p["colbert_vecs"][at[h.text]]))
            assert h.score == pytest.approx(expected, abs=colbert_tol)
        for mode, hs in hits.items():
            pairs[mode] += len(hs)
        assert len(hits["colbert"]) == len(hits["dense"])  # every chunk was reranked, none lost
    # Many pairs per mode; sparse only returns chunks sharing a token with the query.
    assert pairs["dense"] >= 8 * 30 and pairs["colbert"] == pairs["dense"] and pairs["sparse"] >= 50


@pytest.mark.parametrize("engine", ENGINES)
def test_hybrid_colbert_reports_the_same_colbert_scale(indexed: dict, engine: str) -> None:
    r = indexed[engine]
    for query in QUERIES[:3]:
        colbert = {h.id: h.score for h in r.search(query, limit=ALL, mode="colbert")}
        for h in r.search(query, limit=20, mode="hybrid_colbert"):
            assert h.score == pytest.approx(colbert[h.id], rel=1e-5, abs=1e-6)


def assert_same_ranking(hits: list, reference_scores: dict[str, float], tol: float) -> None:
    """Ranked as the reference ranks them; chunks closer than ``tol`` may come in either order."""
    ranked = [reference_scores[h.id] for h in hits]
    for a, b in zip(ranked, ranked[1:], strict=False):
        assert a >= b - tol, f"reference order broken: {a} before {b}"
    assert ranked[0] == pytest.approx(max(reference_scores.values()), abs=tol)


@pytest.mark.parametrize("weights", [(0.4, 0.2, 0.4), (1.0, 0.3, 0.1)])
@pytest.mark.parametrize("engine", ENGINES)
def test_m3_ranks_candidates_as_flagembedding_compute_score(
    indexed: dict, flag_model, engine: str, weights: tuple[float, float, float]
) -> None:
    colbert_tol = FP16_COLBERT if engine == "edge" else FP32["abs"]
    tol = weights[2] * colbert_tol + 1e-5
    for depth in (ALL, 4):  # every chunk; and a small candidate set (dense top 4 + sparse top 4)
        r = with_settings(indexed[engine], prefetch_limit=depth, m3_weights=list(weights))
        for query in QUERIES[::2]:
            hits = r.search(query, limit=2 * depth if depth < ALL else ALL, mode="m3")
            assert len({h.id for h in hits}) == len(hits) > (4 if depth == 4 else 30)
            scores = flag_model.compute_score(
                [(query, h.text) for h in hits], weights_for_different_modes=list(weights)
            )["colbert+sparse+dense"]
            # compute_score divides by the sum of the weights; the retriever does not (same ranking).
            ref = {h.id: s * sum(weights) for h, s in zip(hits, scores, strict=True)}
            assert_same_ranking(hits, ref, tol)
            for h in hits:
                assert h.score == pytest.approx(ref[h.id], abs=tol + 1e-4)


def test_m3_candidates_are_the_union_of_dense_and_sparse(indexed: dict) -> None:
    """m3 returns the best of (dense top-k) | (sparse top-k), k = max(prefetch_limit, limit), by its formula."""
    w = (0.4, 0.2, 0.4)
    for engine in ENGINES:
        r = indexed[engine]
        shallow = with_settings(r, prefetch_limit=6)
        for query in QUERIES[:4]:
            dense = {h.id: h.score for h in r.search(query, limit=ALL, mode="dense")}
            sparse = {h.id: h.score for h in r.search(query, limit=ALL, mode="sparse")}
            colbert = {h.id: h.score for h in r.search(query, limit=ALL, mode="colbert")}
            top = lambda scores: set(sorted(scores, key=scores.get, reverse=True)[:6])  # noqa: E731
            union = top(dense) | top(sparse)
            expected = {i: w[0] * dense[i] + w[1] * sparse.get(i, 0.0) + w[2] * colbert[i] for i in union}
            hits = shallow.search(query, limit=6, mode="m3")
            assert {h.id for h in hits} <= union
            assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True)[:6], abs=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["dense", "sparse", "colbert", "hybrid_colbert", "m3"])
def test_final_threshold_cuts_on_the_reported_scale(indexed: dict, engine: str, mode: str) -> None:
    r = indexed[engine]
    for query in QUERIES[:4]:
        full = r.search(query, limit=50, mode=mode)
        mid = len(full) // 2
        cut = (full[mid - 1].score + full[mid].score) / 2  # between two hits: no equality at the boundary
        kept = with_settings(r, min_score=cut, mode=mode).search(query, limit=50, mode=mode)
        assert kept and all(h.score >= cut - 1e-6 for h in kept)
        assert [h.id for h in kept] == [h.id for h in full if h.score >= cut - 1e-6][: len(kept)]
        assert len(kept) < len(full) or full[-1].score >= cut - 1e-6


@pytest.mark.parametrize("engine", ENGINES)
def test_leg_thresholds_act_inside_the_prefetches(indexed: dict, engine: str) -> None:
    r = indexed[engine]
    query = QUERIES[0]
    dense = r.search(query, limit=ALL, mode="dense")
    cut = (dense[len(dense) // 4].score + dense[len(dense) // 4 + 1].score) / 2
    strong_dense = {h.id for h in dense if h.score >= cut}
    # No sparse candidate survives an unreachable lexical threshold: hybrid sees only the strong dense ones.
    r2 = with_settings(r, min_dense_score=cut, min_sparse_score=1e9)
    for mode in ("hybrid", "hybrid_dbsf", "hybrid_colbert", "m3", "colbert"):
        got = {h.id for h in r2.search(query, limit=ALL, mode=mode)}
        assert got == strong_dense, mode
    assert r2.search(query, limit=ALL, mode="sparse") == []
    assert {h.id for h in r2.search(query, limit=ALL, mode="dense")} == strong_dense


def test_a_threshold_on_rank_fusion_is_refused(indexed: dict, tiny_model_dir: Path) -> None:
    r = with_settings(indexed["edge"], min_score=0.5, mode="dense")
    for mode in ("hybrid", "hybrid_dbsf"):
        with pytest.raises(QueryError, match="fusion artefact"):
            r.search("revenue", mode=mode)
    with pytest.raises(ConfigError, match="min_score"):
        Settings().replace(retrieval={"mode": "hybrid", "min_score": 0.1})
    with pytest.raises(ConfigError, match="m3_weights"):
        Settings().replace(retrieval={"m3_weights": [0.4, -0.2, 0.4]})
    with pytest.raises(ConfigError, match="m3_weights"):
        Settings().replace(retrieval={"m3_weights": [0, 0, 0]})
    with pytest.raises(ConfigError, match="m3_weights"):
        Settings().replace(retrieval={"m3_weights": [0.4, 0.2]})


def test_cli_refuses_a_final_threshold_on_rrf(capsys: pytest.CaptureFixture) -> None:
    from retriever.cli import main

    assert main(["search", "revenue", "--mode", "hybrid", "--min-score", "0.1"]) == 3
    assert "min_score cannot apply to mode 'hybrid'" in capsys.readouterr().err
