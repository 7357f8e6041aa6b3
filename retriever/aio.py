"""The async API: ``AsyncRetriever`` over the same ``Retriever`` checks and pure request building.

- The model runs in a worker thread, one call at a time (FlagEmbedding and its tokenizer are not
  thread-safe); queries that arrive while it is busy are encoded together in its next call.
- A Qdrant server is queried with qdrant-client's ``AsyncQdrantClient``; an embedded engine (Edge or
  local mode) in a worker thread, its calls serialized by a lock that writes share.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import models

from indexer.config import Settings
from indexer.errors import QueryError, StoreError, TransientStoreError
from indexer.models import Embedding, Hit, PointRecord, StoredPoint
from indexer.schema import CollectionSpec
from indexer.store import Store
from indexer.store.qdrant import is_transient
from retriever.api import Retriever, SearchHit
from retriever.query import SearchMode

logger = logging.getLogger(__name__)


def _store_error(e: Exception, what: str) -> StoreError:
    cls = TransientStoreError if is_transient(e) else StoreError
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return cls(f"{what} failed: {type(e).__name__}: {first}")


class SerializedEncoder:
    """An encoder whose model calls take one lock, so threads can share it.

    ``tokenizer`` is a private copy for chunking (uploads): Hugging Face fast tokenizers fail with
    "Already borrowed" when one thread tokenizes while another changes truncation settings.
    """

    def __init__(self, encoder: Any, lock: threading.Lock | None = None) -> None:
        self.inner = encoder
        self.lock = lock or threading.Lock()
        self.tokenizer = copy.deepcopy(encoder.tokenizer)
        self.dense_dim = encoder.dense_dim
        self.colbert_dim = encoder.colbert_dim
        self.max_length = encoder.max_length
        self.name = encoder.name
        self.fingerprint = encoder.fingerprint

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]:
        with self.lock:
            return self.inner.encode_passages(texts)

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]:
        with self.lock:
            return self.inner.encode_queries(texts)


class SerializedStore:
    """A store whose every call takes one lock: an Edge shard or local-mode client shared by threads."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.lock = threading.Lock()
        self.collection = store.collection
        self.bytes_per_float = store.bytes_per_float
        self.location = store.location

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        with self.lock:
            self.inner.ensure_collection(spec, recreate)

    def open_collection(self) -> dict[str, Any]:
        with self.lock:
            return self.inner.open_collection()

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        with self.lock:
            self.inner.upsert(points, wait)

    def delete(self, flt: models.Filter) -> None:
        with self.lock:
            self.inner.delete(flt)

    def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]:
        with self.lock:
            return self.inner.query_batch(requests)

    def count(self, flt: models.Filter | None = None) -> int:
        with self.lock:
            return self.inner.count(flt)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        with self.lock:
            return self.inner.retrieve(ids, with_vectors)

    def scroll(self, flt: models.Filter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        with self.lock:  # read it all under the lock: a generator would outlive it
            return iter(list(self.inner.scroll(flt, page)))

    def check_available(self) -> None:
        with self.lock:
            self.inner.check_available()

    def finish(self, optimize: bool = True) -> None:
        with self.lock:
            self.inner.finish(optimize)

    def close(self) -> None:
        with self.lock:
            self.inner.close()


class QueryBatcher:
    """Encodes queries in a worker thread; those that arrive while the model is busy share its next call."""

    def __init__(self, encoder: SerializedEncoder, max_batch: int = 32) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self.pending: list[tuple[str, asyncio.Future[Embedding]]] = []
        self.wakeup: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None
        self.calls = 0  # model calls made: fewer than queries when batching happened

    async def encode(self, texts: Sequence[str]) -> list[Embedding]:
        if self.task is None or self.task.done():
            self.wakeup = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self.pending.extend(zip(texts, futures, strict=True))
        assert self.wakeup is not None
        self.wakeup.set()
        results = await asyncio.gather(*futures, return_exceptions=True)  # retrieve every error, raise the first
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)  # type: ignore[arg-type]

    async def _run(self) -> None:
        assert self.wakeup is not None
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
                await self._encode_batch(batch)

    async def _encode_batch(self, batch: list[tuple[str, asyncio.Future[Embedding]]]) -> None:
        texts = [t for t, _ in batch]
        try:
            self.calls += 1
            embeddings = await asyncio.to_thread(self.encoder.encode_queries, texts)
        except QueryError as e:
            if len(batch) == 1:
                _settle(batch[0][1], exc=e)
                return
            for item in batch:  # one bad query (too many tokens) must not fail the others
                await self._encode_batch([item])
            return
        except Exception as e:
            for _, fut in batch:
                _settle(fut, exc=e)
            return
        for (_, fut), emb in zip(batch, embeddings, strict=True):
            _settle(fut, value=emb)

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


