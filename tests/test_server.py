"""Against a real Qdrant server: run with QDRANT_URL set (``make test-server`` after ``docker compose up -d qdrant``,
or ``docker compose --profile cluster up -d qdrant-1 qdrant-2 qdrant-3`` for the cluster checks too).

Every mode on both transports, m3 with thresholds, two ingest runs at once on one collection, the version
check, and (on the cluster profile) the collection settings of configs/cluster.toml.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.admin import collection_status
from indexer.config import Settings, load_settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import QueryError, SchemaMismatchError
from indexer.pipeline import ingest
from indexer.schema import CollectionSpec
from indexer.store import open_store
from indexer.store.features import parse_version
from indexer.store.qdrant import QdrantStore
from retriever import Retriever, SearchMode
from tests.helpers import REPO, SAMPLES, make_settings

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL"),
]

QUERY = "неустойка за просрочку"
DOC = "ru/dogovor-postavki.txt"


def server_settings(model_dir: Path, grpc: bool, name: str, **sections: dict) -> Settings:
    s = make_settings(
        model_dir,
        ":memory:",
        qdrant={"url": os.environ["QDRANT_URL"], "api_key": os.environ.get("QDRANT_API_KEY"), "prefer_grpc": grpc},
        collection={"name": name, "colbert_datatype": "float16"},
    )
    return s.replace(**sections) if sections else s


def rest(path: str) -> dict:
    headers = {"api-key": os.environ["QDRANT_API_KEY"]} if os.environ.get("QDRANT_API_KEY") else {}
    return httpx.get(os.environ["QDRANT_URL"].rstrip("/") + path, headers=headers, timeout=30).json()


@pytest.fixture
def collection() -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    s = Settings().replace(qdrant={"url": os.environ["QDRANT_URL"], "api_key": os.environ.get("QDRANT_API_KEY")})
    store = open_store(s.qdrant, name)
    assert isinstance(store, QdrantStore)
    store.client.delete_collection(name)
    store.close()


@pytest.mark.parametrize("grpc", [True, False])
def test_ingest_and_every_mode_on_a_server(
    tiny_model_dir: Path, encoder: BGEM3Encoder, collection: str, grpc: bool
) -> None:
    s = server_settings(tiny_model_dir, grpc, collection, retrieval={"mode": "dense"})
    store = open_store(s.qdrant, collection)
    first = ingest([SAMPLES], s, encoder, store, progress=False)
    status = collection_status(store)
    assert status.chunks == first.chunks and status.unfinished == 0
    again = ingest([SAMPLES], s, encoder, store, progress=False)
    assert again.unchanged == first.documents and collection_status(store).chunks == first.chunks
    with pytest.raises(SchemaMismatchError):
        store.ensure_collection(CollectionSpec(name=collection, dense_dim=1024, colbert_dim=1024))
    schema = rest(f"/collections/{collection}")["result"]["payload_schema"]
    assert {"doc_id", "kind", "state", "chunk_index", "pages"} <= schema.keys()  # made before any upload
    with Retriever(s, encoder=encoder, store=store) as r:
        for mode in SearchMode:  # every mode needs at most 1.15.4 (without rrf_weights)
            hits = r.search(QUERY, limit=5, mode=mode, filter={"doc_id": DOC})
            assert hits and {h.doc_id for h in hits} == {DOC}


def test_m3_thresholds_on_a_server(tiny_model_dir: Path, encoder: BGEM3Encoder, collection: str) -> None:
    s = server_settings(tiny_model_dir, True, collection)
    store = open_store(s.qdrant, collection)
    ingest([SAMPLES], s, encoder, store, progress=False)
    everything = Retriever(s.replace(retrieval={"mode": "m3"}), encoder=encoder, store=store).search(QUERY, limit=30)
    half = len(everything) // 2
    cut = (everything[half - 1].score + everything[half].score) / 2
    r = Retriever(s.replace(retrieval={"mode": "m3", "min_score": cut}), encoder=encoder, store=store)
    kept = r.search(QUERY, limit=30)
    assert [h.id for h in kept] == [h.id for h in everything if h.score >= cut]
    # What the server itself answers: on 1.17+ it applies the threshold too (Qdrant PR 8097); before, it does not.
    raw = store.query_batch(r.plan([QUERY], limit=30).requests(encoder.encode_queries([QUERY])))[0]
    assert store.server_version is not None
    if store.server_version >= (1, 17, 0):
        assert len(raw) == len(kept)
    store.close()


def test_two_ingest_runs_at_once_on_one_collection(
    tiny_model_dir: Path, encoder: BGEM3Encoder, collection: str
) -> None:
    """Two jobs (two stores, two threads) ingest the same folder into one collection at the same time."""
    s = server_settings(tiny_model_dir, True, collection)
    reference = make_settings(tiny_model_dir, ":memory:", "local")
    expected = ingest([SAMPLES], reference, encoder, open_store(reference.qdrant, "ref"), progress=False)
    errors: list[BaseException] = []

    def run() -> None:
        store = open_store(s.qdrant, collection)
        try:
            ingest([SAMPLES], s, encoder, store, progress=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = open_store(s.qdrant, collection)
    status = collection_status(store)
    assert (status.documents, status.chunks, status.unfinished) == (expected.documents, expected.chunks, 0)
    third = ingest([SAMPLES], s, encoder, store, progress=False)  # nothing lost: everything is unchanged
    assert third.unchanged == expected.documents and collection_status(store).chunks == expected.chunks
    store.close()


@pytest.mark.parametrize("grpc", [True, False])
def test_the_server_version_is_read_and_checked(
    tiny_model_dir: Path, encoder: BGEM3Encoder, collection: str, grpc: bool
) -> None:
    s = server_settings(tiny_model_dir, grpc, collection, retrieval={"mode": "dense", "rrf_weights": (3.0, 1.0)})
    store = open_store(s.qdrant, collection)
    assert store.server_version == parse_version(rest("/")["version"])
    ingest([SAMPLES / "en"], s, encoder, store, progress=False)
    with Retriever(s, encoder=encoder, store=store) as r:
        assert r.store.server_version is not None
        if r.store.server_version >= (1, 17, 0):
            assert r.search("remote work", mode="hybrid", limit=3)
        else:
            with pytest.raises(QueryError, match=r"needs Qdrant 1\.17\.0"):
                r.search("remote work", mode="hybrid", limit=3)


def test_the_cluster_profile_collection_settings(tiny_model_dir: Path, encoder: BGEM3Encoder, collection: str) -> None:
    cluster = rest("/cluster").get("result") or {}
    if cluster.get("status") != "enabled" or len(cluster.get("peers", {})) < 3:
        pytest.skip("needs the cluster profile: docker compose --profile cluster up -d qdrant-1 qdrant-2 qdrant-3")
    sections = load_settings(REPO / "configs" / "cluster.toml", env={}).model_dump()
    s = server_settings(tiny_model_dir, True, collection).replace(
        collection={
            k: sections["collection"][k] for k in ("shard_number", "replication_factor", "write_consistency_factor")
        }
    )
    store = open_store(s.qdrant, collection)
    report = ingest([SAMPLES], s, encoder, store, progress=False)
    params = rest(f"/collections/{collection}")["result"]["config"]["params"]
    assert (params["shard_number"], params["replication_factor"], params["write_consistency_factor"]) == (6, 2, 1)
    shards = rest(f"/collections/{collection}/cluster")["result"]
    local = [sh["shard_id"] for sh in shards["local_shards"]]
    remote = [sh["shard_id"] for sh in shards["remote_shards"]]
    assert sorted(set(local + remote)) == list(range(6)) and len(local) + len(remote) == 12  # 6 shards x 2 replicas
    assert collection_status(store).chunks == report.chunks  # every batch acknowledged on every shard
    with Retriever(s, encoder=encoder, store=store) as r:
        assert r.search(QUERY, limit=5, filter={"doc_id": DOC})
