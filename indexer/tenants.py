"""Tenants: many users of one collection, each seeing only its own documents.

A tenant's points carry its name in one payload field (``tenants.field``, "tenant" by default), indexed as
a keyword marked ``is_tenant`` on servers and on Qdrant Edge (Qdrant keeps a tenant's points together;
local mode has no payload indexes). ``TenantStore`` is the only way tenanted code reaches the store, and
it scopes every call to one tenant:

- **reads** (searches, counts, scrolls): the tenant condition is ANDed with the caller's filter, at the
  top of every request and inside every prefetch, however deep; a filter that names the tenant field
  itself can only narrow that scope, never widen it. ``retrieve`` drops points of other tenants.
- **writes**: every point gets the tenant field, and its id is ``scoped_id(tenant, id)``: the ids the
  indexer derives from a document (chunks, its record, its leases) become ids of that tenant's document,
  so the same doc id in two tenants is two documents, with two records and two leases. Deletes and
  payload updates are scoped like reads; the point ids they name (``has_id``, derived by the indexer)
  are mapped the same way.
- anything else the wrapped store offers is not reachable through it (no fallback): a new store method
  needs its own scoped version here before tenanted code can use it.

The collection's own record (which model built it) is shared by every tenant and is the one exception.
Without a tenant nothing changes: the same ids, payloads and requests as before tenants existed.
The scoping is engine-neutral (``indexer.conditions``, ``indexer.requests``): a tenant's run or search on
Qdrant Edge imports no qdrant-client.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from indexer import conditions as nc
from indexer.errors import InvalidInputError
from indexer.models import Hit, PointRecord, StoredPoint
from indexer.points import POINT_NAMESPACE
from indexer.records import COLLECTION_RECORD_ID
from indexer.requests import Prefetch, Request
from indexer.schema import CollectionInfo, CollectionSpec
from indexer.store.base import AsyncStore, Store

if TYPE_CHECKING:
    from indexer.store.groups import HitGroup

__all__ = [
    "TenantAsyncStore",
    "TenantStore",
    "check_tenant",
    "holds_tenants",
    "require_tenant",
    "scope",
    "scoped_filter",
    "scoped_id",
    "scoped_request",
    "tenant_condition",
]

MAX_TENANT_CHARS = 128
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*$")
TENANT_NAMESPACE = uuid.uuid5(POINT_NAMESPACE, "\x1ftenant")


def check_tenant(tenant: Any) -> str:
    """A tenant name: 1-128 letters, digits and ``_.@:-``, starting with a letter or digit."""
    if not isinstance(tenant, str) or not tenant:
        raise InvalidInputError("the tenant is empty; name one (letters, digits and _.@:-)")
    if len(tenant) > MAX_TENANT_CHARS or not _TENANT.match(tenant):
        shown = tenant[:40] + ("..." if len(tenant) > 40 else "")
        raise InvalidInputError(
            f"invalid tenant {shown!r}: use at most {MAX_TENANT_CHARS} letters, digits and _.@:- "
            "(starting with a letter or digit)"
        )
    return tenant


def scoped_id(tenant: str, point_id: str) -> str:
    """The id a tenant's point is stored under: uuid5 of the tenant and the id the indexer derived."""
    return str(uuid.uuid5(TENANT_NAMESPACE, f"{tenant}\x1f{point_id}"))


def tenant_condition(field: str, tenant: str) -> nc.Match:
    return nc.Match(field, tenant)


def scoped_filter(flt: nc.AnyFilter | None, field: str, tenant: str, *, map_ids: bool = False) -> nc.Filter:
    """``flt`` AND "``field`` is ``tenant``": the caller's filter, whatever it says, nested under the condition.

    ``map_ids``: ``has_id`` conditions name ids the indexer derived; they become the tenant's ids.
    """
    condition = tenant_condition(field, tenant)
    if flt is None:
        return nc.Filter(must=(condition,))
    inner = _map_ids(flt, tenant) if map_ids else flt
    return nc.Filter(must=(condition, inner))


def _map_ids(c: Any, tenant: str) -> Any:
    if isinstance(c, nc.Filter):
        must, should, must_not = (tuple(_map_ids(x, tenant) for x in part) for part in (c.must, c.should, c.must_not))
        return nc.Filter(must, should, must_not)
    if isinstance(c, nc.HasId):
        return nc.HasId(tuple(scoped_id(tenant, i) for i in c.ids))
    if nc.is_qdrant_filter(c):
        return _map_qdrant_ids(c, tenant)
    return c


def _map_qdrant_ids(c: Any, tenant: str) -> Any:
    """``_map_ids`` within a filter in Qdrant's syntax (e.g. a user's ``has_id``)."""
    from qdrant_client import models

    if isinstance(c, models.Filter):
        update: dict[str, Any] = {}
        for name in ("must", "should", "must_not"):
            part = getattr(c, name)
            if part is not None:
                items = part if isinstance(part, list) else [part]
                update[name] = [_map_qdrant_ids(x, tenant) for x in items]
        if c.min_should is not None:
            conditions = [_map_qdrant_ids(x, tenant) for x in c.min_should.conditions]
            update["min_should"] = c.min_should.model_copy(update={"conditions": conditions})
        return c.model_copy(update=update)
    if isinstance(c, models.HasIdCondition):
        return models.HasIdCondition(has_id=[scoped_id(tenant, str(i)) for i in c.has_id])
    if isinstance(c, models.NestedCondition):
        nested = c.nested.model_copy(update={"filter": _map_qdrant_ids(c.nested.filter, tenant)})
        return c.model_copy(update={"nested": nested})
    return c


