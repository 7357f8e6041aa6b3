"""qdrant-client backend: a Qdrant server (REST or gRPC), or the client's local mode for tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

from indexer.conditions import AnyFilter
from indexer.config import QdrantSettings
from indexer.errors import StoreError, TransientStoreError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.requests import Request
from indexer.schema import CollectionInfo, CollectionSpec, check_shape, payload_indexes
from indexer.store.base import AsyncStore, to_hit, to_stored
from indexer.store.errors import already_exists, classify, store_error
from indexer.store.features import MIN_SERVER_VERSION, Version, parse_version, show
from indexer.store.groups import HitGroup
from indexer.store.qdrant_filters import to_qdrant_filter
from indexer.store.qdrant_params import (
    PAYLOAD_TYPES,
    client_options,
    collection_info,
    collection_params,
    missing_indexes,
    split_by_bytes,
    to_point_struct,
)
from indexer.store.qdrant_requests import from_groups_result, groups_arguments, to_qdrant_request
from indexer.store.qdrant_wire import upsert_body, upsert_request

__all__ = ["QdrantStore", "client_options", "collection_info", "collection_params", "to_point_struct"]

logger = logging.getLogger(__name__)


def read_server_version(client: QdrantClient, url: str) -> Version | None:
    """The server's version (REST ``GET /``, or the gRPC health check); refuses one older than we support."""
    try:
        reported = client.info().version
    except Exception as e:
        raise StoreError(
            f"cannot reach the Qdrant server at {url}: {classify(e).reason}. "
            "Is it running (docker compose up -d qdrant) and is QDRANT_API_KEY right?"
        ) from e
    version = parse_version(reported)
    if version is None:
        logger.warning("the Qdrant server at %s reports version %r; features are not checked", url, reported)
    elif version < MIN_SERVER_VERSION:
        raise StoreError(
            f"the Qdrant server at {url} runs {reported}; this tool needs Qdrant {show(MIN_SERVER_VERSION)} "
            "or later (the Query API, multivectors and named sparse vectors). Upgrade the server"
        )
    return version


def _update_result(result: models.UpdateResult | None, points: int) -> models.UpdateResult:
    if result is None:  # qdrant-client's own upsert asserts it
        raise StoreError(f"the server answered the write of {points} points without its outcome")
    return result


