"""Engine-neutral searches: one Query API request as small frozen records.

``retriever.query`` builds them (pure) and every store runs them: ``QdrantStore`` and ``AsyncQdrantStore``
translate them to qdrant-client models (``indexer.store.qdrant_requests``), ``EdgeStore`` to Edge's own
classes (``indexer.store.edge_requests``), so every engine runs the very same search and a search on the
embedded engine never imports qdrant-client. The shapes are Qdrant's Query API: a request (or a prefetch)
either searches one named vector (``using``) for its ``Nearest`` points, or fuses (``Rrf``, ``Dbsf``) or
scores (``Formula``) the candidates of its prefetches; a prefetch with a query and prefetches of its own
rescores their candidates. Filters are ``indexer.conditions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias, Union

from indexer.conditions import AnyFilter
from indexer.models import SparseVec

# A query vector: dense (floats), a multivector (ColBERT: a list of rows) or sparse.
Vector: TypeAlias = Union[list[float], list[list[float]], SparseVec]  # noqa: UP007 - Python 3.10 too


@dataclass(frozen=True, slots=True)
class Mmr:
    """Maximal marginal relevance over the nearest ``candidates_limit`` points: Qdrant's ``diversity``
    (0 relevance alone, 1 difference from the points already picked alone)."""

    diversity: float
    candidates_limit: int


@dataclass(frozen=True, slots=True)
class Nearest:
    """The points nearest to ``vector`` in the searched vector; with ``mmr``, picked for diversity too."""

    vector: Vector
    mmr: Mmr | None = None


@dataclass(frozen=True, slots=True)
class Rrf:
    """Reciprocal rank fusion of the prefetches' candidates (weights per prefetch, None: equal)."""

    k: int
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Dbsf:
    """Distribution-based score fusion of the prefetches' candidates."""


@dataclass(frozen=True, slots=True)
class Sum:
    terms: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Mult:
    factors: tuple[Expression, ...]


# A formula term: a constant, a variable (``$score[i]``: the score prefetch i gave), a sum or a product.
Expression: TypeAlias = Union[float, str, Sum, Mult]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Formula:
    """Score the prefetches' candidates by ``expression``; ``defaults`` stand in for a variable whose
    prefetch did not return the candidate."""

    expression: Expression
    defaults: dict[str, float] = field(default_factory=dict)


Query: TypeAlias = Union[Nearest, Rrf, Dbsf, Formula]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Rescoring:
    """Search parameters of an int8-quantized vector: rescore the quantized candidates with the original
    vectors (``oversampling`` times more of them), or not."""

    rescore: bool = True
    oversampling: float | None = None


@dataclass(frozen=True, slots=True)
class Prefetch:
    """Candidates for the stage above: ``limit`` points by ``query`` (over ``prefetch``'s, when any)."""

    query: Query | None = None
    using: str | None = None  # the named vector a Nearest query searches
    prefetch: tuple[Prefetch, ...] = ()
    filter: AnyFilter | None = None
    limit: int = 10
    score_threshold: float | None = None
    params: Rescoring | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One search: a prefetch whose ``limit`` points are the answer, with their payloads."""

    query: Query | None = None
    using: str | None = None
    prefetch: tuple[Prefetch, ...] = ()
    filter: AnyFilter | None = None
    limit: int = 10
    score_threshold: float | None = None
    params: Rescoring | None = None
    with_payload: bool | tuple[str, ...] = True  # True, or only these payload fields
    offset: int | None = None
