"""``BGEM3Encoder``: BGE-M3's dense, sparse and ColBERT vectors from one forward pass, loaded on first use.

Constructing one reads the model folder only (sizes, limits, fingerprint): torch, transformers and the
weights load when the first text needs encoding, so a run with nothing to encode never pays for them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from indexer.config import ModelSettings
from indexer.errors import EncodingError, IndexerError, ModelLoadError, QueryError
from indexer.models import Embedding

from .folder import detect_pooling, model_error, model_fingerprint, read_model_info, resolve_model_dir
from .pool import Batch, encode_batch, make_batches, run_on_replicas
from .tokenizer import M3Tokenizer
from .vectors import fit_multivector, max_multivector_rows

logger = logging.getLogger(__name__)

K = TypeVar("K")

# How many batches (per device) a streaming call sorts together by length.
WINDOW_BATCHES = 8


class Encoder(Protocol):
    """What the pipeline and the retriever need from an embedding model."""

    tokenizer: Any
    dense_dim: int
    colbert_dim: int
    max_length: int  # tokens per passage, special tokens included
    name: str
    fingerprint: str  # identifies the weights (see model_fingerprint)

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]: ...


class BGEM3Encoder:
    """BGE-M3 (or a model folder shaped like it) driven directly: token-budget batches, one or more devices."""

    def __init__(self, settings: ModelSettings, max_length: int, colbert: bool = True) -> None:
        self.settings = settings
        self.name = settings.name
        self.colbert = colbert
        self.model_dir = resolve_model_dir(settings.name)
        info = read_model_info(settings.name, self.model_dir)
        self.dense_dim = info.dense_dim
        self.colbert_dim = info.colbert_dim
        self.model_max_length = info.max_tokens
        if max_length > self.model_max_length:
            raise ModelLoadError(
                f"chunk size {max_length} tokens exceeds what {settings.name!r} accepts "
                f"({self.model_max_length} tokens); lower chunking.chunk_size"
            )
        self.max_length = max_length
        self.pooling = detect_pooling(self.model_dir) if settings.pooling == "auto" else settings.pooling
        self.fingerprint = model_fingerprint(self.model_dir)
        self.tokenizer = M3Tokenizer(self.model_dir)
        self.max_batch_tokens = settings.max_batch_tokens
        self._replicas: list[Any] | None = None
        self._devices: list[str] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ loading

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (they load on the first encode, or on ``load()``)."""
        return self._replicas is not None

    @property
    def devices(self) -> list[str]:
        """The torch devices the model runs on (resolving ``auto`` imports torch, not the weights)."""
        if self._devices is None:
            from .forward import resolve_devices

            self._devices = resolve_devices(self.settings.device)
        return self._devices

    @property
    def device(self) -> str:
        return ",".join(self.devices)

    def load(self) -> None:
        """Load torch, transformers and the weights now (one replica per device); idempotent, thread-safe."""
        if self._replicas is not None:
            return
        with self._lock:
            if self._replicas is not None:
                return
            started = time.perf_counter()
            try:
                from .forward import load_replicas

                s = self.settings
                tok = self.tokenizer
                replicas = load_replicas(
                    self.model_dir, self.devices, s.fp16, s.bf16, self.pooling, tok.unused_ids(), tok.pad_token_id
                )
            except ModelLoadError:
                raise
            except Exception as e:
                raise model_error(self.name, f"{type(e).__name__}: {e}") from e
            if (replicas[0].dense_dim, replicas[0].colbert_dim) != (self.dense_dim, self.colbert_dim):
                raise model_error(self.name, "the weights do not match config.json's sizes")
            self._replicas = replicas
            logger.info(
                "loaded %s on %s in %.1fs (dense %d-d, ColBERT %d-d, pooling %s, %d padded tokens per batch)",
                self.name,
                self.device,
                time.perf_counter() - started,
                self.dense_dim,
                self.colbert_dim,
                self.pooling,
                self.max_batch_tokens,
            )

    # ------------------------------------------------------------------------------ encoding

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the model sees them (special tokens included): the input of ``encode_ids``."""
        return self.tokenizer.encode_ids(texts)

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]:
        """Encode chunks, in order; all of them are sorted by length into token-budget batches together."""
        return self._encode_texts(texts, query=False)

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]:
        """Encode queries (BGE-M3 needs no query instruction); a query over the limit is refused."""
        return self._encode_texts(texts, query=True)

    def encode_ids(self, ids: Sequence[Sequence[int]], *, query: bool = False) -> list[Embedding]:
        """Encode pre-tokenized inputs (from ``tokenize``), in order, sorted together into batches."""
        out: list[Embedding | None] = [None] * len(ids)
        for batch in self._run(list(enumerate(ids)), query, window_tokens=None):
            for i, embedding in batch:
                out[i] = embedding
        return out  # type: ignore[return-value]

    def iter_encode(
        self, items: Iterable[tuple[K, Sequence[int]]], *, query: bool = False, window_tokens: int | None = 0
    ) -> Iterator[tuple[K, Embedding]]:
        """Encode a stream of ``(key, token ids)``, yielding ``(key, embedding)`` as batches finish.

        Items are read lazily (a generator over a bounded queue works) and sorted by length within
        windows of ``window_tokens`` tokens (0: ``WINDOW_BATCHES`` batches per device; None: the whole
        stream). Results come in completion order, not input order.
        """
        return (pair for batch in self._run(items, query, window_tokens) for pair in batch)

    def iter_encode_batches(
        self, items: Iterable[tuple[K, Sequence[int]]], *, query: bool = False, window_tokens: int | None = 0
    ) -> Iterator[list[tuple[K, Embedding]]]:
        """``iter_encode``, one list per forward pass: the next pass runs only when the caller asks for it."""
        return self._run(items, query, window_tokens)

    def _encode_texts(self, texts: Sequence[str], query: bool) -> list[Embedding]:
        if not texts:
            return []
        ids = self.tokenize(texts)
        limit, kind, error = self._limits(query)
        too_long = [(i, len(x)) for i, x in enumerate(ids) if len(x) > limit]
        if too_long:
            i, n = too_long[0]
            raise error(
                f"{len(too_long)} {kind}(s) exceed {limit} tokens (e.g. #{i}: {n} tokens); "
                "the model would truncate them silently"
            )
        return self.encode_ids(ids, query=query)

    def _limits(self, query: bool) -> tuple[int, str, type[IndexerError]]:
        if query:
            return self.settings.query_max_length, "query", QueryError
        return self.max_length, "passage", EncodingError

    def _run(
        self, items: Iterable[tuple[K, Sequence[int]]], query: bool, window_tokens: int | None
    ) -> Iterator[list[tuple[K, Embedding]]]:
        self.load()
        replicas = self._replicas
        assert replicas is not None
        colbert = True if query else self.colbert
        limit, kind, error = self._limits(query)
        if window_tokens == 0:
            window_tokens = WINDOW_BATCHES * len(replicas) * self.max_batch_tokens

        def windows() -> Iterator[Batch[K]]:
            window: list[tuple[K, Sequence[int]]] = []
            tokens = 0
            for key, ids in items:
                if not 2 <= len(ids) <= limit:
                    raise error(f"a {kind} of {len(ids)} tokens is outside 2..{limit}; the model would truncate it")
                window.append((key, ids))
                tokens += len(ids)
                if window_tokens is not None and tokens >= window_tokens:
                    yield from make_batches(window, self.max_batch_tokens)
                    window, tokens = [], 0
            yield from make_batches(window, self.max_batch_tokens)

        def work(replica: Any, batch: Batch[K]) -> list[tuple[K, Embedding]]:
            from .forward import is_out_of_memory

            try:
                return encode_batch(replica, batch, colbert, is_out_of_memory)
            except IndexerError:
                raise
            except Exception as e:
                raise EncodingError(
                    f"the model failed to encode {len(batch.keys)} {kind}(s) on {replica.device}: "
                    f"{type(e).__name__}: {e}"
                ) from e

        max_rows = max_multivector_rows(self.colbert_dim)
        for results in run_on_replicas(replicas, windows(), work):
            yield [
                (key, dataclasses.replace(e, colbert=fit_multivector(e.colbert)))
                if e.colbert is not None and e.colbert.shape[0] > max_rows
                else (key, e)
                for key, e in results
            ]
            del results  # the caller owns the pass's vectors now: not kept alive through the next pass
