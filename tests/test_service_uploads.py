"""Uploads to the service's embedded store: writes take turns with searches, flushes run on a timer.

An upload's writes wait for the search holding the model, a point at a time. An acknowledged upload is
searchable at once and survives a kill -9 of the service before any flush (Edge logs every write in its
WAL first); the timer flushes what uploads left, and so does shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from indexer.admin import collection_status
from indexer.encoder import BGEM3Encoder
from indexer.models import PointRecord
from indexer.schema import CollectionSpec
from indexer.store.edge import EdgeStore
from indexer.store.serialized import SerializedStore
from retriever.api import Retriever
from retriever.scheduler import EncoderScheduler
from retriever.service import create_app
from tests.helpers import REPO, make_settings, small_points
from tests.service_helpers import LiveServer, free_port, open_retriever, service_config, wait_ready

TEXT = b"Zebra quartz invoices are reconciled every Tuesday by the orbital finance desk.\n\n" * 4


def upload(url: str, name: str, headers: dict[str, str] | None = None) -> dict:
    r = httpx.post(f"{url}/documents", files={"file": (name, TEXT)}, headers=headers or {}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


def test_an_uploads_writes_wait_for_the_search_holding_the_model_a_point_at_a_time(tmp_path: Path) -> None:
    inner = EdgeStore(tmp_path, "c")
    inner.ensure_collection(CollectionSpec(name="c", dense_dim=8, colbert_dim=None))
    writes: list[int] = []
    upsert = inner.upsert

    def counting(batch: Sequence[PointRecord], wait: bool = True) -> None:
        writes.append(len(batch))
        upsert(batch, wait)

    inner.upsert = counting  # type: ignore[method-assign]
    scheduler = EncoderScheduler()
    store = SerializedStore(inner, write_gate=scheduler.upload)
    with scheduler.query():  # a search holds the model
        writer = threading.Thread(target=store.upsert, args=(small_points(5),))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()
        assert writes == []  # nothing is written while the search runs
    writer.join(30)
    assert writes == [1] * 5
    assert store.count() == 5
    store.close()


def test_the_timer_flushes_what_uploads_left(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", service={"flush_seconds": 0.2})
    app = create_app(open_retriever(s, encoder))
    with LiveServer(app) as url:
        store = app.state.service.retriever.store
        assert store.defer_finish
        upload(url, "a.txt")
        hits = httpx.post(f"{url}/search", json={"query": "zebra quartz invoices", "limit": 1}, timeout=60).json()
        assert hits["hits"][0]["doc_id"] == "a.txt"  # searchable before any flush
        deadline = time.monotonic() + 30
        while store.unfinished and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.unfinished


def test_without_a_timer_each_upload_is_finished_at_once(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", service={"flush_seconds": 0})
    app = create_app(open_retriever(s, encoder))
    with LiveServer(app) as url:
        store = app.state.service.retriever.store
        upload(url, "a.txt")
        assert not store.defer_finish
        assert not store.unfinished


def test_shutdown_finishes_what_the_timer_has_not(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", service={"flush_seconds": 3600})
    app = create_app(open_retriever(s, encoder))
    with LiveServer(app) as url:
        upload(url, "a.txt")
        assert app.state.service.retriever.store.unfinished
    store = EdgeStore(tmp_path / "store", s.collection.name)
    try:
        store.open_collection()
        assert collection_status(store).documents == 1
    finally:
        store.close()


@pytest.mark.slow
def test_an_acknowledged_upload_survives_a_kill_before_any_flush(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = service_config(
        tmp_path / "svc.toml", tiny_model_dir, tmp_path / "store", "flush", "[service]\nflush_seconds = 3600\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "retriever", "serve", "--config", str(cfg), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "RETRIEVER_API_KEY": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        first, second = upload(base, "a.txt"), upload(base, "b.txt")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)

    s = make_settings(tiny_model_dir, tmp_path / "store", collection={"name": "flush"})
    r = Retriever(s)
    try:
        status = collection_status(r.store)
        assert (status.documents, status.unfinished) == (2, 0)
        assert status.chunks == first["chunks"] + second["chunks"]
        assert {h.doc_id for h in r.search("zebra quartz invoices", limit=10)} == {"a.txt", "b.txt"}
    finally:
        r.close()
