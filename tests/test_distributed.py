"""Ingestion past one process: ``--ray`` on a local Ray (2 CPUs, started here) and ``--partition I/N``.

Each comparison is against a single-process run of the same corpus: the same point ids and payloads
exactly, vectors up to batch-composition float noise (``tests.helpers.assert_same``). The server path
runs against the loopback stand-in server (the actors write to it themselves); the embedded path on Edge
(the actors hand vectors back, the driver writes). A killed worker is a real SIGKILL of a Ray actor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer import cli as indexer_cli
from indexer.config import Settings
from indexer.distributed import Partition, parse_partition, share_of
from indexer.encoder import BGEM3Encoder
from indexer.errors import ConfigError
from indexer.pipeline import IngestReport, ingest
from indexer.records import KIND_LEASE, kind_filter
from indexer.store import open_store
from tests.helpers import assert_same, make_settings, stored_points
from tests.qdrant_standin import QdrantStandIn

WORDS = ["supply", "contract", "delivery", "penalty", "invoice", "warehouse", "carrier", "договор", "поставка"]


def make_corpus(root: Path, docs: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(docs):
        words = " ".join(WORDS[(i + j * 5) % len(WORDS)] for j in range(150 + 40 * i))
        (root / f"doc{i}.txt").write_text(f"Document {i}. {words}\n", encoding="utf-8")
    (root / "notes").mkdir()
    (root / "notes" / "guide.md").write_text("# Guide\n\n## Delivery\n\nThe carrier brings it.\n", encoding="utf-8")
    (root / "notes" / "image.png").write_bytes(b"\x89PNG")  # skipped, in both runs
    return root


def outcome(report: IngestReport) -> list[tuple[str, str, int, int]]:
    return sorted((f.source, f.status, f.chunks, f.tokens) for f in report.files)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("dist") / "corpus")


@pytest.fixture(scope="module")
def server() -> Iterator[QdrantStandIn]:
    with QdrantStandIn() as s:
        yield s


def server_settings(model_dir: Path, server: QdrantStandIn, name: str, **ingest: Any) -> Settings:
    return make_settings(
        model_dir,
        ":memory:",
        "local",
        qdrant=server.qdrant(grpc=False),
        collection={"name": name, "colbert_datatype": "float32"},
        ingest={"write_batch_points": 2, **ingest},
    )


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path, encoder: BGEM3Encoder, corpus: Path, server: QdrantStandIn) -> dict[str, Any]:
    """The reference: one single-process run of the corpus into a server collection."""
    s = server_settings(tiny_model_dir, server, "single")
    store = open_store(s.qdrant, s.collection.name)
    try:
        report = ingest([corpus], s, encoder, store, progress=False)
        return {"report": report, "points": stored_points(store)}
    finally:
        store.close()


# ------------------------------------------------------------------------------------------- --partition


def test_shares_are_stable_and_cover_every_document_once() -> None:
    ids = [f"folder/doc{i}.pdf" for i in range(400)]
    shares = [share_of(d, 4) for d in ids]
    assert shares == [share_of(d, 4) for d in ids]  # a pure function of the id
    assert share_of("contracts/acme.pdf", 8) == 0  # fixed by SHA-256: the same on every machine and release
    assert share_of("contracts/acme.pdf", 3) == 0 and share_of("contracts/acme.pdf", 5) == 2
    counts = np.bincount(shares, minlength=4)
    assert counts.min() > 70, counts  # roughly even
    parts = [Partition(i, 4) for i in range(4)]
    assert all(sum(p.holds(d) for p in parts) == 1 for d in ids)
    assert parse_partition("2/8") == Partition(2, 8) and str(parse_partition(" 0 / 1 ")) == "0/1"
    for bad in ["8/8", "1", "-1/2", "a/b", "0/0"]:
        with pytest.raises(ConfigError, match="I/N|0 <= I < N"):
            parse_partition(bad)


def test_two_partitions_together_equal_one_full_run(
    tiny_model_dir: Path, encoder: BGEM3Encoder, corpus: Path, server: QdrantStandIn, single: dict[str, Any]
) -> None:
    s = server_settings(tiny_model_dir, server, "partitions")
    reports: dict[int, IngestReport] = {}

    def run(i: int) -> None:  # one store client per job, as separate processes would have
        store = open_store(s.qdrant, s.collection.name)
        try:
            reports[i] = ingest([corpus], s, encoder, store, progress=False, partition=Partition(i, 2))
        finally:
            store.close()

    store = open_store(s.qdrant, s.collection.name)
    ingest([corpus / "doc0.txt"], s, encoder, store, progress=False)  # the collection exists before both start
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    try:
        sources = [{f.source for f in reports[i].files} for i in range(2)]
        assert not sources[0] & sources[1] and sources[0] | sources[1] == {f.source for f in single["report"].files}
        assert store.count(kind_filter(KIND_LEASE)) == 0
        got = stored_points(store)
    finally:
        store.close()
    # doc0.txt was ingested alone first (root: its folder), then again from the corpus root: the same doc id
    assert_same(got, single["points"])


def test_prune_with_a_partition_touches_only_its_own_share(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    s = make_settings(tiny_model_dir, tmp_path / "store")
    store = open_store(s.qdrant, s.collection.name)
    try:
        ingest([corpus], s, encoder, store, progress=False)
        docs = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.txt"))
        mine = next(d for d in docs if share_of(d, 2) == 0)
        theirs = next(d for d in docs if share_of(d, 2) == 1)
        (corpus / mine).unlink()
        (corpus / theirs).unlink()
        report = ingest([corpus], s, encoder, store, progress=False, prune=True, partition=Partition(0, 2))
        assert report.pruned == [mine]  # the other share's vanished file is left to its own job
        report = ingest([corpus], s, encoder, store, progress=False, prune=True, partition=Partition(1, 2))
        assert report.pruned == [theirs]
    finally:
        store.close()


def test_cli_partition_and_bad_values(tiny_model_dir: Path, corpus: Path, tmp_path: Path, capsys: Any) -> None:
    common = ["ingest", str(corpus), "--model", str(tiny_model_dir), "--qdrant-path", str(tmp_path / "s")]
    assert indexer_cli.main([*common, "--partition", "3/2", "--no-progress"]) == 3
    assert "0 <= I < N" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- --ray


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray of 2 CPUs; its workers get the crash point armed by the file this returns (absent: off)."""
    import ray

    arm = tmp_path_factory.mktemp("ray") / "crash-armed"
    env = {"INDEXER_CRASH_AT": "write:3", "INDEXER_CRASH_ONCE": str(arm), "PYTHONPATH": str(Path.cwd())}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="WARNING")
    try:
        yield arm
    finally:
        ray.shutdown()


