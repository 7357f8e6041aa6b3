"""Writers sharing a collection: ingest runs, service uploads and deletes, interleaved on one store.

Runs are real pipeline runs (the real encoder on the tiny model) on one qdrant-client local-mode store,
in threads; a run is stopped mid-document by an encoder that waits before its n-th call. A killed run is
a real subprocess killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer import cli as indexer_cli
from indexer.admin import delete_documents
from indexer.config import Settings, load_settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import DocumentBusy
from indexer.leases import Leases, LeaseTimings, Owner
from indexer.pipeline import IngestReport, ingest
from indexer.points import point_id
from indexer.records import KIND_LEASE, chunks_filter, kind_filter
from indexer.runtime import collection_spec
from indexer.store import SerializedStore, Store, open_store
from indexer.versions import document_records, recover
from indexer.writer import Writer
from retriever import Retriever
from retriever.service import create_app
from tests.helpers import make_settings
from tests.service_helpers import LiveServer

WORDS = ["supply", "contract", "delivery", "penalty", "invoice", "warehouse", "carrier", "договор", "поставка"]


def long_text(seed: int, words: int = 1400) -> str:
    return f"Version {seed}. " + " ".join(WORDS[(seed + i * 7) % len(WORDS)] for i in range(words))


def settings_for(model_dir: Path, **ingest: Any) -> Settings:
    """Small encoding groups (8 chunks) and write batches, so that a document takes several of each."""
    return make_settings(
        model_dir, ":memory:", "local", model={"batch_size": 1}, ingest={"write_batch_points": 2, **ingest}
    )


class PausingEncoder:
    """The real encoder; its ``pause_at``-th call waits for ``resume`` (its run stops mid-document)."""

    def __init__(self, inner: BGEM3Encoder, pause_at: int) -> None:
        self.inner, self.pause_at, self.calls = inner, pause_at, 0
        self.paused, self.resume = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_passages(self, texts: list[str]) -> Any:
        self.calls += 1
        if self.calls == self.pause_at:
            self.paused.set()
            assert self.resume.wait(300)
        return self.inner.encode_passages(texts)


class Background:
    """``fn(*args)`` in a thread; ``join()`` returns its result or raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as e:  # handed to join()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 300) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def chunk_ids(store: Store, doc_id: str) -> set[str]:
    return {p.id for p in store.scroll(chunks_filter(doc_id))}


def status(report: IngestReport, doc_id: str) -> str:
    return next(f.status for f in report.files if f.doc_id == doc_id)


def assert_exactly(store: Store, doc_id: str, text: str) -> None:
    """The document is complete in the version of ``text``, with all its chunks and nothing else."""
    [record] = [r for r in document_records(store) if r.doc_id == doc_id]
    version = hashlib.sha256(text.encode()).hexdigest()
    assert record.is_complete(version), f"{doc_id}: record names {record.content_hash}, state {record.state}"
    assert chunk_ids(store, doc_id) == {point_id(doc_id, version, i) for i in range(record.chunks)}
    assert store.count(kind_filter(KIND_LEASE)) == 0


def start_paused(
    model_dir: Path, encoder: BGEM3Encoder, corpus: Path, store: Store, **ingest_settings: Any
) -> tuple[Background, PausingEncoder]:
    """A run over ``corpus`` stopped in its second encoding call: 8 chunks of x.txt written, more to come."""
    paused = PausingEncoder(encoder, pause_at=2)
    run = Background(ingest, [corpus], settings_for(model_dir, **ingest_settings), paused, store, progress=False)
    assert paused.paused.wait(120), "the run did not reach its second encoding call"
    return run, paused


@pytest.fixture
def store(tiny_model_dir: Path) -> Any:
    s = settings_for(tiny_model_dir)
    shared = SerializedStore(open_store(s.qdrant, s.collection.name))  # one lock for all writers
    yield shared
    shared.close()


