"""Batches to model replicas: one thread per device, fed from one queue; out-of-memory halves a batch.

Torch releases the GIL inside its kernels, so threads keep several GPUs busy from one process
(FlagEmbedding's multi-process pool is known to hang: FlagEmbedding issues 1199, 1361).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from indexer.errors import EncodingError
from indexer.models import Embedding

from .vectors import padded_tokens, plan_batches

logger = logging.getLogger(__name__)

K = TypeVar("K")
R = TypeVar("R")


class Model(Protocol):
    """What the scheduler needs of one replica (``forward.Replica``)."""

    device: str

    def forward(self, ids: Sequence[Sequence[int]], colbert: bool) -> list[Embedding]: ...

    def release_memory(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Batch(Generic[K]):
    """Inputs of one forward pass: caller keys and token ids (special tokens included), longest first."""

    keys: tuple[K, ...]
    ids: tuple[Sequence[int], ...]

    @property
    def padded_tokens(self) -> int:
        return padded_tokens([len(x) for x in self.ids])


def make_batches(items: Sequence[tuple[K, Sequence[int]]], max_tokens: int) -> list[Batch[K]]:
    """Length-sorted batches of at most ``max_tokens`` padded tokens over all ``items``."""
    plan = plan_batches([len(ids) for _, ids in items], max_tokens)
    return [Batch(tuple(items[i][0] for i in b), tuple(items[i][1] for i in b)) for b in plan]


def encode_batch(
    model: Model, batch: Batch[K], colbert: bool, is_oom: Callable[[BaseException], bool]
) -> list[tuple[K, Embedding]]:
    """Run one batch; on out-of-memory, halve its token budget and run the halves (never drop an input)."""
    try:
        return list(zip(batch.keys, model.forward(batch.ids, colbert), strict=True))
    except Exception as e:
        if not is_oom(e):
            raise
        budget = batch.padded_tokens
        if len(batch.keys) == 1:
            raise EncodingError(
                f"out of memory on {model.device} for a single input of {budget} tokens; "
                "lower chunking.chunk_size or use a device with more memory"
            ) from e
        model.release_memory()
    half = budget // 2
    logger.warning(
        "out of memory on %s for a batch of %d inputs (%d padded tokens): retrying it in batches of at most %d",
        model.device,
        len(batch.keys),
        budget,
        half,
    )
    out: list[tuple[K, Embedding]] = []
    for part in make_batches(list(zip(batch.keys, batch.ids, strict=True)), half):
        out.extend(encode_batch(model, part, colbert, is_oom))
    return out


_DONE = object()


def run_on_replicas(models: Sequence[Any], batches: Iterable[Any], work: Callable[[Any, Any], R]) -> Iterator[R]:
    """``work(model, batch)`` for every batch, spread over the models; results in completion order.

    One model: inline, in the caller's thread. Several: a feeder thread takes batches from ``batches``
    into a bounded queue and one thread per model takes them from there, so a faster device simply
    takes more batches. The first error stops the feeding and is raised here once in-flight work ends.
    A model starts a batch only while fewer than ``2 x models`` results are running or waiting for the
    caller: a caller that takes its results slowly (a writer it waits for) holds the devices back rather
    than letting finished passes pile up in memory.
    """
    if len(models) == 1:
        for batch in batches:
            yield work(models[0], batch)
        return
    tasks: queue.Queue[Any] = queue.Queue(maxsize=2 * len(models))
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    credits = threading.Semaphore(2 * len(models))  # results running or not yet taken by the caller
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                tasks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    break
        except BaseException as e:  # the caller's iterable failed: report it like a model error
            results.put(("error", e))
            stop.set()
        for _ in models:
            tasks.put(_DONE)  # workers always drain, so this never blocks for long

    def serve(model: Any) -> None:
        while (batch := tasks.get()) is not _DONE:
            while not stop.is_set() and not credits.acquire(timeout=0.1):
                pass  # the caller has not taken enough results yet
            if stop.is_set():
                continue
            try:
                results.put(("ok", work(model, batch)))
            except BaseException as e:
                results.put(("error", e))
                stop.set()
        results.put(("done", None))

    threads = [threading.Thread(target=feed, name="encoder-feed", daemon=True)]
    threads += [threading.Thread(target=serve, args=(m,), name=f"encoder-{m.device}", daemon=True) for m in models]
    for t in threads:
        t.start()
    error: BaseException | None = None
    try:
        running = len(models)
        while running:
            kind, value = results.get()
            if kind == "done":
                running -= 1
            elif kind == "error":
                error = error or value
            else:
                credits.release()
                if error is None:
                    yield value
    finally:
        stop.set()  # a caller that stopped early: the feeder stops, workers skip what is queued and end
        for t in threads:
            t.join()
    if error is not None:
        raise error
