"""From hits to a prompt context: merged passages with numbered citations, within a token budget.

Pure: the caller passes a token counter (``token_counter(tokenizer)`` wraps the model's tokenizer) and,
to expand hits to their sections or neighbours, a ``ChunkFetcher`` (``store_chunk_fetcher(store)``
reads a document's other chunks from the store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from indexer import conditions as nc
from indexer.models import Hit, common_prefix
from retriever.api import SearchHit

if TYPE_CHECKING:
    from indexer.store import Store

TokenCounter = Callable[[str], int]
# Chunks of the document version ``hit`` belongs to whose chunk_index is in [first, last], in any order.
ChunkFetcher = Callable[[SearchHit, int, int], Sequence[SearchHit]]
Expand = Literal["none", "section", "neighbours"]
SEPARATOR = "\n\n"
FETCH_WINDOW = 16  # chunks fetched at a time on each side while a passage grows


@dataclass(frozen=True, slots=True)
class Citation:
    """One numbered source of the context: ``[number] source, p. 2-3``."""

    number: int
    source: str
    doc_id: str
    pages: tuple[int, ...]
    chunk_indexes: tuple[int, ...]  # the chunks merged into this passage
    score: float  # the best score among them
    headings: tuple[str, ...] = ()  # the section the passage lies in (what its chunks' paths share)

    @property
    def label(self) -> str:
        """``source, § 2. Obligations › 2.3 Payment, pp. 2-3`` (the section and pages when known)."""
        parts = [self.source]
        if self.headings:
            parts.append("§ " + " › ".join(self.headings))
        if self.pages:
            lo, hi = min(self.pages), max(self.pages)
            parts.append(f"p. {lo}" if lo == hi else f"pp. {lo}-{hi}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source": self.source,
            "doc_id": self.doc_id,
            "pages": list(self.pages),
            "chunk_indexes": list(self.chunk_indexes),
            "score": self.score,
            "label": self.label,
            "headings": list(self.headings),
        }


@dataclass(frozen=True, slots=True)
class Context:
    """The prompt text, its citations (``[n]`` in the text), its token count and what did not fit."""

    text: str
    citations: tuple[Citation, ...]
    tokens: int
    dropped: int  # merged passages left out because they did not fit the budget


@dataclass(slots=True)
class _Passage:
    doc_id: str
    source: str
    text: str
    start: int | None
    end: int | None
    first_chunk: int
    last_chunk: int
    pages: set[int]
    chunks: list[int]
    rank: int  # best (lowest) rank among its hits
    score: float
    headings: tuple[str, ...]
    anchor: SearchHit  # one of its hits: names the document version when more of it is fetched


def _from_hit(hit: SearchHit, rank: int) -> _Passage:
    return _Passage(
        doc_id=hit.doc_id,
        source=hit.source,
        text=hit.text,
        start=hit.start,
        end=hit.end,
        first_chunk=hit.chunk_index,
        last_chunk=hit.chunk_index,
        pages=set(hit.pages),
        chunks=[hit.chunk_index],
        rank=rank,
        score=hit.score,
        headings=hit.headings,
        anchor=hit,
    )


def _try_merge(a: _Passage, b: _Passage) -> bool:
    """Append ``b`` (starting at or after ``a``) to ``a`` when they overlap or touch in the document."""
    if a.start is None or a.end is None or b.start is None or b.end is None:
        return False
    if b.end <= a.end:  # b lies inside a
        merged_text = a.text
    elif b.start <= a.end:  # overlap, or b begins exactly where a ends
        merged_text = a.text + b.text[a.end - b.start :]
    elif b.first_chunk == a.last_chunk + 1:  # neighbours: only whitespace the splitter stripped lies between
        merged_text = a.text + "\n" + b.text
    else:
        return False
    a.text = merged_text
    a.end = max(a.end, b.end)
    a.first_chunk = min(a.first_chunk, b.first_chunk)
    a.last_chunk = max(a.last_chunk, b.last_chunk)
    a.pages |= b.pages
    a.chunks = sorted(set(a.chunks) | set(b.chunks))
    a.rank = min(a.rank, b.rank)
    a.score = max(a.score, b.score)
    a.headings = common_prefix([a.headings, b.headings])
    return True


def merge_hits(hits: Sequence[SearchHit]) -> list[_Passage]:
    """Drop duplicates, merge overlapping or adjacent chunks of one document; keep the hits' rank order."""
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    by_doc: dict[str, list[_Passage]] = {}
    for rank, hit in enumerate(hits):
        # The same point twice, or the same text under another id (e.g. one file uploaded twice): once.
        digest = hashlib.sha256(" ".join(hit.text.split()).encode()).hexdigest()
        if hit.id in seen_ids or digest in seen_text:
            continue
        seen_ids.add(hit.id)
        seen_text.add(digest)
        by_doc.setdefault(hit.doc_id, []).append(_from_hit(hit, rank))
    passages: list[_Passage] = []
    for group in by_doc.values():
        group.sort(key=lambda p: (p.start if p.start is not None else -1, p.first_chunk))
        current = group[0]
        for nxt in group[1:]:
            if not _try_merge(current, nxt):
                passages.append(current)
                current = nxt
        passages.append(current)
    passages.sort(key=lambda p: p.rank)
    return passages


