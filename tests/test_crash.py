"""kill -9 at any moment of an ingest, then the same command again, gives exactly what one clean run gives.

A real ingest subprocess on the embedded engine (Qdrant Edge) is killed with SIGKILL at named points
(INDEXER_CRASH_AT, see indexer/faults.py: after a document is read, during the write stream, just
before a document is switched to its new version, just before the end) and from outside at a
moment chosen by the clock. The collection afterwards is compared point by point (ids, payloads,
vectors) with a clean run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer import cli as indexer_cli
from indexer.records import kind_filter
from indexer.store.edge import EdgeStore
from tests.helpers import REPO, SAMPLES, assert_same, stored_points

pytestmark = pytest.mark.slow  # real ingest processes killed and re-run

CRASH_POINTS = ["document:2", "write:2", "write:9", "finalize:3", "end:1"]


def make_corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    words = ["supply", "contract", "delivery", "penalty", "договор", "поставка", "товар", "неустойка", "срок", "оплата"]
    for i in range(8):
        text = " ".join(words[(i + j) % len(words)] + ("." if j % 9 == 8 else "") for j in range(160 + 20 * i))
        (root / f"doc{i}.txt").write_text(f"Document {i}. {text}")
    shutil.copy(SAMPLES / "pdf" / "annual-report-2025.pdf", root / "report.pdf")
    return root


def write_config(path: Path, model: Path, store: Path) -> Path:
    path.write_text(
        f'[model]\nname = "{model}"\ndevice = "cpu"\nbatch_size = 2\n'
        "[chunking]\nchunk_size = 64\nchunk_overlap = 8\n"
        f'[qdrant]\npath = "{store}"\n[collection]\nname = "crash"\n'
        "[ingest]\nwrite_batch_points = 4\n"
    )
    return path


def snapshot(store_path: Path) -> dict[str, tuple]:
    """Every point: payload and vectors, exactly as stored."""
    store = EdgeStore(store_path, "crash")
    try:
        store.open_collection()
        return stored_points(store)
    finally:
        store.close()


def run_cli(config: Path, corpus: Path) -> int:
    return indexer_cli.main(["ingest", str(corpus), "--config", str(config), "--no-progress"])


def spawn(config: Path, corpus: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("INDEXER_CRASH_AT", None)
    if crash_at:
        env["INDEXER_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "indexer", "ingest", str(corpus), "--config", str(config), "--no-progress"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def clean(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("crash-clean")
    corpus = make_corpus(base / "corpus")
    config = write_config(base / "c.toml", tiny_model_dir, base / "store")
    started = time.perf_counter()
    proc = spawn(config, corpus)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return {"corpus": corpus, "snapshot": snapshot(base / "store"), "seconds": time.perf_counter() - started}


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_kill_at_a_crash_point_then_rerun_equals_a_clean_run(
    crash_at: str, clean: dict, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", tiny_model_dir, tmp_path / "store")
    proc = spawn(config, clean["corpus"], crash_at)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, "the crash point was not reached"
    assert run_cli(config, clean["corpus"]) == 0
    assert_same(snapshot(tmp_path / "store"), clean["snapshot"])


@pytest.mark.parametrize("fraction", [0.6, 0.85])
def test_kill_from_outside_at_any_moment(fraction: float, clean: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tiny_model_dir, tmp_path / "store")
    proc = spawn(config, clean["corpus"])
    time.sleep(clean["seconds"] * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert run_cli(config, clean["corpus"]) == 0
    assert_same(snapshot(tmp_path / "store"), clean["snapshot"])


def test_a_crash_while_replacing_a_document_keeps_its_old_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    config = write_config(tmp_path / "c.toml", tiny_model_dir, tmp_path / "store")
    assert run_cli(config, corpus) == 0
    old = {p.id: p.payload["text"] for p in _chunks(tmp_path / "store", "doc3.txt")}
    (corpus / "doc3.txt").write_text("Document 3, second version. " + "новая редакция договора " * 120)
    proc = spawn(config, corpus, "write:3")  # inside the new version's chunks
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    after_crash = {p.id: p.payload["text"] for p in _chunks(tmp_path / "store", "doc3.txt")}
    assert old.items() <= after_crash.items()  # the old version is all there
    assert run_cli(config, corpus) == 0
    final = snapshot(tmp_path / "store")
    reference = tmp_path / "reference"
    ref_config = write_config(tmp_path / "r.toml", tiny_model_dir, reference)
    assert run_cli(ref_config, corpus) == 0
    assert_same(final, snapshot(reference))
    texts = {p.payload["text"] for p in _chunks(tmp_path / "store", "doc3.txt")}
    assert texts
    assert all("second version" in t or "новая редакция" in t for t in texts)


def _chunks(store_path: Path, doc_id: str) -> list:
    store = EdgeStore(store_path, "crash")
    try:
        store.open_collection()
        return [p for p in store.scroll(kind_filter("chunk")) if p.payload["doc_id"] == doc_id]
    finally:
        store.close()


def test_a_version_left_half_written_is_removed_even_if_never_ingested_again(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The next run repairs what a killed run left, whatever it ingests itself."""
    corpus = make_corpus(tmp_path / "corpus")
    config = write_config(tmp_path / "c.toml", tiny_model_dir, tmp_path / "store")
    assert run_cli(config, corpus) == 0
    old = {p.id: p.payload for p in _chunks(tmp_path / "store", "doc3.txt")}
    (corpus / "doc3.txt").write_text("Document 3, second version. " + "новая редакция договора " * 120)
    proc = spawn(config, corpus, "write:3")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert len(_chunks(tmp_path / "store", "doc3.txt")) > len(old)  # a partial new version is in the store
    other = tmp_path / "other"
    other.mkdir()
    (other / "unrelated.txt").write_text("Something else entirely.")
    assert run_cli(config, other) == 0  # doc3.txt is not part of this run
    after = {p.id: p.payload for p in _chunks(tmp_path / "store", "doc3.txt")}
    assert after == old  # exactly the old version again
