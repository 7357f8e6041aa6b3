"""Results per document and diversity through every way in: the service (real uvicorn), the CLI and LangChain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import cli as indexer_cli
from indexer.encoder import BGEM3Encoder
from indexer.pipeline import ingest
from indexer.store import open_store
from retriever import Retriever
from retriever import cli as retriever_cli
from tests.helpers import CHUNK_SIZE, SAMPLES, make_settings
from tests.service_helpers import serve

QUERY = "home office equipment and security rules"


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = make_settings(tiny_model_dir, tmp_path_factory.mktemp("svc") / "store")
    with serve(s, encoder, [SAMPLES]) as base:
        yield base


def test_service_search_batch_and_context_by_document(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        plain = c.post("/search", json={"query": QUERY, "limit": 5, "mode": "dense"}).json()["hits"]
        assert len({h["doc_id"] for h in plain}) < 5 and all(h["group"] is None for h in plain)
        r = c.post("/search", json={"query": QUERY, "limit": 5, "mode": "dense", "group_by": "doc_id"})
        hits = r.json()["hits"]
        assert r.status_code == 200 and len({h["doc_id"] for h in hits}) == len(hits) == 5
        assert [h["group"] for h in hits] == [h["doc_id"] for h in hits]
        r = c.post("/search", json={"query": QUERY, "limit": 2, "group_by": "doc_id", "group_size": 3})
        assert [h["group"] for h in r.json()["hits"]].count(r.json()["hits"][0]["group"]) == 3
        batch = c.post("/search/batch", json={"queries": [QUERY, "revenue"], "limit": 3, "group_by": "source"})
        assert [len({h["source"] for h in hits}) for hits in batch.json()["results"]] == [3, 3]
        ctx = c.post("/context", json={"query": QUERY, "limit": 4, "group_by": "doc_id", "max_tokens": 5000}).json()
        assert len({cite["doc_id"] for cite in ctx["citations"]}) == 4
        diverse = c.post("/search", json={"query": QUERY, "limit": 5, "diversity": 0.9}).json()["hits"]
        assert [h["id"] for h in diverse] != [h["id"] for h in plain]
        for body, message in (
            ({"group_by": ""}, "group_by: string should have at least 1 character"),
            ({"group_by": "a["}, "not a payload path"),
            ({"group_by": "doc_id", "group_size": 101}, "group_size: input should be less than or equal to 100"),
            ({"diversity": 1.5}, "diversity: input should be less than or equal to 1"),
        ):
            r = c.post("/search", json={"query": QUERY, **body})
            assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_cli_group_by(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "test.toml"
    config.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = {CHUNK_SIZE}\n'
        f'chunk_overlap = 16\n[qdrant]\npath = "{tmp_path / "store"}"\n'
    )
    assert indexer_cli.main(["ingest", str(SAMPLES), "--config", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    args = ["search", QUERY, "--config", str(config), "--limit", "4", "--mode", "dense"]
    assert retriever_cli.main([*args, "--group-by", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len({h["doc_id"] for h in hits}) == len(hits) == 4 and hits[0]["group"] == hits[0]["doc_id"]
    assert retriever_cli.main([*args, "--group-by", "source", "--group-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n== ") + out.startswith("== ") == 4 and " 8. " in out
    assert retriever_cli.main([*args, "--diversity", "0.5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert retriever_cli.main([*args, "--diversity", "2"]) == 3
    assert "diversity must be a number between 0 and 1" in capsys.readouterr().err


def test_langchain_k_documents(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    from retriever import AsyncRetriever
    from retriever.langchain import M3Retriever

    s = make_settings(tiny_model_dir, tmp_path / "store")
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES], s, encoder, store, progress=False)
    with Retriever(s, encoder=encoder, store=store) as r:
        lc = M3Retriever(retriever=r, k=4, mode="dense", group_by="doc_id")
        docs = lc.invoke(QUERY)
        assert len({d.metadata["doc_id"] for d in docs}) == 4
        assert [d.metadata["group"] for d in docs] == [d.metadata["doc_id"] for d in docs]
        diverse = M3Retriever(retriever=r, k=4, mode="dense", diversity=0.9).invoke(QUERY)
        assert [d.id for d in diverse] != [d.id for d in M3Retriever(retriever=r, k=4, mode="dense").invoke(QUERY)]

        async def both() -> tuple[list, list]:
            async with AsyncRetriever(r) as ar:
                lca = M3Retriever(retriever=r, async_retriever=ar, k=4, mode="dense", group_by="doc_id")
                return await lca.ainvoke(QUERY), lca.invoke(QUERY)

        import asyncio

        async_docs, blocking_docs = asyncio.run(both())
        assert [d.id for d in async_docs] == [d.id for d in blocking_docs] == [d.id for d in docs]
