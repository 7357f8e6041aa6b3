"""Request and response bodies of the HTTP service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from indexer.modes import MAX_QUERY_CHARS, Limit, SearchMode

FilterSpec = dict[str, Any] | list[str] | str | None
_FILTER_HELP = '{"doc_id": "a.pdf", "page": {"gte": 2}}, ["page>=2"], or Qdrant\'s {"must": [...]} syntax'


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["late delivery penalty"])
    limit: Limit | None = Field(None, description="hits to return (default from config)")
    mode: SearchMode | None = Field(None, description="retrieval mode (default from config)")
    filter: FilterSpec = Field(None, description=_FILTER_HELP)


class BatchSearchRequest(_Body):
    queries: list[str] = Field(min_length=1)
    limit: Limit | None = None
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
    headings: list[str] = Field(default_factory=list, description="the heading path of the chunk's section")


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
    headings: list[str] = Field(default_factory=list)


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


class ErrorResponse(BaseModel):
    detail: str
