"""Results per group (e.g. per document): Qdrant's query groups, and their equivalent where an engine has none.

Servers and local mode answer ``query_points_groups`` themselves. Qdrant Edge has no groups: ``overfetch_groups``
runs the request with a larger limit and groups the ranked points on the client, in rank order, until ``limit``
groups are full or the candidates run out (the over-fetch policy is in its docstring and the README).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from indexer.errors import QueryError
from indexer.models import Hit, StoredPoint
from indexer.requests import Request

logger = logging.getLogger(__name__)

GroupKey = str | int
MAX_GROUP_SIZE = 100  # hits per group
MAX_GROUP_FIELD_CHARS = 256

# Edge's over-fetch: the first try asks for OVERFETCH x limit x group_size points, each further try for
# OVERFETCH times more, never more than MAX_GROUP_CANDIDATES (a fusion mode's candidates are bounded by its
# prefetch limits anyway: past them the engine returns fewer points, and the search stops there).
OVERFETCH = 4
MAX_GROUP_CANDIDATES = 4096


@dataclass(frozen=True, slots=True)
class HitGroup:
    """The best hits sharing one value of the grouping field, best first."""

    key: GroupKey
    hits: tuple[Hit, ...]


def check_group_by(field: object) -> str:
    """A payload path Qdrant can group by (``doc_id``, ``metadata.project``); raises ``QueryError``."""
    from qdrant_client.local.json_path_parser import parse_json_path

    if not isinstance(field, str) or not field.strip():
        raise QueryError("group_by must name a payload field, e.g. doc_id")
    if len(field) > MAX_GROUP_FIELD_CHARS:
        raise QueryError(f"group_by is {len(field)} characters long; the limit is {MAX_GROUP_FIELD_CHARS}")
    try:
        parse_json_path(field)
    except Exception as e:  # its own ValueError with the position
        raise QueryError(f"group_by {field[:80]!r} is not a payload path (e.g. doc_id or metadata.project)") from e
    return field


def check_group_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GROUP_SIZE:
        raise QueryError(f"group_size must be an integer between 1 and {MAX_GROUP_SIZE}, got {size!r}")
    return size


def group_keys(payload: dict, field: str) -> list[GroupKey]:
    """The groups a point joins, as Qdrant decides: the field's values (an array's elements), strings and
    integers only; a point with a value of another type (a float, a boolean, an object) joins none."""
    from qdrant_client.local.payload_value_extractor import value_by_key

    values = value_by_key(payload, field)
    if not values or any(type(v) not in (str, int) for v in values):
        return []
    return list(dict.fromkeys(values))


def group_hits(hits: Sequence[Hit], field: str, limit: int, size: int) -> tuple[list[HitGroup], bool]:
    """Ranked hits into at most ``limit`` groups of at most ``size`` hits, groups ordered by their best hit.

    Also says whether the answer is settled: ``limit`` groups found and each of them full (more candidates,
    ranked lower, can change nothing then).
    """
    groups: dict[GroupKey, list[Hit]] = {}
    for hit in hits:
        for key in group_keys(hit.payload, field):
            members = groups.setdefault(key, [])
            if len(members) < size:
                members.append(hit)
    best = list(groups.items())[:limit]
    settled = len(best) == limit and all(len(members) == size for _, members in best)
    return [HitGroup(key, tuple(members)) for key, members in best], settled


def overfetch_groups(
    query_batch: Callable[[list[Request]], list[list[Hit]]],
    retrieve: Callable[[list[str]], list[StoredPoint]],
    requests: Sequence[Request],
    field: str,
    size: int,
) -> list[list[HitGroup]]:
    """Groups for an engine without query groups: each request is run with a larger limit and its ranked
    points grouped on the client.

    Policy: the first try fetches ``OVERFETCH x limit x size`` points (only the grouping field's payload),
    each further try ``OVERFETCH`` times more, up to ``MAX_GROUP_CANDIDATES``; a request stops when its
    ``limit`` groups are full, when the engine returned fewer points than asked (no more candidates: a fusion
    mode's candidates are its prefetches'), or at the cap. Then the chosen hits' payloads are read in one
    call. Deterministic: the same data and request give the same groups. Limits: groups come only from the
    first ``MAX_GROUP_CANDIDATES`` ranked points, and in the fusion modes from the prefetched candidates
    (``retrieval.prefetch_limit`` per leg), so a few long documents can leave fewer than ``limit`` groups.
    """
    results: list[list[HitGroup]] = [[] for _ in requests]
    fetch = {i: min(MAX_GROUP_CANDIDATES, OVERFETCH * r.limit * size) for i, r in enumerate(requests)}
    while fetch:
        order = sorted(fetch)
        asked = [replace(requests[i], limit=fetch[i], offset=None, with_payload=(field,)) for i in order]
        answers = query_batch(asked)
        for i, hits in zip(order, answers, strict=True):
            groups, settled = group_hits(hits, field, requests[i].limit, size)
            results[i] = groups
            if settled or len(hits) < fetch[i] or fetch[i] >= MAX_GROUP_CANDIDATES:
                del fetch[i]
            else:
                fetch[i] = min(MAX_GROUP_CANDIDATES, fetch[i] * OVERFETCH)
    ids = list(dict.fromkeys(h.id for groups in results for g in groups for h in g.hits))
    payloads = {p.id: p.payload for p in retrieve(ids)} if ids else {}
    return [
        [HitGroup(g.key, tuple(Hit(h.id, h.score, payloads.get(h.id, h.payload)) for h in g.hits)) for g in groups]
        for groups in results
    ]
