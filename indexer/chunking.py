"""Split documents into chunks that never exceed the model's token budget.

Lengths are counted with the model's own tokenizer, special tokens included, so a chunk's
``token_count`` is exactly what the encoder sees, and the encoder never truncates.

With ``headings`` (the default), a document with sections is split at its headings first: a section
that fits the budget is one chunk, a longer one is split inside itself, and no chunk straddles two
sections, except that small neighbouring sections are merged (see ``Chunker.groups``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from indexer.config import MAX_MODEL_TOKENS
from indexer.errors import ChunkingError
from indexer.models import Chunk, Document, common_prefix

logger = logging.getLogger(__name__)

# Paragraph, line, sentence and word breaks. No "" (per-character) fallback: text with no separator
# left is cut by token windows instead, which is exact and linear in the text's length.
SEPARATORS = ["\n\n", "\n", ". ", "。", "! ", "? ", "; ", ", ", " ", "\u3000"]


class Tokenizer(Protocol):
    """The part of a Hugging Face fast tokenizer that chunking uses."""

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = ...,
        truncation: bool = ...,
        return_offsets_mapping: bool = ...,
        verbose: bool = ...,
    ) -> Any: ...

    def num_special_tokens_to_add(self, pair: bool = False) -> int: ...


class TokenCounter:
    """Counts tokens the way the encoder will see them: the text's tokens plus the special tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.special = tokenizer.num_special_tokens_to_add()
        self._content_cached = functools.lru_cache(maxsize=1 << 16)(self._content)
        self._last: tuple[str, list[tuple[int, int]]] | None = None

    def __call__(self, text: str) -> int:
        return self.content(text) + self.special

    def content(self, text: str) -> int:
        """Tokens of ``text`` alone: pieces merged by the splitter add up without special tokens.

        The splitter measures every word of a long paragraph separately; words repeat, so short
        pieces are cached (a multi-megabyte single line is then measured in seconds, not minutes).
        """
        if len(text) <= 64:
            return self._content_cached(text)
        return len(self.offsets(text))

    def _content(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every content token of ``text`` (no special tokens).

        The last long text's result is kept: a separator-free text is measured by the splitter and
        then cut by token windows, and one tokenisation of megabytes serves both.
        """
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        enc = self.tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False
        )
        spans = [tuple(span) for span in enc["offset_mapping"]]
        if len(text) > 10_000:
            self._last = (text, spans)
        return spans


class Chunker:
    """Token-bounded recursive splitting with character offsets, page numbers and heading paths kept."""

    def __init__(
        self, tokenizer: Tokenizer, chunk_size: int, chunk_overlap: int = 0, headings: bool = True, ids: bool = False
    ) -> None:
        """``ids``: chunks carry their token ids (``Chunk.token_ids``), from one batch call per document."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter  # 0.8 s of import: only when chunking

        if not 0 < chunk_size <= MAX_MODEL_TOKENS:
            raise ChunkingError(f"chunk_size must be in 1..{MAX_MODEL_TOKENS}, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ChunkingError(f"chunk_overlap must be in 0..{chunk_size - 1}, got {chunk_overlap}")
        self.count = TokenCounter(tokenizer)
        if chunk_size <= self.count.special + 1:
            raise ChunkingError(f"chunk_size {chunk_size} leaves no room for text next to special tokens")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.headings = headings
        self.ids = ids
        # Sections are merged with their neighbours while the merged chunk is below this many tokens.
        self.merge_below = chunk_size // 4
        # langchain adds up the lengths of the pieces it merges, so it measures content tokens against
        # the budget left after the special tokens; every chunk is then counted exactly, specials included.
        self._splitter = RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            chunk_size=chunk_size - self.count.special,
            chunk_overlap=min(chunk_overlap, chunk_size - self.count.special - 1),
            length_function=self.count.content,
            keep_separator=True,
            strip_whitespace=True,
        )

    def spans(self, text: str) -> Iterator[tuple[int, int, int]]:
        """Yield ``(start, end, token_count)`` of each chunk of ``text``, in order."""
        prev_start, prev_end = -1, 0
        for piece in self._splitter.split_text(text):
            start = self._locate(text, piece, prev_start, prev_end)
            end = start + len(piece)
            prev_start, prev_end = start, end
            tokens = self.count(piece)
            if tokens <= self.chunk_size:
                yield start, end, tokens
            else:  # no separator left inside ``piece``: cut it by token windows
                for s, e, n in self._token_windows(text[start:end]):
                    yield start + s, start + e, n

    def _locate(self, text: str, piece: str, prev_start: int, prev_end: int) -> int:
        """Offset of ``piece``, the chunk after the one at [prev_start, prev_end).

        A chunk starts inside its predecessor (the overlap) or at the first non-blank character after
        it. When the same text repeats, several places fit: langchain keeps the longest tail of the
        previous chunk within ``chunk_overlap`` tokens, so the earliest place whose overlap fits is
        the true one.
        """
        limit = prev_end
        while limit < len(text) and text[limit].isspace():
            limit += 1
        candidates = []
        at = text.find(piece, prev_start + 1, limit + len(piece))
        while at >= 0:
            candidates.append(at)
            at = text.find(piece, at + 1, limit + len(piece))
        if not candidates:
            at = text.find(piece, prev_start + 1)
            if at < 0:  # cannot happen for stripped splits of ``text``; be loud if it does
                raise ChunkingError("the splitter returned text that is not part of the document")
            return at
        best = candidates[-1]
        for at in reversed(candidates[:-1]):  # the overlap only grows going back: stop when it is too long
            if self.count.content(text[at:prev_end]) > self.chunk_overlap:
                break
            best = at
        return best

    def _token_windows(self, text: str) -> Iterator[tuple[int, int, int]]:
        offsets = self.count.offsets(text)
        window = self.chunk_size - self.count.special
        step_back = min(self.chunk_overlap, window - 1)
        i = 0
        while i < len(offsets):
            size = min(window, len(offsets) - i)
            while True:
                s, e = offsets[i][0], offsets[i + size - 1][1]
                while s < e and text[s].isspace():  # a token's span may include the space before it
                    s += 1
                while e > s and text[e - 1].isspace():
                    e -= 1
                n = self.count(text[s:e])
                # Re-tokenising a slice can merge or split differently at its edges: shrink until it fits.
                if n <= self.chunk_size or size == 1:
                    break
                size -= max(1, n - self.chunk_size)
            if n > self.chunk_size:
                raise ChunkingError(f"a single token span {text[s:e]!r:.40} exceeds {self.chunk_size} tokens")
            if text[s:e].strip():
                yield s, e, n
            if i + size >= len(offsets):
                break
            i += max(1, size - step_back)

    def groups(self, doc: Document) -> Iterator[tuple[int, int, tuple[str, ...]]]:
        """``(start, end, headings)`` of each run of sections that becomes one chunk or is split alone.

        A section is one run, except that a run still below ``merge_below`` tokens (a heading alone, a
        short clause) takes in the next section when the whole fits the budget and the next section is
        a sibling of the run's first one or below it: "2. Obligations" takes "2.1 Delivery", "2.1"
        takes "2.2", but "2.1.3" does not take "2.2". A merged run's headings are what its sections share.
        """
        text = doc.text
        run: list[tuple[int, int, tuple[str, ...]]] = []
        run_tokens = 0
        for section in doc.sections:
            if run:
                first = run[0][2]
                shared = common_prefix([first, section.headings])
                if run_tokens < self.merge_below and len(shared) >= len(first) - 1:
                    s, e = _stripped(text, run[0][0], section.end)
                    n = self.count(text[s:e]) if e > s else 0
                    if n <= self.chunk_size:
                        run.append((section.start, section.end, section.headings))
                        run_tokens = n
                        continue
                yield run[0][0], run[-1][1], common_prefix([r[2] for r in run])
            s, e = _stripped(text, section.start, section.end)
            run = [(section.start, section.end, section.headings)]
            run_tokens = self.count(text[s:e]) if e > s and e - s <= self.chunk_size * 64 else self.chunk_size
        if run:
            yield run[0][0], run[-1][1], common_prefix([r[2] for r in run])

    def _section_spans(self, doc: Document) -> Iterator[tuple[int, int, int, tuple[str, ...]]]:
        for start, end, headings in self.groups(doc):
            s, e = _stripped(doc.text, start, end)
            if s >= e:
                continue
            piece = doc.text[s:e]
            tokens = self.count(piece) if e - s <= self.chunk_size * 64 else self.chunk_size + 1
            if tokens <= self.chunk_size:
                yield s, e, tokens, headings
            else:
                for a, b, n in self._attach_lead(piece, list(self.spans(piece))):
                    yield s + a, s + b, n, headings

    def _attach_lead(self, text: str, spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Keep a section's heading with the text after it when the splitter left the heading alone.

        The splitter cuts at paragraph breaks first, so a heading followed by a long paragraph becomes a
        chunk of its own. It is joined to the next chunk when both fit; else to as much of the next
        chunk as fits with it, and the rest of that chunk stands alone.
        """
        if len(spans) < 2 or spans[0][2] >= self.merge_below:
            return spans
        (s0, e0, n0), (s1, e1, _) = spans[0], spans[1]
        joined = self.count(text[s0:e1])
        if joined <= self.chunk_size:
            return [(s0, e1, joined), *spans[2:]]
        budget = self.chunk_size - n0 - self.count.content(text[e0:s1]) if s1 > e0 else 0
        if budget <= self.count.special + 1:
            return spans
        inner = Chunker(self.count.tokenizer, budget, 0, headings=False)
        first = next(inner.spans(text[s1:e1]), None)
        if first is None or s1 + first[1] >= e1:
            return spans
        head_end = s1 + first[1]
        rest_start, rest_end = _stripped(text, head_end, e1)
        head, rest = (
            self.count(text[s0:head_end]),
            self.count(text[rest_start:rest_end]) if rest_end > rest_start else 0,
        )
        if head > self.chunk_size or rest_start >= rest_end:
            return spans
        if len(spans) > 2 and spans[2][0] <= rest_start:  # the next chunk overlaps back over the rest: it holds it
            return [(s0, head_end, head), *spans[2:]]
        return [(s0, head_end, head), (rest_start, rest_end, rest), *spans[2:]]

    def split(self, doc: Document) -> Iterator[Chunk]:
        """The chunks of one document, numbered from 0."""
        if self.headings and doc.sections:
            pieces: Iterator[tuple[int, int, int, tuple[str, ...]]] = self._section_spans(doc)
        else:
            pieces = ((s, e, n, doc.headings_between(s, e)) for s, e, n in self.spans(doc.text))
        if not self.ids:
            yield from self._chunks(doc, pieces, None)
            return
        spans = list(pieces)
        texts = [doc.text[s:e] for s, e, _, _ in spans]
        ids = self.count.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"] if texts else []
        for (_, _, n, _), x in zip(spans, ids, strict=True):
            if len(x) != n:  # cannot happen: the same tokenizer on the same text
                raise ChunkingError(f"a chunk counted {n} tokens tokenizes to {len(x)}")
        yield from self._chunks(doc, iter(spans), [np.asarray(x, dtype=np.int32) for x in ids])

    def _chunks(
        self, doc: Document, pieces: Iterator[tuple[int, int, int, tuple[str, ...]]], ids: list[np.ndarray] | None
    ) -> Iterator[Chunk]:
        for index, (start, end, tokens, headings) in enumerate(pieces):
            yield Chunk(
                doc_id=doc.doc_id,
                source=doc.source,
                content_hash=doc.content_hash,
                chunk_index=index,
                text=doc.text[start:end],
                start=start,
                end=end,
                pages=doc.pages_between(start, end),
                token_count=tokens,
                metadata=doc.metadata,
                headings=headings,
                token_ids=None if ids is None else ids[index],
            )


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without the whitespace at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
