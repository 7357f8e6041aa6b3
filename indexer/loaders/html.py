"""HTML through lxml: visible text in reading order, ``h1``-``h6`` as headings, tables a row per line.

Scripts, styles, templates, embedded objects, navigation menus (``nav``) and elements marked
``hidden`` are left out; nothing is executed or fetched.
"""

from __future__ import annotations

import re
from typing import Any

from indexer.errors import LoaderError
from indexer.loaders.structure import Block
from indexer.loaders.text import decode_text

SKIPPED = ("script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object", "embed", "canvas",
           "nav", "button", "select")  # fmt: skip
HEADINGS = {f"h{n}": n for n in range(1, 7)}
BLOCKS = frozenset(("address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div",
                    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html",
                    "li", "main", "ol", "p", "section", "summary", "ul"))  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def decode_html(data: bytes, name: str) -> str:
    """The page's text: by its BOM, else its ``<meta charset>``, else UTF-8, else detected as for text files."""
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        declared = _META_CHARSET.search(data[:4096])
        if declared:
            try:
                return data.decode(declared.group(1).decode("ascii")).replace("\r\n", "\n")
            except (LookupError, UnicodeDecodeError):
                pass  # a wrong declaration: read it as if there were none
    return decode_text(data, name)[0]


class _Walker:
    """Collects blocks: inline text flows into the current paragraph, block elements end it."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        raw = "".join(self.inline)
        self.inline = []
        lines = (" ".join(line.split()) for line in raw.split("\n"))
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(Block(text))

    def text(self, value: str | None) -> None:
        if value:
            self.inline.append(value.replace("\n", " "))

    def walk(self, el: Any) -> None:
        if not isinstance(el.tag, str):  # a comment or processing instruction: its tail is the caller's
            return
        tag = el.tag.lower()
        if tag in HEADINGS:
            self.flush()
            self.blocks.append(Block(" ".join(el.text_content().split()), HEADINGS[tag]))
        elif tag == "table":
            self.flush()
            self.blocks.append(Block(_table(el)))
        elif tag == "pre":
            self.flush()
            self.blocks.append(Block(el.text_content().strip("\n")))
        elif tag == "br":
            self.inline.append("\n")
        else:
            block = tag in BLOCKS
            if block:
                self.flush()
            self.text(el.text)
            for child in el:
                self.walk(child)
                self.text(child.tail)
            if block:
                self.flush()


def _table(table: Any) -> str:
    lines = []
    for row in table.iter("tr"):
        if row.getparent() is not None and _closest_table(row) is not table:
            continue  # a row of a nested table: its text is part of its cell
        cells = [" ".join(c.text_content().split()) for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _closest_table(el: Any) -> Any:
    parent = el.getparent()
    while parent is not None and parent.tag != "table":
        parent = parent.getparent()
    return parent


def html_blocks(data: bytes, name: str) -> list[list[Block]]:
    """The blocks of an HTML page (one page)."""
    from lxml import etree, html

    text = _XML_DECLARATION.sub("", decode_html(data, name))
    if not text.strip():
        raise LoaderError(f"{name}: the file is empty (only whitespace)")
    try:
        root = html.document_fromstring(text)
    except (etree.ParserError, ValueError) as e:
        raise LoaderError(f"{name}: no text in this HTML ({e})") from e
    for el in list(root.iter(*SKIPPED)):
        if el.getparent() is not None:
            el.drop_tree()
    for el in list(root.xpath("//*[@hidden or @aria-hidden='true']")):
        if el.getparent() is not None:
            el.drop_tree()
    walker = _Walker()
    try:
        walker.walk(root)
    except RecursionError as e:
        raise LoaderError(f"{name}: the HTML is nested too deeply to read") from e
    walker.flush()
    return [walker.blocks]