def _scoped_prefetch(p: Prefetch, field: str, tenant: str) -> Prefetch:
    prefetch = tuple(_scoped_prefetch(x, field, tenant) for x in p.prefetch)
    return replace(p, filter=scoped_filter(p.filter, field, tenant), prefetch=prefetch)


def scoped_request(request: Request, field: str, tenant: str) -> Request:
    """A search that can only find ``tenant``'s points: the condition on it and in every prefetch."""
    prefetch = tuple(_scoped_prefetch(p, field, tenant) for p in request.prefetch)
    return replace(request, filter=scoped_filter(request.filter, field, tenant), prefetch=prefetch)


def scope(store: Store, field: str, tenant: str | None) -> Store:
    """``store`` as ``tenant`` sees it (a ``TenantStore``), or ``store`` itself without a tenant."""
    return store if tenant is None else TenantStore(store, field, tenant)


def holds_tenants(store: Store, field: str) -> bool:
    """Whether the collection holds points of any tenant (False when it does not exist yet)."""
    from indexer.errors import StoreError

    tenanted = nc.Filter(must_not=(nc.IsEmpty(field),))
    try:
        return store.count(tenanted) > 0
    except StoreError:  # no such collection yet (a real outage fails the caller's next call anyway)
        return False


def require_tenant(store: Store, field: str, tenant: str | None, what: str) -> None:
    """Refuse an untenanted write to a collection that holds tenants' points: its doc ids would name every
    tenant's documents at once (a delete, or a repair of another version, would reach all of them)."""
    if tenant is None and holds_tenants(store, field):
        raise InvalidInputError(
            f"collection {store.collection!r} holds tenants' documents: name the tenant to {what} (--tenant)"
        )


def _shared(point_id: str) -> bool:
    return point_id == COLLECTION_RECORD_ID


class TenantStore:
    """``store`` as one tenant sees it (see the module docstring); closing it closes ``store``."""

    def __init__(self, store: Store, field: str, tenant: str) -> None:
        self.inner = store
        self.field, self.tenant = field, check_tenant(tenant)
        self.collection = store.collection
        self.bytes_per_float = store.bytes_per_float
        self.location = store.location
        self.engine = store.engine
        self.server_version = store.server_version

    def _flt(self, flt: nc.AnyFilter | None, map_ids: bool = False) -> nc.Filter:
        return scoped_filter(flt, self.field, self.tenant, map_ids=map_ids)

    def _mine(self, p: StoredPoint) -> bool:
        return p.payload.get(self.field) == self.tenant or _shared(p.id)

    def check_available(self) -> None:
        self.inner.check_available()

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> None:
        """The collection, with the tenant field's index (``is_tenant``) besides the usual ones."""
        self.inner.ensure_collection(replace(spec, tenant_field=self.field), recreate)

    def open_collection(self) -> CollectionInfo:
        return self.inner.open_collection()

    def upsert(self, points: Sequence[PointRecord], wait: bool = True) -> None:
        def own(p: PointRecord) -> PointRecord:
            if _shared(p.id):
                return p
            return replace(p, id=scoped_id(self.tenant, p.id), payload={**p.payload, self.field: self.tenant})

        self.inner.upsert([own(p) for p in points], wait)

    def delete(self, flt: nc.AnyFilter) -> None:
        self.inner.delete(self._flt(flt, map_ids=True))

    def set_payload(self, flt: nc.AnyFilter, payload: dict[str, Any]) -> None:
        if self.field in payload:
            raise InvalidInputError(f"the payload field {self.field!r} names the tenant and cannot be set")
        self.inner.set_payload(self._flt(flt, map_ids=True), payload)

    def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        return self.inner.query_batch([scoped_request(r, self.field, self.tenant) for r in requests])

    def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        scoped = [scoped_request(r, self.field, self.tenant) for r in requests]
        return self.inner.query_groups(scoped, group_by, group_size)

    def count(self, flt: nc.AnyFilter | None = None) -> int:
        return self.inner.count(self._flt(flt))

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        """Points by the ids they are stored under (as searches return them); another tenant's are left out."""
        return [p for p in self.inner.retrieve(ids, with_vectors) if self._mine(p)]

    def scroll(self, flt: nc.AnyFilter | None = None, page: int = 1000) -> Iterator[StoredPoint]:
        return self.inner.scroll(self._flt(flt), page)

    def finish(self) -> None:
        self.inner.finish()

    def open_async(self) -> AsyncStore | None:
        native = self.inner.open_async()
        return None if native is None else TenantAsyncStore(native, self.field, self.tenant, owns=True)

    def close(self) -> None:
        self.inner.close()


class TenantAsyncStore:
    """The async side of a ``TenantStore``: the same scoping; closing it closes ``store`` only if it ``owns`` it."""

    def __init__(self, store: AsyncStore, field: str, tenant: str, *, owns: bool = False) -> None:
        self.inner, self.owns = store, owns
        self.field, self.tenant = field, check_tenant(tenant)
        self.collection = store.collection

    async def query_batch(self, requests: Sequence[Request]) -> list[list[Hit]]:
        return await self.inner.query_batch([scoped_request(r, self.field, self.tenant) for r in requests])

    async def query_groups(self, requests: Sequence[Request], group_by: str, group_size: int) -> list[list[HitGroup]]:
        scoped = [scoped_request(r, self.field, self.tenant) for r in requests]
        return await self.inner.query_groups(scoped, group_by, group_size)

    async def count(self, flt: nc.AnyFilter | None = None) -> int:
        return await self.inner.count(scoped_filter(flt, self.field, self.tenant))

    async def close(self) -> None:
        if self.owns:
            await self.inner.close()
