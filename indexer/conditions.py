"""Engine-neutral filters for the collection's bookkeeping: which points a delete, count, scroll or payload
update touches.

The indexer's own filters (records, versions, leases, admin) are built from these small frozen records,
so that a run on the embedded engine never imports qdrant-client (2 s of CPU: its package root builds
hundreds of pydantic models). Each store translates them: ``QdrantStore`` to qdrant-client models,
``EdgeStore`` straight to Edge's own classes. Stores still accept qdrant-client filters too (the
retriever's user filters and searches are built with them).
"""

from __future__ import annotations

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


Condition: TypeAlias = Union[Match, MatchAny, HasId, IsEmpty, Filter]  # noqa: UP007 - a runtime alias, Python 3.10 too

# What a store's delete, count, scroll and set_payload accept: ours, or a qdrant-client filter.
AnyFilter: TypeAlias = Union[Filter, "models.Filter"]  # noqa: UP007