@pytest.mark.slow  # a local Ray and a model per actor: about a minute each on 2 cores
def test_ray_run_on_a_server_equals_a_single_process_run(
    local_ray: Path,
    tiny_model_dir: Path,
    encoder: BGEM3Encoder,
    corpus: Path,
    server: QdrantStandIn,
    single: dict,
    tmp_path: Path,
    capsys: Any,
) -> None:
    from indexer.distributed.ray_run import ingest_on_ray

    s = server_settings(tiny_model_dir, server, "ray_server")
    store = open_store(s.qdrant, s.collection.name)
    try:
        report = ingest_on_ray([corpus], s, encoder, store, progress=False, docs_per_batch=3)
        assert outcome(report) == outcome(single["report"])
        assert "7 documents ingested" in report.summary() and "1 skipped" in report.summary()
        assert_same(stored_points(store), single["points"])
    finally:
        store.close()
    # The command line, again: nothing changed, so no file is read and no Ray job starts; the usual summary.
    config = tmp_path / "ray.toml"
    config.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = 128\nchunk_overlap = 16\n'
        f'[qdrant]\nurl = "{s.qdrant.url}"\ngrpc_port = {server.grpc_port}\nprefer_grpc = false\n'
        '[collection]\nname = "ray_server"\ncolbert_datatype = "float32"\n'
    )
    assert indexer_cli.main(["ingest", str(corpus), "--config", str(config), "--ray", "--no-progress"]) == 0
    assert "0 documents ingested (0 chunks, 0 tokens), 7 unchanged, 1 skipped" in capsys.readouterr().err


@pytest.mark.slow  # a local Ray and a model per actor: about a minute each on 2 cores
def test_ray_run_on_an_embedded_store_has_the_driver_write(
    local_ray: Path, tiny_model_dir: Path, encoder: BGEM3Encoder, corpus: Path, tmp_path: Path, single: dict
) -> None:
    from indexer.distributed.ray_run import ingest_on_ray

    s = make_settings(tiny_model_dir, tmp_path / "edge")
    store = open_store(s.qdrant, s.collection.name)
    try:
        report = ingest_on_ray([corpus], s, encoder, store, progress=False, docs_per_batch=3)
        assert outcome(report) == outcome(single["report"])
        assert_same(stored_points(store), single["points"])
    finally:
        store.close()


