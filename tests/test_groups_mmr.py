"""Results per document (query groups) and diversity (MMR), on both in-process engines and a server's wire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer import conditions as nc
from indexer import requests as rq
from indexer.encoder import BGEM3Encoder
from indexer.errors import QueryError
from indexer.models import Embedding, Hit, SparseVec
from indexer.pipeline import ingest
from indexer.store import open_store
from indexer.store.groups import MAX_GROUP_CANDIDATES, OVERFETCH, group_hits, group_keys
from retriever import Retriever
from retriever.query import build_request, diversify
from tests.helpers import SAMPLES, make_settings, retrievers_on_every_engine
from tests.qdrant_standin import QdrantStandIn

PARAGRAPH = (
    "The remote work policy covers home office equipment, security rules outside the office and the hours "
    "employees are expected to be reachable. "
)
QUERY = "home office equipment and security rules for remote work"
Q = Embedding(
    dense=np.array([0.6, 0.8], dtype=np.float32),
    sparse=SparseVec(indices=(3, 7), values=(0.5, 0.25)),
    colbert=np.eye(2, dtype=np.float32),
)
F = nc.Filter(must=(nc.Match("source", "a.pdf"),))


# ------------------------------------------------------------------------------------------- pure


def test_grouping_follows_qdrant_rules_for_values() -> None:
    assert group_keys({"doc_id": "a"}, "doc_id") == ["a"]
    assert group_keys({"metadata": {"tags": ["x", "y", "x"]}}, "metadata.tags") == ["x", "y"]
    assert group_keys({"n": 3}, "n") == [3]
    for payload in ({"n": 1.5}, {"n": True}, {"n": [1, True]}, {"n": {"a": 1}}, {}):
        assert group_keys(payload, "n") == []  # Qdrant drops the point from every group
    hits = [Hit(str(i), 1.0 - i / 10, {"d": d}) for i, d in enumerate("aabcab")]
    groups, settled = group_hits(hits, "d", limit=2, size=2)
    assert [(g.key, [h.id for h in g.hits]) for g in groups] == [("a", ["0", "1"]), ("b", ["2", "5"])]
    assert settled
    groups, settled = group_hits(hits, "d", limit=4, size=1)
    assert [g.key for g in groups] == ["a", "b", "c"] and not settled


def test_mmr_wraps_any_mode_around_its_candidates() -> None:
    for mode in ("dense", "hybrid", "m3"):
        inner = build_request(mode, Q, limit=5, prefetch_limit=40, flt=F, min_score=0.3 if mode == "m3" else None)
        r = diversify(inner, Q, 0.7, candidates=50)
        [pool] = r.prefetch
        assert (pool.query, pool.using, pool.prefetch, pool.score_threshold) == (
            inner.query,
            inner.using,
            inner.prefetch,
            inner.score_threshold,
        )
        assert pool.limit == 50 and pool.filter == F and r.filter == F
        assert r.using == "dense" and r.limit == 5 and r.score_threshold is None
        assert isinstance(r.query, rq.Nearest) and r.query.vector == pytest.approx([0.6, 0.8])
        assert r.query.mmr == rq.Mmr(diversity=0.7, candidates_limit=50)
    assert diversify(build_request("dense", Q, limit=80), Q, 0.5, candidates=10).prefetch[0].limit == 80
    with pytest.raises(QueryError, match="between 0 and 1"):
        diversify(build_request("dense", Q), Q, 1.5, candidates=10)


# ------------------------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def samples(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("groups")
    with retrievers_on_every_engine(tiny_model_dir, encoder, root, [SAMPLES]) as retrievers:
        yield retrievers


def shape(hits: list) -> list[tuple]:
    return [(h.group, h.id, round(h.score, 4)) for h in hits]


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "hybrid_colbert", "m3"])
def test_one_hit_per_document_and_the_engines_agree(samples: dict, mode: str) -> None:
    plain = samples["local"].search(QUERY, limit=10, mode=mode)
    assert len({h.doc_id for h in plain}) < len(plain)  # without groups, documents repeat
    documents = len({h.doc_id for h in samples["local"].search(QUERY, limit=1000, mode=mode)})  # sparse: fewer
    answers = {}
    for engine, r in samples.items():
        hits = r.search(QUERY, limit=10, mode=mode, group_by="doc_id")
        assert [h.group for h in hits] == [h.doc_id for h in hits]
        assert len({h.doc_id for h in hits}) == len(hits) == min(10, documents)
        answers[engine] = shape(hits)
    assert answers["edge"] == answers["local"]


def test_groups_of_several_hits_come_group_by_group_best_first(samples: dict) -> None:
    answers = {}
    for engine, r in samples.items():
        hits = r.search(QUERY, limit=3, mode="dense", group_by="doc_id", group_size=2)
        runs = [h.group for h in hits]
        assert len(hits) == 6 and runs == [runs[0]] * 2 + [runs[2]] * 2 + [runs[4]] * 2
        firsts = [hits[i].score for i in (0, 2, 4)]
        assert firsts == sorted(firsts, reverse=True)
        assert all(hits[i].score >= hits[i + 1].score for i in (0, 2, 4))
        answers[engine] = shape(hits)
    assert answers["edge"] == answers["local"]


def test_group_by_another_field_and_bad_fields(samples: dict) -> None:
    for r in samples.values():
        hits = r.search(QUERY, limit=5, mode="dense", group_by="source")
        assert [h.group for h in hits] == [h.source for h in hits] and len(set(hits)) == len(hits)
        assert r.search(QUERY, limit=5, group_by="no_such_field") == []
        for bad, message in (("", "group_by must name"), ("a[", "not a payload path"), ("x" * 300, "limit is 256")):
            with pytest.raises(QueryError, match=message):
                r.search(QUERY, group_by=bad)
        with pytest.raises(QueryError, match="group_size"):
            r.search(QUERY, group_by="doc_id", group_size=0)


def write_corpus(folder: Path, big_chunks: int) -> None:
    """One long document whose every chunk matches the query best, and eight short ones that match less."""
    folder.mkdir()
    words = (PARAGRAPH * 3).split()  # each chunk lacks another word: no tied scores
    (folder / "big.txt").write_text("\n\n".join(" ".join(words[:i] + words[i + 1 :]) for i in range(big_chunks)))
    topics = [  # other words than the query's (the tiny model's similarities follow shared tokens)
        "неустойка за просрочку поставки",
        "права субъекта персональных данных",
        "договор поставки товара",
        "обработка обращений граждан",
        "политика обработки данных",
        "срок действия договора",
        "ответственность сторон",
        "порядок расчетов",
    ]
    for i, topic in enumerate(topics):
        (folder / f"small-{i}.txt").write_text(topic.capitalize() + ".")


def test_edge_over_fetches_until_the_groups_are_found(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path):
    """The big document fills the first OVERFETCH x limit candidates: Edge must fetch more to find 5 documents."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus, big_chunks=40)
    with retrievers_on_every_engine(tiny_model_dir, encoder, tmp_path, [corpus]) as rs:
        query = rs["edge"].search(PARAGRAPH * 3, limit=1, mode="dense", filter={"doc_id": "big.txt"})[0].text
        top = rs["edge"].search(query, limit=OVERFETCH * 4, mode="dense")
        assert {h.doc_id for h in top} == {"big.txt"}  # so the first fetch holds one group
        answers = {e: shape(r.search(query, limit=4, mode="dense", group_by="doc_id")) for e, r in rs.items()}
        assert len(answers["edge"]) == 4 and answers["edge"] == answers["local"]
        for engine, r in rs.items():  # every document, each with all its chunks: nothing is lost on the way
            everything = r.search(PARAGRAPH, limit=50, mode="dense", group_by="doc_id", group_size=100)
            assert len({h.group for h in everything}) == 9, engine
            assert len(everything) == len(r.search(PARAGRAPH, limit=1000, mode="dense")) > 40
    assert MAX_GROUP_CANDIDATES >= 40 * OVERFETCH


