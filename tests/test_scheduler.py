"""The service's model scheduler: searches first, uploads paused between layers, uploads' share bounded.

Real forward passes of the tiny model (whose layers carry the pause points) where the pause matters;
a counting clock where the share is checked, so the order of turns, not the machine's speed, decides.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from indexer.encoder import BGEM3Encoder
from retriever.scheduler import EncoderScheduler, ScheduledEncoder, token_slices

PASSAGE = " ".join(f"word{i} clause {i % 7}" for i in range(15))


def test_a_query_goes_between_two_layers_of_an_upload_and_neither_result_changes(encoder: BGEM3Encoder) -> None:
    alone = encoder.encode_passages([PASSAGE])[0]
    query_alone = encoder.encode_queries(["late delivery penalty"])[0]
    scheduled = ScheduledEncoder(encoder, slice_tokens=4096)
    scheduler = scheduled.scheduler
    order: list[str] = []
    query_waits = threading.Event()
    pause = scheduler.pause

    paused = threading.Event()

    def first_layer_holds_until_a_query_waits() -> None:
        if not order:
            order.append("upload paused")
            paused.set()
            assert query_waits.wait(30)
            while scheduler.queries == 0:  # the query thread is inside query(), waiting for the model
                time.sleep(0.001)
        pause()

    scheduler.pause = first_layer_holds_until_a_query_waits  # type: ignore[method-assign]
    uploaded: list = []
    upload = threading.Thread(target=lambda: uploaded.extend(scheduled.encode_passages([PASSAGE])))
    upload.start()
    assert paused.wait(60), "the upload's forward pass never reached a pause point between layers"
    query_waits.set()
    [query] = scheduled.encode_queries(["late delivery penalty"])
    order.append("query answered")
    upload.join(30)
    order.append("upload done")

    assert order == ["upload paused", "query answered", "upload done"]
    assert scheduler.pauses == 1
    # The upload's activations waited while the query used the same model: both results are unchanged.
    np.testing.assert_allclose(uploaded[0].dense, alone.dense, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(uploaded[0].colbert, alone.colbert, rtol=1e-5, atol=1e-6)
    assert uploaded[0].sparse.indices == alone.sparse.indices
    np.testing.assert_allclose(query.dense, query_alone.dense, rtol=1e-5, atol=1e-6)


def test_an_upload_alone_never_pauses(encoder: BGEM3Encoder) -> None:
    scheduled = ScheduledEncoder(encoder, slice_tokens=8)  # several slices
    out = scheduled.encode_passages([PASSAGE, "short text", PASSAGE])
    assert len(out) == 3
    assert scheduled.scheduler.pauses == 0


class Ticks:
    """A clock that moves only when a model call says so: the order of turns decides, not the machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_under_unbroken_queries_uploads_progress_with_their_share_and_no_more() -> None:
    clock = Ticks()
    scheduler = EncoderScheduler(upload_share=0.25, clock=clock)
    log: list[str] = []
    stop = threading.Event()

    def queries() -> None:
        for _ in range(300):
            with scheduler.query():
                log.append("q")
                clock.now += 0.002  # a query call takes two ticks
                time.sleep(0.0002)  # (real time only lets the other thread run)
            time.sleep(0.0002)
        clock.now += 1  # then searches are quiet
        stop.set()

    def uploads() -> None:
        while not stop.is_set():
            with scheduler.upload():
                log.append("u")
                clock.now += 0.001  # a slice one tick
                time.sleep(0.0002)

    threads = [threading.Thread(target=uploads), threading.Thread(target=queries)]
    threads[0].start()
    while not log:
        time.sleep(0.001)
    threads[1].start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    text = "".join(log)
    runs = text[text.index("q") : text.rindex("q") + 1].split("u")[1:-1]  # the query calls between two slices
    assert len(runs) >= 30  # uploads progress (the share allows about 150 slices here)
    # After each slice of one tick, searches had at least three ticks (two calls): uploads had 25 % at most.
    assert min(len(r) for r in runs) >= 2


def test_a_slice_waits_for_the_query_in_progress_and_a_query_for_the_slice_in_progress() -> None:
    scheduler = EncoderScheduler()
    inside = threading.Event()
    release = threading.Event()
    log: list[str] = []

    def upload() -> None:
        with scheduler.upload():
            inside.set()
            assert release.wait(30)
            log.append("slice")

    t = threading.Thread(target=upload)
    t.start()
    assert inside.wait(30)

    def query() -> None:
        with scheduler.query():
            log.append("query")

    q = threading.Thread(target=query)
    q.start()
    while scheduler.queries == 0:
        time.sleep(0.001)
    assert log == []  # the query waits: one model call at a time
    release.set()
    t.join(30)
    q.join(30)
    assert log == ["slice", "query"]


def test_the_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="upload_share"):
        EncoderScheduler(upload_share=0)
    with pytest.raises(ValueError, match="upload_share"):
        EncoderScheduler(upload_share=1.5)


def test_token_slices_bound_each_slice_and_keep_a_long_input_whole() -> None:
    assert token_slices([100, 200, 300, 50], 300) == [range(0, 2), range(2, 3), range(3, 4)]
    assert token_slices([900, 10], 300) == [range(0, 1), range(1, 2)]
    assert token_slices([], 300) == []