@pytest.mark.slow  # a local Ray and a model per actor: about a minute each on 2 cores
def test_a_ray_worker_killed_mid_run_is_retried_and_a_rerun_changes_nothing(
    local_ray: Path, tiny_model_dir: Path, encoder: BGEM3Encoder, corpus: Path, server: QdrantStandIn, single: dict
) -> None:
    from indexer.distributed.ray_run import ingest_on_ray

    s = server_settings(tiny_model_dir, server, "ray_killed")
    store = open_store(s.qdrant, s.collection.name)
    local_ray.touch()  # the first actor to reach its 3rd write is killed (SIGKILL); Ray restarts it
    try:
        report = ingest_on_ray([corpus], s, encoder, store, progress=False, docs_per_batch=3)
        assert not local_ray.exists(), "no worker was killed"
        assert outcome(report) == outcome(single["report"])
        assert store.count(kind_filter(KIND_LEASE)) == 0  # the retry took over its dead attempt's leases
        assert_same(stored_points(store), single["points"])
        again = ingest_on_ray([corpus], s, encoder, store, progress=False)
        assert again.unchanged == 7 and again.repaired == 0
        assert_same(stored_points(store), single["points"])
    finally:
        local_ray.unlink(missing_ok=True)
        store.close()


def test_the_distributed_steps_decide_refresh_and_defer_as_a_single_run(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    """plan, parse and commit in this process (what the driver and the workers do, without Ray): a file
    unchanged by size and time is not even a task, a touched one gets its record's new time, a changed one
    a new version, and a document another live writer holds is busy until it lets go."""
    import os

    from indexer.changes import find_items
    from indexer.chunking import Chunker
    from indexer.distributed.work import commit, parse, plan
    from indexer.leases import Leases, LeaseTimings, Owner
    from indexer.runtime import collection_spec
    from indexer.store import SerializedStore
    from indexer.versions import document_records
    from indexer.writer import Writer

    corpus = make_corpus(tmp_path / "corpus", docs=3)
    s = make_settings(tiny_model_dir, ":memory:", "local")
    store = SerializedStore(open_store(s.qdrant, s.collection.name))
    ingest([corpus], s, encoder, store, progress=False)
    (corpus / "doc1.txt").write_text("Document 1, rewritten: the carrier pays the penalty.\n", encoding="utf-8")
    os.utime(corpus / "doc2.txt", ns=(1, 1_000_000_000))  # touched: same bytes, another time
    (corpus / "new.txt").write_text("A new document about invoices.\n", encoding="utf-8")

    other = Leases(store, Owner.new("another writer"), LeaseTimings())
    held = other.claim("new.txt", "some version")
    report = IngestReport(collection=s.collection.name)
    items, _ = find_items([corpus], s, report)
    known = {r.doc_id: r for r in document_records(store)}
    tasks = plan(items, report.files, known, s)
    assert sorted(t.item.source for t in tasks) == ["doc1.txt", "doc2.txt", "new.txt"]  # doc0 and guide.md: not read
    chunker = Chunker(encoder.tokenizer, s.chunking.chunk_size, s.chunking.chunk_overlap, headings=True)
    parsed = [parse(t, s, chunker) for t in tasks]
    with Leases(store, Owner.new("distributed"), LeaseTimings()) as leases:
        writer = Writer(store, fence=leases.fence)
        results = commit(parsed, leases, writer, collection_spec(s, encoder), encode_with(encoder), 8)
        assert {r.source: r.status for r in results} == {"doc1.txt": "ok", "doc2.txt": "unchanged", "new.txt": "busy"}
        other.release(held, Writer(store))
        [late] = [p for p in parsed if p.item.source == "new.txt"]
        late.result.status = "ok"
        assert [
            r.status for r in commit([late], leases, writer, collection_spec(s, encoder), encode_with(encoder), 8)
        ] == ["ok"]
        writer.close()
    other.close()
    assert known["doc2.txt"].file_mtime_ns != 1_000_000_000
    assert {r.doc_id: r.file_mtime_ns for r in document_records(store)}["doc2.txt"] == 1_000_000_000

    reference = open_store(s.qdrant, "reference")
    try:
        ingest([corpus], s.replace(collection={"name": "reference"}), encoder, reference, progress=False)
        assert_same(stored_points(store), stored_points(reference))
    finally:
        reference.close()
        store.close()


def encode_with(encoder: BGEM3Encoder) -> Any:
    return lambda chunks: encoder.encode_passages([c.text for c in chunks])
