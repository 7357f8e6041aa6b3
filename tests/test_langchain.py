"""The LangChain adapter, driven through LangChain's own Runnable interface (invoke, ainvoke, batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda

from indexer.encoder import BGEM3Encoder
from indexer.pipeline import ingest
from indexer.store import open_store
from retriever import AsyncRetriever, Retriever
from retriever.langchain import M3Retriever
from tests.helpers import SAMPLES, make_settings


@pytest.fixture(scope="module")
def retriever(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Retriever]:
    s = make_settings(tiny_model_dir, tmp_path_factory.mktemp("lc") / "store")
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES / "en", SAMPLES / "pdf"], s, encoder, store, progress=False, metadata={"lang": "mixed"})
    r = Retriever(s, encoder=encoder, store=store)
    yield r
    r.close()


def test_invoke_returns_documents_with_metadata(retriever: Retriever) -> None:
    lc = M3Retriever(retriever=retriever, k=4, mode="hybrid_colbert")
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("revenue growth in 2025")
    hits = retriever.search("revenue growth in 2025", limit=4, mode="hybrid_colbert")
    assert [d.page_content for d in docs] == [h.text for h in hits]
    assert all(isinstance(d, Document) for d in docs)
    assert [d.id for d in docs] == [h.id for h in hits]
    m = docs[0].metadata
    assert m["score"] == hits[0].score
    assert m["source"] == hits[0].source
    assert m["pages"] == list(hits[0].pages)
    assert m["page"] == hits[0].pages[0]
    assert m["chunk_index"] == hits[0].chunk_index
    assert m["lang"] == "mixed"
    assert m["end"] > m["start"] >= 0


def test_filter_and_k_apply(retriever: Retriever) -> None:
    lc = M3Retriever(retriever=retriever, k=2, filter={"doc_id": "annual-report-2025.pdf"})
    docs = lc.invoke("anything at all")
    assert len(docs) == 2
    assert {d.metadata["doc_id"] for d in docs} == {"annual-report-2025.pdf"}


def test_ainvoke_batch_and_a_chain(retriever: Retriever) -> None:
    queries = ["remote work equipment", "reciprocal rank fusion", "annual revenue"]
    want = [[h.id for h in retriever.search(q, limit=3)] for q in queries]

    async def run() -> tuple[list, list, str]:
        ar = AsyncRetriever(retriever)
        lc = M3Retriever(retriever=retriever, async_retriever=ar, k=3)
        got = await asyncio.gather(*(lc.ainvoke(q) for q in queries))
        batched = await lc.abatch(queries)
        chain = lc | RunnableLambda(lambda docs: docs[0].metadata["source"])
        source = await chain.ainvoke(queries[0])
        await ar.batcher.aclose()
        return got, batched, source

    got, batched, source = asyncio.run(run())
    assert [[d.id for d in docs] for docs in got] == want == [[d.id for d in docs] for docs in batched]
    assert source == retriever.search(queries[0], limit=1)[0].source
    # Without an async retriever, ainvoke falls back to the sync search (in LangChain's executor).
    plain = M3Retriever(retriever=retriever, k=3)
    assert [d.id for d in asyncio.run(plain.ainvoke(queries[1]))] == want[1]
    assert [[d.id for d in docs] for docs in plain.batch(queries, config={"max_concurrency": 1})] == want
