"""Server upserts built from the vectors' bytes (``indexer.store.qdrant_wire``): the same request as
qdrant-client's own conversion, message for message, and the same values through a loopback server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import grpc, models
from qdrant_client.conversions.conversion import RestToGrpc
from qdrant_client.http.api.points_api import jsonable_encoder

from indexer.config import Settings
from indexer.models import PointRecord, SparseVec
from indexer.schema import COLBERT, DENSE, SPARSE, CollectionSpec
from indexer.store import open_store
from indexer.store.qdrant import QdrantStore
from indexer.store.qdrant_params import to_point_struct
from indexer.store.qdrant_wire import multi_dense_vector, upsert_body, upsert_request
from tests.qdrant_standin import QdrantStandIn

RNG = np.random.default_rng(7)
PAYLOAD = {
    "kind": "chunk",
    "text": "Договор поставки № 12: срок — 30 дней.",
    "page": 3,
    "score": 0.25,
    "draft": False,
    "headings": ["Раздел 1", "1.2 Сроки"],
    "meta": {"author": None, "tags": ["a", "b"], "nested": {"n": 1}},
}


def point(dense: np.ndarray | None, colbert: np.ndarray | None, sparse: bool = True) -> PointRecord:
    weights = SparseVec((3, 17, 250001), (0.125, 0.3330000042915344, 1.5)) if sparse else None
    return PointRecord(str(uuid.UUID(int=int(RNG.integers(1 << 62)))), PAYLOAD, dense, weights, colbert)


def unit(*shape: int, dtype: str = "float32") -> np.ndarray:
    m = RNG.normal(size=shape)
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(dtype)


POINTS = {
    "float32": point(unit(1024), unit(37, 1024)),
    "float16": point(unit(8, dtype="float16"), unit(5, 8, dtype="float16")),
    "float64": point(unit(8, dtype="float64"), unit(5, 8, dtype="float64")),
    "uint8 codes": point(RNG.integers(0, 256, 8).astype(np.uint8), RNG.integers(0, 256, (4, 8)).astype(np.uint8)),
    "strided": point(unit(16)[::2], np.asfortranarray(unit(6, 8))),
    "one row": point(unit(8), unit(1, 8)),
    "dense only": point(unit(8), None, sparse=False),
    "record": PointRecord(str(uuid.UUID(int=5)), {"kind": "document", "doc_id": "a.txt", "state": "complete"}),
}


def client_request(points: list[PointRecord], ordering: models.WriteOrdering | None) -> grpc.UpsertPoints:
    """What qdrant-client sends for ``upsert(points=[to_point_struct(p) ...])`` over gRPC."""
    return grpc.UpsertPoints(
        collection_name="c",
        wait=True,
        points=[RestToGrpc.convert_point_struct(to_point_struct(p)) for p in points],
        ordering=RestToGrpc.convert_write_ordering(ordering) if ordering is not None else None,
    )


@pytest.mark.parametrize("name", list(POINTS))
def test_a_grpc_upsert_is_the_message_qdrant_client_builds(name: str) -> None:
    p = POINTS[name]
    assert upsert_request("c", [p], True) == client_request([p], None)


def test_a_batch_with_ordering_is_the_same_message_too() -> None:
    points = list(POINTS.values())
    strong = models.WriteOrdering.STRONG
    ours = upsert_request("c", points, True, RestToGrpc.convert_write_ordering(strong))
    assert ours == client_request(points, strong)
    assert len(ours.points) == len(points) and ours.ordering.type == grpc.Strong
    assert upsert_request("c", points, False) != client_request(points, None)  # ``wait`` is carried


def test_a_multivector_keeps_every_row_in_order() -> None:
    m = unit(300, 1024)
    parsed = grpc.MultiDenseVector.FromString(multi_dense_vector(m))
    got = np.array([list(v.data) for v in parsed.vectors], dtype=np.float32)
    np.testing.assert_array_equal(got, m)
    with pytest.raises(ValueError, match="2-D"):
        multi_dense_vector(unit(8))


def rest_json(points: list[PointRecord]) -> dict:
    """qdrant-client's own REST body for the same points."""
    return json.loads(jsonable_encoder(models.PointsList(points=[to_point_struct(p) for p in points])))


@pytest.mark.parametrize("name", list(POINTS))
def test_a_rest_body_carries_the_same_points_and_float32_values(name: str) -> None:
    p = POINTS[name]
    [ours], [theirs] = json.loads(upsert_body([p]))["points"], rest_json([p])["points"]
    assert ours["id"] == theirs["id"] and ours["payload"] == theirs["payload"] == p.payload
    assert ours["vector"].keys() == theirs["vector"].keys()
    for key, value in ours["vector"].items():
        if key == SPARSE:
            assert value == theirs["vector"][key]
        else:  # the same float32 values, in fewer characters
            np.testing.assert_array_equal(np.float32(value), np.float32(theirs["vector"][key]))


def test_a_rest_body_is_smaller_than_qdrant_clients() -> None:
    p = POINTS["float32"]
    assert len(upsert_body([p])) < 0.7 * len(json.dumps(rest_json([p]), separators=(",", ":")))


# -------------------------------------------------------------------- through a loopback server


@pytest.fixture(params=["grpc", "rest"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[QdrantStandIn, QdrantStore]]:
    with QdrantStandIn() as srv:
        qdrant = srv.qdrant(request.param == "grpc") | {"api_key": "k-123"}
        st = open_store(Settings().replace(qdrant=qdrant).qdrant, "c")
        assert isinstance(st, QdrantStore) and st.server
        st.ensure_collection(CollectionSpec("c", dense_dim=1024, colbert_dim=1024))
        yield srv, st
        st.close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_a_server_receives_exactly_the_points_written(store: tuple[QdrantStandIn, QdrantStore]) -> None:
    """What the server parsed from the request (its engine then normalizes cosine vectors, as Qdrant does)."""
    srv, st = store
    points = [point(unit(1024), unit(n, 1024)) for n in (1, 9, 120)] + [POINTS["record"]]
    st.upsert(points, True)
    [call] = srv.of("upsert")
    assert call.transport == ("rest" if st.rest else "grpc") and call.args["wait"] is True
    assert call.api_key == "k-123"  # through qdrant-client's own channel and headers
    received = {str(r.id): r for r in call.args["points"]}
    assert received.keys() == {p.id for p in points}
    for p in points:
        got = received[p.id]
        assert got.payload == p.payload
        if p.dense is None:
            assert not got.vector
            continue
        np.testing.assert_array_equal(np.float32(got.vector[DENSE]), p.dense)
        np.testing.assert_array_equal(np.float32(got.vector[COLBERT]), p.colbert)
        assert p.sparse is not None and tuple(got.vector[SPARSE].indices) == p.sparse.indices
        np.testing.assert_array_equal(np.float32(got.vector[SPARSE].values), np.float32(p.sparse.values))
    stored = {s.id: s for s in st.retrieve([p.id for p in points], with_vectors=True)}
    np.testing.assert_allclose(stored[points[2].id].vectors[COLBERT], points[2].colbert, atol=1e-6)
