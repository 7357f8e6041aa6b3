"""``retriever serve``: the HTTP retrieval service, a thin FastAPI layer over AsyncRetriever and the pipeline.

One process opens the model and the store once. With the embedded engine the service owns the store:
uploads and deletes go through it, serialized with searches (see ``retriever.aio``).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from indexer.config import Settings
from indexer.errors import IndexerError, LoaderError, QueryError, StoreError
from indexer.loaders import SUPPORTED_SUFFIXES, load_bytes
from indexer.pipeline import delete_documents, doc_filter, ingest_documents
from indexer.records import KIND_CHUNK, KIND_DOCUMENT, kind_filter
from retriever.aio import AsyncRetriever
from retriever.api import MAX_QUERY_CHARS, Retriever
from retriever.context import Context, build_context, token_counter
from retriever.query import SearchMode

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # reachable without the API key (orchestrator probes)
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around the file in an upload
MAX_DOC_ID_CHARS = 1024
READY_TIMEOUT_S = 5.0

FilterSpec = dict[str, Any] | list[str] | str | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["late delivery penalty"])
    limit: int | None = Field(None, ge=1, le=1000, description="hits to return (default from config)")
    mode: SearchMode | None = Field(None, description="retrieval mode (default from config)")
    filter: FilterSpec = Field(
        None,
        description='{"doc_id": "a.pdf", "page": {"gte": 2}}, ["page>=2"], or Qdrant\'s {"must": [...]} syntax',
    )


class BatchSearchRequest(_Body):
    queries: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=1, le=1000)
    mode: SearchMode | None = None
    filter: FilterSpec = None


class ContextRequest(SearchRequest):
    max_tokens: int = Field(2000, ge=1, le=1_000_000, description="token budget of the context text")


class Hit(BaseModel):
    id: str
    score: float
    doc_id: str
    source: str
    pages: list[int]
    chunk_index: int
    text: str
    metadata: dict[str, Any]
    start: int | None = None
    end: int | None = None


class SearchResponse(BaseModel):
    mode: str
    hits: list[Hit]


class BatchSearchResponse(BaseModel):
    mode: str
    results: list[list[Hit]]


class CitationOut(BaseModel):
    number: int
    label: str
    source: str
    doc_id: str
    pages: list[int]
    chunk_indexes: list[int]
    score: float


class ContextResponse(BaseModel):
    text: str
    tokens: int
    citations: list[CitationOut]
    dropped: int


class UploadResponse(BaseModel):
    doc_id: str
    source: str
    content_hash: str
    chunks: int
    tokens: int


class DeleteResponse(BaseModel):
    doc_id: str
    deleted: int


class CollectionResponse(BaseModel):
    name: str
    documents: int
    chunks: int
    points: int  # chunks plus one bookkeeping record per document and one for the collection
    engine: str
    vectors: dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _error(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts)


def open_for_service(settings: Settings) -> Retriever:
    """The model and the store, opened once; an empty collection is created when there is none yet."""
    from indexer.encoder import BGEM3Encoder
    from indexer.schema import CollectionSpec
    from indexer.store import open_store

    store = open_store(settings.qdrant, settings.collection.name)
    try:
        encoder = BGEM3Encoder(settings.model, settings.chunking.chunk_size, colbert=settings.collection.colbert)
        store.ensure_collection(CollectionSpec.for_model(settings.collection, encoder.dense_dim, encoder.colbert_dim))
    except BaseException:
        store.close()
        raise
    return Retriever(settings, encoder=encoder, store=store)


def create_app(retriever: Retriever, api_key: str | None = None) -> FastAPI:
    """The service over an open ``Retriever``; the app owns it and closes it at shutdown.

    ``api_key`` defaults to ``service.api_key`` (``RETRIEVER_API_KEY``); when set, every route but the
    health probes needs it in the ``X-API-Key`` header.
    """
    settings = retriever.settings
    key = api_key if api_key is not None else settings.service.api_key
    max_upload = settings.service.max_upload_bytes
    max_batch = settings.service.max_batch_queries
    engine = "server" if settings.qdrant.url else settings.qdrant.engine

    # Context building counts tokens with its own copy of the tokenizer (fast tokenizers are not thread-safe).
    context_tokenizer = copy.deepcopy(retriever.encoder.tokenizer)
    context_lock = threading.Lock()

    def counted_context(hits: list[Any], max_tokens: int) -> Context:
        with context_lock:
            return build_context(hits, token_counter(context_tokenizer), max_tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load = getattr(retriever.encoder, "load", None)
        if load is not None:  # the encoder loads its weights on first use: ready means loaded
            await asyncio.to_thread(load)
        app.state.ar = AsyncRetriever(retriever)
        app.state.write_lock = asyncio.Lock()  # one upload or delete at a time
        try:
            yield
        finally:
            await app.state.ar.aclose()

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

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        logger.error("store: %s", exc)
        return _error(503, f"the vector store failed: {exc}")

    @app.exception_handler(IndexerError)
    async def indexer_error(request: Request, exc: IndexerError) -> JSONResponse:
        logger.error("%s: %s", type(exc).__name__, exc)
        return _error(500, str(exc))

    def ar(request: Request) -> AsyncRetriever:
        return request.app.state.ar

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The model is loaded and the collection answers")
    async def readyz(request: Request) -> JSONResponse:
        try:
            points = await asyncio.wait_for(ar(request).count(), READY_TIMEOUT_S)
        except Exception as e:
            return _error(503, f"not ready: {type(e).__name__}: {e}")
        return JSONResponse({"status": "ready", "collection": retriever.store.collection, "points": points})

    @app.post("/search", response_model=SearchResponse, tags=["search"])
    async def search(body: SearchRequest, request: Request) -> dict[str, Any]:
        mode = body.mode or SearchMode(settings.retrieval.mode)
        hits = await ar(request).search(body.query, limit=body.limit, mode=mode, filter=body.filter)
        return {"mode": mode.value, "hits": [h.as_dict() for h in hits]}

    @app.post("/search/batch", response_model=BatchSearchResponse, tags=["search"])
    async def search_batch(body: BatchSearchRequest, request: Request) -> dict[str, Any]:
        if len(body.queries) > max_batch:
            raise ApiError(422, f"{len(body.queries)} queries in one batch; the limit is {max_batch}")
        mode = body.mode or SearchMode(settings.retrieval.mode)
        results = await ar(request).search_batch(body.queries, limit=body.limit, mode=mode, filter=body.filter)
        return {"mode": mode.value, "results": [[h.as_dict() for h in hits] for hits in results]}

    @app.post("/context", response_model=ContextResponse, tags=["search"])
    async def context(body: ContextRequest, request: Request) -> dict[str, Any]:
        """Search, then build a prompt context: merged passages with numbered citations within ``max_tokens``."""
        hits = await ar(request).search(body.query, limit=body.limit, mode=body.mode, filter=body.filter)
        ctx = await asyncio.to_thread(counted_context, hits, body.max_tokens)
        return {
            "text": ctx.text,
            "tokens": ctx.tokens,
            "citations": [c.as_dict() for c in ctx.citations],
            "dropped": ctx.dropped,
        }

    @app.post("/documents", response_model=UploadResponse, status_code=201, tags=["documents"])
    async def upload(
        request: Request,
        file: Annotated[UploadFile, File(description="a PDF, .txt or .md file")],
        doc_id: Annotated[str | None, Form(description="document id (default: the file name)")] = None,
        metadata: Annotated[str | None, Form(description="a JSON object stored under metadata.*")] = None,
    ) -> dict[str, Any]:
        """Ingest one file through the indexing pipeline; the same doc id again replaces its previous version."""
        name = PurePosixPath(file.filename or "").name
        if not name:
            raise ApiError(422, "the uploaded file has no name")
        if PurePosixPath(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise ApiError(415, f"unsupported file type {name!r}; upload a PDF, .txt or .md file")
        if doc_id is not None and not (doc_id.strip() and len(doc_id) <= MAX_DOC_ID_CHARS):
            raise ApiError(422, f"doc_id must be 1 to {MAX_DOC_ID_CHARS} characters, not blank")
        meta = _metadata(metadata)
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            raise ApiError(413, f"the file is over the limit of {max_upload} bytes")
        try:
            doc = await asyncio.to_thread(load_bytes, data, name, doc_id=doc_id or name, source=name, metadata=meta)
        except LoaderError as e:
            raise ApiError(422, str(e)) from e
        service = ar(request)
        async with request.app.state.write_lock:
            report = await asyncio.to_thread(ingest_documents, [doc], settings, service.encoder, service.store)
        [result] = report.files
        if result.status != "ok":
            raise ApiError(422, f"cannot ingest {name}: {result.error}")
        logger.info("uploaded %s as %s: %d chunks", name, doc.doc_id, result.chunks)
        return {
            "doc_id": doc.doc_id,
            "source": doc.source,
            "content_hash": doc.content_hash,
            "chunks": result.chunks,
            "tokens": result.tokens,
        }

    @app.delete("/documents/{doc_id:path}", response_model=DeleteResponse, tags=["documents"])
    async def delete_document(doc_id: str, request: Request) -> dict[str, Any]:
        """Delete a document: every chunk of every version, and its record."""
        service = ar(request)
        async with request.app.state.write_lock:
            n = await service.count(doc_filter(doc_id))
            removed = await asyncio.to_thread(delete_documents, service.store, [doc_id])
            if not removed and n == 0:
                raise ApiError(404, f"no document {doc_id!r} in collection {service.store.collection!r}")
        return {"doc_id": doc_id, "deleted": n}

    @app.get("/collections/{name}", response_model=CollectionResponse, tags=["collections"])
    async def collection(name: str, request: Request) -> dict[str, Any]:
        service = ar(request)
        if name != service.store.collection:
            raise ApiError(404, f"this service serves collection {service.store.collection!r}, not {name!r}")
        return {
            "name": name,
            "documents": await service.count(kind_filter(KIND_DOCUMENT)),
            "chunks": await service.count(kind_filter(KIND_CHUNK)),
            "points": await service.count(),
            "engine": engine,
            "vectors": retriever.shape,
        }

    return app


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ApiError(422, f"metadata is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ApiError(422, "metadata must be a JSON object")
    return value


def serve(settings: Settings, log_level: str = "info") -> None:
    """Open the model and the store, then serve until interrupted (one process: it owns the store)."""
    import uvicorn

    started = time.perf_counter()
    retriever = open_for_service(settings)
    logger.info("model and store open in %.1fs", time.perf_counter() - started)
    app = create_app(retriever)
    uvicorn.run(app, host=settings.service.host, port=settings.service.port, log_level=log_level, workers=1)
