"""The async API: ``AsyncRetriever`` over the same ``Retriever`` checks and pure request building.

- The model runs in a worker thread, one call at a time (FlagEmbedding and its tokenizer are not
  thread-safe); queries that arrive while it is busy are encoded together in its next call.
- The store's async side (``indexer.store.concurrent``) answers searches: a server's native async
  client, or an embedded engine (Edge, local mode) in a worker thread under the lock that writes share.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from indexer.config import Settings
from indexer.errors import QueryError
from indexer.models import Embedding, Hit
from indexer.modes import SearchMode
from indexer.store import AsyncStore, Store, concurrent
from indexer.tenants import TenantAsyncStore, TenantStore
from retriever.api import Retriever, SearchHit

logger = logging.getLogger(__name__)


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

    def __init__(self, retriever: Retriever, *, max_batch: int | None = None, store: AsyncStore | None = None) -> None:
        self.retriever = retriever
        self.settings: Settings = retriever.settings
        self.encoder = SerializedEncoder(retriever.encoder)
        # A thread-safe view of the store (uploads, blocking searches) and its async side (searches, counts);
        # ``store`` replaces the async side (tests).
        safe, native = concurrent(retriever.store)
        self.store: Store = safe
        self.astore: AsyncStore = store or native
        self.batcher = QueryBatcher(self.encoder, max_batch or self.settings.service.encode_batch)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AsyncRetriever:
        return cls(Retriever(settings), **kwargs)

    async def __aenter__(self) -> AsyncRetriever:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.batcher.aclose()
        await self.astore.close()
        await asyncio.to_thread(self.store.close)

    def for_tenant(self, tenant: str) -> AsyncRetriever:
        """A view that searches, counts and writes only ``tenant``'s documents (``Retriever.for_tenant``); it
        shares the model, its batcher and the store's locks. Close the original, not the view."""
        view = copy.copy(self)
        view.retriever = self.retriever.for_tenant(tenant)
        field = self.settings.tenants.field
        view.store = TenantStore(self.store, field, tenant)
        view.astore = TenantAsyncStore(self.astore, field, tenant)
        return view

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
        return await self.astore.query_batch(requests)

    async def count(self, flt: models.Filter | None = None) -> int:
        return await self.astore.count(flt)
