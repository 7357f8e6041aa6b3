"""What each Qdrant server version can run, read from Qdrant's own sources (tags v1.10.0 to v1.19.0).

A server answers requests it does not understand in ways that are hard to see: gRPC drops unknown
fields, so a 1.16 server fuses with RRF weights ignored (no error), and a 1.15.3 server cannot read an
RRF query with ``k``. The version is read when a server store is opened (``GET /`` or the gRPC health
check) and every search is checked against this table before it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.modes import SearchMode

Version = tuple[int, int, int]

# Below this nothing works: the Query API with prefetches, multivectors (ColBERT), named sparse vectors and
# float16 storage all arrived in 1.10.0.
MIN_SERVER_VERSION: Version = (1, 10, 0)


@dataclass(frozen=True, slots=True)
class Feature:
    since: Version
    what: str


DBSF = Feature((1, 11, 0), "distribution-based score fusion (mode hybrid_dbsf)")
FORMULA = Feature((1, 14, 0), "formula queries (mode m3)")
CODES = Feature((1, 14, 0), "formula queries turning distances of uint8 vectors into cosines (a uint8 collection)")
RRF_K = Feature((1, 15, 4), "RRF with a k parameter (modes hybrid, hybrid_colbert and m3; retrieval.rrf_k)")
RRF_WEIGHTS = Feature((1, 17, 0), "weighted RRF (retrieval.rrf_weights; older servers silently ignore the weights)")
GROUPS = Feature((1, 11, 0), "query groups (group_by: results per document)")
MMR = Feature((1, 15, 0), "MMR diversity (retrieval.diversity)")
# Servers before 1.17 drop a formula query's score threshold (Qdrant PR 8097): after m3 the client applies it
# again, but under MMR the final scores are dense cosines and the m3 scores are gone.
MMR_M3_THRESHOLD = Feature((1, 17, 0), "min_score in mode m3 under MMR diversity")

_MODE_FEATURES: dict[SearchMode, tuple[Feature, ...]] = {
    SearchMode.HYBRID: (RRF_K,),
    SearchMode.HYBRID_DBSF: (DBSF,),
    SearchMode.HYBRID_COLBERT: (RRF_K,),
    SearchMode.M3: (RRF_K, FORMULA),
}
_RRF_MODES = (SearchMode.HYBRID, SearchMode.HYBRID_COLBERT, SearchMode.M3)


def parse_version(text: str | None) -> Version | None:
    """``"1.16.3"`` (or ``"1.17.0-dev"``) as a tuple; None when it cannot be read."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def show(version: Version) -> str:
    return ".".join(str(x) for x in version)


def features_for(
    mode: SearchMode,
    rrf_weights: Sequence[float] | None,
    *,
    formula: bool = False,
    groups: bool = False,
    mmr: bool = False,
    min_score: bool = False,
) -> tuple[Feature, ...]:
    """The server features a search in ``mode`` uses (weights only matter where RRF fuses; ``formula``: the
    search turns distances of uint8 codes into cosines with a formula, see ``retriever.stored``)."""
    needed = _MODE_FEATURES.get(mode, ())
    if rrf_weights and mode in _RRF_MODES:
        needed += (RRF_WEIGHTS,)
    if formula and FORMULA not in needed:
        needed += (CODES,)
    if groups:
        needed += (GROUPS,)
    if mmr:
        needed += (MMR,)
        if min_score and mode is SearchMode.M3:
            needed += (MMR_M3_THRESHOLD,)
    return needed


def unsupported(
    version: Version | None,
    location: str,
    mode: SearchMode,
    rrf_weights: Sequence[float] | None,
    **options: bool,
) -> str | None:
    """Why the server at ``location`` cannot run this search, or None when it can (or is not a server).

    ``options``: ``formula``, ``groups``, ``mmr``, ``min_score`` (see ``features_for``).
    """
    if version is None:
        return None
    missing = [f for f in features_for(mode, rrf_weights, **options) if version < f.since]
    if not missing:
        return None
    needs = "; ".join(f"{f.what} needs Qdrant {show(f.since)} or later" for f in missing)
    return f"the Qdrant server at {location} runs {show(version)}: {needs}. Upgrade the server or choose another mode"