def _settle(fut: asyncio.Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():  # the caller went away (cancelled request)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class AsyncRetriever:
    """Async searches over a ``Retriever``; create it inside the event loop that will use it.

    >>> async with AsyncRetriever(Retriever(settings)) as r:
    ...     hits = await r.search("late delivery penalty", limit=5)
    """

    def __init__(self, retriever: Retriever, *, max_batch: int | None = None, client: Any = None) -> None:
        self.retriever = retriever
        self.settings: Settings = retriever.settings
        self.encoder = SerializedEncoder(retriever.encoder)
        self.store = SerializedStore(retriever.store)
        self.batcher = QueryBatcher(self.encoder, max_batch or self.settings.service.encode_batch)
        # AsyncQdrantClient for a server: given, or made in the event loop on first use.
        self.client: Any = client

    @property
    def embedded(self) -> bool:
        """Searches run in a worker thread (Edge, local mode), not through the async client (a server)."""
        return self.client is None and not self.settings.qdrant.url

    def _client(self) -> Any:
        if self.client is None:
            from qdrant_client import AsyncQdrantClient

            q = self.settings.qdrant
            self.client = AsyncQdrantClient(
                url=q.url, api_key=q.api_key, prefer_grpc=q.prefer_grpc, grpc_port=q.grpc_port, timeout=int(q.timeout)
            )
        return self.client

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AsyncRetriever:
        return cls(Retriever(settings), **kwargs)

    async def __aenter__(self) -> AsyncRetriever:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.batcher.aclose()
        if self.client is not None:
            await self.client.close()
        await asyncio.to_thread(self.store.close)

    async def search(
        self, query: str, limit: int | None = None, mode: SearchMode | str | None = None, filter: Any = None
    ) -> list[SearchHit]:
        return (await self.search_batch([query], limit=limit, mode=mode, filter=filter))[0]

    async def search_batch(
        self,
        queries: Sequence[str],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
    ) -> list[list[SearchHit]]:
        plan = self.retriever.plan(queries, limit=limit, mode=mode, filter=filter)
        if not queries:
            return []
        embeddings = await self.batcher.encode(list(queries))
        return plan.hits(embeddings, await self.query_batch(plan.requests(embeddings)))

    def search_blocking(
        self, query: str, limit: int | None = None, mode: SearchMode | str | None = None, filter: Any = None
    ) -> list[SearchHit]:
        """A synchronous search that takes the same locks, for threads sharing this retriever's parts."""
        plan = self.retriever.plan([query], limit=limit, mode=mode, filter=filter)
        embeddings = self.encoder.encode_queries([query])
        [hits] = plan.hits(embeddings, self.store.query_batch(plan.requests(embeddings)))
        return hits

    async def query_batch(self, requests: Sequence[models.QueryRequest]) -> list[list[Hit]]:
        if self.embedded:
            return await asyncio.to_thread(self.store.query_batch, requests)
        try:
            responses = await self._client().query_batch_points(self.store.collection, requests=list(requests))
        except Exception as e:
            raise _store_error(e, "query") from e
        return [[Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r.points] for r in responses]

    async def count(self, flt: models.Filter | None = None) -> int:
        if self.embedded:
            return await asyncio.to_thread(self.store.count, flt)
        try:
            return (await self._client().count(self.store.collection, count_filter=flt, exact=True)).count
        except Exception as e:
            raise _store_error(e, "count") from e
