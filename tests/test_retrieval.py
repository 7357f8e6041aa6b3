"""Retrieval through the real Retriever on both in-process engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import QueryError, SchemaMismatchError
from indexer.pipeline import ingest
from indexer.store import open_store
from retriever import Retriever, SearchMode
from tests.helpers import ENGINES, SAMPLES, make_settings, retrievers_on_every_engine

MODES = [m.value for m in SearchMode]
QUERIES = [
    "How much did revenue grow?",
    "неустойка за просрочку поставки",
    "reciprocal rank fusion",
    "права субъекта",
]


@pytest.fixture(scope="module")
def indexed(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The samples indexed once into each engine, with a retriever open on each."""
    root = tmp_path_factory.mktemp("retrieval")
    with retrievers_on_every_engine(tiny_model_dir, encoder, root, [SAMPLES]) as retrievers:
        yield retrievers


def all_chunks(r: Retriever) -> list:
    return r.search("документ document", limit=1000, mode="hybrid")


@pytest.mark.parametrize("mode", MODES)
def test_engines_agree_on_ids_and_scores(indexed: dict, mode: str) -> None:
    for q in QUERIES:
        edge, local = (indexed[e].search(q, limit=20, mode=mode) for e in ENGINES)
        assert len(edge) == len(local) > 0
        assert [h.score for h in edge] == pytest.approx([h.score for h in local], rel=1e-5, abs=1e-6)
        # Equal scores may come in either order; beyond ties the ranking is the same.
        edge_scores, local_scores = ({h.id: h.score for h in hits} for hits in (edge, local))
        assert edge_scores.keys() == local_scores.keys()
        assert edge_scores == pytest.approx(local_scores, rel=1e-5, abs=1e-6)


@pytest.mark.slow  # every chunk's text as a query, in every mode on every engine
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
def test_a_chunk_finds_itself_first(indexed: dict, engine: str, mode: str) -> None:
    r = indexed[engine]
    chunks = sorted(all_chunks(r), key=lambda h: h.id)[::5]
    assert len(chunks) >= 5
    for c in chunks:
        [top] = r.search(c.text, limit=1, mode=mode)
        assert top.id == c.id, f"{mode}: {c.source}#{c.chunk_index} did not find itself"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
def test_filter_applies_inside_every_prefetch(indexed: dict, engine: str, mode: str) -> None:
    r = indexed[engine]
    target = "ru/dogovor-postavki.txt"
    n_target = sum(h.doc_id == target for h in all_chunks(r))
    assert n_target >= 3
    # Shallow prefetch: without the filter inside the legs, few of the target's chunks would survive.
    shallow = r.settings.replace(retrieval={"prefetch_limit": 3})
    r2 = Retriever(shallow, encoder=r.encoder, store=r.store)
    hits = r2.search("поставка товара, revenue growth", limit=3, mode=mode, filter={"doc_id": target})
    assert len(hits) == 3
    assert {h.doc_id for h in hits} == {target}


@pytest.mark.parametrize("engine", ENGINES)
def test_payload_filters(indexed: dict, engine: str) -> None:
    r = indexed[engine]
    pdf = "pdf/annual-report-2025.pdf"
    hits = r.search("results", limit=50, mode="dense", filter=[f"doc_id={pdf}", "page>=2"])
    assert hits
    assert {h.doc_id for h in hits} == {pdf}
    assert all(h.page >= 2 for h in hits)
    hits = r.search("results", limit=50, mode="sparse", filter={"doc_id": [pdf, "en/remote-work-policy.md"]})
    assert {h.doc_id for h in hits} <= {pdf, "en/remote-work-policy.md"}
    assert r.search("results", mode="hybrid", filter={"doc_id": "no/such/doc"}) == []
    hits = r.search("results", limit=50, mode="hybrid", filter=["doc_id!=" + pdf])
    assert hits
    assert pdf not in {h.doc_id for h in hits}


