"""Engine-neutral filters: which points a search, delete, count, scroll or payload update touches.

Filters are built from these small frozen records (the indexer's bookkeeping, and the retriever's user
filters in their simple forms), so that a run or a search on the embedded engine never imports
qdrant-client (2 s of CPU: its package root builds hundreds of pydantic models). Each store translates
them: ``QdrantStore`` to qdrant-client models (``indexer.store.qdrant_filters``), ``EdgeStore`` straight
to Edge's own classes (``indexer.store.edge_requests``). A filter in Qdrant's own syntax (a user's
``{"must": [...]}``) stays a qdrant-client ``models.Filter``: stores accept one where they accept ours,
and ours may hold one as a condition (a tenant's scope around a user's filter).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, Union

if TYPE_CHECKING:
    from qdrant_client import models


@dataclass(frozen=True, slots=True)
class Match:
    """The payload field ``key`` equals ``value`` (a keyword, an integer or a boolean)."""

    key: str
    value: str | int | bool


@dataclass(frozen=True, slots=True)
class MatchAny:
    """The payload field ``key`` equals one of ``values``."""

    key: str
    values: tuple[str | int, ...]

    @classmethod
    def of(cls, key: str, values: Iterable[Any]) -> MatchAny:
        return cls(key, tuple(sorted(values)))


@dataclass(frozen=True, slots=True)
class Range:
    """The payload field ``key`` is a number within the given bounds (None: unbounded on that side)."""

    key: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True, slots=True)
class HasId:
    """The point's id is one of ``ids``."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IsEmpty:
    """The payload field ``key`` is missing, null or an empty list."""

    key: str


@dataclass(frozen=True, slots=True)
class Filter:
    """Every ``must`` condition holds, at least one ``should`` (when there are any), no ``must_not``."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


# A condition: ours, or a filter in Qdrant's syntax nested in ours (``is_qdrant_filter``).
Condition: TypeAlias = Union[Match, MatchAny, Range, HasId, IsEmpty, Filter, "models.Filter"]  # noqa: UP007

# What a store's searches, deletes, counts, scrolls and set_payload accept: ours, or a qdrant-client filter.
AnyFilter: TypeAlias = Union[Filter, "models.Filter"]  # noqa: UP007

NEUTRAL = (Match, MatchAny, Range, HasId, IsEmpty, Filter)


def is_qdrant_filter(x: object) -> bool:
    """Whether ``x`` is a qdrant-client ``models.Filter``, without importing qdrant-client: a process that
    never imported it cannot hold one."""
    loaded = sys.modules.get("qdrant_client.http.models")
    return loaded is not None and isinstance(x, loaded.Filter)


def has_conditions(flt: AnyFilter | None) -> bool:
    """Whether the filter says anything (a filter without conditions matches every point)."""
    if flt is None:
        return False
    if isinstance(flt, Filter):
        return bool(flt.must or flt.should or flt.must_not)
    return any(flt.must or flt.should or flt.must_not or flt.min_should or [])
