"""Query building: pure functions from query vectors to one Qdrant Query API request.

Requests are qdrant-client models; the server and local mode take them as they are, and the Edge
store translates them, so every engine runs the same request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from qdrant_client import models

from indexer.errors import QueryError
from indexer.models import Embedding
from indexer.schema import COLBERT, DENSE, PAYLOAD_INDEXES, SPARSE


class SearchMode(str, Enum):
    DENSE = "dense"  # cosine on the dense vector
    SPARSE = "sparse"  # dot product of learned lexical weights
    HYBRID = "hybrid"  # dense + sparse prefetch, fused by RRF
    HYBRID_DBSF = "hybrid_dbsf"  # dense + sparse prefetch, fused by distribution-based score fusion
    HYBRID_COLBERT = "hybrid_colbert"  # the RRF-fused candidates reranked by ColBERT MAX_SIM
    COLBERT = "colbert"  # dense candidates reranked by ColBERT MAX_SIM

    @classmethod
    def parse(cls, value: str | SearchMode) -> SearchMode:
        try:
            return cls(value)
        except ValueError:
            raise QueryError(f"unknown mode {value!r}; choose one of {', '.join(m.value for m in cls)}") from None

    @property
    def needs_colbert(self) -> bool:
        return self in (SearchMode.HYBRID_COLBERT, SearchMode.COLBERT)


def build_request(
    mode: SearchMode | str,
    query: Embedding,
    *,
    limit: int = 10,
    prefetch_limit: int = 100,
    rrf_k: int = 60,
    rrf_weights: Sequence[float] | None = None,
    flt: models.Filter | None = None,
) -> models.QueryRequest:
    """The whole search, candidates and fusion included, as one request.

    The filter is applied inside every prefetch (so fusion and reranking see only matching points)
    and again at the top level. Each prefetch fetches ``max(prefetch_limit, limit)`` candidates.
    """
    mode = SearchMode.parse(mode)
    if limit < 1:
        raise QueryError(f"limit must be at least 1, got {limit}")
    depth = max(prefetch_limit, limit)
    dense_q = [float(x) for x in query.dense]
    sparse_q = models.SparseVector(indices=list(query.sparse.indices), values=list(query.sparse.values))

    def leg(vector: Any, using: str) -> models.Prefetch:
        return models.Prefetch(query=vector, using=using, filter=flt, limit=depth)

    def fused() -> list[models.Prefetch]:
        return [leg(dense_q, DENSE), leg(sparse_q, SPARSE)]

    rrf = models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=list(rrf_weights) if rrf_weights else None))
    common: dict[str, Any] = {"filter": flt, "limit": limit, "with_payload": True}
    if mode is SearchMode.DENSE:
        return models.QueryRequest(query=dense_q, using=DENSE, **common)
    if mode is SearchMode.SPARSE:
        return models.QueryRequest(query=sparse_q, using=SPARSE, **common)
    if mode is SearchMode.HYBRID:
        return models.QueryRequest(prefetch=fused(), query=rrf, **common)
    if mode is SearchMode.HYBRID_DBSF:
        return models.QueryRequest(prefetch=fused(), query=models.FusionQuery(fusion=models.Fusion.DBSF), **common)
    if query.colbert is None:
        raise QueryError(f"mode {mode.value} needs the query's ColBERT vectors")
    colbert_q = [[float(x) for x in row] for row in query.colbert]
    if mode is SearchMode.HYBRID_COLBERT:
        candidates = models.Prefetch(prefetch=fused(), query=rrf, filter=flt, limit=depth)
    else:
        candidates = leg(dense_q, DENSE)
    return models.QueryRequest(prefetch=[candidates], query=colbert_q, using=COLBERT, **common)


# ------------------------------------------------------------------------------------------ filters

_EXPRESSION = re.compile(r"^\s*(?P<key>[^=!<>\s]+)\s*(?P<op>>=|<=|!=|=|>|<)(?P<value>.*)$", re.S)
_RANGE_KEYS = {"gte", "gt", "lte", "lt"}
_KEYWORD_FIELDS = {k for k, v in PAYLOAD_INDEXES.items() if v == models.PayloadSchemaType.KEYWORD}


def _scalar(key: str, raw: str) -> Any:
    """``page=3`` means the integer 3; ``doc_id=2025`` stays the string it is stored as."""
    if key in _KEYWORD_FIELDS:
        return raw
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)


def _condition(key: str, value: Any) -> models.FieldCondition:
    if not isinstance(key, str) or not key:
        raise QueryError(f"filter keys must be non-empty strings, got {key!r}")
    if isinstance(value, Mapping):
        unknown = set(value) - _RANGE_KEYS
        if unknown or not value:
            raise QueryError(f"filter on {key!r}: a range takes gte/gt/lte/lt, got {sorted(value) or '{}'}")
        for bound in value.values():
            if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                raise QueryError(f"filter on {key!r}: range bounds must be numbers, got {bound!r}")
        return models.FieldCondition(key=key, range=models.Range(**value))
    if isinstance(value, list):
        if not value or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise QueryError(f"filter on {key!r}: a list must hold strings or integers")
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    if isinstance(value, (str, int, bool)):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    raise QueryError(f"filter on {key!r}: unsupported value {value!r}")


def parse_filter(spec: Any) -> models.Filter | None:
    """A Qdrant filter from the forms users write.

    - ``None`` or ``{}``: no filter
    - a ``models.Filter``, or a dict in Qdrant's own filter syntax (``{"must": [...]}``)
    - a simple dict, all conditions required: ``{"source": "a.pdf", "pages": [1, 2], "page": {"gte": 3}}``
      (a list means any of; a dict of gte/gt/lte/lt means a range)
    - a list of expressions ``["source=a.pdf", "page>=3", "doc_id!=x"]`` (CLI form), or a JSON string
      of any of the above
    """
    if spec is None or spec == {} or spec == []:
        return None
    if isinstance(spec, models.Filter):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith(("{", "[")):
            try:
                return parse_filter(json.loads(text))
            except json.JSONDecodeError as e:
                raise QueryError(f"filter is not valid JSON: {e}") from e
        return parse_filter([text])
    if isinstance(spec, Mapping):
        if set(spec) & {"must", "should", "must_not", "min_should"}:
            try:
                return models.Filter.model_validate(spec)
            except Exception as e:
                raise QueryError(f"invalid Qdrant filter: {e}") from e
        return models.Filter(must=[_condition(k, v) for k, v in spec.items()])
    if isinstance(spec, (list, tuple)):
        must: list[Any] = []
        must_not: list[Any] = []
        for expr in spec:
            if not isinstance(expr, str):
                raise QueryError(f"filter expressions must be strings like 'page>=2', got {expr!r}")
            m = _EXPRESSION.match(expr)
            if not m or not m["value"].strip():
                raise QueryError(f"cannot read filter {expr!r}; write KEY=VALUE, KEY!=VALUE or KEY>=NUMBER")
            key, op = m["key"], m["op"]
            value = _scalar(key, m["value"].strip())
            if op in ("=", "!="):
                (must if op == "=" else must_not).append(_condition(key, value))
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise QueryError(f"filter {expr!r}: {op} needs a number")
                bound = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[op]
                must.append(_condition(key, {bound: value}))
        return models.Filter(must=must or None, must_not=must_not or None)
    raise QueryError(f"unsupported filter {spec!r}")
