"""What the service's routes share: the async retriever, the write lock, searches and context building.

Every way in (the HTTP routes, the MCP tools) searches through ``ServiceState.search`` and builds contexts
through ``ServiceState.context_for``, so that what applies to one (checks, scoping, metrics) applies to all.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from indexer.config import Settings
from indexer.modes import SearchMode
from retriever.aio import AsyncRetriever
from retriever.api import SearchHit, SearchOptions
from retriever.context import Context, Expand, build_context, store_chunk_fetcher, token_counter
from retriever.service.guard import API_KEY_HEADER
from retriever.service.observability import Metrics, note
from retriever.service.tenancy import TENANT_HEADER, AccessDenied, TenantKeys


class ApiError(Exception):
    """An HTTP error with a message for the client: ``{"detail": ...}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class ServiceState:
    retriever: AsyncRetriever
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one upload or delete at a time
    # Context building counts tokens with its own copy of the tokenizer (fast tokenizers are not thread-safe).
    context_tokenizer: Any = None
    context_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: Metrics = field(default_factory=Metrics)
    writes: int = 0  # uploads and deletes waiting for the write lock or holding it
    keys: TenantKeys | None = None  # API keys of tenants; None: no tenants (one key or none, as configured)
    tenant: str | None = None  # the tenant this view of the state acts for (``for_tenant``)
    base: ServiceState | None = None  # the state a tenant's view was made from (it counts the writes)

    def __post_init__(self) -> None:
        self.context_tokenizer = copy.deepcopy(self.retriever.retriever.encoder.tokenizer)

    def for_tenant(self, tenant: str) -> ServiceState:
        """This state as one tenant's request sees it: every search, count and write scoped to ``tenant``;
        the locks, the model, the store and the metrics are shared."""
        view = copy.copy(self)
        view.retriever = self.retriever.for_tenant(tenant)
        view.tenant, view.base = tenant, self.base or self
        return view

    @property
    def settings(self) -> Settings:
        return self.retriever.settings

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """One upload or delete at a time (the write lock), counted while it waits and runs."""
        counted = self.base or self
        counted.writes += 1
        try:
            async with self.write_lock:
                yield
        finally:
            counted.writes -= 1

    def mode_of(self, options: SearchOptions) -> SearchMode:
        return SearchMode.parse(options.mode or self.settings.retrieval.mode)

    async def search(self, queries: list[str], options: SearchOptions) -> list[list[SearchHit]]:
        """Check, encode and answer searches (the request's mode is noted for the metrics)."""
        note(mode=self.mode_of(options).value)
        return await self.retriever.search_planned(queries, options)

    async def context_for(
        self, query: str, options: SearchOptions, max_tokens: int, expand: Expand = "none", neighbours: int = 1
    ) -> Context:
        """Search, then build a prompt context within ``max_tokens`` (passages grown by ``expand``)."""
        [hits] = await self.search([query], options)
        return await asyncio.to_thread(self.context, hits, max_tokens, expand, neighbours)

    def context(self, hits: list[Any], max_tokens: int, expand: Expand = "none", neighbours: int = 1) -> Context:
        # The other chunks are read through this view's store: a tenant's view reads only its own.
        fetch = None if expand == "none" else store_chunk_fetcher(self.retriever.retriever.store)
        with self.context_lock:
            count = token_counter(self.context_tokenizer)
            return build_context(hits, count, max_tokens, expand=expand, fetch=fetch, neighbours=neighbours)


def service_state(request: Request) -> ServiceState:
    """The state a request acts through: with tenant keys, scoped to the tenant its key allows."""
    state: ServiceState = request.app.state.service
    if state.keys is None or request.url.path in request.app.state.open_paths:
        return state
    key = request.headers.get(API_KEY_HEADER, "").encode("latin-1")
    try:
        tenant = state.keys.tenant_for(key, request.headers.get(TENANT_HEADER))
    except AccessDenied as e:
        raise ApiError(e.status, e.detail) from None
    return state.for_tenant(tenant)


Service = Annotated[ServiceState, Depends(service_state)]
