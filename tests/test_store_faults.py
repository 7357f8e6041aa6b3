"""Faults of the store: a server lost mid-run (injected in qdrant-client's transport), errors classified.

No Qdrant server can run on our build machines, so the lost server is simulated where the client
meets the network: its calls raise the exceptions qdrant-client raises when a connection drops
(ResponseHandlingException around httpx.ConnectError), against the client's real local-mode engine.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import StoreError
from indexer.pipeline import IngestStopped, ingest
from indexer.records import kind_filter
from indexer.store import open_store
from indexer.store.errors import is_transient
from indexer.store.qdrant import QdrantStore
from tests.helpers import make_settings


def connection_lost() -> Exception:
    return ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))


class FlakyTransport:
    """Wraps client.upsert / client.delete: calls number ``fail_from`` .. ``fail_to`` (1-based) fail."""

    def __init__(self, client, fail_from: int, fail_to: float) -> None:
        self.calls = 0
        self.fail_from, self.fail_to = fail_from, fail_to
        self.upsert, self.delete = client.upsert, client.delete
        client.upsert = self._wrap(self.upsert)
        client.delete = self._wrap(self.delete)

    def _wrap(self, fn):
        def call(*args, **kwargs):
            self.calls += 1
            if self.fail_from <= self.calls <= self.fail_to:
                raise connection_lost()
            return fn(*args, **kwargs)

        return call

    def restore(self, client) -> None:
        client.upsert, client.delete = self.upsert, self.delete


def corpus(root: Path) -> Path:
    root.mkdir()
    for i in range(6):
        (root / f"d{i}.txt").write_text(f"Document {i}. " + "Contract terms and delivery schedule. " * (8 + 3 * i))
    return root


def contents(store) -> dict:
    points = {p.id: p.payload for p in store.scroll()}
    vectors = {p.id: p.vectors for p in store.retrieve(list(points), with_vectors=True)}
    return {pid: (payload, vectors[pid]) for pid, payload in points.items()}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for pid, (payload, vectors) in want.items():
        assert got[pid][0] == payload
        for name, v in vectors.items():
            g = got[pid][1][name]
            if hasattr(v, "indices"):
                assert g.indices == v.indices
                np.testing.assert_allclose(g.values, v.values, rtol=1e-4)
            else:
                np.testing.assert_allclose(np.asarray(g), np.asarray(v), atol=1e-4)


@pytest.fixture
def local_settings(tiny_model_dir: Path) -> Settings:
    s = make_settings(tiny_model_dir, ":memory:", "local")
    return s.replace(ingest={"write_batch_points": 3, "write_retries": 2}, model={"batch_size": 2})


@pytest.fixture
def clean(local_settings: Settings, encoder: BGEM3Encoder, tmp_path: Path) -> tuple[Path, dict]:
    root = corpus(tmp_path / "c")
    store = open_store(local_settings.qdrant, "clean")
    ingest([root], local_settings, encoder, store, progress=False)
    return root, contents(store)


def test_a_blip_is_retried_and_the_run_completes(local_settings, encoder, clean, caplog) -> None:
    root, want = clean
    store = open_store(local_settings.qdrant, "blip")
    flaky = FlakyTransport(store.client, fail_from=4, fail_to=5)  # two failures in a row, retries = 2
    report = ingest([root], local_settings, encoder, store, progress=False)
    assert flaky.calls > 5
    assert report.documents == 6
    assert "retry 2" in caplog.text
    assert_same(contents(store), want)


def test_server_lost_stops_cleanly_and_the_next_run_finishes(local_settings, encoder, clean) -> None:
    root, want = clean
    store = open_store(local_settings.qdrant, "lost")
    flaky = FlakyTransport(store.client, fail_from=6, fail_to=float("inf"))  # the server never comes back
    with pytest.raises(IngestStopped, match="run the same command again") as stopped:
        ingest([root], local_settings, encoder, store, progress=False)
    assert isinstance(stopped.value.__cause__, StoreError)
    assert stopped.value.report.files  # what was done before the loss is reported
    flaky.restore(store.client)  # the server is back
    again = ingest([root], local_settings, encoder, store, progress=False)
    assert again.documents + again.unchanged == 6
    assert not again.failed, again.failed
    assert store.count(kind_filter("chunk")) == sum(1 for p in want.values() if p[0]["kind"] == "chunk")
    assert_same(contents(store), want)


def test_cli_exit_code_when_the_store_is_lost(local_settings, tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    from indexer import cli as indexer_cli

    root = corpus(tmp_path / "c")
    real_connect = QdrantStore.connect

    def connect(settings, collection):
        store = real_connect(settings, collection)
        FlakyTransport(store.client, fail_from=3, fail_to=float("inf"))
        return store

    monkeypatch.setattr(QdrantStore, "connect", staticmethod(connect))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = 128\nchunk_overlap = 16\n'
        '[qdrant]\nengine = "local"\npath = ":memory:"\n[ingest]\nwrite_retries = 1\nwrite_batch_points = 2\n'
    )
    assert indexer_cli.main(["ingest", str(root), "--config", str(cfg), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "error: the store failed and the run stopped" in err
    assert "Connection refused" in err
    assert "Traceback" not in err


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    "error, transient",
    [
        (connection_lost(), True),
        (httpx.ReadTimeout("timed out"), True),
        (UnexpectedResponse(503, "Service Unavailable", b"", httpx.Headers()), True),
        (UnexpectedResponse(429, "Too Many Requests", b"", httpx.Headers()), True),
        (UnexpectedResponse(400, "Bad Request", b"wrong vector size", httpx.Headers()), False),
        (_RpcError(grpc.StatusCode.UNAVAILABLE), True),
        (_RpcError(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (_RpcError(grpc.StatusCode.INVALID_ARGUMENT), False),
        (ValueError("Wrong input: Vector dimension error"), False),
    ],
)
def test_error_classification(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.slow
def test_an_embedded_store_held_elsewhere_names_its_holder(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, capsys
) -> None:
    import subprocess
    import sys

    from indexer import cli as indexer_cli
    from tests.helpers import REPO, SAMPLES

    s = make_settings(tiny_model_dir, tmp_path / "store", "edge")
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES / "en"], s, encoder, store, progress=False)
    store.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from indexer.store.edge import EdgeStore; s=EdgeStore(sys.argv[1], 'test_docs');"
            " s.open_collection(); print('held', flush=True); time.sleep(60)",
            str(tmp_path / "store"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[model]\nname = "/no/model/needed"\n[qdrant]\npath = "{tmp_path / "store"}"\n'
            '[collection]\nname = "test_docs"\n'
        )
        assert indexer_cli.main(["ingest", str(SAMPLES / "en"), "--config", str(cfg), "--no-progress"]) == 3
        err = capsys.readouterr().err
        assert f"{tmp_path / 'store' / 'test_docs'} is already open in another process" in err
        assert f"held by pid {holder.pid}" in err
        assert "cannot load model" not in err  # before the model
    finally:
        holder.kill()
        holder.wait()
