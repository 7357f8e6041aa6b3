"""The service's routes: searches, context building, documents, the collection and health probes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from indexer.admin import collection_status, delete_document
from indexer.errors import DocumentBusy, LoaderError
from indexer.leases import LeaseTimings
from indexer.loaders import SUPPORTED_SUFFIXES
from indexer.modes import SearchMode
from indexer.pipeline import ingest_bytes
from retriever.service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    CollectionResponse,
    ContextRequest,
    ContextResponse,
    DeleteResponse,
    SearchRequest,
    SearchResponse,
    UploadResponse,
)
from retriever.service.state import ApiError, Service

logger = logging.getLogger(__name__)

MAX_DOC_ID_CHARS = 1024
READY_TIMEOUT_S = 5.0

health = APIRouter(tags=["health"])
search = APIRouter(tags=["search"])
documents = APIRouter(tags=["documents"])
collections = APIRouter(tags=["collections"])


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


# ------------------------------------------------------------------------------------------- health


@health.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", summary="The model is loaded and the collection answers")
async def readyz(service: Service) -> JSONResponse:
    try:
        points = await asyncio.wait_for(service.retriever.count(), READY_TIMEOUT_S)
    except Exception as e:
        return _error(503, f"not ready: {type(e).__name__}: {e}")
    return JSONResponse({"status": "ready", "collection": service.retriever.store.collection, "points": points})


# ------------------------------------------------------------------------------------------- search


def _mode(service: Service, mode: SearchMode | None) -> SearchMode:
    return mode or service.settings.retrieval.mode


@search.post("/search", response_model=SearchResponse)
async def search_one(body: SearchRequest, service: Service) -> dict[str, Any]:
    mode = _mode(service, body.mode)
    hits = await service.retriever.search(body.query, limit=body.limit, mode=mode, filter=body.filter)
    return {"mode": mode.value, "hits": [h.as_dict() for h in hits]}


@search.post("/search/batch", response_model=BatchSearchResponse)
async def search_batch(body: BatchSearchRequest, service: Service) -> dict[str, Any]:
    max_batch = service.settings.service.max_batch_queries
    if len(body.queries) > max_batch:
        raise ApiError(422, f"{len(body.queries)} queries in one batch; the limit is {max_batch}")
    mode = _mode(service, body.mode)
    results = await service.retriever.search_batch(body.queries, limit=body.limit, mode=mode, filter=body.filter)
    return {"mode": mode.value, "results": [[h.as_dict() for h in hits] for hits in results]}


@search.post("/context", response_model=ContextResponse)
async def context(body: ContextRequest, service: Service) -> dict[str, Any]:
    """Search, then build a prompt context: merged passages with numbered citations within ``max_tokens``."""
    hits = await service.retriever.search(body.query, limit=body.limit, mode=body.mode, filter=body.filter)
    ctx = await asyncio.to_thread(service.context, hits, body.max_tokens)
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
    except json.JSONDecodeError as e:
        raise ApiError(422, f"metadata is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ApiError(422, "metadata must be a JSON object")
    return value


@documents.post("/documents", response_model=UploadResponse, status_code=201)
async def upload(
    service: Service,
    file: Annotated[UploadFile, File(description="a PDF, .txt or .md file")],
    doc_id: Annotated[str | None, Form(description="document id (default: the file name)")] = None,
    metadata: Annotated[str | None, Form(description="a JSON object stored under metadata.*")] = None,
) -> dict[str, Any]:
    """Ingest one file through the indexing pipeline; the same doc id again replaces its previous version."""
    max_upload = service.settings.service.max_upload_bytes
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
    ar = service.retriever
    async with service.write_lock:
        try:
            doc, result = await asyncio.to_thread(
                ingest_bytes, data, name, service.settings, ar.encoder, ar.store, doc_id=doc_id, metadata=meta
            )
        except LoaderError as e:
            raise ApiError(422, str(e)) from e
    if result.status == "busy":  # another writer is changing this document now
        raise ApiError(409, f"cannot ingest {name} now: {result.error}; try again")
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


@documents.delete("/documents/{doc_id:path}", response_model=DeleteResponse)
async def delete(doc_id: str, service: Service) -> dict[str, Any]:
    """Delete a document: every chunk of every version, and its record."""
    store = service.retriever.store
    timings = LeaseTimings.from_settings(service.settings.ingest)
    async with service.write_lock:
        try:
            removed = await asyncio.to_thread(delete_document, store, doc_id, timings)
        except DocumentBusy as e:
            raise ApiError(409, f"{e}; try again") from e
    if removed is None:
        raise ApiError(404, f"no document {doc_id!r} in collection {store.collection!r}")
    return {"doc_id": doc_id, "deleted": removed}


# ------------------------------------------------------------------------------------------- collections


@collections.get("/collections/{name}", response_model=CollectionResponse)
async def collection(name: str, service: Service) -> dict[str, Any]:
    store = service.retriever.store
    if name != store.collection:
        raise ApiError(404, f"this service serves collection {store.collection!r}, not {name!r}")
    status = await asyncio.to_thread(collection_status, store)
    return {
        "name": name,
        "documents": status.documents,
        "chunks": status.chunks,
        "points": status.points,
        "engine": status.engine,
        "vectors": service.retriever.retriever.info.vectors_dict(),
    }
