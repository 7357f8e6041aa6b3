"""What the service's routes share: the async retriever, the write lock, context building."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from indexer.config import Settings
from retriever.aio import AsyncRetriever
from retriever.context import Context, build_context, token_counter
from retriever.service.observability import Metrics


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
    metrics: Metrics | None = None
    writes: int = 0  # uploads and deletes waiting for the write lock or holding it

    def __post_init__(self) -> None:
        self.context_tokenizer = copy.deepcopy(self.retriever.retriever.encoder.tokenizer)

    @property
    def settings(self) -> Settings:
        return self.retriever.settings

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """One upload or delete at a time (the write lock), counted while it waits and runs."""
        self.writes += 1
        try:
            async with self.write_lock:
                yield
        finally:
            self.writes -= 1

    def context(self, hits: list[Any], max_tokens: int) -> Context:
        with self.context_lock:
            return build_context(hits, token_counter(self.context_tokenizer), max_tokens)


def service_state(request: Request) -> ServiceState:
    return request.app.state.service


Service = Annotated[ServiceState, Depends(service_state)]
