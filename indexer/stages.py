"""The model's stage of an ingest run: a thread that encodes chunks from a queue bounded by tokens and hands
each finished forward pass to the writer, without waiting for the writer unless told to.

    feed thread ──TokenQueue──> model thread ──inbox──> the run's thread (claims, writes, versions)
                  (bounded by          │                        │
                   tokens)             └──── WriteGate <────────┘  (how far writes may trail the model)

The model thread records the time it spent waiting for input (the CPU stages did not keep up), waiting
for the writer (``WriteGate``), loading the weights and encoding.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from indexer.config import IngestSettings
from indexer.errors import EncodingError
from indexer.models import Chunk, Embedding

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Aborted(Exception):
    """The run stopped: stages waiting on a queue or gate give up."""


class TokenQueue(Generic[T]):
    """A FIFO bounded by tokens: ``put_many`` waits while the queue holds ``max_tokens`` (a group larger
    than that still enters an empty queue). ``get`` waits for an item, None once closed and empty."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._items: deque[tuple[T, int]] = deque()
        self._tokens = 0
        self._cv = threading.Condition()
        self._closed = self._aborted = False
        self.waited = 0.0  # seconds ``get`` spent waiting for an item

    def put_many(self, items: Sequence[tuple[T, int]]) -> None:
        total = sum(n for _, n in items)
        with self._cv:
            while self._tokens and self._tokens + total > self.max_tokens and not self._aborted:
                self._cv.wait()
            if self._aborted:
                raise Aborted
            self._items.extend(items)
            self._tokens += total
            self._cv.notify_all()

    def get(self) -> T | None:
        with self._cv:
            if not self._items and not self._closed:
                started = time.perf_counter()
                while not self._items and not self._closed:
                    self._cv.wait()
                self.waited += time.perf_counter() - started
            return self._pop()

    def get_nowait(self) -> T | None:
        with self._cv:
            return self._pop()

    def _pop(self) -> T | None:
        if self._aborted:
            raise Aborted
        if not self._items:
            return None
        item, n = self._items.popleft()
        self._tokens -= n
        self._cv.notify_all()
        return item

    def close(self) -> None:
        """Nothing more will be put: ``get`` returns None once the queue is empty."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._items.clear()
            self._cv.notify_all()


class WriteGate:
    """How many encoded tokens the writer may trail the model by: before each forward pass the model waits
    while more than ``lag`` tokens it handed over are not written yet (0: writes run between passes)."""

    def __init__(self, lag: int = 0) -> None:
        self.lag = lag
        self._posted = self._written = 0
        self._cv = threading.Condition()
        self._aborted = False
        self.waited = 0.0

    def posted(self, tokens: int) -> None:
        with self._cv:
            self._posted += tokens

    def written(self, tokens: int) -> None:
        """These tokens of what was posted are written (acknowledged), and the documents they completed are
        complete."""
        with self._cv:
            self._written += tokens
            self._cv.notify_all()

    def wait(self) -> None:
        with self._cv:
            if self._posted - self._written > self.lag:
                started = time.perf_counter()
                while self._posted - self._written > self.lag and not self._aborted:
                    self._cv.wait()
                self.waited += time.perf_counter() - started
            if self._aborted:
                raise Aborted

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._cv.notify_all()


@dataclass(slots=True, eq=False)
class Work:
    """One chunk on its way through the model (identity-hashed: a key of the encoder's stream)."""

    doc: Any  # the run's record of the chunk's document
    chunk: Chunk

    @property
    def tokens(self) -> int:
        return self.chunk.token_count


Message = tuple[str, Any]


@dataclass(slots=True)
class ModelStats:
    load_seconds: float = 0.0  # loading the weights (streaming encoders, on first input)
    encode_seconds: float = 0.0  # forward passes and their outputs
    input_wait_seconds: float = 0.0  # waiting for input after the first (the CPU stages fell behind)
    write_wait_seconds: float = 0.0  # waiting for the writer (``WriteGate``)


class ModelStage:
    """The model thread. ``stream``: the encoder streams pre-tokenized input (``iter_encode_batches``),
    sorted by length in windows across documents; else it is called with texts, ``group`` chunks at a time
    (``encode_passages``, the ``Encoder`` protocol). Each pass's results go to ``deliver`` as
    ``("encoded", (pairs, seconds))``; an encoding error as ``("failed", (works, message))``.
    ``prepare`` runs once before the first pass (e.g. deciding the write lag, which may need the device) and
    returns how many tokens the run's first window waits for (0: none).

    Later windows take what the queue holds when they start, so the model never waits while there is work.
    The first one waits to fill (``prepare``'s tokens, or the end of the input): the model starts while the
    feed is still chunking the first documents, and windows taken from a queue that briefly ran dry there
    sort a few chunks at a time. Measured on 201 chunks, that padded the run's passes 4.4 % above the
    length-sorted plan (a first pass of one chunk, then two windows of one pass each)."""

    def __init__(
        self,
        encoder: Any,
        inputs: TokenQueue[Work],
        gate: WriteGate,
        deliver: Callable[[Message], None],
        *,
        stream: bool,
        group: int,
        prepare: Callable[[], int] = lambda: 0,
    ) -> None:
        self.encoder, self.inputs, self.gate, self.deliver = encoder, inputs, gate, deliver
        self.stream, self.group, self._prepare = stream, group, prepare
        self.stats = ModelStats()
        self._started = False
        self._fill = 0.0  # seconds waited for input before the first pass (the pipeline filling)
        self._filling = 0  # tokens the first window still waits for
        self.thread = threading.Thread(target=self._main, name="ingest-model", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        try:
            if self.stream:
                self._streaming()
            else:
                self._groups()
        except Aborted:
            pass
        except BaseException as e:  # handed to the run's thread, which raises it
            self.deliver(("error", e))
        finally:
            self.stats.write_wait_seconds = self.gate.waited
            self.stats.input_wait_seconds = self.inputs.waited - self._fill if self._started else 0.0
            self.deliver(("model-done", None))

    def _first(self) -> Work | None:
        """The next input, waiting for it (the wait before the very first input is the pipeline filling)."""
        work = self.inputs.get()
        if work is not None and not self._started:
            self._started = True
            self._fill = self.inputs.waited
            self._filling = self._prepare()
            if self.stream and hasattr(self.encoder, "load"):
                started = time.perf_counter()
                self.encoder.load()
                self.stats.load_seconds = time.perf_counter() - started
        return work

    def _streaming(self) -> None:
        while (first := self._first()) is not None:
            taken: dict[int, Work] = {}  # in the model: pulled from the queue, not handed over yet
            passes = self.encoder.iter_encode_batches(self._drain(first, taken))
            try:
                while True:
                    self.gate.wait()
                    started, waited = time.perf_counter(), self.inputs.waited
                    batch = next(passes, None)  # may wait for input (the first window filling)
                    if batch is None:
                        break
                    seconds = time.perf_counter() - started - (self.inputs.waited - waited)
                    self.stats.encode_seconds += seconds
                    for key in [id(work) for work, _ in batch]:  # no loop variable keeps the last item alive
                        del taken[key]
                    self._hand_over(batch, seconds)
                    batch = None  # the writer's now: the vectors must not live on through the next pass
            except EncodingError as e:
                self.deliver(("failed", (list(taken.values()), str(e))))

    def _drain(self, work: Work | None, taken: dict[int, Work]) -> Iterator[tuple[Work, Any]]:
        """``work``, then what the queue holds now; when it runs dry, the encoder's window is encoded (the
        first window: once it holds the tokens ``prepare`` asked for, or the input ends)."""
        while work is not None:
            taken[id(work)] = work
            assert work.chunk.token_ids is not None
            yield work, work.chunk.token_ids
            if self._filling > 0:
                self._filling -= len(work.chunk.token_ids)
                work = self.inputs.get() if self._filling > 0 else self.inputs.get_nowait()
                if self._filling <= 0 or work is None:
                    self._filling, self._fill = 0, self.inputs.waited
            else:
                work = self.inputs.get_nowait()

    def _groups(self) -> None:
        while (first := self._first()) is not None:
            group = [first]
            while len(group) < self.group and (work := self.inputs.get()) is not None:
                group.append(work)
            self.gate.wait()
            started = time.perf_counter()
            try:
                embeddings = self.encoder.encode_passages([w.chunk.text for w in group])
            except EncodingError as e:
                self.deliver(("failed", (group, str(e))))
                continue
            seconds = time.perf_counter() - started
            self.stats.encode_seconds += seconds
            self._hand_over(list(zip(group, embeddings, strict=True)), seconds)

    def _hand_over(self, batch: list[tuple[Work, Embedding]], seconds: float) -> None:
        self.gate.posted(sum(w.tokens for w, _ in batch))
        self.deliver(("encoded", (batch, seconds)))


def inbox() -> queue.SimpleQueue[Message]:
    return queue.SimpleQueue()


def streams(encoder: Any) -> bool:
    """Whether the encoder's class streams pre-tokenized input (a wrapper that overrides ``encode_passages``
    only is called with texts, as the ``Encoder`` protocol says)."""
    return callable(getattr(type(encoder), "iter_encode_batches", None))


def plan_stages(ingest: IngestSettings, encoder: Any) -> tuple[int, bool, int]:
    """(parsing processes, write behind, devices), chosen per device unless configured (imports torch to
    count the devices: the queue, the write lag and the first window scale with them, configured or not).

    On a GPU the CPU stages must keep up with tens of thousands of tokens/s: parsing in processes, writes
    overlapping the model. On a CPU torch uses every core for the forward pass: helpers steal from it, so
    one feed thread parses and writes run between passes (see the README for the measurements).
    """
    devices = list(getattr(encoder, "devices", None) or ["cpu"])
    gpu = any(d.startswith(("cuda", "mps")) for d in devices)
    workers = ingest.prepare_workers if ingest.prepare_workers is not None else gpu * min(8, _cores() - 2)
    behind = ingest.write_behind if ingest.write_behind is not None else gpu
    return max(0, workers), behind, len(devices)


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