class QdrantStore:
    """A collection reached through qdrant-client."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        location: str,
        server: bool,
        grpc: bool = False,
        settings: QdrantSettings | None = None,
        server_version: Version | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.location = location
        self.server = server
        self.engine = "server" if server else "local"
        self.settings = settings
        self.server_version = server_version  # None: local mode, which runs every feature of its client
        self.rest = server and not grpc
        # gRPC sends floats as 4 bytes. In JSON a vector's float32 takes up to 15 characters ("-1.1754944e-38,"),
        # a sparse weight (a double) up to 24: 20 a float bounds a request (a sparse entry counts 2 floats).
        self.bytes_per_float = 20 if self.rest else 4
        # Server writes: each waits for the server's outcome, ordered as configured (see QdrantSettings).
        self.ordering = models.WriteOrdering(settings.write_ordering) if server and settings else None

    @classmethod
    def connect(cls, settings: QdrantSettings, collection: str) -> QdrantStore:
        if settings.url:
            client = QdrantClient(**client_options(settings))
            try:
                version = read_server_version(client, settings.url)
            except BaseException:
                client.close()
                raise
            return cls(
                client,
                collection,
                settings.url,
                server=True,
                grpc=settings.prefer_grpc,
                settings=settings,
                server_version=version,
            )
        if settings.path == ":memory:":
            return cls(QdrantClient(location=":memory:"), collection, ":memory:", server=False)
        try:
            client = QdrantClient(path=settings.path)
        except RuntimeError as e:  # portalocker: another client holds the folder
            raise StoreError(f"the local Qdrant folder {settings.path} is already open in another process: {e}") from e
        return cls(client, collection, settings.path, server=False)

    @classmethod
    def list_collections(cls, settings: QdrantSettings) -> list[str]:
        store = cls.connect(settings, "")
        try:
            return sorted(c.name for c in store._call("listing collections", store.client.get_collections).collections)
        finally:
            store.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise store_error(e, what) from e

    def _write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """A write that waits, and whose outcome is known: an answer other than "completed" is retried."""
        if self.ordering is not None:
            kwargs["ordering"] = self.ordering
        result = self._call(what, fn, *args, wait=True, **kwargs)
        status = getattr(result, "status", None)
        if self.server and status is not None and status != models.UpdateStatus.COMPLETED:
            # e.g. "wait_timeout" (1.17+): written to the WAL, not confirmed applied; writes are idempotent
            raise TransientStoreError(f"{what}: the server did not confirm the write (status {status})")

    def check_available(self) -> None:
        """A server was reached in ``connect``; local mode locked its folder there."""

    def _exists(self) -> bool:
        what = f"checking collection {self.collection!r}"
        return bool(self._call(what, self.client.collection_exists, self.collection))

    def _read(self) -> models.CollectionInfo:
        return self._call(f"reading collection {self.collection!r}", self.client.get_collection, self.collection)

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        """Create the collection, or check the existing one; either way, make the payload indexes it lacks."""
        exists = self._exists() and not recreate
        if not exists:
            if recreate:
                self._call(f"deleting collection {self.collection!r}", self.client.delete_collection, self.collection)
            exists = not self._create(spec)
        schema: dict[str, Any] = {}
        if exists:
            info = self._read()
            check_shape(spec.info(), collection_info(self.collection, info))
            self._warn_on_cluster_settings(spec, info)
            schema = dict(info.payload_schema or {})
        if self.server:  # local mode has no payload indexes (it warns); create them before any upload
            for field, kind in missing_indexes(schema, payload_indexes(spec.tenant_field)).items():
                what = f"creating the payload index on {field!r}"
                self._write(what, self.client.create_payload_index, self.collection, field, PAYLOAD_TYPES[kind])

    def _create(self, spec: CollectionSpec) -> bool:
        """Create the collection; False when another writer created it first (then it is checked instead)."""
        try:
            self.client.create_collection(self.collection, **collection_params(spec))
        except Exception as e:
            if self.server and already_exists(e):
                logger.info("collection %r was created by another writer meanwhile", self.collection)
                return False
            raise store_error(e, f"creating collection {self.collection!r}") from e
        return True

    def _warn_on_cluster_settings(self, spec: CollectionSpec, info: models.CollectionInfo) -> None:
        params = info.config.params
        for key in ("shard_number", "replication_factor", "write_consistency_factor"):
            want, have = getattr(spec, key), getattr(params, key, None)
            if want is not None and have is not None and want != have:
                logger.warning(
                    "collection %r has %s = %s, not the configured %s (set at creation; see the README on clusters)",
                    self.collection,
                    key,
                    have,
                    want,
                )

    def open_collection(self) -> CollectionInfo:
        if not self._exists():
            raise StoreError(f"collection {self.collection!r} does not exist at {self.location}; ingest first")
        return collection_info(self.collection, self._read())

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        """Every server write waits for its outcome, whatever ``wait`` says (see ``indexer.writer``). A server
        gets requests built from the vectors' bytes (``indexer.store.qdrant_wire``); local mode, the
        client's own models."""
        what = f"writing {len(points)} points"
        if not self.server:
            self._write(what, self.client.upsert, self.collection, points=[to_point_struct(p) for p in points])
        elif self.rest:
            self._write(what, self._rest_upsert, points)
        else:
            self._write(what, self._grpc_upsert, points)

    def _rest_upsert(
        self, points: Sequence[PointRecord], wait: bool, ordering: models.WriteOrdering | None = None
    ) -> models.UpdateResult:
        """``PUT /collections/{name}/points`` with our body, through qdrant-client's own REST client (its
        headers, API key, timeout and error handling), as its ``upsert`` sends it."""
        params = {"wait": str(wait).lower()} | ({"ordering": str(ordering)} if ordering is not None else {})
        reply = self.client.http.points_api.api_client.request(
            type_=models.InlineResponse2008,
            method="PUT",
            url="/collections/{collection_name}/points",
            path_params={"collection_name": self.collection},
            params=params,
            headers={"Content-Type": "application/json"},
            content=upsert_body(points),
        )
        return _update_result(reply.result, len(points))

    def _grpc_upsert(
        self, points: Sequence[PointRecord], wait: bool, ordering: models.WriteOrdering | None = None
    ) -> models.UpdateResult:
        sent = RestToGrpc.convert_write_ordering(ordering) if ordering is not None else None
        request = upsert_request(self.collection, points, wait, sent)
        timeout = self.client.init_options.get("timeout")  # the client's own (whole seconds, rounded up)
        reply = self.client.grpc_points.Upsert(request, timeout=timeout)  # the client's channel: its key and TLS
        result = GrpcToRest.convert_update_result(reply.result) if reply.HasField("result") else None
        return _update_result(result, len(points))

    def delete(self, flt: AnyFilter) -> None:
        selector = models.FilterSelector(filter=to_qdrant_filter(flt))
        self._write("deleting points", self.client.delete, self.collection, points_selector=selector)

    def set_payload(self, flt: AnyFilter, payload: dict[str, Any]) -> None:
        selector = models.FilterSelector(filter=to_qdrant_filter(flt))
        self._write("setting payload", self.client.set_payload, self.collection, payload=payload, points=selector)

    def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        sent = [to_qdrant_request(r) for r in requests]
        groups = split_by_bytes(sent, self.settings.max_request_bytes) if self.rest and self.settings else [sent]
        responses = []
        for group in groups:
            responses += self._call("query", self.client.query_batch_points, self.collection, requests=list(group))
        return [[to_hit(p) for p in r.points] for r in responses]

    def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        """One ``query_points_groups`` call per request (the Query API has no batch of groups)."""
        out = []
        for r in requests:
            args = groups_arguments(to_qdrant_request(r), group_by, group_size)
            out.append(
                from_groups_result(self._call("query", self.client.query_points_groups, self.collection, **args))
            )
        return out

    def count(self, flt: AnyFilter | None = None) -> int:
        qf = to_qdrant_filter(flt)
        return int(self._call("count", self.client.count, self.collection, count_filter=qf, exact=True).count)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._call(
            "retrieve", self.client.retrieve, self.collection, list(ids), with_payload=True, with_vectors=with_vectors
        )
        return [to_stored(r) for r in records]

    def scroll(self, flt: AnyFilter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        qf = to_qdrant_filter(flt)
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                self.client.scroll,
                self.collection,
                scroll_filter=qf,
                limit=page,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            for r in records:
                yield to_stored(r, with_vectors=False)
            if offset is None:
                return

    def finish(self) -> None:
        """Every server write already waited for its outcome; nothing more to do."""

    def open_async(self) -> AsyncStore | None:
        if not self.server or self.settings is None:
            return None
        from indexer.store.qdrant_async import AsyncQdrantStore

        return AsyncQdrantStore.connect(self.settings, self.collection)

    def close(self) -> None:
        self.client.close()
