"""The FastAPI application: lifespan, authentication and body limits, error mapping, and ``serve``.

One process opens the model and the store once. With the embedded engine the service owns the store:
uploads and deletes go through it, serialized with searches (see ``indexer.store.concurrent``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from indexer.config import Settings
from indexer.errors import (
    ConfigError,
    DocumentBusy,
    IndexerError,
    InvalidInputError,
    LoaderError,
    QueryError,
    StoreError,
    StoreRequestError,
)
from indexer.runtime import open_runtime
from indexer.store.serialized import SerializedStore
from indexer.tenants import holds_tenants
from retriever.aio import AsyncRetriever
from retriever.api import Retriever
from retriever.service import routes
from retriever.service.bulk import bulk
from retriever.service.guard import API_KEY_HEADER, INTERNAL_ERROR, ServiceGuard, error_response
from retriever.service.observability import Metrics, RequestContext, configure_logging
from retriever.service.schemas import ErrorResponse
from retriever.service.state import ApiError, ServiceState
from retriever.service.tenancy import TENANT_HEADER, KeyEntry, TenantKeys

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # reachable without the API key (orchestrator probes)
MULTIPART_OVERHEAD = 256 * 1024  # form fields (doc_id, metadata) and boundaries around the file in an upload

# The status each error family answers with; the most specific class in an error's MRO wins, so a
# subclass gets its own entry (e.g. a store refusing a request, a 4xx) without touching the handler.
ERROR_STATUS: dict[type[Exception], int] = {
    QueryError: 422,
    InvalidInputError: 422,
    StoreRequestError: 422,  # the server refused the request (e.g. a filter it cannot run): its reason, a 4xx
    LoaderError: 422,
    DocumentBusy: 409,  # another writer holds the document (its lease) past busy_wait_seconds
    StoreError: 503,
    IndexerError: 500,
}
# What a 5xx tells the client; its own message (engine errors, paths) goes to the log only.
SERVER_ERROR_DETAIL = {
    503: "the vector store failed or is unreachable (the details are in the service log); try again later",
}


def status_for(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def open_for_service(settings: Settings) -> Retriever:
    """The model and the store, opened once; an empty collection is created when there is none yet."""
    runtime = open_runtime(settings, "serve")
    return Retriever(settings, encoder=runtime.encoder, store=runtime.store)


async def flush_every(store: SerializedStore, seconds: float, metrics: Metrics) -> None:
    """Make deferred upload writes durable every ``seconds`` (see ``SerializedStore``), until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(store.finish_pending)
        except StoreError as e:  # the next round tries again; close() finishes at the end
            metrics.store_error(e)
            logger.error("flushing the uploads to the store failed: %s", e)


# ------------------------------------------------------------------------------------------- errors

