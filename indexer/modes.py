"""The retrieval vocabulary, defined once: modes, the result limit and the m3 weights.

It lives in ``indexer`` because the configuration validates it; ``retriever`` builds requests from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from indexer.errors import QueryError


class SearchMode(str, Enum):
    DENSE = "dense"  # cosine on the dense vector
    SPARSE = "sparse"  # dot product of learned lexical weights
    HYBRID = "hybrid"  # dense + sparse prefetch, fused by RRF
    HYBRID_DBSF = "hybrid_dbsf"  # dense + sparse prefetch, fused by distribution-based score fusion
    HYBRID_COLBERT = "hybrid_colbert"  # the RRF-fused candidates reranked by ColBERT MAX_SIM
    COLBERT = "colbert"  # dense candidates reranked by ColBERT MAX_SIM
    M3 = "m3"  # BGE-M3's weighted sum of dense, sparse and ColBERT scores over dense + sparse candidates

    @classmethod
    def parse(cls, value: str | SearchMode) -> SearchMode:
        try:
            return cls(value)
        except ValueError:
            raise QueryError(f"unknown mode {value!r}; choose one of {', '.join(m.value for m in cls)}") from None

    @property
    def needs_colbert(self) -> bool:
        return self in (SearchMode.HYBRID_COLBERT, SearchMode.COLBERT, SearchMode.M3)

    @property
    def colbert_final(self) -> bool:
        """The engine's final score is ColBERT MAX_SIM (a sum over query vectors)."""
        return self in (SearchMode.HYBRID_COLBERT, SearchMode.COLBERT)

    @property
    def score_is_similarity(self) -> bool:
        """False for RRF and DBSF, whose scores depend on ranks and on the other candidates."""
        return self not in (SearchMode.HYBRID, SearchMode.HYBRID_DBSF)


# ------------------------------------------------------------------------------------ queries and limit

MAX_QUERY_CHARS = 10_000

MAX_LIMIT = 1000
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"hits to return, 1 to {MAX_LIMIT}")]


def check_limit(limit: Any) -> int:
    """The number of hits a search may return: an integer from 1 to ``MAX_LIMIT``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer between 1 and {MAX_LIMIT}, got {limit!r}")
    return limit


# ------------------------------------------------------------------------------------ m3 weights

DEFAULT_M3_WEIGHTS = (0.4, 0.2, 0.4)  # dense, sparse, ColBERT: BGE-M3's README


def valid_m3_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative finite numbers with a positive sum (dense, sparse, ColBERT); ValueError otherwise."""
    try:
        w = tuple(float(x) for x in weights)
    except (TypeError, ValueError):
        raise ValueError(f"m3 weights must be three numbers, got {weights!r}") from None
    if len(w) != 3 or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
        raise ValueError(f"m3 weights must be three non-negative numbers with a positive sum, got {list(weights)}")
    return w[0], w[1], w[2]


M3Weights = Annotated[tuple[float, float, float], AfterValidator(valid_m3_weights)]
