"""Search filters: the forms users write, parsed into a filter and checked before any engine sees it.

Pure functions. ``parse_filter`` reads every accepted form; ``check_filter`` refuses, with a message that
says what is wrong, what an engine would fail on (numbers it cannot hold, text that is not Unicode) or
spend unbounded time on (filters of unbounded size or depth). ``Retriever.plan`` runs both, so the
Python API, the CLI and the HTTP service refuse the same filters.

The simple forms become engine-neutral filters (``indexer.conditions``); only a filter in Qdrant's own
syntax is read by qdrant-client (``retriever.qdrant_syntax``, imported for that alone: 2 s of CPU).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from indexer import conditions as nc
from indexer.errors import QueryError
from indexer.schema import KEYWORD_FIELDS
from indexer.validation import INT64_MAX, INT64_MIN, is_valid_unicode, show_number

__all__ = ["check_filter", "parse_filter"]

MAX_FILTER_ITEMS = 20_000  # JSON values in a filter as written (checked before it is parsed)
MAX_FILTER_JSON_DEPTH = 32  # nesting of the JSON as written
MAX_FILTER_DEPTH = 8  # filters within filters (must/should/must_not/min_should, nested conditions)
MAX_FILTER_CONDITIONS = 1_000
MAX_FILTER_VALUES = 10_000  # values in all the lists of a filter (match any/except, has_id, polygons)

# Chunk payload fields the indexer writes; none is a boolean, and the engines match `true` as 1.
NON_BOOLEAN_FIELDS = KEYWORD_FIELDS | {
    "text",
    "chunk_index",
    "pages",
    "page",
    "start",
    "end",
    "token_count",
    "headings",
}
_QDRANT_KEYS = {"must", "should", "must_not", "min_should"}


# ------------------------------------------------------------------------------------------ parsing

_EXPRESSION = re.compile(r"^\s*(?P<key>[^=!<>\s]+)\s*(?P<op>>=|<=|!=|=|>|<)(?P<value>.*)$", re.S)
_RANGE_KEYS = {"gte", "gt", "lte", "lt"}


def _scalar(key: str, raw: str) -> Any:
    """``page=3`` means the integer 3; ``doc_id=2025`` stays the string it is stored as."""
    if key in KEYWORD_FIELDS:
        return raw
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)


def _condition(key: str, value: Any) -> nc.Condition:
    if not isinstance(key, str) or not key:
        raise QueryError(f"filter keys must be non-empty strings, got {key!r}")
    if isinstance(value, Mapping):
        unknown = set(value) - _RANGE_KEYS
        if unknown or not value:
            raise QueryError(f"filter on {key!r}: a range takes gte/gt/lte/lt, got {sorted(value) or '{}'}")
        for bound in value.values():
            if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                raise QueryError(f"filter on {key!r}: range bounds must be numbers, got {type(bound).__name__}")
            if isinstance(bound, int) and abs(bound) >= 2**1023 or not math.isfinite(bound):
                raise QueryError(f"filter on {key!r}: range bounds must be finite numbers, got {show_number(bound)}")
        return nc.Range(key, **{bound: float(v) for bound, v in value.items()})
    if isinstance(value, list):
        all_str = all(isinstance(v, str) for v in value)
        all_int = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not value or not (all_str or all_int):
            raise QueryError(f"filter on {key!r}: a list must hold only strings or only integers")
        return nc.MatchAny(key, tuple(value))
    if isinstance(value, (str, int, bool)):
        return nc.Match(key, value)
    raise QueryError(f"filter on {key!r}: unsupported value {value!r}")


def parse_filter(spec: Any) -> nc.AnyFilter | None:
    """A filter from the forms users write: engine-neutral (``indexer.conditions``), or a qdrant-client
    ``models.Filter`` for Qdrant's own syntax.

    - ``None`` or ``{}``: no filter
    - an ``indexer.conditions.Filter`` or a ``models.Filter``, or a dict in Qdrant's own filter syntax
      (``{"must": [...]}``)
    - a simple dict, all conditions required: ``{"source": "a.pdf", "pages": [1, 2], "page": {"gte": 3}}``
      (a list means any of; a dict of gte/gt/lte/lt means a range)
    - a list of expressions ``["source=a.pdf", "page>=3", "doc_id!=x"]`` (CLI form), or a JSON string
      of any of the above

    Raises ``QueryError`` for what it cannot read, and for filters over the size limits (checked on the
    form as written, before anything is built from it). Check the result with ``check_filter``.
    """
    if spec is None or spec == {} or spec == []:
        return None
    if isinstance(spec, nc.Filter) or nc.is_qdrant_filter(spec):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith(("{", "[")):
            try:
                return parse_filter(json.loads(text))
            except RecursionError:
                raise QueryError(f"the filter is nested more than {MAX_FILTER_JSON_DEPTH} levels deep") from None
            except json.JSONDecodeError as e:
                raise QueryError(f"filter is not valid JSON: {e}") from e
        return parse_filter([text])
    qdrant_syntax = isinstance(spec, Mapping) and bool(set(spec) & _QDRANT_KEYS)
    _check_written(spec, qdrant_syntax)
    if isinstance(spec, Mapping):
        if qdrant_syntax:
            from retriever.qdrant_syntax import parse_qdrant_filter

            return parse_qdrant_filter(spec)
        return nc.Filter(must=tuple(_condition(k, v) for k, v in spec.items()))
    if isinstance(spec, (list, tuple)):
        must: list[nc.Condition] = []
        must_not: list[nc.Condition] = []
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
        return nc.Filter(must=tuple(must), must_not=tuple(must_not))
    raise QueryError(f"unsupported filter {spec!r}")


def _check_written(spec: Any, qdrant_syntax: bool) -> None:
    """Size, depth and text of a filter as written (JSON-like values), before anything is built from it.

    In Qdrant's syntax a boolean can only be a match value: anywhere else (a range bound, a count) it
    would be read as the number 1 or 0.
    """
    items = 0
    stack: list[tuple[Any, int, Any]] = [(spec, 1, None)]
    while stack:
        value, depth, key = stack.pop()
        items += 1
        if items > MAX_FILTER_ITEMS:
            raise QueryError(f"the filter is too large: it holds more than {MAX_FILTER_ITEMS} values")
        if depth > MAX_FILTER_JSON_DEPTH:
            raise QueryError(f"the filter is nested more than {MAX_FILTER_JSON_DEPTH} levels deep")
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, bool):
            if qdrant_syntax and key != "value":
                raise QueryError(
                    f"filter: {str(value).lower()} at {key!r} is not a number; booleans only match, as "
                    f'{{"match": {{"value": {str(value).lower()}}}}}'
                )
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(k, str):
                    check_text(k)
                stack.append((v, depth + 1, k))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1, key) for v in value)


# ------------------------------------------------------------------------------------------ checking


def check_text(value: str) -> None:
    if not is_valid_unicode(value):
        raise QueryError("filter text must be valid Unicode (it holds a lone surrogate)")


def check_int(value: int, where: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise QueryError(f"filter {where}: {show_number(value)} is beyond 64 bits")


def check_key(key: Any) -> None:
    if not isinstance(key, str) or not key.strip():
        raise QueryError("filter keys must not be empty")
    check_text(key)


class Budget:
    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def condition(self) -> None:
        self.conditions += 1
        if self.conditions > MAX_FILTER_CONDITIONS:
            raise QueryError(f"the filter has more than {MAX_FILTER_CONDITIONS} conditions")

    def take(self, n: int) -> None:
        self.values += n
        if self.values > MAX_FILTER_VALUES:
            raise QueryError(f"the filter lists more than {MAX_FILTER_VALUES} values")


def check_filter(flt: nc.AnyFilter | None) -> None:
    """Refuse, before any engine sees them, filters the engines would fail on rather than answer.

    Every number is range-checked (finite floats, integers within 64 bits, non-negative counts,
    ``min_should.min_count`` within its conditions, coordinates on the globe), booleans match only
    fields that can hold them, point ids are UUIDs, and size and depth are bounded.
    """
    if flt is not None:
        check_part(flt, 1, Budget())


def check_part(c: Any, depth: int, budget: Budget) -> None:
    """One condition of a filter (a filter itself at ``depth``), ours or one in Qdrant's syntax."""
    if not isinstance(c, nc.NEUTRAL):  # qdrant-client's, from a filter in Qdrant's syntax
        from retriever.qdrant_syntax import check_qdrant_part

        check_qdrant_part(c, depth, budget)
        return
    if isinstance(c, nc.Filter):
        if depth > MAX_FILTER_DEPTH:
            raise QueryError(f"the filter nests filters more than {MAX_FILTER_DEPTH} levels deep")
        for sub in (*c.must, *c.should, *c.must_not):
            check_part(sub, depth + 1, budget)
        return
    budget.condition()
    if isinstance(c, nc.Match):
        check_key(c.key)
        check_match_value(c.key, c.value)
    elif isinstance(c, nc.MatchAny):
        check_key(c.key)
        check_match_values(c.key, c.values, budget)
    elif isinstance(c, nc.Range):
        check_key(c.key)
        check_range(c.key, c)
    elif isinstance(c, nc.HasId):
        check_ids(c.ids, budget)
    elif isinstance(c, nc.IsEmpty):
        check_key(c.key)


def check_match_value(key: str, value: Any) -> None:
    if isinstance(value, bool):
        if key in NON_BOOLEAN_FIELDS:
            raise QueryError(f"filter on {key!r}: it holds numbers or text, not booleans")
    elif isinstance(value, int):
        check_int(value, f"on {key!r}")
    else:
        check_text(value)


def check_match_values(key: str, values: Sequence[Any], budget: Budget) -> None:
    budget.take(len(values))
    for v in values:
        if isinstance(v, int):
            check_int(v, f"on {key!r}")
        else:
            check_text(v)


def check_range(key: str, r: Any) -> None:
    for name in ("gte", "gt", "lte", "lt"):
        bound = getattr(r, name)
        if bound is not None and not math.isfinite(bound):
            raise QueryError(f"filter on {key!r}: range.{name} must be a finite number, got {bound}")


def check_ids(ids: Sequence[Any], budget: Budget) -> None:
    budget.take(len(ids))
    for point_id in ids:
        try:
            uuid.UUID(str(point_id))
        except ValueError:
            shown = show_number(point_id) if isinstance(point_id, int) else repr(str(point_id)[:80])
            raise QueryError(f"has_id: point ids are UUIDs, got {shown}") from None
