"""The evaluation harness: metrics, BEIR loading, the man-page set builder, and `retriever eval` end to end."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from indexer.encoder import BGEM3Encoder
from retriever import SearchMode
from retriever.api import SearchHit
from retriever.cli import main
from retriever.datasets import BeirDataset, DatasetError, build_manpages, load_beir, split_man_text, write_beir
from retriever.evaluation import METRICS, doc_run, evaluate, run_eval
from tests.helpers import REPO, make_settings

MINI = REPO / "datasets" / "mini-multilingual"
MODES = [m.value for m in SearchMode]


def hit(doc_id: str, chunk: int) -> SearchHit:
    return SearchHit(id=f"{doc_id}#{chunk}", score=0.0, text="", doc_id=doc_id, source="", pages=(), chunk_index=chunk)


def test_metrics_come_from_ir_measures_and_count_every_query() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    perfect = {"q1": {"a": 3.0, "x": 2.0}, "q2": {"b": 2.0, "c": 1.0}}
    assert evaluate(qrels, perfect) == dict.fromkeys(METRICS, 1.0)
    assert evaluate(qrels, {"q1": {"x": 1.0}, "q2": {"y": 1.0}}) == dict.fromkeys(METRICS, 0.0)
    # A query without any hit counts as 0, it is not dropped from the mean.
    half = evaluate(qrels, {"q1": {"a": 1.0}})
    assert half == dict.fromkeys(METRICS, 0.5)
    second = evaluate({"q1": {"a": 1}}, {"q1": {"x": 2.0, "a": 1.0}})
    assert second["MRR@10"] == 0.5
    assert second["Recall@10"] == 1.0
    assert second["nDCG@10"] == pytest.approx(1 / 1.5849625, rel=1e-6)  # 1/log2(3)


def test_hits_become_documents_ranked_by_their_best_chunk() -> None:
    run = doc_run([hit("a", 2), hit("b", 0), hit("a", 0), hit("c", 1), hit("b", 3)])
    assert sorted(run, key=run.get, reverse=True) == ["a", "b", "c"]


def test_load_beir_and_its_errors(tmp_path: Path) -> None:
    ds = load_beir(MINI)
    assert len(ds.corpus) >= 30
    assert len(ds.queries) >= 30
    assert any("ы" in q for q in ds.queries.values())
    assert any("the" in q.split() for q in ds.queries.values())
    assert all(docs and set(docs) <= set(ds.corpus) for docs in ds.qrels.values())
    write_beir(ds, tmp_path / "copy")
    assert load_beir(tmp_path / "copy") == BeirDataset("copy", ds.corpus, ds.queries, ds.qrels)

    with pytest.raises(DatasetError, match="not found"):
        load_beir(tmp_path / "nope")
    bad = tmp_path / "bad"
    write_beir(BeirDataset("bad", {"d": ("", "x")}, {"q": "y"}, {"q": {"d": 1}}), bad)
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tmissing\t1\n")
    with pytest.raises(DatasetError, match="unknown corpus id 'missing'"):
        load_beir(bad)
    (bad / "qrels" / "test.tsv").write_text("q d 1\n")
    with pytest.raises(DatasetError, match="tabs"):
        load_beir(bad)
    (bad / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n{broken\n')
    with pytest.raises(DatasetError, match="corpus.jsonl:2"):
        load_beir(bad)


def test_perfect_retrieval_scores_one(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    """Each query is a document's whole text: every mode must rank that document first."""
    mini = load_beir(MINI)
    short = {d: ("", text) for d, (_, text) in mini.corpus.items() if d != "en-release-notes"}
    ds = BeirDataset("selfmatch", short, {f"q-{d}": text for d, (_, text) in short.items()}, {})
    ds = BeirDataset(ds.name, ds.corpus, ds.queries, {f"q-{d}": {d: 1} for d in short})
    settings = make_settings(tiny_model_dir, tmp_path / "unused", "edge")
    report = run_eval(ds, settings, encoder, index_dir=tmp_path / "index")
    assert report.chunks == len(short)  # one chunk each
    for result in report.results:
        assert result.metrics == dict.fromkeys(METRICS, 1.0), result.mode