def test_a_run_leaves_the_document_another_run_is_writing_alone(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "x.txt").write_text("First version of x.")
    (corpus / "y.txt").write_text("A short document y.")
    s = settings_for(tiny_model_dir, busy_wait_seconds=0.5)
    ingest([corpus], s, encoder, store, progress=False)
    (corpus / "x.txt").write_text(long_text(1))
    (corpus / "z.txt").write_text("A new document z.")
    first, paused = start_paused(tiny_model_dir, encoder, corpus, store)
    written = chunk_ids(store, "x.txt")
    assert len(written) == 8 + 1  # the new version's first group and the old version's chunk

    second = ingest([corpus], s, encoder, store, progress=False)  # the old code deleted the 8 chunks here
    assert second.repaired == 0
    assert (status(second, "x.txt"), status(second, "y.txt"), status(second, "z.txt")) == ("busy", "unchanged", "ok")
    assert "being changed by another writer" in next(f.error for f in second.busy)
    assert chunk_ids(store, "x.txt") >= written  # the old version is still searchable, the new one intact
    with pytest.raises(DocumentBusy):
        delete_documents(store, ["x.txt"], timings=LeaseTimings(busy_wait_seconds=0.3))

    paused.resume.set()
    report = first.join()
    assert (status(report, "x.txt"), status(report, "z.txt")) == ("ok", "unchanged")
    assert_exactly(store, "x.txt", long_text(1))
    assert_exactly(store, "z.txt", "A new document z.")


