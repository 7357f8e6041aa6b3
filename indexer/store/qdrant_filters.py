"""Our engine-neutral filters (``indexer.conditions``) as qdrant-client models, for the server and local mode."""

from __future__ import annotations

from typing import Any, overload

from qdrant_client import models

from indexer import conditions as c


@overload
def to_qdrant_filter(flt: c.AnyFilter) -> models.Filter: ...


@overload
def to_qdrant_filter(flt: None) -> None: ...


@overload
def to_qdrant_filter(flt: c.AnyFilter | None) -> models.Filter | None: ...


def to_qdrant_filter(flt: c.AnyFilter | None) -> models.Filter | None:
    """A qdrant-client filter: ours translated, a qdrant-client one (e.g. a user's) as it is."""
    if flt is None or isinstance(flt, models.Filter):
        return flt
    return _filter(flt)


def _filter(f: c.Filter) -> models.Filter:
    def conds(items: tuple[c.Condition, ...]) -> list[Any] | None:
        return [_condition(x) for x in items] or None

    return models.Filter(must=conds(f.must), should=conds(f.should), must_not=conds(f.must_not))


def _condition(x: c.Condition) -> Any:
    if isinstance(x, c.Match):
        return models.FieldCondition(key=x.key, match=models.MatchValue(value=x.value))
    if isinstance(x, c.MatchAny):
        return models.FieldCondition(key=x.key, match=models.MatchAny(any=list(x.values)))  # type: ignore[arg-type]
    if isinstance(x, c.HasId):
        ids: list[models.ExtendedPointId] = list(x.ids)
        return models.HasIdCondition(has_id=ids)
    if isinstance(x, c.IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=x.key))
    if isinstance(x, c.Range):
        return models.FieldCondition(key=x.key, range=models.Range(gte=x.gte, gt=x.gt, lte=x.lte, lt=x.lt))
    if isinstance(x, c.Filter):
        return _filter(x)
    if isinstance(x, models.Filter):  # a filter in Qdrant's syntax within ours (e.g. a tenant's scope)
        return x
    raise TypeError(f"not a filter condition: {x!r}")
