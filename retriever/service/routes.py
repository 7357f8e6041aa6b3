"""The service's routes: searches, context building, documents, the collection and health probes.

Each route declares every answer it can give (``errors``), so that the OpenAPI schema tells the truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
from email.message import Message
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from indexer.admin import collection_status, delete_document
from indexer.leases import LeaseTimings
from indexer.loaders import SUPPORTED_SUFFIXES
from indexer.pipeline import ingest_bytes
from indexer.validation import check_doc_id, check_file_name, check_metadata
from retriever.api import SearchOptions
from retriever.context import Context
from retriever.service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    CollectionResponse,
    ContextRequest,
    ContextResponse,
    DeleteResponse,
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    SearchRequest,
    SearchResponse,
    UploadResponse,
)
from retriever.service.state import ApiError, Service

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 5.0

_DESCRIPTIONS = {
    400: "The body cannot be parsed (malformed JSON or multipart)",
    401: "Missing or wrong API key (X-API-Key header)",
    404: "No such document or collection",
    409: "Another writer is changing this document now; try again",
    413: "The request body, or the uploaded file, is over the limit",
    415: "Unsupported content type or file type",
    422: "The request is invalid; `detail` says what is wrong",
    500: "Unexpected error; the details are in the service log",
    503: "The vector store is unavailable or failed; try again later",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers: each is ``{"detail": "..."}``."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def _media_type(request: Request) -> str:
    message = Message()
    message["content-type"] = request.headers.get("content-type", "")
    return message.get_content_type() if request.headers.get("content-type") else ""


async def json_body(request: Request) -> None:
    """JSON routes take ``application/json`` (or ``+json``) bodies only."""
    media = _media_type(request)
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        raise ApiError(415, f"send the body as JSON with content-type application/json, not {media or 'none'!r}")


async def multipart_body(request: Request) -> None:
    media = _media_type(request)
    if media != "multipart/form-data":
        raise ApiError(415, f"upload the file as multipart/form-data, not {media or 'none'!r}")


# Every route may answer 413 (any body is bounded) and 500; JSON routes also 400, 415 and 422.
_ALWAYS = (413, 500)
health = APIRouter(tags=["health"], responses=errors(*_ALWAYS))
search = APIRouter(tags=["search"], responses=errors(400, 415, 422, 503, *_ALWAYS), dependencies=[Depends(json_body)])
documents = APIRouter(tags=["documents"], responses=errors(503, *_ALWAYS))
collections = APIRouter(tags=["collections"], responses=errors(404, 503, *_ALWAYS))
observability = APIRouter(tags=["observability"], responses=errors(*_ALWAYS))


# ------------------------------------------------------------------------------------------- health


@health.get("/healthz", summary="The process is up", response_model=HealthResponse)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get(
    "/readyz",
    summary="The model is loaded and the collection answers",
    response_model=ReadyResponse,
    responses=errors(503),
)
async def readyz(service: Service) -> dict[str, Any]:
    try:
        points = await asyncio.wait_for(service.retriever.count(), READY_TIMEOUT_S)
    except Exception as e:
        logger.warning("not ready: %s: %s", type(e).__name__, e)
        raise ApiError(503, "not ready: the collection does not answer (the details are in the service log)") from e
    if service.keys is not None:  # tenants: the collection's size is not told to callers without a key
        points = 0
    return {"status": "ready", "collection": service.retriever.store.collection, "points": points}


@observability.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the metrics"}},
)
async def metrics(request: Request) -> Response:
    """Requests and latency by route, method, mode and status; query encoding; queues; ingest; store errors."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------------------------------- search


def search_options(body: SearchRequest | BatchSearchRequest, service: Service) -> SearchOptions:
    """The one place where a request body becomes a search (what the caller may choose, and nothing else)."""
    return SearchOptions(
        limit=body.limit,
        mode=body.mode or service.settings.retrieval.mode,
        filter=body.filter,
        group_by=body.group_by,
        group_size=body.group_size,
        diversity=body.diversity,
    )


@search.post("/search", response_model=SearchResponse)
async def search_one(body: SearchRequest, service: Service) -> dict[str, Any]:
    options = search_options(body, service)
    [hits] = await service.search([body.query], options)
    return {"mode": service.mode_of(options).value, "hits": [h.as_dict() for h in hits]}


@search.post("/search/batch", response_model=BatchSearchResponse)
async def search_batch(body: BatchSearchRequest, service: Service) -> dict[str, Any]:
    max_batch = service.settings.service.max_batch_queries
    if len(body.queries) > max_batch:
        raise ApiError(422, f"{len(body.queries)} queries in one batch; the limit is {max_batch}")
    options = search_options(body, service)
    results = await service.search(body.queries, options)
    return {"mode": service.mode_of(options).value, "results": [[h.as_dict() for h in hits] for hits in results]}