def test_a_run_waits_for_a_document_another_run_writes_then_writes_its_own_version(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    here, there = tmp_path / "here", tmp_path / "there"  # one document, read from two places
    here.mkdir(), there.mkdir()
    (here / "x.txt").write_text(long_text(1))
    (there / "x.txt").write_text(long_text(2, words=300))
    first, paused = start_paused(tiny_model_dir, encoder, here, store)
    second = Background(ingest, [there], settings_for(tiny_model_dir), encoder, store, progress=False)
    time.sleep(3)  # the second run found x.txt held and waits for it (its encoder is not running)
    assert second.thread.is_alive()
    paused.resume.set()
    assert status(first.join(), "x.txt") == "ok"
    assert status(second.join(), "x.txt") == "ok"  # written after the first run released it
    assert_exactly(store, "x.txt", long_text(2, words=300))


def test_two_runs_over_one_corpus_write_each_document_once(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    texts = {f"d{i}.txt": long_text(i, words=150 + 60 * i) for i in range(6)}
    for name, text in texts.items():
        (corpus / name).write_text(text)
    s = settings_for(tiny_model_dir)
    store.ensure_collection(collection_spec(s, encoder))  # two first runs would race to create it
    other = BGEM3Encoder(s.model, max_length=s.chunking.chunk_size)  # a model and tokenizer of its own
    runs = [Background(ingest, [corpus], s, e, store, progress=False) for e in (encoder, other)]
    reports = [r.join() for r in runs]
    for name, text in texts.items():
        assert sorted(status(r, name) for r in reports) == ["ok", "unchanged"], name
        assert_exactly(store, name, text)
    assert store.count(kind_filter("chunk")) == sum(r.chunks for r in reports)


@pytest.mark.slow
def test_a_renewed_lease_survives_a_pause_past_its_expiry(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    corpus, other = tmp_path / "c", tmp_path / "other"
    corpus.mkdir(), other.mkdir()
    (corpus / "x.txt").write_text(long_text(1))
    (other / "o.txt").write_text("Another document.")
    first, paused = start_paused(tiny_model_dir, encoder, corpus, store, lease_seconds=3.0)
    [lease] = store.scroll(kind_filter(KIND_LEASE))
    time.sleep(6.5)  # twice the lease: alive only because it is renewed while the model is stuck
    [renewed] = store.scroll(kind_filter(KIND_LEASE))
    assert renewed.id == lease.id and renewed.payload["expires"] > lease.payload["expires"] + 3
    judge = ingest([other], settings_for(tiny_model_dir, lease_seconds=3.0), encoder, store, progress=False)
    assert judge.repaired == 0 and len(chunk_ids(store, "x.txt")) == 8
    paused.resume.set()
    assert status(first.join(), "x.txt") == "ok"
    assert_exactly(store, "x.txt", long_text(1))


def test_uploads_and_deletes_through_the_service_beside_an_ingest_run(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "x.txt").write_text("First version of x.")
    s = settings_for(tiny_model_dir, busy_wait_seconds=0.5)
    ingest([corpus], s, encoder, store, progress=False)
    (corpus / "x.txt").write_text(long_text(1))
    run, paused = start_paused(tiny_model_dir, encoder, corpus, store)
    written = chunk_ids(store, "x.txt")
    service = create_app(Retriever(s, encoder=encoder, store=store))  # the service's writes share the store
    with LiveServer(service) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/documents", files={"file": ("upload.txt", b"An uploaded document.")})
        assert r.status_code == 201, r.text
        assert chunk_ids(store, "x.txt") == written  # the upload's start did not touch the run's document
        r = c.post("/documents", files={"file": ("x.txt", b"An upload of x.")}, data={"doc_id": "x.txt"})
        assert r.status_code == 409 and "being changed by another writer" in r.json()["detail"], r.text
        r = c.delete("/documents/x.txt")
        assert r.status_code == 409 and "being changed by another writer" in r.json()["detail"], r.text
        paused.resume.set()
        assert status(run.join(), "x.txt") == "ok"
        assert_exactly(store, "x.txt", long_text(1))
        r = c.post("/documents", files={"file": ("x.txt", b"An upload of x.")}, data={"doc_id": "x.txt"})
        assert r.status_code == 201, r.text
        assert_exactly(store, "x.txt", "An upload of x.")
        assert_exactly(store, "upload.txt", "An uploaded document.")


def test_a_touched_file_never_leaves_its_record_naming_a_version_another_run_replaced(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    """Rewriting a record with a touched file's new modification time used to be a blind write: had another
    run replaced the version meanwhile, the record named chunks that were gone, and later runs skipped it."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    (here / "b.txt").write_text("The first version of b.")
    s = settings_for(tiny_model_dir)
    ingest([here], s, encoder, store, progress=False)
    (here / "a.txt").write_text(long_text(1))  # keeps the next run busy while b.txt changes elsewhere
    (here / "b.txt").touch()
    first, paused = start_paused(tiny_model_dir, encoder, here, store)
    (there / "b.txt").write_text("The second version of b, from elsewhere.")
    ingest([there], s, encoder, store, progress=False)
    paused.resume.set()
    report = first.join()
    assert status(report, "b.txt") == "ok"  # written again, not just its record rewritten
    assert_exactly(store, "b.txt", "The first version of b.")
    again = ingest([here], s, encoder, store, progress=False)
    assert (again.documents, again.unchanged) == (0, 2)


def test_one_document_under_two_roots_of_one_run_is_written_once_after_the_other(
    tiny_model_dir: Path, encoder: BGEM3Encoder, store: SerializedStore, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.txt").write_text("The copy of x under a.")
    (b / "x.txt").write_text("The copy of x under b.")
    report = ingest([a, b], settings_for(tiny_model_dir), encoder, store, progress=False)
    assert [f.status for f in report.files] == ["ok", "ok"]
    assert_exactly(store, "x.txt", "The copy of x under b.")


@pytest.mark.slow
def test_a_killed_writer_on_a_shared_store_is_repaired_once_its_lease_expires(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL mid-document: a server-like judge leaves the dead writer's lease alone until it expires,
    then repairs it; the same command again gives what one clean run gives."""
    from tests.test_crash import make_corpus, spawn

    corpus = make_corpus(tmp_path / "corpus")

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\nbatch_size = 2\n'
            "[chunking]\nchunk_size = 64\nchunk_overlap = 8\n"
            f'[qdrant]\nengine = "local"\npath = "{tmp_path / name}"\n[collection]\nname = "crash"\n'
            "[ingest]\nwrite_batch_points = 4\nlease_seconds = 10.0\n"
        )
        return path

    proc = spawn(config("store"), corpus, "write:3")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    s = load_settings(config("store"))
    store = SerializedStore(open_store(s.qdrant, "crash"))
    try:
        store.open_collection()
        before = points(store)
        dead = [p.payload for p in store.scroll(kind_filter(KIND_LEASE))]
        assert dead and all(lease["expires"] > time.time() for lease in dead)
        judge = Leases(store, Owner.new("judge"), LeaseTimings.from_settings(s.ingest), exclusive=False)
        assert recover(store, judge, Writer(store, fence=judge.fence)) == 0
        assert points(store) == before  # not expired: it might be a live writer on another machine
        time.sleep(max(lease["expires"] for lease in dead) - time.time() + 0.2)
        assert recover(store, judge, Writer(store, fence=judge.fence)) == len({d["doc_id"] for d in dead})
        judge.close()
        records = {r.doc_id: r.content_hash for r in document_records(store)}
        assert store.count(kind_filter(KIND_LEASE)) == 0
        for p in store.scroll(kind_filter("chunk")):  # only versions records name are left
            assert p.payload["content_hash"] == records.get(p.payload["doc_id"])
    finally:
        store.close()
    run = ["ingest", str(corpus), "--no-progress", "--config"]
    assert indexer_cli.main([*run, str(config("store"))]) == 0
    assert indexer_cli.main([*run, str(config("clean"))]) == 0
    assert stored(s, tmp_path / "store") == stored(s, tmp_path / "clean")


def points(store: Store) -> dict[str, Any]:
    return {p.id: p.payload for p in store.scroll()}


def stored(s: Settings, path: Path) -> dict[str, Any]:
    store = open_store(s.qdrant.model_copy(update={"path": str(path)}), "crash")
    try:
        store.open_collection()
        return points(store)
    finally:
        store.close()
