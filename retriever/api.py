"""The Python API: ``Retriever(...).search("query")`` returns typed hits."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.conditions import AnyFilter
from indexer.config import RetrievalSettings, Settings, load_settings
from indexer.encoder import Encoder
from indexer.errors import QueryError, SchemaMismatchError, StoreError
from indexer.models import Embedding, Hit
from indexer.modes import MAX_QUERY_CHARS, SearchMode, check_limit
from indexer.requests import Request
from indexer.runtime import open_runtime
from indexer.schema import COLBERT, DENSE, CollectionInfo
from indexer.store import Store
from indexer.store.features import unsupported
from indexer.store.groups import GroupKey, HitGroup, check_group_by, check_group_size
from indexer.tenants import TenantStore
from indexer.validation import is_valid_unicode
from retriever.query import build_request, check_filter, diversify, final_threshold, parse_filter, score_divisor
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
    group: GroupKey | None = None  # the value of the grouping field, in a search with ``group_by``

    @property
    def page(self) -> int | None:
        return self.pages[0] if self.pages else None

    @classmethod
    def from_hit(cls, hit: Hit, divisor: float = 1.0, group: GroupKey | None = None) -> SearchHit:
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
            group=group,
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
            "group": self.group,
        }


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """What a caller may choose for a search; None takes the configured default (``[retrieval]``).

    ``group_by``: a payload field (e.g. ``doc_id``): ``limit`` then counts groups, each of up to ``group_size``
    hits, and the hits come group by group, best group first. ``diversity``: MMR over the dense vector
    after the mode (0 relevance only, 1 difference only); scores are then dense cosines.
    """

    limit: int | None = None
    mode: SearchMode | str | None = None
    filter: Any = None
    group_by: str | None = None
    group_size: int | None = None
    diversity: float | None = None


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
        unsupported_default = self._unsupported(
            r.mode, groups=r.group_by is not None, diversity=r.diversity, min_score=r.min_score is not None
        )
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

    def _unsupported(
        self, mode: SearchMode, *, groups: bool = False, diversity: float | None = None, min_score: bool = False
    ) -> str | None:
        """Why the store cannot run this search on this collection (a server too old, MMR over uint8 codes),
        or None."""
        if diversity is not None and self.storage.dense.codes is not None:
            return (
                "diversity (MMR) is not supported on a collection storing dense vectors as uint8 codes: MMR "
                "would report code distances, not cosines; search without diversity"
            )
        r = self.settings.retrieval
        return unsupported(
            self.store.server_version,
            self.store.location,
            mode,
            r.rrf_weights,
            formula=self.storage.uses_formula(mode),
            groups=groups,
            mmr=diversity is not None,
            min_score=min_score,
        )

    def search(
        self,
        query: str,
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[SearchHit]:
        """The best ``limit`` chunks for ``query``; ``filter`` takes any form ``parse_filter`` reads.

        ``options``: ``group_by``, ``group_size``, ``diversity`` (see ``SearchOptions``).
        """
        return self.search_batch([query], limit=limit, mode=mode, filter=filter, **options)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[list[SearchHit]]:
        """Several queries: encoded in one model call and answered in one engine call."""
        plan = self.plan(queries, SearchOptions(limit, mode, filter, **options))
        if not queries:
            return []
        return self.run(plan, self.encoder.encode_queries(list(queries)))

    def search_embeddings(
        self,
        embeddings: Sequence[Embedding],
        limit: int | None = None,
        mode: SearchMode | str | None = None,
        filter: Any = None,
        **options: Any,
    ) -> list[list[SearchHit]]:
        """Queries already encoded (evaluation, sweeps): one engine call, scores on the reported scale."""
        return self.run(self.plan([], SearchOptions(limit, mode, filter, **options)), embeddings)

    def run(self, plan: SearchPlan, embeddings: Sequence[Embedding]) -> list[list[SearchHit]]:
        """Answer a checked plan for encoded queries."""
        if not embeddings:
            return []
        requests = plan.requests(embeddings)
        if plan.group_by is not None:
            return plan.grouped_hits(embeddings, self.store.query_groups(requests, plan.group_by, plan.group_size))
        return plan.hits(embeddings, self.store.query_batch(requests))

    def plan(self, queries: Sequence[str], options: SearchOptions | None = None, **kwargs: Any) -> SearchPlan:
        """Check a search before any model or engine work (raises ``QueryError``); the async API reuses it.

        ``options`` (or its fields as keyword arguments) says what the caller chose.
        """
        o = options or SearchOptions(**kwargs)
        r = self.settings.retrieval
        mode = SearchMode.parse(o.mode or r.mode)
        limit = check_limit(r.limit if o.limit is None else o.limit)
        group_by = o.group_by if o.group_by is not None else r.group_by
        group_size = check_group_size(r.group_size if o.group_size is None else o.group_size)
        diversity = r.diversity if o.diversity is None else o.diversity
        if group_by is not None:
            check_group_by(group_by)
        if diversity is not None and (
            isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0.0 <= diversity <= 1.0
        ):
            raise QueryError(f"diversity must be a number between 0 and 1, got {diversity!r}")
        reason = self._unsupported(
            mode, groups=group_by is not None, diversity=diversity, min_score=r.min_score is not None
        )
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
            flt = parse_filter(o.filter)
        except ValueError as e:  # pydantic's ValidationError, e.g. a list mixing strings and numbers
            raise QueryError(f"invalid filter: {str(e).splitlines()[0]}") from e
        check_filter(flt)
        return SearchPlan(
            mode=mode,
            limit=limit,
            flt=flt,
            settings=r,
            group_by=group_by,
            group_size=group_size,
            diversity=None if diversity is None else float(diversity),
            storage=self.storage,
        )


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
    flt: AnyFilter | None
    settings: RetrievalSettings
    group_by: str | None = None  # a payload field: ``limit`` groups of up to ``group_size`` hits
    group_size: int = 1
    diversity: float | None = None  # MMR over the dense vector after the mode
    storage: Storage = PLAIN  # how the collection stores its vectors (query form, rescoring, scales)

    def requests(self, embeddings: Sequence[Embedding]) -> list[Request]:
        r = self.settings
        built = [
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
        if self.diversity is None:
            return built
        return [
            diversify(b, e, self.diversity, r.mmr_candidates, self.storage)
            for b, e in zip(built, embeddings, strict=True)
        ]

    def hits(self, embeddings: Sequence[Embedding], results: Sequence[Sequence[Hit]]) -> list[list[SearchHit]]:
        """Engine answers as hits, with scores on the mode's reported scale (see ``SearchHit``).

        The final threshold is applied here too, so that every engine answers alike: servers before 1.17
        ignore it on m3's formula query.
        """
        return [self._convert(e, [(None, h) for h in hits]) for e, hits in zip(embeddings, results, strict=True)]

    def grouped_hits(
        self, embeddings: Sequence[Embedding], results: Sequence[Sequence[HitGroup]]
    ) -> list[list[SearchHit]]:
        """Each query's groups as one list of hits, group by group (``SearchHit.group`` says which)."""
        return [
            self._convert(e, [(g.key, h) for g in groups for h in g.hits])
            for e, groups in zip(embeddings, results, strict=True)
        ]

    def _convert(self, e: Embedding, hits: Sequence[tuple[GroupKey | None, Hit]]) -> list[SearchHit]:
        divisor, floor = self._scale(e)
        return [SearchHit.from_hit(h, divisor, key) for key, h in hits if floor is None or h.score >= floor]

    def _scale(self, e: Embedding) -> tuple[float, float | None]:
        """The divisor to the reported scale, and the lowest engine score kept. Under MMR the engine reports
        dense cosines and the mode's thresholds were applied to the candidates, inside the request."""
        if self.diversity is not None:
            return 1.0, None
        r = self.settings
        threshold = final_threshold(self.mode, e, r.min_score, r.min_dense_score, r.min_sparse_score)
        return score_divisor(self.mode, e), None if threshold is None else _engine_floor(threshold)


def _engine_floor(x: float) -> float:
    """The lowest score any engine keeps for threshold ``x``: servers and Edge compare float32 scores with
    the threshold rounded to float32, local mode compares in double; a hit any of them keeps is kept here."""
    return min(x, float(np.float32(x)))
