"""The FastAPI application: lifespan, authentication, error mapping, and ``serve``.

One process opens the model and the store once. With the embedded engine the service owns the store:
uploads and deletes go through it, serialized with searches (see ``indexer.store.concurrent``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from indexer.config import Settings
from indexer.errors import IndexerError, QueryError, StoreError, StoreRequestError
from indexer.runtime import open_runtime
from retriever.aio import AsyncRetriever
from retriever.api import Retriever
from retriever.service import routes
from retriever.service.state import ApiError, ServiceState

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # reachable without the API key (orchestrator probes)
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around the file in an upload


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts)


def open_for_service(settings: Settings) -> Retriever:
    """The model and the store, opened once; an empty collection is created when there is none yet."""
    runtime = open_runtime(settings, "serve")
    return Retriever(settings, encoder=runtime.encoder, store=runtime.store)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            return _error(400, f"malformed JSON: {bad_json[0].get('ctx', {}).get('error', 'cannot parse the body')}")
        return _error(422, _validation_message(errors))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.detail)

    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(StoreRequestError)
    async def store_refused(request: Request, exc: StoreRequestError) -> JSONResponse:
        return _error(422, f"the vector store refused the request: {exc}")  # its reason, e.g. a bad filter

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        logger.error("store: %s", exc)
        return _error(503, f"the vector store failed: {exc}")

    @app.exception_handler(IndexerError)
    async def indexer_error(request: Request, exc: IndexerError) -> JSONResponse:
        logger.error("%s: %s", type(exc).__name__, exc)
        return _error(500, str(exc))


def create_app(retriever: Retriever, api_key: str | None = None) -> FastAPI:
    """The service over an open ``Retriever``; the app owns it and closes it at shutdown.

    ``api_key`` defaults to ``service.api_key`` (``RETRIEVER_API_KEY``); when set, every route but the
    health probes needs it in the ``X-API-Key`` header.
    """
    settings = retriever.settings
    key = api_key if api_key is not None else settings.service.api_key
    max_upload = settings.service.max_upload_bytes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load = getattr(retriever.encoder, "load", None)
        if load is not None:  # the encoder loads its weights on first use: ready means loaded
            await asyncio.to_thread(load)
        app.state.service = ServiceState(AsyncRetriever(retriever))
        try:
            yield
        finally:
            await app.state.service.retriever.aclose()

    app = FastAPI(
        title="m3-qdrant-rag retriever",
        version="0.1.0",
        description=(
            "Hybrid search (BGE-M3 dense + sparse + ColBERT) over one Qdrant collection, and document uploads. "
            f"When the service has an API key, send it in the `{API_KEY_HEADER}` header (all routes but "
            "/healthz and /readyz)."
        ),
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if key and request.url.path not in OPEN_PATHS:
            given = request.headers.get(API_KEY_HEADER, "")
            if not hmac.compare_digest(given.encode(), key.encode()):
                return _error(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")
        if request.method == "POST" and request.url.path == "/documents":
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_upload + MULTIPART_OVERHEAD:
                return _error(413, f"upload of {int(length)} bytes is over the limit of {max_upload} bytes")
        return await call_next(request)

    _add_error_handlers(app)
    for router in (routes.health, routes.search, routes.documents, routes.collections):
        app.include_router(router)
    return app


def serve(settings: Settings, log_level: str = "info") -> None:
    """Open the model and the store, then serve until interrupted (one process: it owns the store)."""
    import uvicorn

    started = time.perf_counter()
    retriever = open_for_service(settings)
    logger.info("model and store open in %.1fs", time.perf_counter() - started)
    uvicorn.run(create_app(retriever), host=settings.service.host, port=settings.service.port, log_level=log_level)
