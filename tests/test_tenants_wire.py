"""Tenants on the server path: what reaches a (loopback) Qdrant server, over gRPC and REST.

Every request a tenant's code sends carries the tenant condition: at the top of every search and inside
every prefetch (nested ones too), on every count, scroll and delete; every point it writes carries the
tenant; the tenant field gets a keyword index marked ``is_tenant``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from indexer import conditions as nc
from indexer import requests as rq
from indexer.admin import collection_status, delete_document
from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.pipeline import ingest
from indexer.records import COLLECTION_RECORD_ID
from indexer.store import open_store
from indexer.store.qdrant_filters import to_qdrant_filter
from indexer.store.qdrant_requests import to_qdrant_request
from indexer.tenants import TenantStore, scoped_request
from retriever import Retriever
from tests.helpers import SAMPLES, make_settings
from tests.qdrant_standin import QdrantStandIn

FIELD = "tenant"
MODES = ["dense", "sparse", "hybrid", "hybrid_dbsf", "hybrid_colbert", "colbert", "m3"]


@pytest.fixture(scope="module", params=["grpc", "rest"])
def served(
    request: pytest.FixtureRequest, tiny_model_dir: Path, encoder: BGEM3Encoder
) -> Iterator[tuple[QdrantStandIn, Settings]]:
    with QdrantStandIn() as srv:
        s = make_settings(tiny_model_dir, ":memory:", qdrant=srv.qdrant(request.param == "grpc"))
        store = open_store(s.qdrant, s.collection.name)
        ingest([SAMPLES / "en"], s, encoder, TenantStore(store, FIELD, "a"), progress=False)
        ingest([SAMPLES / "en", SAMPLES / "ru"], s, encoder, TenantStore(store, FIELD, "b"), progress=False)
        store.close()
        yield srv, s


def names_tenant(flt: models.Filter | None, tenant: str) -> bool:
    """The filter's top level requires the tenant (everything else is nested under it)."""
    want = models.FieldCondition(key=FIELD, match=models.MatchValue(value=tenant))
    must = flt.must if flt is not None else None
    return isinstance(must, list) and any(c == want for c in must)


def prefetches(p: Any) -> list[models.Prefetch]:
    if p is None:
        return []
    items = [p] if isinstance(p, models.Prefetch) else list(p)
    return [x for q in items for x in (q, *prefetches(q.prefetch))]


def test_the_tenant_field_is_indexed_as_the_tenant(served: tuple[QdrantStandIn, Settings]) -> None:
    srv, _ = served
    made = {c.args["field_name"]: c.args["schema"] for c in srv.of("create_index")}
    assert made[FIELD] == "tenant"  # a keyword index with is_tenant=true, as the server got it
    assert made["doc_id"] == "keyword"


def test_every_write_read_and_delete_of_a_tenant_names_it(served: tuple[QdrantStandIn, Settings]) -> None:
    srv, _ = served
    points = [p for c in srv.of("upsert") for p in c.args["points"]]
    assert points
    for p in points:
        if str(p.id) != COLLECTION_RECORD_ID:  # the shared record of which model built the collection
            assert p.payload[FIELD] in ("a", "b")
    reads = [c.args["filter"] for c in srv.of("count") + srv.of("scroll")]
    deletes = [c.args["selector"].filter for c in srv.of("delete")]
    assert reads and deletes
    assert all(names_tenant(f, "a") or names_tenant(f, "b") for f in reads + deletes)


@pytest.mark.parametrize("mode", MODES)
def test_every_prefetch_of_a_tenants_search_carries_the_tenant(
    served: tuple[QdrantStandIn, Settings], encoder: BGEM3Encoder, mode: str
) -> None:
    srv, s = served
    with Retriever(s, encoder=encoder, store=open_store(s.qdrant, s.collection.name)) as r:
        before = len(srv.of("query_batch"))
        r.for_tenant("a").search_batch(["remote work", "неустойка"], limit=5, mode=mode, filter={"tenant": "b"})
        r.for_tenant("a").search("remote work", limit=5, mode=mode)
    sent = [q for c in srv.of("query_batch")[before:] for q in c.args["searches"]]
    assert len(sent) == 3
    nested = 0
    for q in sent:
        assert names_tenant(q.filter, "a")
        for p in prefetches(q.prefetch):
            assert names_tenant(p.filter, "a")
            nested += 1
    assert nested >= (0 if mode == "dense" or mode == "sparse" else 3)


def neutral_prefetches(items: tuple[rq.Prefetch, ...]) -> list[rq.Prefetch]:
    return [x for q in items for x in (q, *neutral_prefetches(q.prefetch))]


@pytest.mark.parametrize("client_filter", ["ours", "qdrant syntax"])
def test_scoping_reaches_nested_prefetches_however_deep(client_filter: str) -> None:
    leaf = rq.Prefetch(query=rq.Nearest([0.1, 0.2]), using="dense", limit=5)
    flt = (
        nc.Filter(should=(nc.Match(FIELD, "b"),))
        if client_filter == "ours"
        else models.Filter(should=[models.FieldCondition(key=FIELD, match=models.MatchValue(value="b"))])
    )
    request = rq.Request(
        query=rq.Rrf(k=2), prefetch=(rq.Prefetch(prefetch=(leaf, leaf), query=rq.Rrf(k=2)), leaf), filter=flt
    )
    scoped = scoped_request(request, FIELD, "a")
    found = neutral_prefetches(scoped.prefetch)
    assert len(found) == 4 and all(p.filter is not None and p.filter.must[0] == nc.Match(FIELD, "a") for p in found)
    assert isinstance(scoped.filter, nc.Filter)
    assert scoped.filter.must == (nc.Match(FIELD, "a"), request.filter)  # the client's, nested
    assert request.prefetch[1].filter is None  # the original is left as it was
    sent = to_qdrant_request(scoped)  # as a server gets it
    assert names_tenant(sent.filter, "a") and sent.filter.must[1] == to_qdrant_filter(flt)
    wire = prefetches(sent.prefetch)
    assert len(wire) == 4 and all(names_tenant(p.filter, "a") for p in wire)


def test_a_tenants_delete_and_status_on_the_server(served: tuple[QdrantStandIn, Settings]) -> None:
    srv, s = served
    store = open_store(s.qdrant, s.collection.name)
    try:
        a, b = TenantStore(store, FIELD, "a"), TenantStore(store, FIELD, "b")
        assert delete_document(a, "dogovor-postavki.txt") is None  # b's only: a cannot tell it exists
        b_chunks = collection_status(b).chunks
        assert delete_document(a, "remote-work-policy.md")
        assert collection_status(b).chunks == b_chunks and collection_status(b).documents == 4
        assert collection_status(a).documents == 1
    finally:
        store.close()
