"""The async API: ``AsyncRetriever`` over the same ``Retriever`` checks and pure request building.

- Queries are encoded in a worker thread, one model call at a time; queries that arrive while it is busy
  are encoded together in its next call. Uploads share the model through ``retriever.scheduler``, which
  gives queries priority (uploads encode in small slices between query calls).
- The store's async side (``indexer.store.concurrent``) answers searches: a server's native async
  client, or an embedded engine (Edge, local mode) in a worker thread under the lock that writes share.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Sequence
from typing import Any

from indexer.conditions import AnyFilter
from indexer.config import Settings
from indexer.errors import QueryError
from indexer.models import Embedding, Hit
from indexer.modes import SearchMode
from indexer.requests import Request
from indexer.store import AsyncStore, Store, concurrent
from indexer.tenants import TenantAsyncStore, TenantStore
from retriever.api import Retriever, SearchHit, SearchOptions
from retriever.scheduler import ScheduledEncoder

logger = logging.getLogger(__name__)


class QueryBatcher:
    """Encodes queries in a worker thread; those that arrive while the model is busy share its next call."""

    def __init__(self, encoder: ScheduledEncoder, max_batch: int = 32) -> None:
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

    def __init__(
        self,
        retriever: Retriever,
        *,
        max_batch: int | None = None,
        store: AsyncStore | None = None,
        defer_finish: bool = False,
        writes_yield: bool = False,
    ) -> None:
        self.retriever = retriever
        self.settings: Settings = retriever.settings
        service = self.settings.service
        self.encoder = ScheduledEncoder(
            retriever.encoder, slice_tokens=service.upload_slice_tokens, upload_share=service.upload_share
        )
        # A thread-safe view of the store (uploads, blocking searches) and its async side (searches, counts);
        # ``store`` replaces the async side (tests). ``defer_finish``: see ``SerializedStore``; ``writes_yield``:
        # writes through ``self.store`` take turns with searches like uploads' forward passes (its write_gate).
        gate = self.encoder.scheduler.upload if writes_yield else None
        safe, native = concurrent(retriever.store, defer_finish, gate)
        self.store: Store = safe
        self.astore: AsyncStore = store or native
        self.batcher = QueryBatcher(self.encoder, max_batch or service.encode_batch)

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
        self,
        query: str,
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[SearchHit]:
        return (await self.search_batch([query], limit=limit, mode=mode, filter=filter, **options))[0]

    async def search_batch(
        self,
        queries: Sequence[str],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[list[SearchHit]]:
        return await self.search_planned(queries, SearchOptions(limit, mode, filter, **options))

    async def search_planned(self, queries: Sequence[str], options: SearchOptions) -> list[list[SearchHit]]:
        """Check, encode (queries first, see ``EncoderScheduler``) and answer; the service's one way in."""
        plan = self.retriever.plan(queries, options)
        if not queries:
            return []
        embeddings = await self.batcher.encode(list(queries))
        requests = plan.requests(embeddings)
        if plan.group_by is not None:
            groups = await self.astore.query_groups(requests, plan.group_by, plan.group_size)
            return plan.grouped_hits(embeddings, groups)
        return plan.hits(embeddings, await self.query_batch(requests))

    def search_blocking(
        self,
        query: str,
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[SearchHit]:
        """A synchronous search that takes the same locks, for threads sharing this retriever's parts."""
        plan = self.retriever.plan([query], SearchOptions(limit, mode, filter, **options))
        embeddings = self.encoder.encode_queries([query])
        requests = plan.requests(embeddings)
        if plan.group_by is not None:
            [hits] = plan.grouped_hits(embeddings, self.store.query_groups(requests, plan.group_by, plan.group_size))
        else:
            [hits] = plan.hits(embeddings, self.store.query_batch(requests))
        return hits

    async def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        return await self.astore.query_batch(requests)

    async def count(self, flt: AnyFilter | None = None) -> int:
        return await self.astore.count(flt)
