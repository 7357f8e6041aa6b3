"""The server path over both transports, against a loopback Qdrant (``tests.qdrant_standin``) holding the
samples: thresholds on servers that drop them, the version check, acknowledged writes, REST batches under
the request limit, and the collection-creation request of a cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from indexer import requests as rq
from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import ConfigError, QueryError, StoreError, StoreRequestError, TransientStoreError
from indexer.models import PointRecord, SparseVec
from indexer.pipeline import ingest
from indexer.runtime import collection_spec
from indexer.schema import PAYLOAD_INDEXES, CollectionSpec
from indexer.store import open_store
from indexer.store.qdrant import QdrantStore
from indexer.store.qdrant_async import AsyncQdrantStore
from indexer.writer import Writer
from retriever import Retriever
from tests.helpers import SAMPLES, make_settings
from tests.qdrant_standin import QdrantStandIn

QUERY = "неустойка за просрочку поставки"


@pytest.fixture(scope="module", params=["grpc", "rest"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def indexed(tiny_model_dir: Path, encoder: BGEM3Encoder, transport: str) -> Iterator[QdrantStandIn]:
    """A stand-in server holding the samples, ingested through it over ``transport``."""
    with QdrantStandIn() as srv:
        s = server_settings(tiny_model_dir, srv, transport)
        store = open_store(s.qdrant, s.collection.name)
        ingest([SAMPLES], s, encoder, store, progress=False)
        store.close()
        yield srv


def server_settings(model_dir: Path, srv: QdrantStandIn, transport: str, **sections: dict) -> Settings:
    s = make_settings(model_dir, ":memory:", qdrant=srv.qdrant(transport == "grpc"))
    return s.replace(**sections) if sections else s


def retriever(model_dir: Path, encoder: BGEM3Encoder, srv: QdrantStandIn, transport: str, **retrieval) -> Retriever:
    s = server_settings(model_dir, srv, transport, retrieval=retrieval or {"mode": "dense"})
    return Retriever(s, encoder=encoder, store=open_store(s.qdrant, s.collection.name))


# ------------------------------------------------------------------------- item 2: the final threshold


@pytest.mark.parametrize("mode", ["m3", "hybrid_colbert", "colbert", "dense", "sparse"])
def test_the_final_threshold_holds_on_a_server_that_drops_it(
    tiny_model_dir: Path, encoder: BGEM3Encoder, indexed: QdrantStandIn, transport: str, mode: str
) -> None:
    indexed.version = "1.16.3"  # LocalShard::rescore ignores a formula query's score_threshold before 1.17
    try:
        with retriever(tiny_model_dir, encoder, indexed, transport, mode=mode, prefetch_limit=50) as r:
            everything = r.search(QUERY, limit=30)
        half = len(everything) // 2  # a cut between two scores: engines differ on ties (> or >=)
        cut = (everything[half - 1].score + everything[half].score) / 2
        assert everything[half - 1].score > cut > everything[half].score
        with retriever(tiny_model_dir, encoder, indexed, transport, mode=mode, prefetch_limit=50, min_score=cut) as r:
            kept = r.search(QUERY, limit=30)
            raw = r.store.query_batch(r.plan([QUERY], limit=30).requests(r.encoder.encode_queries([QUERY])))[0]
    finally:
        indexed.version = "1.19.0"
    assert kept and [h.id for h in kept] == [h.id for h in everything if h.score >= cut]
    if mode == "m3":  # the server really answered below the threshold: without the client's cut, this fails
        assert len(raw) > len(kept)


# ------------------------------------------------------------------------- item 4: server versions


def test_features_the_server_lacks_are_refused_naming_the_version(
    tiny_model_dir: Path, encoder: BGEM3Encoder, indexed: QdrantStandIn, transport: str
) -> None:
    indexed.version = "1.13.2"
    try:
        with retriever(tiny_model_dir, encoder, indexed, transport) as r:
            sent = len(indexed.of("query_batch"))
            assert r.search(QUERY, limit=3)  # dense needs nothing new
            with pytest.raises(QueryError, match=r"runs 1\.13\.2: RRF with a k parameter .* needs Qdrant 1\.15\.4"):
                r.search(QUERY, mode="hybrid")
            with pytest.raises(QueryError, match=r"formula queries \(mode m3\) needs Qdrant 1\.14\.0"):
                r.search(QUERY, mode="m3")
            assert r.search(QUERY, mode="hybrid_dbsf", limit=3)  # DBSF: 1.11
            assert len(indexed.of("query_batch")) == sent + 2  # nothing refused reached the server
        health = indexed.of("health")[-1]
        assert health.transport == transport  # read over the transport in use (GET / or the gRPC health check)
    finally:
        indexed.version = "1.19.0"


def test_rrf_weights_need_1_17_and_are_sent_from_there(
    tiny_model_dir: Path, encoder: BGEM3Encoder, indexed: QdrantStandIn, transport: str
) -> None:
    indexed.version = "1.16.3"  # would fuse with the weights silently ignored
    try:
        weighted = retriever(tiny_model_dir, encoder, indexed, transport, mode="dense", rrf_weights=(3.0, 1.0))
        with weighted as r, pytest.raises(QueryError, match=r"weighted RRF .* needs Qdrant 1\.17\.0"):
            r.search(QUERY, mode="hybrid")
        with pytest.raises(StoreError, match=r"retrieval.mode 'hybrid': .* needs Qdrant 1\.17\.0"):
            retriever(tiny_model_dir, encoder, indexed, transport, mode="hybrid", rrf_weights=(3.0, 1.0))
        indexed.version = "1.17.0"
        with retriever(tiny_model_dir, encoder, indexed, transport, mode="hybrid", rrf_weights=(3.0, 1.0)) as r:
            assert r.search(QUERY, limit=3)
        sent = indexed.of("query_batch")[-1].args["searches"][0].query
        assert isinstance(sent, models.RrfQuery) and sent.rrf.weights == [3.0, 1.0]
    finally:
        indexed.version = "1.19.0"


def test_a_server_older_than_supported_is_refused_at_open(transport: str) -> None:
    old = pytest.raises(StoreError, match=r"runs 1\.9\.7; this tool needs Qdrant 1\.10\.0 or later")
    with QdrantStandIn(version="1.9.7") as srv, old:
        open_store(Settings().replace(qdrant=srv.qdrant(transport == "grpc")).qdrant, "c")


# ------------------------------------------------------------------------- item 8: acknowledged writes


def test_every_write_waits_for_its_outcome_in_the_configured_order(indexed: QdrantStandIn) -> None:
    writes = indexed.of("upsert") + indexed.of("delete") + indexed.of("create_index")
    assert len(indexed.of("upsert")) > 1 and indexed.of("create_index")
    assert {(c.args["wait"], c.args["ordering"]) for c in writes} == {(True, "medium")}


def test_a_write_the_server_did_not_confirm_is_retried(tiny_model_dir: Path, transport: str) -> None:
    with QdrantStandIn() as srv:
        s = server_settings(
            tiny_model_dir, srv, transport, qdrant={**srv.qdrant(transport == "grpc"), "write_ordering": "strong"}
        )
        store = open_store(s.qdrant, "c")
        store.ensure_collection(collection_spec_small())
        srv.statuses = [models.UpdateStatus.WAIT_TIMEOUT]  # 1.17+: in the WAL, not confirmed applied
        with pytest.raises(TransientStoreError, match="did not confirm"):
            store.upsert([record(1)])
        sleeps: list[float] = []
        srv.statuses = [models.UpdateStatus.WAIT_TIMEOUT]
        w = Writer(store, max_points=1, sleep=sleeps.append)
        w.add(record(2))
        assert len(sleeps) == 1 and store.count() == 2
        assert {c.args["ordering"] for c in srv.of("upsert")} == {"strong"}


def collection_spec_small() -> CollectionSpec:
    return CollectionSpec("c", dense_dim=4, colbert_dim=None)


def record(i: int) -> PointRecord:
    return PointRecord(str(uuid.UUID(int=i)), {"kind": "chunk"}, np.ones(4, np.float32), SparseVec((1,), (0.5,)))


# ------------------------------------------------------------------------- item 9: REST batches by bytes


def colbert_requests(n: int, rows: int) -> list[rq.Request]:
    """Searches of about 16 bytes x rows x 64 floats of JSON each (ColBERT-shaped queries)."""
    return [
        rq.Request(
            query=rq.Nearest([[((i + r + k) % 7 - 3) / 7.123456789 for k in range(64)] for r in range(rows)]),
            using="colbert",
            limit=3,
            with_payload=True,
        )
        for i in range(n)
    ]


def answers(results: list) -> list:
    """Ids and scores to float32 precision (gRPC carries the query's floats as float32, JSON as double)."""
    return [[(h.id, round(h.score, 3)) for h in hits] for hits in results]


@pytest.fixture
def small_limit_server() -> Iterator[QdrantStandIn]:
    with QdrantStandIn(max_request_bytes=1024 * 1024) as srv:  # the server's service.max_request_size_mb = 1
        rest = Settings().replace(qdrant={**srv.qdrant(False), "max_request_bytes": 1024 * 1024})
        store = open_store(rest.qdrant, "c")
        store.ensure_collection(CollectionSpec("c", dense_dim=4, colbert_dim=64))
        points = [replace(record(i), colbert=np.eye(64, dtype=np.float32)[i : i + 3]) for i in range(5)]
        store.upsert(points)
        store.close()
        yield srv


@pytest.mark.slow
def test_rest_batch_searches_are_split_under_the_request_limit(small_limit_server: QdrantStandIn) -> None:
    srv = small_limit_server
    requests = colbert_requests(8, rows=300)  # about 300 KB of JSON each: 2.4 MB in all
    rest = open_store(Settings().replace(qdrant={**srv.qdrant(False), "max_request_bytes": 1024 * 1024}).qdrant, "c")
    grpc = open_store(Settings().replace(qdrant=srv.qdrant(True)).qdrant, "c")
    assert answers(rest.query_batch(requests)) == answers(grpc.query_batch(requests))  # same answers, in order
    bodies = [c.size for c in srv.of("query_batch") if c.transport == "rest"]
    assert len(bodies) >= 3 and max(bodies) <= 1024 * 1024 and sum(bodies) > 2 * 1024 * 1024

    async def run_async() -> list:
        s = Settings().replace(qdrant={**srv.qdrant(False), "max_request_bytes": 1024 * 1024})
        astore = AsyncQdrantStore.connect(s.qdrant, "c")
        try:
            return await astore.query_batch(requests)
        finally:
            await astore.close()

    before = len(srv.of("query_batch"))
    assert answers(asyncio.run(run_async())) == answers(grpc.query_batch(requests))
    assert all(c.size <= 1024 * 1024 for c in srv.of("query_batch")[before:])


def test_a_single_search_over_the_rest_limit_is_refused_before_sending(small_limit_server: QdrantStandIn) -> None:
    srv = small_limit_server
    rest = open_store(Settings().replace(qdrant={**srv.qdrant(False), "max_request_bytes": 1024 * 1024}).qdrant, "c")
    with pytest.raises(StoreRequestError, match="over the server's REST request limit .* use gRPC"):
        rest.query_batch(colbert_requests(1, rows=1200))
    assert not srv.of("query_batch")


# ------------------------------------------------------------------------- item 10: cluster settings


def test_the_collection_creation_request_carries_cluster_and_segment_settings(
    tiny_model_dir: Path, encoder: BGEM3Encoder, transport: str
) -> None:
    with QdrantStandIn() as srv:
        s = server_settings(
            tiny_model_dir,
            srv,
            transport,
            collection={"name": "cluster", "shard_number": 6, "replication_factor": 2, "write_consistency_factor": 2},
        )
        spec = collection_spec(s, encoder)
        store = open_store(s.qdrant, "cluster")
        store.ensure_collection(spec)
        created = srv.created["cluster"]
        assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (
            6,
            2,
            2,
        )
        # Segments sized by ColBERT's storage: chunk_size x colbert_dim x 4 bytes (float32 in the test settings)
        per_chunk_kb = s.chunking.chunk_size * encoder.colbert_dim * 4 / 1024
        optimizers = created["optimizers_config"]
        assert optimizers.max_segment_size == round(per_chunk_kb * 20_000) == spec.max_segment_size_kb
        assert optimizers.indexing_threshold == round(per_chunk_kb * 2_500) == spec.indexing_threshold_kb
        assert isinstance(store, QdrantStore)
        store.close()


def test_cluster_settings_from_the_ingest_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    from indexer import cli as indexer_cli

    with QdrantStandIn() as srv:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = 128\nchunk_overlap = 16\n'
            f'[qdrant]\nurl = "{srv.qdrant(True)["url"]}"\ngrpc_port = {srv.grpc_port}\n'
        )
        argv = ["ingest", str(SAMPLES / "en"), "--config", str(cfg), "--collection", "cli", "--no-progress"]
        argv += ["--shards", "3", "--replication-factor", "2", "--write-consistency-factor", "2"]
        assert indexer_cli.main(argv) == 0
        created = srv.created["cli"]
        assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (
            3,
            2,
            2,
        )


def test_write_consistency_cannot_exceed_the_replicas() -> None:
    with pytest.raises(ConfigError, match=r"write_consistency_factor \(3\) cannot exceed replication_factor \(2\)"):
        Settings().replace(collection={"replication_factor": 2, "write_consistency_factor": 3})


def test_two_writers_creating_one_collection_at_once_both_go_on(transport: str) -> None:
    """Both see no collection, both create it: the second gets 409 / ALREADY_EXISTS and checks it instead."""
    import threading

    with QdrantStandIn() as srv:
        srv.gates["exists"] = threading.Barrier(2)  # both existence checks answer before either creation
        settings = Settings().replace(qdrant=srv.qdrant(transport == "grpc"))
        errors: list[BaseException] = []

        def open_for_writing() -> None:
            store = open_store(settings.qdrant, "c")
            try:
                store.ensure_collection(collection_spec_small())
            except BaseException as e:  # noqa: BLE001 - asserted below
                errors.append(e)
            finally:
                store.close()

        threads = [threading.Thread(target=open_for_writing) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(srv.of("create")) == 2 and not errors
        assert srv.indexes["c"].keys() == set(PAYLOAD_INDEXES)