# ------------------------------------------------------------------------------------------- MMR


def test_diversity_keeps_near_duplicates_apart(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    corpus = tmp_path / "dups"
    corpus.mkdir()
    text = PARAGRAPH * 2
    (corpus / "original.txt").write_text(text)
    (corpus / "copy.txt").write_text(text)  # the same vectors (the tiny model's near-duplicates are far apart)
    (corpus / "other.txt").write_text("Revenue grew in 2025 while the operating margin and cash flow improved.")
    (corpus / "third.txt").write_text("Personal data requests are answered within thirty days by the office.")
    with retrievers_on_every_engine(tiny_model_dir, encoder, tmp_path, [corpus]) as rs:
        answers = {}
        for engine, r in rs.items():
            plain = r.search(text, limit=2, mode="hybrid")
            assert {h.doc_id for h in plain} == {"original.txt", "copy.txt"}
            relevance_only = r.search(text, limit=2, mode="hybrid", diversity=0.0)
            assert {h.doc_id for h in relevance_only} == {"original.txt", "copy.txt"}
            diverse = r.search(text, limit=2, mode="hybrid", diversity=0.5)
            assert len({h.doc_id for h in diverse} & {"original.txt", "copy.txt"}) == 1, engine
            dense = {h.id: h.score for h in r.search(text, limit=10, mode="dense")}
            assert all(h.score == pytest.approx(dense[h.id], abs=1e-4) for h in diverse)  # MMR reports cosines
            picks = [r.search(text, limit=3, mode="dense", diversity=d) for d in (0.1, 0.3, 0.7, 0.9)]
            # the two copies tie: engines may pick either, so a pick is named by its document's text
            answers[engine] = [[(h.doc_id.replace("copy", "original"), round(h.score, 4)) for h in p] for p in picks]
        assert answers["edge"] == answers["local"]  # Edge's lambda is 1 - diversity
        assert len({tuple(a) for a in answers["edge"]}) > 1  # and the diversities chosen make a difference


def test_diversity_and_groups_together(samples: dict) -> None:
    answers = {}
    for engine, r in samples.items():
        hits = r.search(QUERY, limit=4, mode="hybrid", group_by="doc_id", diversity=0.6)
        assert len({h.doc_id for h in hits}) == len(hits) == 4
        answers[engine] = shape(hits)
    assert answers["edge"] == answers["local"]


# ------------------------------------------------------------------------------------------- a server's wire


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_server_gets_one_groups_request_per_query(
    tiny_model_dir: Path, encoder: BGEM3Encoder, samples: dict, transport: str
) -> None:
    with QdrantStandIn() as srv:
        s = make_settings(tiny_model_dir, ":memory:", qdrant=srv.qdrant(transport == "grpc"))
        store = open_store(s.qdrant, s.collection.name)
        ingest([SAMPLES], s, encoder, store, progress=False)
        with Retriever(s, encoder=encoder, store=store) as r:
            flt = {"doc_id": ["en/remote-work-policy.md", "pdf/annual-report-2025.pdf", "ru/dogovor-postavki.txt"]}
            hits = r.search_batch([QUERY, "revenue"], limit=3, mode="hybrid", filter=flt, group_by="doc_id")
            calls = srv.of("query_groups")
            assert len(calls) == 2 and {c.transport for c in calls} == {transport}
            sent = calls[0].args
            assert (sent["group_by"], sent["group_size"], sent["query"].limit) == ("doc_id", 1, 3)
            request = sent["query"]
            assert request.filter is not None and all(p.filter == request.filter for p in request.prefetch)
            local = samples["local"].search(QUERY, limit=3, mode="hybrid", filter=flt, group_by="doc_id")
            assert shape(hits[0]) == shape(local)
        for version, message, options in (
            ("1.10.0", r"query groups .* needs Qdrant 1\.11\.0", {"group_by": "doc_id"}),
            ("1.14.2", r"MMR diversity .* needs Qdrant 1\.15\.0", {"diversity": 0.5}),
        ):
            srv.version = version
            dense = s.replace(retrieval={"mode": "dense"})
            old = Retriever(dense, encoder=encoder, store=open_store(s.qdrant, s.collection.name))
            with old, pytest.raises(QueryError, match=message):
                old.search(QUERY, mode="dense", **options)
