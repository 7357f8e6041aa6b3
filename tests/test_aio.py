"""The async API against the sync one: same hits, concurrent queries batched, errors kept per query."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from indexer.encoder import BGEM3Encoder
from indexer.errors import QueryError, TransientStoreError
from indexer.pipeline import ingest
from indexer.store import open_store
from indexer.store.qdrant_async import AsyncQdrantStore
from retriever import AsyncRetriever, Retriever, SearchMode
from tests.helpers import ENGINES, SAMPLES, make_settings, retrievers_on_every_engine

QUERIES = ["How much did revenue grow?", "неустойка за просрочку поставки", "reciprocal rank fusion", "home office"]


@pytest.fixture(scope="module")
def retrievers(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("aio")
    with retrievers_on_every_engine(tiny_model_dir, encoder, root, [SAMPLES / "en", SAMPLES / "ru"]) as out:
        yield out


def assert_same(got: list, want: list) -> None:
    """Same hits and scores; hits with equal scores may come in either order (batched encoding differs in ulps)."""
    assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-4, abs=1e-6)
    assert {h.id: h.score for h in got} == pytest.approx({h.id: h.score for h in want}, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_concurrent_async_searches_equal_sync_ones_and_share_model_calls(retrievers: dict, engine: str) -> None:
    r = retrievers[engine]
    modes = [m.value for m in SearchMode]
    want = {(q, m): r.search(q, limit=5, mode=m) for q in QUERIES for m in modes}

    async def run() -> tuple[list, int]:
        ar = AsyncRetriever(r, max_batch=8)
        got = await asyncio.gather(*(ar.search(q, limit=5, mode=m) for q, m in want))
        batch = await ar.search_batch(QUERIES, limit=5, mode="hybrid")
        await ar.batcher.aclose()  # not aclose(): the module's retriever keeps its store open
        return [*got, *batch], ar.batcher.calls

    results, calls = asyncio.run(run())
    for got, expected in zip(results, [*want.values(), *(want[(q, "hybrid")] for q in QUERIES)], strict=True):
        assert_same(got, expected)
    # 24 concurrent searches and a batch of 4: fewer model calls than queries (queued ones share a call).
    assert calls < len(want)


def test_a_bad_query_fails_alone_and_bad_requests_never_reach_the_model(retrievers: dict) -> None:
    r = retrievers["edge"]

    async def run() -> tuple[list, int]:
        ar = AsyncRetriever(r)
        results = await asyncio.gather(
            ar.search("home office", limit=3),
            ar.search("word " * 2000, limit=3),
            ar.search("reciprocal rank fusion", limit=3),
            return_exceptions=True,
        )
        calls = ar.batcher.calls
        for bad in ({"query": " "}, {"query": "x", "limit": 0}, {"query": "x", "mode": "bm25"}):
            with pytest.raises(QueryError):
                await ar.search(**bad)
        with pytest.raises(QueryError):
            await ar.search("x", filter={"page": {"about": 1}})
        assert ar.batcher.calls == calls
        await ar.batcher.aclose()
        return results, calls

    (ok1, bad, ok2), _ = asyncio.run(run())
    assert isinstance(bad, QueryError)
    assert "512 tokens" in str(bad)
    assert_same(ok1, r.search("home office", limit=3))
    assert_same(ok2, r.search("reciprocal rank fusion", limit=3))


def test_sync_searches_through_the_async_retriever_take_its_locks(retrievers: dict) -> None:
    r = retrievers["edge"]
    ar = AsyncRetriever(r)
    assert_same(ar.search_blocking("home office", limit=4, mode="colbert"), r.search("home office", 4, "colbert"))


def test_the_async_client_path_returns_what_the_sync_client_returns(retrievers: dict) -> None:
    """The server path (AsyncQdrantClient.query_batch_points), run on qdrant-client's async local mode."""
    r = retrievers["local"]
    sync: QdrantClient = r.store.client
    name = r.store.collection
    info = sync.get_collection(name)
    points, _ = sync.scroll(name, limit=10_000, with_payload=True, with_vectors=True)

    async def run() -> tuple[list, int]:
        client = AsyncQdrantClient(location=":memory:")
        await client.create_collection(
            name, vectors_config=info.config.params.vectors, sparse_vectors_config=info.config.params.sparse_vectors
        )
        await client.upsert(name, [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])
        ar = AsyncRetriever(r, store=AsyncQdrantStore(client, name))
        assert isinstance(ar.astore, AsyncQdrantStore)
        hits = [await ar.search(q, limit=5, mode=m) for q in QUERIES for m in ("hybrid", "hybrid_colbert", "sparse")]
        count = await ar.count()
        await ar.batcher.aclose()
        await client.close()
        return hits, count

    hits, count = asyncio.run(run())
    assert count == r.store.count() == len(points)
    want = [r.search(q, limit=5, mode=m) for q in QUERIES for m in ("hybrid", "hybrid_colbert", "sparse")]
    for got, expected in zip(hits, want, strict=True):
        assert_same(got, expected)


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL")
def test_async_search_on_a_server(tiny_model_dir: Path, encoder: BGEM3Encoder) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    s = make_settings(
        tiny_model_dir,
        ":memory:",
        qdrant={"url": os.environ["QDRANT_URL"], "api_key": os.environ.get("QDRANT_API_KEY")},
        collection={"name": name},
    )
    store = open_store(s.qdrant, name)
    try:
        ingest([SAMPLES / "en"], s, encoder, store, progress=False)
        r = Retriever(s, encoder=encoder, store=store)

        async def run() -> list:
            ar = AsyncRetriever(r)
            hits = await asyncio.gather(*(ar.search(q, limit=5) for q in QUERIES))
            await ar.batcher.aclose()
            await ar.astore.close()
            return hits

        for got, q in zip(asyncio.run(run()), QUERIES, strict=True):
            assert_same(got, r.search(q, limit=5))
    finally:
        store.client.delete_collection(name)
        store.close()


def test_an_unreachable_server_is_a_transient_store_error(retrievers: dict) -> None:
    async def run() -> None:
        client = AsyncQdrantClient(url="http://127.0.0.1:9", timeout=2, check_compatibility=False)  # nothing on port 9
        ar = AsyncRetriever(retrievers["local"], store=AsyncQdrantStore(client, retrievers["local"].store.collection))
        with pytest.raises(TransientStoreError, match="query failed"):
            await ar.search("home office")
        with pytest.raises(TransientStoreError, match="count failed"):
            await ar.count()
        await ar.batcher.aclose()
        await client.close()

    asyncio.run(run())