_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
}


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _is_type_tag(part: str) -> bool:
    """A member of a union or a validator in pydantic's error location, not a field name."""
    return part in _TYPE_TAGS or any(c in part for c in "[(-")


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as "field: what is wrong", without its type tags and inputs.

    A value that fits no member of a union (``filter``) gives one error per member; they are joined.
    """
    problems: dict[str, list[str]] = {}
    for e in errors:
        parts = [p for p in e.get("loc", ())[1:] if isinstance(p, int) or not _is_type_tag(str(p))]
        where = ".".join(str(p) for p in parts)
        msg = _MESSAGES.get(str(e.get("type")), str(e.get("msg", "invalid")))
        found = problems.setdefault(where, [])
        if msg not in found:
            found.append(msg)
    out = []
    for where, msgs in problems.items():
        text = " or ".join(m[:1].lower() + m[1:] for m in msgs)
        out.append(f"{where}: {text}" if where else text)
    return "; ".join(out) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            e = bad_json[0]
            where = next((p for p in e.get("loc", ()) if isinstance(p, int)), None)
            at = f" at character {where}" if where is not None else ""
            return error_response(400, f"malformed JSON: {(e.get('ctx') or {}).get('error', 'cannot parse it')}{at}")
        return error_response(422, _validation_message(errors))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:  # FastAPI could not parse the body
            logger.info("unreadable body on %s %s: %r", request.method, request.url.path, cause)
            if isinstance(cause, RecursionError):
                return error_response(400, "malformed JSON: nested too deeply")
            return error_response(400, "malformed request body: it cannot be read as its declared content type")
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.detail)

    @app.exception_handler(IndexerError)
    async def indexer_error(request: Request, exc: IndexerError) -> JSONResponse:
        if isinstance(exc, StoreError):
            request.app.state.metrics.store_error(exc)
        status = status_for(exc)
        if status < 500:
            return error_response(status, str(exc))
        logger.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc, exc_info=exc)
        return error_response(status, SERVER_ERROR_DETAIL.get(status, INTERNAL_ERROR))


# ------------------------------------------------------------------------------------------- app


def create_app(retriever: Retriever, api_key: str | None = None, keys: TenantKeys | None = None) -> FastAPI:
    """The service over an open ``Retriever``; the app owns it and closes it at shutdown.

    ``api_key`` defaults to ``service.api_key`` (``RETRIEVER_API_KEY``); when set, every route but the
    health probes (and ``/metrics`` with ``service.open_metrics``) needs it in the ``X-API-Key`` header,
    the MCP endpoint (``/mcp``, ``service.mcp``) included. ``keys`` (default: ``TenantKeys.from_settings``)
    are tenants' keys: then every request (the MCP tools' included) acts for one tenant
    (``retriever.service.tenancy``), and ``api_key`` is an admin key.
    """
    settings = retriever.settings
    key = api_key if api_key is not None else settings.service.api_key
    keys = keys if keys is not None else TenantKeys.from_settings(settings)
    if keys is None and holds_tenants(retriever.store, settings.tenants.field):
        raise ConfigError(
            f"collection {retriever.store.collection!r} holds tenants' documents: serve it with tenant keys "
            "(tenants.keys_file or RETRIEVER_TENANT_KEYS; README, Tenants), so that each key sees only its tenant's"
        )
    if keys is not None and api_key:
        keys = TenantKeys((*keys.entries, KeyEntry(hashlib.sha256(api_key.encode()).digest(), None)))
    metrics = Metrics()
    open_paths = OPEN_PATHS | {"/metrics"} if settings.service.open_metrics else OPEN_PATHS
    mcp = None
    if settings.service.mcp:  # its tools are scoped by the tenant keys as the routes are (``mcp_tools``)
        from retriever.service.mcp_tools import McpEndpoint

        mcp = McpEndpoint(settings)
    upload_limit = settings.service.max_upload_bytes + MULTIPART_OVERHEAD
    json_limit = settings.service.max_json_bytes

    def limit_for(method: str, path: str) -> int:
        return upload_limit if (method, path) == ("POST", "/documents") else json_limit

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load = getattr(retriever.encoder, "load", None)
        if load is not None:  # the encoder loads its weights on first use: ready means loaded
            await asyncio.to_thread(load)
        every = settings.service.flush_seconds
        # An embedded engine's writes run in this process: they take turns with searches, searches first.
        embedded = retriever.store.engine != "server"
        shared = AsyncRetriever(retriever, defer_finish=every > 0, writes_yield=embedded)
        state = ServiceState(shared, metrics=metrics, keys=keys)
        metrics.watch(state.retriever, lambda: state.writes)
        app.state.service = state
        store = state.retriever.store
        flusher = None
        if every > 0 and isinstance(store, SerializedStore):
            flusher = asyncio.create_task(flush_every(store, every, metrics))
        try:
            if mcp is None:
                yield
            else:
                async with mcp.running():
                    yield
        finally:
            if flusher is not None:
                flusher.cancel()
            await app.state.service.retriever.aclose()  # finishes what the flusher has not

    app = FastAPI(
        title="m3-qdrant-rag retriever",
        version="0.1.0",
        description=(
            "Hybrid search (BGE-M3 dense + sparse + ColBERT) over one Qdrant collection, and document uploads. "
            f"When the service has an API key, send it in the `{API_KEY_HEADER}` header (all routes but "
            f"/healthz and /readyz). Request bodies: uploads up to {settings.service.max_upload_bytes} bytes "
            f"per file, every other body up to {json_limit} bytes (413 above). Every error is "
            '`{"detail": "..."}`.'
        ),
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.open_paths = open_paths
    key_valid = None if keys is None else (lambda given: keys.lookup(given) is not None)
    app.add_middleware(ServiceGuard, api_key=key, open_paths=open_paths, limit_for=limit_for, key_valid=key_valid)
    app.add_middleware(RequestContext, metrics=metrics)  # outermost: refusals get a request id and are counted
    _add_error_handlers(app)
    app.include_router(routes.health)
    # With a key, the schema says so: the scheme is declared and 401 is a documented answer of every route.
    keyed: dict[str, Any] = {}
    if key or keys is not None:
        scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the service's API key")
        keyed = {"dependencies": [Security(scheme)], "responses": routes.errors(401)}
        if keys is not None:  # a key of another tenant (403), an admin key naming no tenant (422)
            tenant = APIKeyHeader(
                name=TENANT_HEADER,
                scheme_name="TenantHeader",
                auto_error=False,
                description="the tenant an admin key acts for (a tenant's own key needs none)",
            )
            keyed["dependencies"].append(Security(tenant))
            keyed["responses"] |= {
                403: {"model": ErrorResponse, "description": "This API key may not act for the tenant named"},
                **routes.errors(422),
            }
    for router in (routes.search, bulk, routes.documents, routes.collections):
        app.include_router(router, **keyed)
    app.include_router(routes.observability, **({} if settings.service.open_metrics else keyed))
    if mcp is not None:
        mcp.mount(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema without its default 422 (a list of pydantic errors) where none can happen.

    Every route that can answer 422 declares it (``{"detail": "..."}``, like every error); FastAPI adds
    its own to the others that take parameters (a path parameter any text matches).
    """
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                default = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(default):
                    del operation["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def serve(settings: Settings, log_level: str = "info") -> None:
    """Open the model and the store, then serve until interrupted (one process: it owns the store)."""
    from indexer.extras import needs

    with needs("service", "retriever serve"):  # before the model loads: every module the service uses
        import prometheus_client  # noqa: F401
        import uvicorn

        if settings.service.mcp:
            import mcp  # noqa: F401
    configure_logging(settings.service.log_format, log_level)
    started = time.perf_counter()
    retriever = open_for_service(settings)
    logger.info("model and store open in %.1fs", time.perf_counter() - started)
    uvicorn.run(
        create_app(retriever),
        host=settings.service.host,
        port=settings.service.port,
        log_level=log_level,
        log_config=None,  # configure_logging's handler: every line with its request id, text or JSON
        access_log=False,  # RequestContext writes one line per request (retriever.access), with its id
    )