@search.post("/context", response_model=ContextResponse)
async def context(body: ContextRequest, service: Service) -> dict[str, Any]:
    """Search, then build a prompt context: merged passages with numbered citations within ``max_tokens``."""
    options = search_options(body, service)
    ctx = await service.context_for(body.query, options, body.max_tokens, body.expand, body.neighbours)
    return context_answer(ctx)


def context_answer(ctx: Context) -> dict[str, Any]:
    return {
        "text": ctx.text,
        "tokens": ctx.tokens,
        "citations": [c.as_dict() for c in ctx.citations],
        "dropped": ctx.dropped,
    }


# ------------------------------------------------------------------------------------------- documents


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(422, "metadata is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or a number too long to convert
        raise ApiError(422, f"metadata is not valid JSON: {e}") from e
    return check_metadata(value)


@documents.post(
    "/documents",
    response_model=UploadResponse,
    status_code=201,
    dependencies=[Depends(multipart_body)],
    responses=errors(400, 409, 415, 422),
)
async def upload(
    service: Service,
    file: Annotated[UploadFile, File(description="a PDF, Word (.docx), PowerPoint (.pptx), HTML, .txt or .md file")],
    doc_id: Annotated[
        str | None, Form(description="document id (default: the file name); no control characters")
    ] = None,
    metadata: Annotated[
        str | None, Form(description="a JSON object stored under metadata.* (finite numbers, at most 64 KiB)")
    ] = None,
) -> dict[str, Any]:
    """Ingest one file through the indexing pipeline; the same doc id again replaces its previous version.

    The same bytes again under the same doc id are not encoded again: the stored version takes the new
    metadata (status "unchanged").
    """
    max_upload = service.settings.service.max_upload_bytes
    name = PurePosixPath(file.filename or "").name
    if not name:
        raise ApiError(422, "the uploaded file has no name")
    check_file_name(name)
    if PurePosixPath(name).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ApiError(415, f"unsupported file type {name!r}; upload one of {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    if doc_id is not None:
        check_doc_id(doc_id)
    meta = _metadata(metadata)
    data = await file.read(max_upload + 1)
    if len(data) > max_upload:
        raise ApiError(413, f"the file is over the limit of {max_upload} bytes")
    ar = service.retriever
    async with service.writing():
        doc, result = await asyncio.to_thread(
            ingest_bytes, data, name, service.settings, ar.encoder, ar.store, doc_id=doc_id, metadata=meta
        )
    service.metrics.documents.labels(result.status).inc()
    if result.status == "ok":
        service.metrics.chunks.inc(result.chunks)
    if result.status == "busy":  # another writer is changing this document now
        raise ApiError(409, f"cannot ingest {name} now: {result.error}; try again")
    if result.status not in ("ok", "unchanged"):
        raise ApiError(422, f"cannot ingest {name}: {result.error or result.status}")
    logger.info("uploaded %s as %s (%s): %d chunks", name, doc.doc_id, result.status, result.chunks)
    return {
        "status": "indexed" if result.status == "ok" else "unchanged",
        "doc_id": doc.doc_id,
        "source": doc.source,
        "content_hash": doc.content_hash,
        "chunks": result.chunks,
        "tokens": result.tokens,
    }


@documents.delete("/documents/{doc_id:path}", response_model=DeleteResponse, responses=errors(404, 409))
async def delete(doc_id: str, service: Service) -> dict[str, Any]:
    """Delete a document: every chunk of every version, and its record."""
    store = service.retriever.store
    timings = LeaseTimings.from_settings(service.settings.ingest)
    async with service.writing():  # DocumentBusy (another writer holds it past busy_wait_seconds): 409
        removed = await asyncio.to_thread(delete_document, store, doc_id, timings)
    if removed is not None:
        service.metrics.deleted.inc()
    if removed is None:
        raise ApiError(404, f"no document {doc_id[:200]!r} in collection {store.collection!r}")
    return {"doc_id": doc_id, "deleted": removed}


# ------------------------------------------------------------------------------------------- collections


@collections.get("/collections/{name}", response_model=CollectionResponse)
async def collection(name: str, service: Service) -> dict[str, Any]:
    store = service.retriever.store
    if name != store.collection:
        raise ApiError(404, f"this service serves collection {store.collection!r}, not {name[:200]!r}")
    status = await asyncio.to_thread(collection_status, store)
    return {
        "name": name,
        "documents": status.documents,
        "chunks": status.chunks,
        "points": status.points,
        "engine": status.engine,
        "vectors": service.retriever.retriever.info.vectors_dict(),
    }
