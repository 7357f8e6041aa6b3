"""Headings to sections: the heading path of every part of a document's text.

Structured formats (DOCX, PPTX, HTML) are read as pages of ``Block``s: body text or a heading of some
level. ``assemble`` joins them into the document text and records where each heading begins; Markdown
headings are found in the text itself (``markdown_headings``); a PDF's outline gives page offsets.
``sections_from_headings`` turns such marks into ``SectionSpan``s: a heading of level L closes every
open heading of level L or deeper, so the path of a section is its heading and those above it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from indexer.models import SectionSpan

PAGE_SEPARATOR = "\n\n"  # between the texts of two pages (PDF pages, slides)
BLOCK_SEPARATOR = "\n\n"  # between two blocks of one page


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph, list item or table (``level`` None), or a heading: 0 for a document's title, else 1..9."""

    text: str
    level: int | None = None  # None: body text; 0: a document title; 1..9: heading levels


@dataclass(frozen=True, slots=True)
class HeadingMark:
    """A heading that begins at ``offset`` in the document's text."""

    offset: int
    level: int
    title: str


def clean_title(text: str) -> str:
    return " ".join(text.split())


def sections_from_headings(
    marks: Iterable[HeadingMark], length: int, resets: Iterable[int] = ()
) -> tuple[SectionSpan, ...]:
    """Sections covering ``[0, length)`` from heading marks; ``resets`` are offsets where every heading closes.

    A document without any heading has no sections (``()``), and is split as plain text.
    """
    marks = sorted(marks, key=lambda m: m.offset)
    if not marks:
        return ()
    events: list[tuple[int, int, HeadingMark | None]] = [(r, 0, None) for r in resets]
    events += [(m.offset, 1, m) for m in marks]
    events.sort(key=lambda e: (e[0], e[1]))
    stack: list[HeadingMark] = []
    bounds: list[tuple[int, tuple[str, ...]]] = [(0, ())]
    for offset, _, mark in events:
        if mark is None:
            stack = []
        else:
            while stack and stack[-1].level >= mark.level:
                stack.pop()
            stack.append(mark)
        path = tuple(m.title for m in stack)
        if bounds[-1][0] == offset:
            bounds[-1] = (offset, path)
        else:
            bounds.append((offset, path))
    ends = [b[0] for b in bounds[1:]] + [length]
    return tuple(SectionSpan(s, e, path) for (s, path), e in zip(bounds, ends, strict=True) if e > s)


def assemble(pages: Sequence[Sequence[Block]]) -> tuple[list[str], list[HeadingMark], list[int]]:
    """Page texts, heading marks (offsets in the joined text) and the offset where each page begins."""
    texts: list[str] = []
    marks: list[HeadingMark] = []
    page_starts: list[int] = []
    offset = 0
    for page in pages:
        if texts:
            offset += len(PAGE_SEPARATOR)
        page_starts.append(offset)
        parts: list[str] = []
        at = offset
        for block in page:
            text = block.text.strip()
            if not text:
                continue
            if parts:
                at += len(BLOCK_SEPARATOR)
            if block.level is not None:
                title = clean_title(text)
                marks.append(HeadingMark(at, block.level, title))
                text = title
            parts.append(text)
            at += len(text)
        page_text = BLOCK_SEPARATOR.join(parts)
        texts.append(page_text)
        offset += len(page_text)
    return texts, marks, page_starts


# ------------------------------------------------------------------------------------------ Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ITEM = re.compile(r"^ {0,3}([-*+]|\d+[.)])\s")


def _md_title(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    previous = None
    while previous != text:
        previous, text = text, _EMPHASIS.sub(r"\2", text)
    return clean_title(text)


def markdown_headings(text: str) -> list[HeadingMark]:
    """ATX (``## Title``) and setext (``Title`` over ``===``/``---``) headings outside fenced code blocks."""
    marks: list[HeadingMark] = []
    fence: str | None = None
    offset = 0
    prev: tuple[int, str] | None = None  # the previous line, when it can be a setext heading's text
    prev_after_blank = last_blank = True
    for line in text.splitlines(keepends=True):
        start, body = offset, line.rstrip("\n")
        offset += len(line)
        f = _FENCE.match(body)
        if fence is not None or f:
            if fence is None:
                fence = f.group(1)  # type: ignore[union-attr]
            elif f and f.group(1)[0] == fence[0] and len(f.group(1)) >= len(fence):
                fence = None
            prev, last_blank = None, False
            continue
        atx = _ATX.match(body)
        setext = _SETEXT.match(body)
        if atx and atx.group(2) and _md_title(atx.group(2)):
            marks.append(HeadingMark(start, len(atx.group(1)), _md_title(atx.group(2))))
        elif setext and prev is not None and prev_after_blank and _md_title(prev[1]):
            marks.append(HeadingMark(prev[0], 1 if setext.group(1)[0] == "=" else 2, _md_title(prev[1])))
        elif not body.strip():
            prev, last_blank = None, True
            continue
        else:
            plain = not (setext or body.startswith(("    ", "\t", ">", "|")) or _ITEM.match(body))
            prev, prev_after_blank, last_blank = ((start, body) if plain else None), last_blank, False
            continue
        prev, last_blank = None, False
    return marks
