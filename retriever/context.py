"""From hits to a prompt context: merged passages with numbered citations, within a token budget.

Pure: the caller passes a token counter (``token_counter(tokenizer)`` wraps the model's tokenizer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from retriever.api import SearchHit

TokenCounter = Callable[[str], int]
SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Citation:
    """One numbered source of the context: ``[number] source, p. 2-3``."""

    number: int
    source: str
    doc_id: str
    pages: tuple[int, ...]
    chunk_indexes: tuple[int, ...]  # the chunks merged into this passage
    score: float  # the best score among them

    @property
    def label(self) -> str:
        if not self.pages:
            return self.source
        lo, hi = min(self.pages), max(self.pages)
        return f"{self.source}, p. {lo}" if lo == hi else f"{self.source}, pp. {lo}-{hi}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source": self.source,
            "doc_id": self.doc_id,
            "pages": list(self.pages),
            "chunk_indexes": list(self.chunk_indexes),
            "score": self.score,
            "label": self.label,
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


def build_context(
    hits: Sequence[SearchHit],
    count_tokens: TokenCounter,
    max_tokens: int,
    header: Callable[[int, str], str] = lambda n, label: f"[{n}] {label}",
) -> Context:
    """The best passages, in rank order, as ``[n] source, p. X`` blocks, the whole within ``max_tokens``.

    Overlapping chunks of one document (by their ``start``/``end`` offsets) and neighbouring ones (by
    ``chunk_index``) are merged into one passage; repeated hits and repeated texts are dropped. A
    passage that does not fit is left out and a smaller later one may still fit. Tokens are counted on
    the whole text as built, so the count is exact for the tokenizer given.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    text = ""
    tokens = 0
    citations: list[Citation] = []
    dropped = 0
    for p in merge_hits(hits):
        number = len(citations) + 1
        pages = tuple(sorted(p.pages))
        citation = Citation(number, p.source, p.doc_id, pages, tuple(p.chunks), p.score)
        block = f"{header(number, citation.label)}\n{p.text.strip()}"
        candidate = f"{text}{SEPARATOR}{block}" if text else block
        n = count_tokens(candidate)
        if n > max_tokens:
            dropped += 1
            continue
        text, tokens = candidate, n
        citations.append(citation)
    return Context(text=text, citations=tuple(citations), tokens=tokens, dropped=dropped)


def token_counter(tokenizer: Any) -> TokenCounter:
    """Count tokens as the model's tokenizer does, without special tokens (the prompt adds its own)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    return count
