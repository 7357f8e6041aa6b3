"""One model for searches and uploads, with searches first.

An upload's chunks used to hold the model for a whole encoder call while searches waited behind it;
then slices of an upload ran alongside queries, and on a CPU the two forward passes shared the cores
(each with its own thread team), which slowed both. ``EncoderScheduler`` runs **one model call at a
time** and gives queries priority:

- **Queries** go first: a query call waits only for the model call in progress, and ``QueryBatcher``
  puts the queries that arrive meanwhile into one call.
- **Uploads** encode in slices of at most ``slice_tokens`` tokens, and a slice's forward pass **pauses
  between two transformer layers** whenever a query call waits (``indexer.encoder.pauses``): so a search
  waits for at most one layer of an upload, not for a whole chunk (one 450-token chunk of the offline
  stand-in takes about 200 ms on 2 CPU cores; one of its 6 layers about 35 ms).
- **Share.** An upload takes the model at once when searches are quiet: no query call waits and none
  ended within the last query call's duration (the gap between two calls of a steady search load is not
  quiet). Otherwise its turn comes after the searches have had the model for ``(1 - upload_share) /
  upload_share`` times as long as the upload's last run: under unbroken search load uploads still
  progress, with ``upload_share`` of the model's time.

``benchmarks/service_load.py --uploads`` measures searches during uploads against idle.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from indexer.encoder.pauses import between_layers
from indexer.models import Embedding


class EncoderScheduler:
    """Two priorities over one model: ``query()`` and ``upload()`` are context managers around model calls.

    ``clock`` (monotonic seconds) is there for tests.
    """

    def __init__(self, upload_share: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < upload_share <= 1:
            raise ValueError(f"upload_share must be in (0, 1], not {upload_share}")
        self.cond = threading.Condition()
        self.share = upload_share
        self.clock = clock
        self.running = False  # a model call (a query call or a running part of a slice) holds the model
        self.queries = 0  # query calls waiting for the model
        self.slices = 0  # upload slices waiting for the model
        self.slice_due = 0.0  # from then on a waiting slice goes before waiting queries
        self.quiet_at = 0.0  # searches are quiet from then on if no query call comes meanwhile
        self.began = 0.0  # when the running part of a slice took the model
        self.pauses = 0  # times a slice paused for queries (tests)
        self.on_wait: Callable[[str, float], None] | None = None  # (kind, seconds waited): metrics

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        started = time.perf_counter()
        with self.cond:
            self.queries += 1
            try:
                while self.running or (self.slices and self.clock() >= self.slice_due):
                    self.cond.wait()
            finally:
                self.queries -= 1
            self.running = True
        self._waited("query", started)
        began = self.clock()
        try:
            yield
        finally:
            with self.cond:
                now = self.clock()
                self.quiet_at = now + (now - began)
                self.running = False
                self.cond.notify_all()

    @contextlib.contextmanager
    def upload(self) -> Iterator[None]:
        """One slice: it waits for its turn, and pauses between layers while queries wait."""
        started = time.perf_counter()
        with self.cond:
            self._take_turn()
        self._waited("upload", started)
        try:
            with between_layers(self.pause):
                yield
        finally:
            with self.cond:
                self._give_back()

    def pause(self) -> None:
        """Between two layers of a slice's forward pass: let waiting queries have their share first."""
        with self.cond:
            if not self.queries:
                return
            self._give_back()
            self.pauses += 1
            self._take_turn()

    def _take_turn(self) -> None:
        self.slices += 1
        try:
            while self.running or not self._slice_may_start():
                # not notified when the slice's turn comes with the clock: wake up then
                self.cond.wait(None if self.running else self._until_turn())
        finally:
            self.slices -= 1
        self.running = True
        self.began = self.clock()

    def _give_back(self) -> None:
        now = self.clock()
        self.slice_due = now + (now - self.began) * (1 - self.share) / self.share
        self.running = False
        self.cond.notify_all()

    def _slice_may_start(self) -> bool:
        now = self.clock()
        return now >= self.slice_due or (not self.queries and now >= self.quiet_at)

    def _until_turn(self) -> float:
        turn = self.slice_due if self.queries else min(self.slice_due, self.quiet_at)
        return max(turn - self.clock(), 0.001)

    def _waited(self, kind: str, started: float) -> None:
        if self.on_wait is not None:
            self.on_wait(kind, time.perf_counter() - started)


def token_slices(lengths: Sequence[int], slice_tokens: int) -> list[range]:
    """Consecutive index ranges of at most ``slice_tokens`` tokens each (a longer input is a slice alone)."""
    out: list[range] = []
    start, tokens = 0, 0
    for i, n in enumerate(lengths):
        if i > start and tokens + n > slice_tokens:
            out.append(range(start, i))
            start, tokens = i, 0
        tokens += n
    if start < len(lengths):
        out.append(range(start, len(lengths)))
    return out


class ScheduledEncoder:
    """An encoder shared by the service's searches and uploads through an ``EncoderScheduler``.

    ``tokenizer`` is a private copy for chunking (uploads): Hugging Face fast tokenizers fail with
    "Already borrowed" when one thread tokenizes while another changes truncation settings.
    """

    def __init__(
        self,
        encoder: Any,
        scheduler: EncoderScheduler | None = None,
        slice_tokens: int = 512,
        upload_share: float = 0.25,
    ) -> None:
        self.inner = encoder
        self.scheduler = scheduler or EncoderScheduler(upload_share)
        self.slice_tokens = slice_tokens
        self.tokenizer = copy.deepcopy(encoder.tokenizer)
        self.dense_dim = encoder.dense_dim
        self.colbert_dim = encoder.colbert_dim
        self.max_length = encoder.max_length
        self.name = encoder.name
        self.fingerprint = encoder.fingerprint
        self.on_query: Callable[[int, float], None] | None = None  # (texts, seconds in the model): metrics

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]:
        with self.scheduler.query():
            started = time.perf_counter()
            out = self.inner.encode_queries(texts)
        if self.on_query is not None:
            self.on_query(len(texts), time.perf_counter() - started)
        return out

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]:
        """Chunks in slices of at most ``slice_tokens`` tokens, each taking its turn after waiting queries."""
        lengths = self._lengths(texts)
        out: list[Embedding] = []
        for part in token_slices(lengths, self.slice_tokens):
            with self.scheduler.upload():
                out.extend(self.inner.encode_passages([texts[i] for i in part]))
        return out

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        encode_ids = getattr(self.tokenizer, "encode_ids", None)
        if encode_ids is None:  # a tokenizer without it: one slice per chunk_size-long chunk
            return [self.max_length] * len(texts)
        return [len(ids) for ids in encode_ids(list(texts))]
