"""Filters are checked before any engine sees them (pure): numbers in range, booleans only where they mean
a boolean, text that is Unicode, bounded size and depth. The same checks run for the Python API, the CLI and
the service (``Retriever.plan``)."""

from __future__ import annotations

import math
import uuid

import pytest
from qdrant_client import models

from indexer import conditions as nc
from indexer.errors import QueryError
from retriever.api import check_query
from retriever.filters import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_ITEMS,
    MAX_FILTER_VALUES,
    check_filter,
    parse_filter,
)

PAGE_1 = {"key": "page", "match": {"value": 1}}
NORTH_OF_THE_POLE = {"lon": 0, "lat": 91}
ORIGIN = {"lon": 0, "lat": 0}


def checked(spec: object) -> nc.AnyFilter | None:
    flt = parse_filter(spec)
    check_filter(flt)
    return flt


def min_should(count: object, n: int = 1) -> dict:
    return {"min_should": {"conditions": [PAGE_1] * n, "min_count": count}}


def nested_filter(depth: int) -> dict:
    spec: dict = {"must": [PAGE_1]}
    for _ in range(depth - 1):
        spec = {"must": [spec]}
    return spec


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (min_should(-1), "min_count must be between 0 and the number of its conditions"),
        (min_should(2**64), "min_count"),
        (min_should(2**70), "min_count"),
        (min_should(3, n=2), r"\(2\), got 3"),
        ({"must": [{"has_id": [2**70]}]}, "point ids are UUIDs"),
        ({"must": [{"has_id": [-1]}]}, "point ids are UUIDs"),
        ({"must": [{"key": "page", "match": {"value": 2**63}}]}, "beyond 64 bits"),
        ({"must": [{"key": "page", "match": {"any": [1, -(2**63) - 1]}}]}, "beyond 64 bits"),
        ({"must": [{"key": "page", "match": {"except": [2**64]}}]}, "beyond 64 bits"),
        ({"must": [{"key": "page", "range": {"gte": math.nan}}]}, "range.gte must be a finite number"),
        ({"must": [{"key": "page", "range": {"lt": math.inf}}]}, "range.lt must be a finite number"),
        ({"page": {"gte": -math.inf}}, "finite numbers"),
        (["page>=nan"], "finite numbers"),
        (["page<inf"], "finite numbers"),
        (["page=1e999"], "unsupported value inf"),
        ({"page": 2**64}, "beyond 64 bits"),
        ({"must": [{"key": "pages", "values_count": {"gte": -1}}]}, "values_count.gte must be a count"),
        ({"must": [{"key": "g", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": -1}}]}, "geo_radius"),
        ({"must": [{"key": "g", "geo_radius": {"center": {"lon": 500, "lat": 0}, "radius": 1}}]}, "lon in -180"),
        (
            {"must": [{"key": "g", "geo_bounding_box": {"top_left": NORTH_OF_THE_POLE, "bottom_right": ORIGIN}}]},
            "lat in -90..90",
        ),
    ],
)
def test_numbers_an_engine_cannot_take_are_refused(spec: object, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        checked(spec)


def test_numbers_in_range_pass() -> None:
    assert checked(min_should(0)) is not None and checked(min_should(2, n=2)) is not None
    assert checked({"must": [{"key": "page", "match": {"value": 2**63 - 1}}]}) is not None
    assert checked({"must": [{"key": "page", "range": {"gte": 2**70}}]}) is not None  # a float bound
    assert checked({"must": [{"has_id": [str(uuid.uuid4())]}]}) is not None
    assert checked(["page>=1.5", "page<3"]) is not None


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"page": True}, "holds numbers or text, not booleans"),
        ({"chunk_index": False}, "not booleans"),
        (["page=true"], "not booleans"),
        ({"must": [{"key": "page", "match": {"value": True}}]}, "not booleans"),
        ({"must": [{"key": "page", "range": {"gte": True}}]}, "is not a number; booleans only match"),
        ({"min_should": {"conditions": [PAGE_1], "min_count": True}}, "is not a number"),
        ({"must": [{"key": "x", "values_count": {"lt": False}}]}, "is not a number"),
        ({"page": {"gte": True}}, "range bounds must be numbers"),
        ({"page": [True, 1]}, "only strings or only integers"),
    ],
)
def test_booleans_are_not_numbers(spec: object, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        checked(spec)


def test_booleans_still_match_fields_that_can_hold_them() -> None:
    flt = checked({"metadata.public": True})
    assert flt == nc.Filter(must=(nc.Match("metadata.public", True),))
    assert checked({"must": [{"key": "metadata.public", "match": {"value": False}}]}) is not None


@pytest.mark.parametrize(
    "spec",
    [
        {"doc_id": "a\ud800"},
        {"must": [{"key": "doc_id", "match": {"any": ["ok", "\udfff"]}}]},
        {"must": [{"key": "text", "match": {"text": "\ud83d"}}]},
        {"\ud800": 1},
        ["doc_id=\ud800"],
    ],
)
def test_text_that_is_not_unicode_is_refused(spec: object) -> None:
    with pytest.raises(QueryError, match="valid Unicode"):
        checked(spec)


def test_filters_are_bounded_before_they_are_built() -> None:
    with pytest.raises(QueryError, match=f"more than {MAX_FILTER_ITEMS} values"):
        parse_filter({f"k{i}": i for i in range(MAX_FILTER_ITEMS + 1)})
    with pytest.raises(QueryError, match="nested more than 32 levels"):
        parse_filter(nested_filter(40))
    with pytest.raises(QueryError, match="nested more than 32 levels"):
        parse_filter("[" * 5000 + "]" * 5000)  # a JSON string too deep for the parser itself
    with pytest.raises(QueryError, match=f"more than {MAX_FILTER_DEPTH} levels deep"):
        checked(nested_filter(MAX_FILTER_DEPTH + 1))
    assert checked(nested_filter(MAX_FILTER_DEPTH)) is not None
    with pytest.raises(QueryError, match=f"more than {MAX_FILTER_CONDITIONS} conditions"):
        checked({"must": [PAGE_1] * (MAX_FILTER_CONDITIONS + 1)})
    many_ids = [str(uuid.UUID(int=i)) for i in range(MAX_FILTER_VALUES + 1)]
    with pytest.raises(QueryError, match=f"more than {MAX_FILTER_VALUES} values"):
        checked({"must": [{"key": "doc_id", "match": {"any": many_ids[:6000]}}, {"has_id": many_ids[:5000]}]})


def test_a_filter_built_in_python_is_checked_too() -> None:
    flt = models.Filter(
        must=[models.FieldCondition(key="page", range=models.Range(gte=float("nan")))],
    )
    with pytest.raises(QueryError, match="finite"):
        checked(flt)
    deep = models.Filter(must=[models.FieldCondition(key="page", match=models.MatchValue(value=1))])
    for _ in range(MAX_FILTER_DEPTH):
        deep = models.Filter(must=[deep])
    with pytest.raises(QueryError, match="levels deep"):
        check_filter(deep)


def test_a_neutral_filter_built_in_python_is_checked_too() -> None:
    with pytest.raises(QueryError, match="range.gte must be a finite number"):
        checked(nc.Filter(must=(nc.Range("page", gte=float("nan")),)))
    with pytest.raises(QueryError, match="not booleans"):
        checked(nc.Filter(must=(nc.Match("page", True),)))
    with pytest.raises(QueryError, match="beyond 64 bits"):
        checked(nc.Filter(must_not=(nc.MatchAny("page", (1, 2**63)),)))
    with pytest.raises(QueryError, match="point ids are UUIDs"):
        checked(nc.Filter(should=(nc.HasId(("not-a-uuid",)),)))
    deep = nc.Filter(must=(nc.Match("page", 1),))
    for _ in range(MAX_FILTER_DEPTH):
        deep = nc.Filter(must=(deep,))
    with pytest.raises(QueryError, match="levels deep"):
        check_filter(deep)
    qdrant = models.Filter(must=[models.FieldCondition(key="page", match=models.MatchValue(value=2**64))])
    with pytest.raises(QueryError, match="beyond 64 bits"):  # one in Qdrant's syntax nested in ours
        check_filter(nc.Filter(must=(nc.Match("tenant", "a"), qdrant)))


def test_invalid_qdrant_syntax_says_where_without_pydantic_internals() -> None:
    with pytest.raises(QueryError) as e:
        parse_filter({"must": [{"nonsense": 1}]})
    message = str(e.value)
    assert message.startswith("invalid Qdrant filter: must.0") and "pydantic" not in message
    assert "\n" not in message and "input_value" not in message


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "empty"), (" \n", "empty"), ("a\ud800b", "not valid Unicode"), ("x" * 10_001, "the limit is 10000")],
)
def test_queries_are_checked_alike_everywhere(query: str, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        check_query(query)
    assert check_query("late delivery\tpenalty") == "late delivery\tpenalty"


def test_numbers_too_large_to_print_or_convert_are_refused_not_crashed_on() -> None:
    with pytest.raises(QueryError, match="finite numbers, got an integer of"):
        checked({"page": {"gte": 10**400}})
    with pytest.raises(QueryError, match="an integer of 16610 bits is beyond 64 bits"):
        checked({"page": 10**5000})  # str() of it would raise ValueError
    with pytest.raises(QueryError, match="point ids are UUIDs, got an integer of"):
        checked({"must": [{"has_id": [10**5000]}]})
    with pytest.raises(QueryError, match="invalid Qdrant filter"):
        checked({"must": [{"key": "page", "range": {"gte": 10**400}}]})
