"""Reading, parsing, chunking and tokenizing ahead of the model: items in, prepared documents out, in order.

Whether an item changed is settled here, in the calling thread (a stat, or a read and a hash: cheap, and
the hash releases the GIL). A changed file is parsed and cut into chunks that carry their token ids
(``Chunk.token_ids``), either in the calling thread or, with ``workers`` > 0, in worker processes: parsing
and chunking are Python that holds the GIL, so a process pool is what spreads them over the cores. The
pool starts with the first document that needs parsing, so a run over unchanged files never starts it.
Nothing here writes to the store.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.changes import NO_FILE, Item, examine, parse
from indexer.chunking import Chunker
from indexer.config import ChunkingSettings, Settings
from indexer.errors import IndexerError, LoaderError
from indexer.models import Chunk, Document, SourceFile
from indexer.report import FileResult
from indexer.versions import DocumentRecord, FileStat

logger = logging.getLogger(__name__)

AHEAD_PER_WORKER = 2  # documents submitted to the pool per worker process before the first is awaited


@dataclass(slots=True)
class Prepared:
    """One item, examined and (if it changed) chunked: ``chunks`` to encode, or nothing to encode."""

    item: Item
    result: FileResult  # status "ok" with chunks; "unchanged", "skipped" or "failed" without
    chunks: list[Chunk] = field(default_factory=list)
    file_stat: FileStat = NO_FILE
    refresh: DocumentRecord | None = None  # an unchanged document whose file was touched


def doc_id_of(item: Item) -> str:
    return item.document.doc_id if item.document is not None else item.file.rel_path if item.file else ""


def chunk_document(doc: Document, chunker: Chunker) -> list[Chunk]:
    chunks = list(chunker.split(doc))
    if not chunks:
        raise LoaderError(f"{doc.source}: no text to index")
    return chunks


class Preparer:
    """Prepares items in order, ``workers`` processes parsing and chunking (0: this thread does it).

    ``chunker`` builds the chunker for this thread (called once, on first need); ``model_dir`` is where
    worker processes load the tokenizer from (``tokenizer.json``), for chunks with the same ids.
    """

    def __init__(
        self,
        settings: Settings,
        metadata: dict[str, Any] | None,
        chunker: Callable[[], Chunker],
        workers: Callable[[], int],
        model_dir: Path | None = None,
    ) -> None:
        self.settings, self.metadata = settings, metadata
        self._make_chunker, self._workers, self.model_dir = chunker, workers, model_dir
        self._chunker: Chunker | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._planned = False

    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = self._make_chunker()
        return self._chunker

    def _pool_for_parsing(self) -> ProcessPoolExecutor | None:
        if not self._planned:
            self._planned = True
            workers = self._workers() if self.model_dir is not None else 0
            if workers > 0:
                import multiprocessing

                # spawn: the parent has threads (and perhaps torch) running; a fork of that is unsafe
                self._pool = ProcessPoolExecutor(
                    workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(str(self.model_dir), self.settings.chunking),
                )
                self._pool_size = workers
                logger.info("parsing and chunking in %d worker processes", workers)
        return self._pool

    def prepared(
        self, entries: Iterable[tuple[Item, FileResult]], known: Callable[[str], DocumentRecord | None]
    ) -> Iterator[Prepared]:
        """Each entry prepared, in the order given; ``known``: a document's record as this run knows it."""
        pending: deque[tuple[Prepared, Future[tuple[list[Chunk] | None, str | None]] | None]] = deque()
        for item, result in entries:
            pending.append(self._start(item, result, known(doc_id_of(item))))
            ahead = AHEAD_PER_WORKER * self._pool_size
            while pending and (pending[0][1] is None or pending[0][1].done() or len(pending) > ahead):
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())

    def _start(
        self, item: Item, result: FileResult, known: DocumentRecord | None
    ) -> tuple[Prepared, Future[tuple[list[Chunk] | None, str | None]] | None]:
        started = time.perf_counter()
        p = Prepared(item, result)
        future = None
        try:
            load = examine(item, result, self.settings, known)
            p.refresh, p.file_stat = load.refresh, load.file_stat
            if load.document is not None:  # a document in memory: chunked here
                p.chunks = chunk_document(load.document, self.chunker())
            elif load.data is not None:
                assert item.file is not None
                pool = self._pool_for_parsing()
                if pool is None:
                    p.chunks = chunk_document(parse(item.file, load.data, self.settings, self.metadata), self.chunker())
                else:
                    future = pool.submit(_parse_in_worker, item.file, load.data, self.settings, self.metadata)
        except IndexerError as e:
            _fail(result, str(e))
        finally:
            result.seconds += time.perf_counter() - started
        return p, future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _fail(result: FileResult, error: str) -> None:
    result.status, result.error = "failed", error
    logger.warning("failed: %s", error)


def _finish(p: Prepared, future: Future[tuple[list[Chunk] | None, str | None]] | None) -> Prepared:
    if future is not None:
        chunks, error = future.result()
        if error is not None:
            _fail(p.result, error)
        else:
            p.chunks = chunks or []
    return p


# ------------------------------------------------------------------------------------ worker processes

_worker_chunker: Chunker | None = None


def _start_worker(model_dir: str, chunking: ChunkingSettings) -> None:
    global _worker_chunker
    from indexer.encoder import M3Tokenizer

    tokenizer = M3Tokenizer(Path(model_dir))
    _worker_chunker = Chunker(tokenizer, chunking.chunk_size, chunking.chunk_overlap, chunking.headings, ids=True)


def _parse_in_worker(
    file: SourceFile, data: bytes, settings: Settings, metadata: dict[str, Any] | None
) -> tuple[list[Chunk] | None, str | None]:
    """Chunks of one file's bytes, or why not (our errors travel as text: their classes need not pickle)."""
    assert _worker_chunker is not None
    try:
        return chunk_document(parse(file, data, settings, metadata), _worker_chunker), None
    except IndexerError as e:
        return None, str(e)
