"""One model for searches and uploads, with searches first.

An upload's chunks used to hold the model for a whole encoder call (a group of up to hundreds of chunks)
while searches waited behind it. ``EncoderScheduler`` gives queries priority:

- **Queries** run at once, one model call at a time among themselves (``QueryBatcher`` already puts the
  queries that arrive meanwhile into one call), and never wait for upload encoding: the forward pass keeps
  no state, so a query call may run while one upload slice finishes.
- **Uploads** encode in slices of at most ``slice_tokens`` tokens. A slice starts only when no query is
  waiting or running; so that uploads still progress under unbroken search load, a slice that has been
  passed over by ``max_skips`` query calls goes next (it then runs alongside the queries, never before them).

Between two query calls, at most one slice runs; how much it slows a query depends on the device (on a
CPU the two share the cores). ``benchmarks/service_load.py --uploads`` measures it.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from indexer.models import Embedding


class EncoderScheduler:
    """Two priorities over one model: ``query()`` and ``upload()`` are context managers around model calls."""

    def __init__(self, max_skips: int = 8) -> None:
        self.cond = threading.Condition()
        self.query_lock = threading.Lock()  # one query call at a time
        self.queries = 0  # query calls waiting or running
        self.uploading = False  # an upload slice is running
        self.skips = 0  # query calls that went ahead of the waiting slice
        self.max_skips = max_skips
        self.on_wait: Callable[[str, float], None] | None = None  # (kind, seconds waited): metrics

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        with self.cond:
            self.queries += 1
        started = time.perf_counter()
        try:
            with self.query_lock:
                self._waited("query", started)
                yield
        finally:
            with self.cond:
                self.queries -= 1
                self.skips += 1
                self.cond.notify_all()

    @contextlib.contextmanager
    def upload(self) -> Iterator[None]:
        started = time.perf_counter()
        with self.cond:
            self.skips = 0
            while self.uploading or (self.queries and self.skips < self.max_skips):
                self.cond.wait()
            self.uploading = True
        self._waited("upload", started)
        try:
            yield
        finally:
            with self.cond:
                self.uploading = False
                self.cond.notify_all()

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

    def __init__(self, encoder: Any, scheduler: EncoderScheduler | None = None, slice_tokens: int = 1024) -> None:
        self.inner = encoder
        self.scheduler = scheduler or EncoderScheduler()
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
