"""Server errors over both transports, against a loopback Qdrant (``tests.qdrant_standin``): the server's
reason is kept, one retry table decides for REST and gRPC alike, every client call is wrapped, and the
timeout reaches the client intact."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from indexer import requests as rq
from indexer.config import Settings
from indexer.errors import StoreError, StoreRequestError, TransientStoreError
from indexer.models import PointRecord, SparseVec
from indexer.schema import CollectionSpec
from indexer.store import open_store
from indexer.store.qdrant import QdrantStore
from indexer.store.qdrant_params import client_options
from indexer.writer import Writer
from tests.helpers import SAMPLES, make_settings
from tests.qdrant_standin import QdrantStandIn
from tests.service_helpers import serve

C = grpc.StatusCode
TRANSPORTS = ["grpc", "rest"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server() -> Iterator[QdrantStandIn]:
    with QdrantStandIn() as s:
        yield s


@pytest.fixture
def store(server: QdrantStandIn, transport: str) -> Iterator[QdrantStore]:
    st = open_store(Settings().replace(qdrant=server.qdrant(transport == "grpc")).qdrant, "c")
    assert isinstance(st, QdrantStore)
    st.ensure_collection(CollectionSpec("c", dense_dim=4, colbert_dim=3))
    yield st
    st.close()


def fail_once(server: QdrantStandIn, op: str, status: int, code: grpc.StatusCode, message: str, **kw) -> None:
    server.fail(op, status, code, message, **kw)


# ------------------------------------------------------------------------- one table, both transports

# (REST status, the gRPC code Qdrant sends for the same error, the error class it must become)
TABLE = [
    (408, C.DEADLINE_EXCEEDED, TransientStoreError),  # StorageError::Timeout
    (429, C.RESOURCE_EXHAUSTED, TransientStoreError),  # rate limited, no Retry-After
    (500, C.INTERNAL, TransientStoreError),  # StorageError::ServiceError
    (502, C.UNAVAILABLE, TransientStoreError),
    (503, C.UNAVAILABLE, TransientStoreError),  # StorageError::ShardUnavailable
    (504, C.UNAVAILABLE, TransientStoreError),
    (400, C.INVALID_ARGUMENT, StoreRequestError),  # StorageError::BadInput ("Wrong input: ...")
    (422, C.INVALID_ARGUMENT, StoreRequestError),  # validation of the request body
    (401, C.UNAUTHENTICATED, StoreError),
    (403, C.PERMISSION_DENIED, StoreError),
    (404, C.NOT_FOUND, StoreError),
    (409, C.ALREADY_EXISTS, StoreError),
]


@pytest.mark.parametrize("status, code, expected", TABLE, ids=[f"{s}-{c.name}" for s, c, _ in TABLE])
def test_one_retry_table_for_rest_and_grpc(
    server: QdrantStandIn, store: QdrantStore, status: int, code: grpc.StatusCode, expected: type
) -> None:
    reason = f"Service error: the reason the server gave for {status}"
    fail_once(server, "count", status, code, reason)
    with pytest.raises(StoreError) as raised:
        store.count()
    assert type(raised.value) is expected
    assert reason in str(raised.value)  # the server's own words, not the client's first line
    assert "_InactiveRpcError" not in str(raised.value) and "Raw response content" not in str(raised.value)
    assert store.count() == 0  # the next call goes through


def test_a_refused_request_keeps_the_servers_reason(server: QdrantStandIn, store: QdrantStore, transport: str) -> None:
    reason = 'Wrong input: Bad request: Index required but not found for "year" of one of the following types'
    fail_once(server, "query_batch", 400, C.INVALID_ARGUMENT, reason)
    request = rq.Request(query=rq.Nearest([0.5, 0.5, 0.5, 0.5]), using="dense", limit=3)
    with pytest.raises(StoreRequestError, match="Index required but not found") as raised:
        store.query_batch([request])
    expected = "gRPC INVALID_ARGUMENT" if transport == "grpc" else "HTTP 400 Bad Request"
    assert f"query failed: {expected}: {reason}" in str(raised.value)


def test_retry_after_is_kept_on_both_transports(server: QdrantStandIn, store: QdrantStore) -> None:
    server.fail(
        "count",
        429,
        C.RESOURCE_EXHAUSTED,
        "Rate limiting exceeded",
        headers={"Retry-After": "3"},
        trailing=(("retry-after", "3"),),
    )
    with pytest.raises(TransientStoreError, match="Rate limiting exceeded") as raised:
        store.count()
    assert raised.value.retry_after == 3.0


def test_a_full_disk_is_not_retried(server: QdrantStandIn, store: QdrantStore) -> None:
    message = "No space left on device: not enough disk space"
    server.fail("count", 507, C.RESOURCE_EXHAUSTED, message, trailing=(("qdrant-insufficient-storage", "1"),))
    with pytest.raises(StoreError, match="out of disk space") as raised:
        store.count()
    assert not isinstance(raised.value, TransientStoreError)


@pytest.mark.parametrize(
    "body",
    [b"<html><body>upstream sent garbage</body></html>", b'{"result": {"count": "many"}, "status": "ok"}'],
    ids=["not-json", "wrong-shape"],
)
def test_an_unreadable_rest_answer_is_not_retried(server: QdrantStandIn, body: bytes) -> None:
    st = open_store(Settings().replace(qdrant=server.qdrant(False)).qdrant, "c")
    server.garbage["count"] = [body]
    with pytest.raises(StoreError) as raised:
        st.count()
    assert not isinstance(raised.value, TransientStoreError)


def test_an_unreadable_grpc_answer_is_not_retried(server: QdrantStandIn) -> None:
    st = open_store(Settings().replace(qdrant=server.qdrant(True)).qdrant, "c")
    server.garbage["count"] = [b"\xff\xff\xff\xff"]  # no CountResponse
    with pytest.raises(StoreError, match="unreadable response") as raised:
        st.count()
    assert not isinstance(raised.value, TransientStoreError)


def point(i: int) -> PointRecord:
    return PointRecord(
        id=str(uuid.UUID(int=i)),
        dense=np.ones(4, np.float32),
        sparse=SparseVec((1,), (0.5,)),
        colbert=None,
        payload={"kind": "chunk"},
    )


def test_the_writer_retries_what_the_table_says_and_nothing_else(server: QdrantStandIn, store: QdrantStore) -> None:
    sleeps: list[float] = []
    w = Writer(store, max_points=1, retries=3, sleep=sleeps.append)
    fail_once(server, "upsert", 408, C.DEADLINE_EXCEEDED, "Timeout error: operation timed out")
    fail_once(server, "upsert", 500, C.INTERNAL, "Service internal error: failed to apply on a replica")
    w.add(point(1))
    assert len(sleeps) == 2 and store.count() == 1
    server.garbage["upsert"] = [b"<html>proxy</html>"] if store.rest else [b"\xff\xff"]
    with pytest.raises(StoreError):
        w.add(point(2))
    assert len(sleeps) == 2  # an answer that can never be read is not sent again


# ------------------------------------------------------------------------- every call wrapped


def test_collection_calls_raise_store_errors_with_the_reason(server: QdrantStandIn, store: QdrantStore) -> None:
    fail_once(server, "get", 500, C.INTERNAL, "Service internal error: collection config unreadable")
    with pytest.raises(StoreError, match="reading collection 'c' failed: .*collection config unreadable"):
        store.open_collection()
    fail_once(server, "retrieve", 404, C.NOT_FOUND, "Not found: Collection `c` doesn't exist!")
    with pytest.raises(StoreError, match="retrieve failed: .*doesn't exist"):
        store.retrieve(["4f1c3b1e-0000-4000-8000-000000000000"])
    fail_once(server, "delete_collection", 403, C.PERMISSION_DENIED, "Forbidden: read-only API key")
    with pytest.raises(StoreError, match="deleting collection 'c' failed: .*read-only API key.*QDRANT_API_KEY"):
        store.ensure_collection(CollectionSpec("c", dense_dim=4, colbert_dim=3), recreate=True)


def test_the_cli_prints_one_line_for_a_failing_server(
    server: QdrantStandIn, store: QdrantStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from indexer import cli as indexer_cli

    fail_once(server, "get", 503, C.UNAVAILABLE, "Service unavailable: shard 0 is not active")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[qdrant]\nurl = "{server.qdrant(False)["url"]}"\nprefer_grpc = false\n')
    code = indexer_cli.main(["delete", "--doc-id", "x", "--collection", "c", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 3 and "shard 0 is not active" in err and "Traceback" not in err


# ------------------------------------------------------------------------- the timeout


def test_a_fractional_timeout_is_rounded_up_not_down(transport: str) -> None:
    with QdrantStandIn(delay=0.2) as slow:  # every answer takes 0.2 s
        settings = Settings().replace(qdrant={**slow.qdrant(transport == "grpc"), "timeout": 0.5})
        assert client_options(settings.qdrant)["timeout"] == 1  # int(0.5) would be 0: every call times out
        st = open_store(settings.qdrant, "c")
        st.ensure_collection(CollectionSpec("c", dense_dim=4, colbert_dim=3))
        assert st.count() == 0
        st.close()


# ------------------------------------------------------------------------- the service


@pytest.mark.slow
def test_the_service_maps_a_refused_search_to_422_and_a_lost_server_to_503(
    tiny_model_dir: Path, encoder, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with QdrantStandIn() as srv:
        s = make_settings(tiny_model_dir, ":memory:", qdrant=srv.qdrant(transport == "grpc"))
        with serve(s, encoder, [SAMPLES / "en"]) as base, httpx.Client(base_url=base, timeout=60) as client:
            assert client.post("/search", json={"query": "remote work", "limit": 3}).status_code == 200
            reason = 'Wrong input: Bad request: Index required but not found for "year"'
            srv.fail("query_batch", 400, C.INVALID_ARGUMENT, reason)
            r = client.post("/search", json={"query": "remote work", "filter": {"year": 2024}})
            assert r.status_code == 422 and reason in r.json()["detail"]
            srv.fail("query_batch", 503, C.UNAVAILABLE, "Service unavailable: no active replica")
            r = client.post("/search", json={"query": "remote work"})
            assert r.status_code == 503
            assert "vector store" in r.json()["detail"]
            assert "no active replica" not in r.json()["detail"]  # the server's own text stays in the log
            assert "no active replica" in caplog.text
