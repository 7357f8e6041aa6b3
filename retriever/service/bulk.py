"""Routes that change many documents at once: delete by filter, and metadata updates without encoding.

Both take the search filters' forms (``retriever.filters``: the same parsing and checks) and match them
against chunk payloads (``metadata.*``, ``source``, ``doc_id``, ...). Each document is changed under its lease
(``indexer.admin``); one that another writer holds past ``busy_wait_seconds`` is left as it was and named
in a 409, after the others were changed: the same request again finishes the job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from indexer.admin import WhereReport, delete_where, set_metadata, update_metadata_where
from indexer.errors import DocumentBusy, InvalidInputError
from indexer.leases import LeaseTimings
from indexer.validation import check_doc_id, check_metadata
from retriever.filters import check_filter, parse_filter
from retriever.service.routes import errors, json_body
from retriever.service.schemas import _FILTER_HELP, FilterSpec, _Body
from retriever.service.state import ApiError, Service, ServiceState

bulk = APIRouter(
    tags=["documents"], responses=errors(400, 409, 413, 415, 422, 500, 503), dependencies=[Depends(json_body)]
)


class DeleteWhereRequest(_Body):
    filter: FilterSpec = Field(description=f"the documents with a chunk matching it: {_FILTER_HELP}")


class MetadataRequest(_Body):
    doc_id: str | None = Field(None, min_length=1, description="one document (or give `filter`)")
    filter: FilterSpec = Field(None, description=f"every document with a chunk matching it: {_FILTER_HELP}")
    metadata: dict[str, Any] = Field(
        description="the new user metadata (replaces the old), a JSON object (finite numbers, at most 64 KiB)"
    )


class WhereResponse(BaseModel):
    documents: list[str] = Field(description="the documents changed, by doc id")
    chunks: int = Field(description="their chunks deleted or updated")


def _filter(spec: FilterSpec) -> Any:
    flt = parse_filter(spec)
    check_filter(flt)
    if flt is None:
        raise InvalidInputError("a filter without conditions would change every document; name at least one")
    return flt


def _answer(report: WhereReport, verb: str) -> dict[str, Any]:
    if report.busy:
        shown = ", ".join(repr(d) for d in report.busy[:20]) + (" ..." if len(report.busy) > 20 else "")
        raise ApiError(
            409,
            f"{verb} {len(report.done)} documents; {len(report.busy)} others are being changed by another "
            f"writer now and were left as they were ({shown}): send the same request again",
        )
    return {"documents": list(report.done), "chunks": report.chunks}


def _timings(service: ServiceState) -> LeaseTimings:
    return LeaseTimings.from_settings(service.settings.ingest)


@bulk.post("/documents/delete", response_model=WhereResponse, summary="Delete every document matching a filter")
async def delete_matching(body: DeleteWhereRequest, service: Service) -> dict[str, Any]:
    """Delete every document with a chunk matching ``filter`` (every version's chunks, and its record)."""
    flt = _filter(body.filter)
    async with service.writing():
        report = await asyncio.to_thread(delete_where, service.retriever.store, flt, timings=_timings(service))
    service.metrics.deleted.inc(len(report.done))
    return _answer(report, "deleted")


@bulk.post(
    "/documents/metadata",
    response_model=WhereResponse,
    summary="Replace documents' user metadata without encoding them again",
    responses=errors(404),
)
async def update_metadata(body: MetadataRequest, service: Service) -> dict[str, Any]:
    """Replace the metadata of one document (``doc_id``) or of every document matching ``filter``: one
    payload update of the chunks of each document's current version; nothing is encoded again."""
    if (body.doc_id is None) == (body.filter is None):
        raise ApiError(422, "name the documents with doc_id or with filter (one of them)")
    metadata = check_metadata(body.metadata)
    store, timings = service.retriever.store, _timings(service)
    async with service.writing():
        if body.doc_id is None:
            flt = _filter(body.filter)
            report = await asyncio.to_thread(update_metadata_where, store, flt, metadata, timings=timings)
            return _answer(report, "updated")
        doc_id = check_doc_id(body.doc_id)
        try:
            chunks = await asyncio.to_thread(set_metadata, store, doc_id, metadata, timings=timings)
        except DocumentBusy as e:
            raise ApiError(409, f"cannot update {doc_id[:200]!r} now: {e}; try again") from e
    if chunks is None:
        raise ApiError(404, f"no document {doc_id[:200]!r} in collection {store.collection!r}")
    return {"documents": [doc_id], "chunks": chunks}
