"""Filters in Qdrant's own syntax (``{"must": [...], "min_should": ...}``): read by qdrant-client's models
and checked like ours (``retriever.filters``).

Imported only when such a filter is met: qdrant-client's models cost 2 s of CPU, which a search with no
filter, or with one in the simple forms, never pays.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError
from qdrant_client import models

from indexer.errors import QueryError
from indexer.validation import INT64_MAX, show_number
from retriever.filters import (
    MAX_FILTER_DEPTH,
    Budget,
    check_ids,
    check_key,
    check_match_value,
    check_match_values,
    check_part,
    check_range,
    check_text,
)


def _first_problem(e: ValidationError) -> str:
    """The first pydantic error as "where: what", without pydantic's type tags, inputs and links."""
    errors = e.errors(include_url=False, include_input=False)
    if not errors:
        return "it does not match Qdrant's filter syntax"
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"] if isinstance(p, int) or "[" not in str(p))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {err['msg']}{more}" if where else f"{err['msg']}{more}"


def parse_qdrant_filter(spec: Any) -> models.Filter:
    """A dict in Qdrant's filter syntax as a qdrant-client filter (its size and depth checked already)."""
    try:
        return models.Filter.model_validate(spec)
    except ValidationError as e:
        raise QueryError(f"invalid Qdrant filter: {_first_problem(e)}") from e
    except (ValueError, TypeError) as e:
        raise QueryError(f"invalid Qdrant filter: {e}") from e


def _as_list(part: Any) -> list[Any]:
    return part if isinstance(part, list) else [] if part is None else [part]


def check_qdrant_part(c: Any, depth: int, budget: Budget) -> None:
    """``retriever.filters.check_part`` for a qdrant-client filter or condition."""
    if isinstance(c, models.Filter):
        if depth > MAX_FILTER_DEPTH:
            raise QueryError(f"the filter nests filters more than {MAX_FILTER_DEPTH} levels deep")
        for part in (c.must, c.should, c.must_not):
            for sub in _as_list(part):
                check_part(sub, depth + 1, budget)
        if c.min_should is not None:
            conditions = c.min_should.conditions
            for sub in conditions:
                check_part(sub, depth + 1, budget)
            n = c.min_should.min_count
            if not 0 <= n <= len(conditions):
                raise QueryError(
                    f"min_should.min_count must be between 0 and the number of its conditions "
                    f"({len(conditions)}), got {show_number(n)}"
                )
        return
    budget.condition()
    if isinstance(c, models.FieldCondition):
        _check_field_condition(c, budget)
    elif isinstance(c, models.HasIdCondition):
        check_ids(c.has_id, budget)
    elif isinstance(c, models.IsEmptyCondition):
        check_key(c.is_empty.key)
    elif isinstance(c, models.IsNullCondition):
        check_key(c.is_null.key)
    elif isinstance(c, models.HasVectorCondition):
        check_text(c.has_vector)
    elif isinstance(c, models.NestedCondition):
        check_key(c.nested.key)
        check_part(c.nested.filter, depth + 1, budget)


def _check_field_condition(c: models.FieldCondition, budget: Budget) -> None:
    check_key(c.key)
    m = c.match
    if isinstance(m, models.MatchValue):
        check_match_value(c.key, m.value)
    elif isinstance(m, (models.MatchAny, models.MatchExcept)):
        check_match_values(c.key, m.any if isinstance(m, models.MatchAny) else m.except_, budget)
    elif m is not None:
        text = getattr(m, "text", None) or getattr(m, "text_any", None) or getattr(m, "phrase", None)
        if isinstance(text, str):
            check_text(text)
    if isinstance(c.range, models.Range):
        check_range(c.key, c.range)
    if c.values_count is not None:
        for name in ("gte", "gt", "lte", "lt"):
            bound = getattr(c.values_count, name)
            if bound is not None and not 0 <= bound <= INT64_MAX:
                shown = show_number(bound)
                raise QueryError(f"filter on {c.key!r}: values_count.{name} must be a count (0 or more), got {shown}")
    points: list[models.GeoPoint] = []
    if c.geo_radius is not None:
        points.append(c.geo_radius.center)
        radius = c.geo_radius.radius
        if not (math.isfinite(radius) and radius >= 0):
            raise QueryError(f"filter on {c.key!r}: geo_radius.radius must be a finite distance, got {radius}")
    if c.geo_bounding_box is not None:
        points += [c.geo_bounding_box.top_left, c.geo_bounding_box.bottom_right]
    if c.geo_polygon is not None:
        for ring in [c.geo_polygon.exterior, *(c.geo_polygon.interiors or [])]:
            points += ring.points
    budget.take(len(points))
    for p in points:
        if not (math.isfinite(p.lat) and -90 <= p.lat <= 90 and math.isfinite(p.lon) and -180 <= p.lon <= 180):
            raise QueryError(f"filter on {c.key!r}: geo points need lat in -90..90 and lon in -180..180")
