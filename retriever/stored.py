"""How a query meets each stored vector: its query form, its search parameters and its scores' scale.

Pure request building, as ``retriever.query``: a collection stores the dense and ColBERT vectors as floats
or as uint8 codes (``indexer.storage``), with or without an int8-quantized copy. Codes need the query mapped
the same way and their distances turned back into cosines; quantized vectors take the rescoring parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer import requests as rq
from indexer.config import RetrievalSettings
from indexer.modes import SearchMode
from indexer.schema import COLBERT, DENSE, CollectionInfo, VectorInfo
from indexer.storage import EuclidCodes, to_uint8


@dataclass(frozen=True, slots=True)
class VectorSearch:
    """One stored vector (dense or ColBERT) as searches see it."""

    info: VectorInfo | None = None  # None: floats, cosine, not quantized
    rescore: bool = True
    oversampling: float | None = None

    @property
    def codes(self) -> EuclidCodes | None:
        """The uint8 codes' scale when the vector is stored as codes."""
        if self.info is None or not self.info.codes or self.info.size is None:
            return None
        return EuclidCodes(self.info.size)

    def query(self, vector: np.ndarray) -> Any:
        """The query vector (a list, or a list of lists for ColBERT) as the engine must receive it."""
        values = to_uint8(vector) if self.codes else vector
        return np.asarray(values, dtype=np.float64).tolist()

    def params(self) -> rq.Rescoring | None:
        """Rescoring parameters for a search on an int8-quantized vector (None otherwise)."""
        if self.info is None or not self.info.quantized:
            return None
        return rq.Rescoring(rescore=self.rescore, oversampling=self.oversampling)

    def threshold(self, similarity: float | None, n: int = 1) -> float | None:
        """A minimum similarity as the engine's threshold: for codes, a maximum distance."""
        codes = self.codes
        if similarity is None or codes is None:
            return similarity
        return codes.max_distance(similarity, n)

    def term(self, variable: str, n: int = 1) -> tuple[rq.Expression, float]:
        """A formula term giving the (sum of n) similarity behind ``variable``, and the engine score a
        missing candidate takes so that the term is 0."""
        codes = self.codes
        if codes is None:
            return variable, 0.0
        square = rq.Mult((-codes.per_squared_distance, variable, variable))
        return rq.Sum((n * codes.per_pair, square)), codes.max_distance(0.0, n)

    def similarity(self, n: int = 1) -> rq.Formula | None:
        """For codes, a formula over one prefetch (``$score[0]``) turning its distances into the (sum of n)
        cosines; None when the engine's scores are similarities already."""
        if self.codes is None:
            return None
        expression, default = self.term("$score[0]", n)
        return rq.Formula(expression, defaults={"$score[0]": default})

    def as_similarity(self, leg: rq.Prefetch, n: int = 1) -> rq.Prefetch:
        """``leg`` whose scores are similarities (DBSF fuses scores; RRF sees only ranks and needs none)."""
        formula = self.similarity(n)
        if formula is None:
            return leg
        return rq.Prefetch(prefetch=(leg,), query=formula, filter=leg.filter, limit=leg.limit)


@dataclass(frozen=True, slots=True)
class Storage:
    """The searched collection's dense and ColBERT vectors."""

    dense: VectorSearch = field(default_factory=VectorSearch)
    colbert: VectorSearch = field(default_factory=VectorSearch)

    @classmethod
    def of(cls, info: CollectionInfo | None, settings: RetrievalSettings | None = None) -> Storage:
        s = settings or RetrievalSettings()
        if info is None:
            return cls()
        return cls(
            VectorSearch(info.vector(DENSE), s.rescore_dense, s.oversampling),
            VectorSearch(info.vector(COLBERT), s.rescore_colbert, s.oversampling),
        )

    def uses_formula(self, mode: SearchMode) -> bool:
        """Whether a search in ``mode`` turns code distances into similarities with a formula (server 1.14+)."""
        if mode is SearchMode.M3:
            return True
        dense = self.dense.codes is not None and mode in (SearchMode.DENSE, SearchMode.HYBRID_DBSF)
        return dense or (self.colbert.codes is not None and mode.colbert_final)


PLAIN = Storage()
