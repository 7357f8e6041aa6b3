"""Request and response bodies of the HTTP service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from indexer.modes import MAX_LIMIT, MAX_QUERY_CHARS, SearchMode
from indexer.store.groups import MAX_GROUP_FIELD_CHARS, MAX_GROUP_SIZE

FilterSpec = dict[str, Any] | list[str] | str | None
_FILTER_HELP = (
    '{"doc_id": "a.pdf", "page": {"gte": 2}}, ["page>=2"], or Qdrant\'s {"must": [...]} syntax; at most 1,000 '
    "conditions, 10,000 listed values, 8 levels of nested filters"
)


_JSON_KINDS = {bool: "a boolean", str: "a string", type(None): "null", list: "an array", dict: "an object"}


def _json_integer(value: Any) -> Any:
    """Integers are JSON numbers without a fraction (5 or 5.0, as JSON Schema has it): "5" and true are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise PydanticCustomError(
            "json_integer", "Input should be an integer (a JSON number), not {kind}", {"kind": kind}
        )
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
StrictLimit = Annotated[JsonInt, Field(ge=1, le=MAX_LIMIT, description=f"hits to return, 1 to {MAX_LIMIT}")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["late delivery penalty"])]


class _Options(_Body):
    """What every search may choose; each None takes the configured default."""

    limit: StrictLimit | None = Field(None, description="hits to return, or groups with group_by (default from config)")
    mode: SearchMode | None = Field(None, description="retrieval mode (default from config)")
    filter: FilterSpec = Field(None, description=_FILTER_HELP)
    group_by: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_GROUP_FIELD_CHARS,
        description="results per document: group hits by this payload field (e.g. doc_id); limit then counts "
        "groups, and the hits come group by group, best group first, each with its `group`",
        examples=["doc_id"],
    )
    group_size: JsonInt | None = Field(None, ge=1, le=MAX_GROUP_SIZE, description="hits per group (default 1)")
    diversity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="MMR over the dense vector after the mode: 0 relevance only, 1 difference only; scores are "
        "then dense cosines",
    )


class SearchRequest(_Options):
    query: Query


class BatchSearchRequest(_Options):
    queries: list[Query] = Field(min_length=1, description="each checked as a single query is")


class ContextRequest(SearchRequest):
    max_tokens: JsonInt = Field(2000, ge=1, le=1_000_000, description="token budget of the context text")
    expand: Literal["none", "section", "neighbours"] = Field(
        "none",
        description="grow each passage within the budget: to its whole section (its heading path), or by up to "
        "`neighbours` chunks on each side",
    )
    neighbours: JsonInt = Field(1, ge=1, le=50, description="chunks on each side, with expand = neighbours")


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
    group: str | int | None = Field(None, description="the grouping field's value, in a search with group_by")


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
    status: Literal["indexed", "unchanged"] = Field(
        description="indexed: this version was chunked and encoded; unchanged: the same bytes were already "
        "indexed under this doc id, and only the metadata and source were updated"
    )
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


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    collection: str
    points: int


class ErrorResponse(BaseModel):
    """Every error: what was wrong with the request (4xx), or what failed (5xx; the details are in the log)."""

    detail: str