@pytest.mark.slow
def test_retriever_eval_end_to_end(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--model", str(tiny_model_dir), "--chunk-size", "128", "--depths", "100,200", "--rrf-ks", "2,60"]
    out_json = tmp_path / "eval.json"
    argv = ["eval", "--dataset", str(MINI), "--index-dir", str(tmp_path / "idx"), "--json", str(out_json), "--sweep"]
    assert main(argv + common) == 0
    printed = capsys.readouterr().out
    for mode in MODES:
        assert f"\n{mode} " in printed
    assert "nDCG@10" in printed
    assert "best setting per metric" in printed

    data = json.loads(out_json.read_text())
    assert data["dataset"] == "mini-multilingual"
    assert data["documents"] == 31
    assert data["queries"] == 32
    assert data["chunks"] > data["documents"]  # the long document has several chunks
    assert set(data["modes"]) == set(MODES)
    for row in data["modes"].values():
        assert all(0.0 <= row[m] <= 1.0 for m in METRICS)
        assert row["Recall@10"] <= row["Recall@100"]
        assert row["median_ms"] > 0
    # Sweep: depth for every prefetching mode, k only where RRF decides (hybrid, hybrid_colbert).
    assert len(data["sweep"]) == 2 * 2 + 2 + 2 * 2 + 2 + 2
    assert {(r["mode"], r["rrf_k"]) for r in data["sweep"] if r["mode"] == "hybrid"} == {("hybrid", 2), ("hybrid", 60)}
    for metric in METRICS:
        best = data["best"][metric]
        assert best["value"] == max(r[metric] for r in data["sweep"])

    # The kept index, searched as an existing collection: the same numbers, nothing re-ingested.
    existing = tmp_path / "again.json"
    argv = ["eval", "--dataset", str(MINI), "--collection", "eval-mini-multilingual", "--qdrant-path"]
    assert main([*argv, str(tmp_path / "idx"), "--json", str(existing), "--modes", "dense,m3", *common[:2]]) == 0
    again = json.loads(existing.read_text())
    assert set(again["modes"]) == {"dense", "m3"}
    assert again["chunks"] == data["chunks"]
    for mode in ("dense", "m3"):
        for m in METRICS:
            assert again["modes"][mode][m] == pytest.approx(data["modes"][mode][m])


def test_eval_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--dataset", str(tmp_path / "none")]) == 3
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(MINI), "--depths", "ten"]) == 3
    assert "--depths" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(MINI), "--modes", "dense,bm25"]) == 3
    assert "unknown mode 'bm25'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ man pages


def troff(name: str, description: str | None, body: str = "") -> bytes:
    name_section = f".SH NAME\n{name} \\- {description}\n" if description is not None else ""
    return (
        f'.TH {name.upper()} 1 "2026" "test" "User Commands"\n{name_section}.SH SYNOPSIS\n.B {name}\n[\\fIFILE\\fR]\n'
        f".SH DESCRIPTION\n{body or f'The {name} command reads each FILE and writes a report about it. ' * 4}\n"
    ).encode()


def test_split_man_text() -> None:
    text = "LS(1)   User Commands   LS(1)\n\nNAME\n       ls - list directory\n       contents\n\n"
    text += "SYNOPSIS\n       ls [OPTION]...\n\nGNU coreutils 9.1   2022   LS(1)\n"
    assert split_man_text(text) == ("list directory contents", "SYNOPSIS\n       ls [OPTION]...")


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff renders the man pages")
def test_build_manpages_known_item_set(tmp_path: Path) -> None:
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    pages = {
        "frobnicate.1.gz": troff("frobnicate", "adjust the flux capacitor of a file"),
        "zap.1.gz": troff("zap", "remove stale lock files quickly"),
        "redirect.1.gz": b".so man1/zap.1\n",
        "nameless.1.gz": troff("nameless", None),
        "twin-a.1.gz": troff("twin-a", "print the same thing twice"),
        "other.1.gz": troff("other", "print the same thing twice"),
        "tool-one.1.gz": troff("tool-one", "first tool of a family"),
        "tool-two.1.gz": troff("tool-two", "second tool of a family"),
    }
    for name, data in pages.items():
        (man1 / name).write_bytes(gzip.compress(data))
    (man1 / "plain.1").write_bytes(troff("plain", "an uncompressed page with hyphenation everywhere"))
    ds = build_manpages(tmp_path / "man", limit=50, sections=["1"], per_family=1)
    tools = {d for d in ds.corpus if d.startswith("tool-")}
    assert set(ds.corpus) - tools == {"frobnicate.1", "zap.1", "plain.1"}
    assert len(tools) == 1
    assert ds.queries["q-zap.1"] == "remove stale lock files quickly"
    assert ds.qrels["q-plain.1"] == {"plain.1": 1}
    title, text = ds.corpus["zap.1"]
    assert title == "zap.1"
    assert "SYNOPSIS" in text
    assert "remove stale lock" not in text
    # Deterministic, and bounded by --limit.
    assert (
        build_manpages(tmp_path / "man", limit=2, sections=["1"]).corpus
        == build_manpages(tmp_path / "man", limit=2, sections=["1"]).corpus
    )
    assert len(build_manpages(tmp_path / "man", limit=2, sections=["1"]).corpus) == 2
    with pytest.raises(DatasetError, match="no man pages"):
        build_manpages(tmp_path / "man", sections=["9"])
