"""The async side of the qdrant-client backend: ``AsyncQdrantClient`` for a server's searches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from indexer.conditions import AnyFilter
from indexer.config import QdrantSettings
from indexer.models import Hit
from indexer.requests import Request
from indexer.store.base import to_hit
from indexer.store.errors import store_error
from indexer.store.groups import HitGroup
from indexer.store.qdrant_filters import to_qdrant_filter
from indexer.store.qdrant_params import split_by_bytes
from indexer.store.qdrant_requests import from_groups_result, groups_arguments, to_qdrant_request


class AsyncQdrantStore:
    """Searches and counts of one collection through ``AsyncQdrantClient``; make it inside the event loop."""

    def __init__(self, client: Any, collection: str, settings: QdrantSettings | None = None) -> None:
        self.client = client  # None: made from ``settings`` on first use, inside the running event loop
        self.collection = collection
        self.settings = settings

    @classmethod
    def connect(cls, settings: QdrantSettings, collection: str) -> AsyncQdrantStore:
        return cls(None, collection, settings)

    def _client(self) -> Any:
        if self.client is None:
            from qdrant_client import AsyncQdrantClient

            from indexer.store.qdrant_params import client_options

            assert self.settings is not None
            self.client = AsyncQdrantClient(**client_options(self.settings))
        return self.client

    async def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        s = self.settings
        sent = [to_qdrant_request(r) for r in requests]
        groups = split_by_bytes(sent, s.max_request_bytes) if s is not None and not s.prefer_grpc else [sent]
        responses = []
        for group in groups:  # REST: under the server's request size limit
            try:
                responses += await self._client().query_batch_points(self.collection, requests=list(group))
            except Exception as e:
                raise store_error(e, "query") from e
        return [[to_hit(p) for p in r.points] for r in responses]

    async def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        """One ``query_points_groups`` call per request, sent together."""

        async def one(r: Request) -> list[HitGroup]:
            args = groups_arguments(to_qdrant_request(r), group_by, group_size)
            try:
                return from_groups_result(await self._client().query_points_groups(self.collection, **args))
            except Exception as e:
                raise store_error(e, "query") from e

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def count(self, flt: AnyFilter | None = None) -> int:
        try:
            qf = to_qdrant_filter(flt)
            return int((await self._client().count(self.collection, count_filter=qf, exact=True)).count)
        except Exception as e:
            raise store_error(e, "count") from e

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
