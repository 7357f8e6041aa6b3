"""A Qdrant server on loopback, for the server path where no real server can run.

It speaks both of Qdrant's transports: REST (an ``http.server`` on 127.0.0.1) and gRPC (a real grpcio
server with qdrant-client's own generated service stubs). Requests are answered by qdrant-client's
local-mode engine in-process, in Qdrant's own wire formats: the REST envelope
``{"result": ..., "status": "ok"}`` and errors as ``{"status": {"error": "..."}}`` with Qdrant's HTTP
statuses, gRPC errors as status codes with the reason in the details (``src/actix/helpers.rs``,
``lib/storage/src/content_manager/conversions.rs``). What the local engine lacks, it adds as a server
does: payload indexes in ``payload_schema``, the REST body limit, the version (``GET /`` and the gRPC
health check), and servers before 1.17 ignoring the score threshold of formula queries (Qdrant PR 8097).

Every call is recorded (operation, transport, REST-model arguments, body size); ``fail`` queues faults.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import grpc
from qdrant_client import QdrantClient, models

from indexer.store.features import parse_version

MB32 = 32 * 1024 * 1024


@dataclass
class Call:
    op: str
    transport: str  # "rest" or "grpc"
    args: dict[str, Any]
    size: int  # bytes of the request body (REST) or message (gRPC)
    api_key: str | None = None  # the ``api-key`` header (REST) or metadata (gRPC) it came with


@dataclass
class Fault:
    """An answer as Qdrant gives it for a failure: HTTP status and body, or gRPC code and details."""

    status: int
    code: grpc.StatusCode
    message: str
    trailing: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None  # REST: a body that is not Qdrant's envelope (a proxy's page)


class ServerError(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.message)
        self.fault = fault


BAD_INPUT = (400, grpc.StatusCode.INVALID_ARGUMENT)
NOT_FOUND = (404, grpc.StatusCode.NOT_FOUND)


def as_json(value: Any) -> Any:
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


class QdrantStandIn:
    def __init__(
        self, version: str = "1.19.0", max_request_bytes: int = MB32, delay: float = 0.0, record: bool = True
    ) -> None:
        self.version = version
        self.record = record  # False: keep no calls (a long run: a benchmark writing to it)
        self.max_request_bytes = max_request_bytes
        self.delay = delay  # seconds before every answer
        self.engine = QdrantClient(location=":memory:")
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.indexes: dict[str, dict[str, str]] = {}
        self.created: dict[str, dict[str, Any]] = {}  # creation arguments, as the server got them
        self.statuses: list[models.UpdateStatus] = []  # answers for the next writes (e.g. wait_timeout)
        self.garbage: dict[str, list[bytes]] = {}  # op -> bodies the client cannot read, answered with success
        self.gates: dict[str, threading.Barrier] = {}  # op -> its calls wait until the barrier's count arrived
        self.http: ThreadingHTTPServer | None = None
        self.grpc_server: grpc.Server | None = None
        self.rest_port = self.grpc_port = 0

    # ------------------------------------------------------------------------------------ life cycle

    def __enter__(self) -> QdrantStandIn:
        from tests.qdrant_standin.grpc_api import add_services
        from tests.qdrant_standin.rest import RestHandler

        standin = self

        class Handler(RestHandler):
            server_standin = standin

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.rest_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.grpc_server = add_services(self)
        self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.grpc_server is not None:
            self.grpc_server.stop(None)
        self.engine.close()

    def qdrant(self, grpc: bool) -> dict[str, Any]:
        """The ``[qdrant]`` settings that reach this server over one transport."""
        return {"url": f"http://127.0.0.1:{self.rest_port}", "grpc_port": self.grpc_port, "prefer_grpc": grpc}

    # ------------------------------------------------------------------------------------ tests' side

    def fail(self, op: str, status: int, code: grpc.StatusCode, message: str, times: int = 1, **kw: Any) -> None:
        self.faults.setdefault(op, []).extend([Fault(status, code, message, **kw)] * times)

    def of(self, op: str) -> list[Call]:
        return [c for c in self.calls if c.op == op]

    # ------------------------------------------------------------------------------------ operations

    def run(self, op: str, transport: str, size: int, api_key: str | None = None, **args: Any) -> Any:
        if self.record:
            self.calls.append(Call(op, transport, args, size, api_key))
        if op in self.gates:
            self.gates[op].wait(timeout=60)
        if self.delay:
            time.sleep(self.delay)
        queued = self.faults.get(op)
        if queued:
            raise ServerError(queued.pop(0))
        with self.lock:
            try:
                return getattr(self, f"_{op}")(**args)
            except ValueError as e:  # local mode's "Collection x not found", "Wrong input: ..."
                status, code = NOT_FOUND if "not found" in str(e) else BAD_INPUT
                message = f"Not found: {e}" if status == 404 else str(e)
                if status == 400 and not message.startswith("Wrong input"):
                    message = f"Wrong input: {message}"
                raise ServerError(Fault(status, code, message)) from e

    def _health(self) -> models.VersionInfo:
        return models.VersionInfo(title="qdrant - vector search engine", version=self.version, commit=None)

    def _list(self) -> list[str]:
        return [c.name for c in self.engine.get_collections().collections]

    def _exists(self, collection: str) -> bool:
        return self.engine.collection_exists(collection)

    def _get(self, collection: str) -> models.CollectionInfo:
        info = self.engine.get_collection(collection)
        tenant = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
        schema = {
            f: models.PayloadIndexInfo(
                data_type=models.PayloadSchemaType("keyword" if kind == "tenant" else kind),
                params=tenant if kind == "tenant" else None,
                points=0,
            )
            for f, kind in self.indexes.get(collection, {}).items()
        }
        params = info.config.params.model_copy(
            update={
                k: v for k, v in self.created.get(collection, {}).items() if k in type(info.config.params).model_fields
            }
        )
        return info.model_copy(
            update={"payload_schema": schema, "config": info.config.model_copy(update={"params": params})}
        )

    def _create(self, collection: str, **params: Any) -> bool:
        if self.engine.collection_exists(collection):
            raise ServerError(Fault(409, grpc.StatusCode.ALREADY_EXISTS, f"Collection `{collection}` already exists!"))
        self.created[collection] = params
        self.engine.create_collection(
            collection,
            vectors_config=params.get("vectors_config"),
            sparse_vectors_config=params.get("sparse_vectors_config"),
        )
        self.indexes[collection] = {}
        return True

    def _delete_collection(self, collection: str) -> bool:
        self.indexes.pop(collection, None)
        return self.engine.delete_collection(collection)

    def _update_result(self, wait: bool) -> models.UpdateResult:
        status = models.UpdateStatus.COMPLETED if wait else models.UpdateStatus.ACKNOWLEDGED
        if self.statuses:
            status = self.statuses.pop(0)
        return models.UpdateResult(operation_id=len(self.calls), status=status)

    def _create_index(self, collection: str, field_name: str, schema: str, wait: bool, ordering: str | None) -> Any:
        """``schema``: "keyword", "integer", ... or "tenant" (a keyword index marked is_tenant)."""
        self.engine.get_collection(collection)  # not found -> 404
        self.indexes[collection][field_name] = schema
        return self._update_result(wait)

    def _upsert(self, collection: str, points: list[models.PointStruct], wait: bool, ordering: str | None) -> Any:
        self.engine.upsert(collection, points=points)
        return self._update_result(wait)

    def _delete(self, collection: str, selector: Any, wait: bool, ordering: str | None) -> Any:
        self.engine.delete(collection, points_selector=selector)
        return self._update_result(wait)

    def _query_batch(self, collection: str, searches: list[models.QueryRequest]) -> list[models.QueryResponse]:
        version = parse_version(self.version)
        if version is not None and version < (1, 17, 0):  # LocalShard::rescore drops a formula's threshold
            searches = [
                s.model_copy(update={"score_threshold": None}) if isinstance(s.query, models.FormulaQuery) else s
                for s in searches
            ]
        return self.engine.query_batch_points(collection, requests=searches)

    def _query_groups(
        self, collection: str, query: models.QueryRequest, group_by: str, group_size: int
    ) -> models.GroupsResult:
        from indexer.store.qdrant_requests import groups_arguments

        return self.engine.query_points_groups(collection, **groups_arguments(query, group_by, group_size))

    def _count(self, collection: str, filter: models.Filter | None) -> models.CountResult:
        return self.engine.count(collection, count_filter=filter, exact=True)

    def _scroll(self, collection: str, filter: Any, limit: int, offset: Any, with_vectors: Any) -> Any:
        return self.engine.scroll(
            collection, scroll_filter=filter, limit=limit, offset=offset, with_payload=True, with_vectors=with_vectors
        )

    def _retrieve(self, collection: str, ids: list[Any], with_vectors: Any) -> list[models.Record]:
        return self.engine.retrieve(collection, ids, with_payload=True, with_vectors=with_vectors)