def _citation(number: int, p: _Passage) -> Citation:
    return Citation(number, p.source, p.doc_id, tuple(sorted(p.pages)), tuple(p.chunks), p.score, p.headings)


def _render(passages: Sequence[_Passage], header: Callable[[int, str], str]) -> str:
    return SEPARATOR.join(
        f"{header(n, _citation(n, p).label)}\n{p.text.strip()}" for n, p in enumerate(passages, start=1)
    )


def build_context(
    hits: Sequence[SearchHit],
    count_tokens: TokenCounter,
    max_tokens: int,
    header: Callable[[int, str], str] = lambda n, label: f"[{n}] {label}",
    *,
    expand: Expand = "none",
    fetch: ChunkFetcher | None = None,
    neighbours: int = 1,
) -> Context:
    """The best passages, in rank order, as ``[n] source, § section, p. X`` blocks, the whole within ``max_tokens``.

    Overlapping chunks of one document (by their ``start``/``end`` offsets) and neighbouring ones (by
    ``chunk_index``) are merged into one passage; repeated hits and repeated texts are dropped. A
    passage that does not fit is left out and a smaller later one may still fit. Tokens are counted on
    the whole text as built, so the count is exact for the tokenizer given.

    ``expand="section"`` then grows each passage, best first, with the chunks around it that lie in its
    section (their heading path starts with the passage's), ``expand="neighbours"`` with up to
    ``neighbours`` chunks on each side; one chunk at a time, after and before alternately, while the
    whole still fits. Passages placed before expansion are never dropped for it. ``fetch`` reads the
    other chunks (``store_chunk_fetcher(store)``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if expand != "none" and fetch is None:
        raise ValueError(f"expand={expand!r} needs a fetch function (e.g. store_chunk_fetcher(store))")
    if expand not in ("none", "section", "neighbours"):
        raise ValueError(f"expand must be 'none', 'section' or 'neighbours', got {expand!r}")
    placed: list[_Passage] = []
    text, dropped = "", 0
    for p in merge_hits(hits):
        candidate = _render([*placed, p], header)
        if count_tokens(candidate) > max_tokens:
            dropped += 1
            continue
        placed.append(p)
        text = candidate
    if expand != "none" and fetch is not None:
        taken = {(p.doc_id, i) for p in placed for i in p.chunks}
        for i in range(len(placed)):
            placed[i] = _grow(placed, i, expand, fetch, neighbours, taken, count_tokens, max_tokens, header)
        text = _render(placed, header)
    citations = tuple(_citation(n, p) for n, p in enumerate(placed, start=1))
    return Context(text=text, citations=citations, tokens=count_tokens(text) if text else 0, dropped=dropped)


def _grow(
    placed: list[_Passage],
    i: int,
    expand: Expand,
    fetch: ChunkFetcher,
    neighbours: int,
    taken: set[tuple[str, int]],
    count_tokens: TokenCounter,
    max_tokens: int,
    header: Callable[[int, str], str],
) -> _Passage:
    """``placed[i]`` grown by the chunks around it while the whole context fits ``max_tokens``."""
    p = placed[i]
    section = p.headings
    if expand == "section" and not section:
        return p  # no section to name: a document without headings is not expanded whole
    lo_limit = p.first_chunk - neighbours if expand == "neighbours" else None
    hi_limit = p.last_chunk + neighbours if expand == "neighbours" else None
    fetched: dict[int, SearchHit | None] = {}

    def chunk(index: int) -> SearchHit | None:
        if index < 0:
            return None
        if index not in fetched:
            lo, hi = max(0, index - FETCH_WINDOW + 1), index + FETCH_WINDOW - 1
            got = {h.chunk_index: h for h in fetch(p.anchor, lo, hi) if h.doc_id == p.doc_id}
            for j in range(lo, hi + 1):
                fetched.setdefault(j, got.get(j))
        return fetched[index]

    open_sides = {"after": True, "before": True}
    while any(open_sides.values()):
        for side in ("after", "before"):
            if not open_sides[side]:
                continue
            index = p.last_chunk + 1 if side == "after" else p.first_chunk - 1
            if side == "after":
                limit_ok = hi_limit is None or index <= hi_limit
            else:
                limit_ok = lo_limit is None or index >= lo_limit
            hit = chunk(index) if limit_ok and (p.doc_id, index) not in taken else None
            if hit is None or (expand == "section" and hit.headings[: len(section)] != section):
                open_sides[side] = False
                continue
            grown = _joined(p, hit, side)
            if grown is None or count_tokens(_render([*placed[:i], grown, *placed[i + 1 :]], header)) > max_tokens:
                open_sides[side] = False
                continue
            p = placed[i] = grown
            taken.add((p.doc_id, index))
    return p


def _joined(p: _Passage, hit: SearchHit, side: str) -> _Passage | None:
    """``p`` with the chunk ``hit`` added after or before it (a copy); None if they do not join."""
    extra = _from_hit(hit, p.rank)
    extra.score, extra.anchor = p.score, p.anchor
    if side == "after":
        grown = replace(p, pages=set(p.pages), chunks=list(p.chunks))
        return grown if _try_merge(grown, extra) else None
    return extra if _try_merge(extra, p) else None


def store_chunk_fetcher(store: Store) -> ChunkFetcher:
    """A ``ChunkFetcher`` over a store: a hit's document version is read once (its point's content hash),
    then chunks of that version are scrolled by ``chunk_index`` range (an indexed payload field)."""
    versions: dict[str, str | None] = {}

    def fetch(hit: SearchHit, first: int, last: int) -> list[SearchHit]:
        if hit.id not in versions:
            found = store.retrieve([hit.id])
            versions[hit.id] = found[0].payload.get("content_hash") if found else None
        content_hash = versions[hit.id]
        if content_hash is None:  # the version was replaced since the search
            return []
        flt = nc.Filter(
            must=(
                nc.Match("kind", "chunk"),
                nc.Match("doc_id", hit.doc_id),
                nc.Match("content_hash", content_hash),
                nc.Range("chunk_index", gte=float(first), lte=float(last)),
            )
        )
        points = store.scroll(flt, page=max(1, last - first + 1))
        return [SearchHit.from_hit(Hit(id=pt.id, score=hit.score, payload=pt.payload)) for pt in points]

    return fetch


def token_counter(tokenizer: Any) -> TokenCounter:
    """Count tokens as the model's tokenizer does, without special tokens (the prompt adds its own)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    return count
