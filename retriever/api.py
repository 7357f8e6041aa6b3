"""The Python API: ``Retriever(...).search("query")`` returns typed hits."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from indexer.config import RetrievalSettings, Settings, load_settings
from indexer.encoder import Encoder
from indexer.errors import QueryError, SchemaMismatchError, StoreError
from indexer.models import Embedding, Hit
from indexer.modes import MAX_QUERY_CHARS, SearchMode, check_limit
from indexer.runtime import open_runtime
from indexer.schema import COLBERT, DENSE, CollectionInfo
from indexer.store import Store
from indexer.store.features import unsupported
from indexer.tenants import TenantStore
from indexer.validation import is_valid_unicode
from retriever.query import build_request, check_filter, final_threshold, parse_filter, score_divisor
from retriever.stored import PLAIN, Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked chunk. ``score`` is on the mode's own scale (README, "Retrieval modes and what their scores mean").

    dense: cosine; sparse: FlagEmbedding's ``compute_lexical_matching_score``; colbert and
    hybrid_colbert: FlagEmbedding's ``colbert_score`` (the mean over query vectors: Qdrant's MAX_SIM sum
    divided by the number of query vectors); m3: 0.4*dense + 0.2*sparse + 0.4*colbert (configurable
    weights, not normalised by their sum); hybrid: RRF; hybrid_dbsf: DBSF (these two are not similarities).
    """

    id: str
    score: float
    text: str
    doc_id: str
    source: str
    pages: tuple[int, ...]
    chunk_index: int
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    start: int | None = None  # character offsets of the chunk in its document's text
    end: int | None = None
    headings: tuple[str, ...] = ()  # the section's heading path, outermost first (() when none)

    @property
    def page(self) -> int | None:
        return self.pages[0] if self.pages else None

    @classmethod
    def from_hit(cls, hit: Hit, divisor: float = 1.0) -> SearchHit:
        p = hit.payload
        return cls(
            id=hit.id,
            score=hit.score / divisor,
            text=p.get("text", ""),
            doc_id=p.get("doc_id", ""),
            source=p.get("source", ""),
            pages=tuple(p.get("pages") or ()),
            chunk_index=int(p.get("chunk_index", -1)),
            metadata=dict(p.get("metadata") or {}),
            start=p.get("start"),
            end=p.get("end"),
            headings=tuple(p.get("headings") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "doc_id": self.doc_id,
            "source": self.source,
            "pages": list(self.pages),
            "chunk_index": self.chunk_index,
            "text": self.text,
            "metadata": self.metadata,
            "start": self.start,
            "end": self.end,
            "headings": list(self.headings),
        }


class Retriever:
    """Searches one collection. Opens the store and the model once; use it as a context manager.

    >>> with Retriever.from_config("configs/default.toml") as r:
    ...     hits = r.search("late delivery penalty", mode="hybrid_colbert", filter={"source": "contract.pdf"})
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        encoder: Encoder | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        runtime = open_runtime(self.settings, "read", encoder=encoder, store=store)
        self.store, self.encoder = runtime.store, runtime.encoder
        assert runtime.info is not None
        self.info: CollectionInfo = runtime.info
        dense = self.info.vector(DENSE)
        r = self.settings.retrieval
        self.storage = Storage.of(self.info, r)
        unsupported_default = self._unsupported(r.mode)
        if unsupported_default:
            self.store.close()
            raise StoreError(f"retrieval.mode {r.mode.value!r}: {unsupported_default}")
        if not dense or dense.size != self.encoder.dense_dim:
            self.store.close()
            raise SchemaMismatchError(
                f"collection {self.store.collection!r} holds {dense.size if dense else 'no'}-d dense vectors "
                f"but model {self.encoder.name!r} makes {self.encoder.dense_dim}-d ones; search it with the "
                "model that built it"
            )

    @classmethod
    def from_config(cls, path: str | Path | None = None, **overrides: dict[str, Any]) -> Retriever:
        """Settings from a TOML file (and the environment), with ``{section: {field: value}}`` overrides."""
        return cls(load_settings(path, overrides))

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def for_tenant(self, tenant: str) -> Retriever:
        """A view of this retriever that searches only ``tenant``'s documents (``indexer.tenants``): the same
        model and store; every request, and every prefetch in it, is scoped. Close the original, not the view."""
        view = copy.copy(self)
        view.store = TenantStore(self.store, self.settings.tenants.field, tenant)
        return view

    def _unsupported(self, mode: SearchMode) -> str | None:
        """Why the store cannot run a search in ``mode`` on this collection (a server too old), or None."""
        r = self.settings.retrieval
        formula = self.storage.uses_formula(mode)
        return unsupported(self.store.server_version, self.store.location, mode, r.rrf_weights, formula=formula)

    def search(
        self, query: str, limit: int | None = None, mode: SearchMode | str | None = None, filter: Any = None
    ) -> list[SearchHit]:
        """The best ``limit`` chunks for ``query``; ``filter`` takes any form ``parse_filter`` reads."""
        return self.search_batch([query], limit=limit, mode=mode, filter=filter)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
    ) -> list[list[SearchHit]]:
        """Several queries: encoded in one model call and answered in one engine call."""
        plan = self.plan(queries, limit=limit, mode=mode, filter=filter)
        if not queries:
            return []
        return self.run(plan, self.encoder.encode_queries(list(queries)))

    def search_embeddings(
        self,
        embeddings: Sequence[Embedding],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
    ) -> list[list[SearchHit]]:
        """Queries already encoded (evaluation, sweeps): one engine call, scores on the reported scale."""
        return self.run(self.plan([], limit=limit, mode=mode, filter=filter), embeddings)

    def run(self, plan: SearchPlan, embeddings: Sequence[Embedding]) -> list[list[SearchHit]]:
        """Answer a checked plan for encoded queries."""
        results = self.store.query_batch(plan.requests(embeddings)) if embeddings else []
        return plan.hits(embeddings, results)

    def plan(
        self,
        queries: Sequence[str],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
    ) -> SearchPlan:
        """Check a search before any model or engine work (raises ``QueryError``); the async API reuses it."""
        r = self.settings.retrieval
        mode = SearchMode.parse(mode or r.mode)
        limit = check_limit(r.limit if limit is None else limit)
        reason = self._unsupported(mode)
        if reason:
            raise QueryError(reason)
        if mode.needs_colbert and not self.info.has(COLBERT):
            raise QueryError(
                f"mode {mode.value} needs ColBERT vectors, which collection {self.store.collection!r} lacks"
            )
        for i, q in enumerate(queries):
            try:
                check_query(q)
            except QueryError as e:
                raise QueryError(f"query #{i + 1}: {e}" if len(queries) > 1 else str(e)) from None
        try:
            flt = parse_filter(filter)
        except ValueError as e:  # pydantic's ValidationError, e.g. a list mixing strings and numbers
            raise QueryError(f"invalid filter: {str(e).splitlines()[0]}") from e
        check_filter(flt)
        return SearchPlan(mode=mode, limit=limit, flt=flt, settings=r, storage=self.storage)


def check_query(query: Any) -> str:
    """A query the model can encode: non-empty text of at most ``MAX_QUERY_CHARS`` valid Unicode characters."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    if not is_valid_unicode(query):
        raise QueryError("the query is not valid Unicode (it holds a lone surrogate)")
    return query


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """A checked search: Query API requests from query embeddings, and hits from the answers (pure)."""

    mode: SearchMode
    limit: int
    flt: models.Filter | None
    settings: RetrievalSettings
    storage: Storage = PLAIN  # how the collection stores its vectors (query form, rescoring, scales)

    def requests(self, embeddings: Sequence[Embedding]) -> list[models.QueryRequest]:
        r = self.settings
        return [
            build_request(
                self.mode,
                e,
                limit=self.limit,
                prefetch_limit=r.prefetch_limit,
                rrf_k=r.rrf_k,
                rrf_weights=r.rrf_weights,
                m3_weights=r.m3_weights,
                min_dense_score=r.min_dense_score,
                min_sparse_score=r.min_sparse_score,
                min_score=r.min_score,
                flt=self.flt,
                storage=self.storage,
            )
            for e in embeddings
        ]

    def hits(self, embeddings: Sequence[Embedding], results: Sequence[Sequence[Hit]]) -> list[list[SearchHit]]:
        """Engine answers as hits, with scores on the mode's reported scale (see ``SearchHit``).

        The final threshold is applied here too, so that every engine answers alike: servers before 1.17
        ignore it on m3's formula query.
        """
        r = self.settings
        out = []
        for e, hits in zip(embeddings, results, strict=True):
            threshold = final_threshold(self.mode, e, r.min_score, r.min_dense_score, r.min_sparse_score)
            floor = None if threshold is None else _engine_floor(threshold)
            divisor = score_divisor(self.mode, e)
            out.append([SearchHit.from_hit(h, divisor) for h in hits if floor is None or h.score >= floor])
        return out


def _engine_floor(x: float) -> float:
    """The lowest score any engine keeps for threshold ``x``: servers and Edge compare float32 scores with
    the threshold rounded to float32, local mode compares in double; a hit any of them keeps is kept here."""
    return min(x, float(np.float32(x)))
