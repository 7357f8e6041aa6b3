"""Overlapped ingest stages: the token-bounded queue, parsing in worker processes, writes behind the model,
and a re-run over unchanged files that loads no model stack."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from indexer.config import IngestSettings, ModelSettings
from indexer.encoder import BGEM3Encoder, plan_batches
from indexer.encoder import forward as forward_module
from indexer.models import Chunk
from indexer.pipeline import ingest
from indexer.records import chunks_filter
from indexer.stages import ModelStage, TokenQueue, Work, WriteGate, inbox, plan_stages
from indexer.store import open_store
from tests.helpers import REPO, SAMPLES, make_settings


def test_token_queue_holds_back_a_producer_until_tokens_are_taken() -> None:
    q: TokenQueue[str] = TokenQueue(max_tokens=100)
    q.put_many([("a", 60), ("b", 30)])
    entered = threading.Event()

    def producer() -> None:
        q.put_many([("c", 50)])  # 90 + 50 > 100: waits
        entered.set()

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.3)
    assert not entered.is_set()
    assert q.get() == "a"  # 30 + 50 <= 100: the producer gets in
    assert entered.wait(10)
    t.join()
    assert [q.get(), q.get()] == ["b", "c"]
    q.put_many([("big", 500)])  # larger than the bound: still enters an empty queue
    q.close()
    assert [q.get(), q.get()] == ["big", None]


def run_model_stage(encoder: BGEM3Encoder, lengths: list[int], fill: int, monkeypatch) -> tuple[list, ModelStage]:
    """Chunks of ``lengths`` tokens fed one at a time, slower than the model takes them; the passes it ran."""
    passes: list[list[int]] = []
    forward = forward_module.Replica.forward

    def spy(self, ids, colbert):  # type: ignore[no-untyped-def]
        passes.append([len(x) for x in ids])
        return forward(self, ids, colbert)

    monkeypatch.setattr(forward_module.Replica, "forward", spy)
    queue: TokenQueue[Work] = TokenQueue(10**9)
    messages = inbox()
    stage = ModelStage(encoder, queue, WriteGate(lag=10**9), messages.put, stream=True, group=0, prepare=lambda: fill)
    stage.start()
    for n, length in enumerate(lengths):
        ids = [0, *range(5, 3 + length), 2]
        chunk = Chunk("d", "d.txt", "h", n, "x", 0, 1, (), length, token_ids=ids)
        queue.put_many([(Work(None, chunk), length)])
        time.sleep(0.05)
    queue.close()
    encoded = []
    while (message := messages.get())[0] != "model-done":
        assert message[0] == "encoded", message
        encoded += [work.chunk.chunk_index for work, _ in message[1][0]]
    stage.thread.join()
    assert sorted(encoded) == list(range(len(lengths)))  # every chunk, once
    return passes, stage


def test_the_first_window_waits_to_fill_so_passes_follow_the_length_sorted_plan(
    encoder: BGEM3Encoder, monkeypatch
) -> None:
    budget = encoder.max_batch_tokens
    lengths = [7, 40, 12, 33, 9, 25, 18, 40, 11, 30, 8, 21]
    plan = [[lengths[i] for i in b] for b in plan_batches(lengths, budget)]
    assert budget >= 2 * max(lengths) and len(plan) < len(lengths)  # passes hold several chunks
    passes, stage = run_model_stage(encoder, lengths, sum(lengths), monkeypatch)
    assert passes == plan
    assert stage.stats.input_wait_seconds < 0.05  # the filling is not a wait for input
    assert 0 < stage.stats.encode_seconds < 0.05 * len(lengths)  # nor time spent encoding
    # Without it the model starts on the first chunk alone, while the feed is still filling the queue.
    passes, _ = run_model_stage(encoder, lengths, 0, monkeypatch)
    assert passes[0] == [lengths[0]] and passes != plan


def test_stages_scale_with_the_devices_whether_or_not_they_are_configured(tiny_model_dir: Path) -> None:
    two = BGEM3Encoder(ModelSettings(name=str(tiny_model_dir), device=["cpu", "cpu"]), max_length=128)
    assert plan_stages(IngestSettings(), two) == (0, False, 2)
    configured = IngestSettings(prepare_workers=3, write_behind=True)
    assert plan_stages(configured, two) == (3, True, 2)  # the queue and the first window: two devices' worth


def stored(store, doc_ids: list[str]) -> dict[tuple[str, int], str]:
    out = {}
    for p in store.scroll(chunks_filter()):
        out[(p.payload["doc_id"], p.payload["chunk_index"])] = p.payload["content_hash"]
    assert sorted({d for d, _ in out}) == doc_ids
    return out


def test_worker_processes_and_writes_behind_store_what_one_thread_stores(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    runs = {}
    for label, ingest_section in (("thread", {}), ("workers", {"prepare_workers": 2, "write_behind": True})):
        settings = make_settings(tiny_model_dir, tmp_path / label, "edge", ingest=ingest_section)
        store = open_store(settings.qdrant, settings.collection.name)
        try:
            report = ingest([SAMPLES], settings, encoder, store, progress=False)
            assert not report.failed and report.documents == 7
            assert report.encode_seconds > 0
            docs = sorted(f.doc_id for f in report.files if f.status == "ok")
            points = stored(store, docs)
            ids = sorted(str(p.id) for p in store.scroll(chunks_filter()))
            vectors = {r.id: np.asarray(r.vectors["dense"]) for r in store.retrieve(ids[:5], with_vectors=True)}
        finally:
            store.close()
        runs[label] = (report.chunks, report.tokens, points, ids, vectors)
    (c1, t1, p1, i1, v1), (c2, t2, p2, i2, v2) = runs["thread"], runs["workers"]
    assert (c1, t1, p1, i1) == (c2, t2, p2, i2)
    for point_id, dense in v1.items():
        np.testing.assert_allclose(dense, v2[point_id], atol=1e-5)


def test_unchanged_rerun_in_a_fresh_process_loads_no_model_stack(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    settings = make_settings(tiny_model_dir, tmp_path / "store", "edge")
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        assert ingest([SAMPLES], settings, encoder, store, progress=False).documents == 7
    finally:
        store.close()
    script = f"""
import json, sys
from indexer.encoder import BGEM3Encoder
from indexer.pipeline import ingest
from indexer.store import open_store
from tests.helpers import make_settings
from pathlib import Path
settings = make_settings(Path({str(tiny_model_dir)!r}), Path({str(tmp_path / "store")!r}), "edge")
encoder = BGEM3Encoder(settings.model, max_length=settings.chunking.chunk_size)
store = open_store(settings.qdrant, settings.collection.name)
report = ingest([Path({str(SAMPLES)!r})], settings, encoder, store, progress=False)
store.close()
heavy = ("torch", "transformers", "qdrant_client", "langchain_text_splitters", "FlagEmbedding")
print(json.dumps([report.unchanged, report.documents, encoder.loaded, [m for m in heavy if m in sys.modules]]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [7, 0, False, []]
