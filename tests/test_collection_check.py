"""An existing collection is checked in full (distance, datatypes, IDF modifier, ColBERT's HNSW m and
on_disk), and the payload indexes it lacks are created when it is opened for writing: on a server (a
loopback Qdrant, ``tests.qdrant_standin``, both transports) and on Qdrant Edge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from indexer.config import Settings
from indexer.errors import SchemaMismatchError
from indexer.schema import COLBERT, DENSE, PAYLOAD_INDEXES, SPARSE, CollectionSpec
from indexer.store import open_store
from indexer.store.edge import EdgeStore
from indexer.store.qdrant_params import collection_params
from tests.qdrant_standin import QdrantStandIn

SPEC = CollectionSpec("c", dense_dim=8, colbert_dim=4)  # ColBERT float16, on disk, HNSW m = 0; no IDF


@pytest.fixture(params=["grpc", "rest"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[QdrantStandIn, Settings]]:
    with QdrantStandIn() as srv:
        yield srv, Settings().replace(qdrant=srv.qdrant(request.param == "grpc"))


def create_raw(srv: QdrantStandIn, change: Callable[[dict[str, Any]], None] = lambda p: None) -> None:
    """The collection as another tool (or an older build) made it: no payload indexes, ``change`` applied."""
    params = collection_params(SPEC)
    change(params)
    client = QdrantClient(url=srv.qdrant(False)["url"], prefer_grpc=False, check_compatibility=False)
    client.create_collection("c", **params)
    client.close()


def vector(params: dict[str, Any], name: str) -> models.VectorParams:
    return params["vectors_config"][name]


CHANGES = [
    (
        lambda p: setattr(vector(p, DENSE), "distance", models.Distance.DOT),
        "dense: distance expected cosine, found dot",
    ),
    (
        lambda p: setattr(vector(p, COLBERT), "datatype", models.Datatype.FLOAT32),
        "colbert: datatype expected float16, found float32",
    ),
    (
        lambda p: setattr(vector(p, DENSE), "datatype", models.Datatype.FLOAT16),
        "dense: datatype expected float32, found float16",
    ),
    (
        lambda p: setattr(p["sparse_vectors_config"][SPARSE], "modifier", models.Modifier.IDF),
        "sparse: modifier expected none, found idf",
    ),
    (
        lambda p: setattr(vector(p, COLBERT), "hnsw_config", models.HnswConfigDiff(m=16)),
        "colbert: HNSW m expected 0, found 16",
    ),
    (lambda p: setattr(vector(p, COLBERT), "hnsw_config", None), "colbert: HNSW m expected 0, found 16"),  # default
    (lambda p: setattr(vector(p, COLBERT), "on_disk", False), "colbert: on_disk expected true, found false"),
]


@pytest.mark.parametrize("change, message", CHANGES, ids=[m.split(" expected")[0] for _, m in CHANGES])
def test_an_existing_server_collection_is_checked_in_full(server, change, message: str) -> None:
    srv, settings = server
    create_raw(srv, change)
    store = open_store(settings.qdrant, "c")
    with pytest.raises(SchemaMismatchError, match=message):
        store.ensure_collection(SPEC)
    store.close()


def test_the_same_collection_passes(server) -> None:
    srv, settings = server
    create_raw(srv)
    store = open_store(settings.qdrant, "c")
    store.ensure_collection(SPEC)
    store.close()


def test_missing_payload_indexes_are_created_when_opened_for_writing(server) -> None:
    srv, settings = server
    create_raw(srv)  # no indexes at all: a creation cut short, or an older build
    store = open_store(settings.qdrant, "c")
    store.open_collection()  # reading creates nothing
    assert srv.indexes["c"] == {} and not srv.of("create_index")
    srv.indexes["c"]["pages"] = "keyword"  # another type than ours
    store.ensure_collection(SPEC)
    assert srv.indexes["c"] == PAYLOAD_INDEXES
    made = srv.of("create_index")
    assert len(made) == len(PAYLOAD_INDEXES) and all(c.args["wait"] for c in made)
    store.ensure_collection(SPEC)  # nothing left to make
    assert len(srv.of("create_index")) == len(PAYLOAD_INDEXES)
    store.close()


# ------------------------------------------------------------------------------------ Qdrant Edge


def test_an_existing_edge_collection_is_checked_against_its_recorded_spec(tmp_path: Path) -> None:
    EdgeStore(tmp_path, "c").ensure_collection(SPEC)
    store = EdgeStore(tmp_path, "c")
    other = CollectionSpec("c", dense_dim=8, colbert_dim=4, colbert_datatype="float32", colbert_on_disk=False)
    with pytest.raises(
        SchemaMismatchError, match="colbert: datatype expected float32, found float16; colbert: on_disk"
    ):
        store.ensure_collection(other)
    store.close()


def test_missing_edge_payload_indexes_are_created_when_opened_for_writing(tmp_path: Path) -> None:
    import qdrant_edge as qe

    store = EdgeStore(tmp_path, "c")
    store.ensure_collection(SPEC)
    for field in ("kind", "state", "pages"):  # as an older build left it
        store.shard.update(qe.UpdateOperation.delete_field_index(field))
    store.close()
    store = EdgeStore(tmp_path, "c")
    store.open_collection()
    assert {"kind", "state", "pages"}.isdisjoint(store.shard.info().payload_schema)
    store.close()
    store = EdgeStore(tmp_path, "c")
    store.ensure_collection(SPEC)
    assert set(store.shard.info().payload_schema) == set(PAYLOAD_INDEXES)
    store.close()