@pytest.mark.parametrize("engine", ENGINES)
def test_hits_carry_text_source_pages_and_scores(indexed: dict, engine: str) -> None:
    pdf = "pdf/annual-report-2025.pdf"
    hits = indexed[engine].search(
        "Revenue grew 18% to 42.7 million euros", limit=10, mode="hybrid_colbert", filter={"doc_id": pdf}
    )
    [hit] = [h for h in hits if "Revenue grew 18%" in h.text]
    assert hit.doc_id == pdf
    assert hit.pages == (2,)
    assert hit.page == 2
    assert "42.7 million euros" in hit.text
    assert hit.source.endswith("annual-report-2025.pdf")
    assert hit.chunk_index >= 0
    assert hit.score > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_search_equals_single_searches(indexed: dict, engine: str) -> None:
    r = indexed[engine]
    batch = r.search_batch(QUERIES, limit=5, mode="hybrid_colbert")
    for q, hits in zip(QUERIES, batch, strict=True):
        single = r.search(q, limit=5, mode="hybrid_colbert")
        assert [h.id for h in hits] == [h.id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], rel=1e-5)


def test_bad_requests_are_clear_errors(indexed: dict) -> None:
    r = indexed["edge"]
    with pytest.raises(QueryError, match="empty"):
        r.search("   ")
    with pytest.raises(QueryError, match="unknown mode"):
        r.search("x", mode="bm25")
    with pytest.raises(QueryError, match="limit"):
        r.search("x", limit=0)
    with pytest.raises(QueryError, match="exceed"):
        r.search("слово " * 700)


def test_colbert_modes_need_colbert_vectors(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "s", "edge", collection={"name": "nocolbert", "colbert": False})
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES / "en"], s, encoder, store, progress=False)
    with Retriever(s, encoder=encoder, store=store) as r:
        assert r.search("remote work", mode="hybrid")
        with pytest.raises(QueryError, match="needs ColBERT"):
            r.search("remote work", mode="hybrid_colbert")


def test_wrong_model_for_the_collection(
    tiny_model_dir: Path, wide_colbert_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "s", "edge")
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES / "en"], s, encoder, store, progress=False)
    store.close()
    other = BGEM3Encoder(make_settings(wide_colbert_model_dir, "x").model, max_length=128)
    other.dense_dim = 32  # a model of another width
    with pytest.raises(SchemaMismatchError, match="model that built it"):
        Retriever(s, encoder=other)


@pytest.mark.slow
def test_float16_colbert_scores_stay_close(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    """The default float16 ColBERT storage (Edge applies it; local mode keeps float32)."""
    scores = {}
    for dtype in ("float16", "float32"):
        s: Settings = make_settings(
            tiny_model_dir, tmp_path / dtype, "edge", collection={"name": "c", "colbert_datatype": dtype}
        )
        store = open_store(s.qdrant, "c")
        ingest([SAMPLES / "en"], s, encoder, store, progress=False)
        with Retriever(s, encoder=encoder, store=store) as r:
            scores[dtype] = {h.id: h.score for h in r.search("remote work equipment", limit=10, mode="colbert")}
    assert scores["float16"].keys() == scores["float32"].keys()
    for pid, score in scores["float32"].items():
        assert scores["float16"][pid] == pytest.approx(score, rel=2e-3)


def test_values_count_and_geo_filters_run_on_edge_as_on_local_mode(indexed: dict) -> None:
    """Edge must run every condition it is given: a dropped one would match nothing, or everything."""
    flt = {"must": [{"key": "pages", "values_count": {"lte": 100}}]}
    want = indexed["local"].search("supplier delivery terms", limit=10, mode="dense", filter=flt)
    got = indexed["edge"].search("supplier delivery terms", limit=10, mode="dense", filter=flt)
    assert len(want) == 10
    assert [h.id for h in got] == [h.id for h in want]
    none = {"must": [{"key": "pages", "values_count": {"gt": 100}}]}
    assert indexed["edge"].search("supplier delivery terms", limit=10, mode="dense", filter=none) == []
    geo = {"must": [{"key": "location", "geo_radius": {"center": {"lon": 13.4, "lat": 52.5}, "radius": 1000.0}}]}
    assert indexed["edge"].search("supplier delivery terms", limit=5, mode="dense", filter=geo) == []
    assert indexed["local"].search("supplier delivery terms", limit=5, mode="dense", filter=geo) == []
