"""Find source files and turn each into a Document: text, page layout and sections (heading paths).

One module per format family: ``text`` (decoding plain text and Markdown), ``pdf`` (pypdf), ``office``
(DOCX and PPTX through python-docx and python-pptx, after zip checks), ``html`` (lxml); ``structure``
turns headings (Markdown's among them) into sections, ``files`` finds and reads files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from indexer.config import IngestSettings
from indexer.errors import LoaderError
from indexer.loaders.files import check_source, discover, glob_match, read_checked, read_source, sha256_bytes
from indexer.loaders.structure import (
    PAGE_SEPARATOR,
    Block,
    assemble,
    markdown_headings,
    sections_from_headings,
)
from indexer.loaders.text import decode_text
from indexer.models import Document, PageSpan, SectionSpan, SourceFile
from indexer.validation import check_doc_id, check_file_name, check_metadata, check_source_name

__all__ = [
    "SUPPORTED_SUFFIXES",
    "build_document",
    "check_source",
    "decode_text",
    "discover",
    "glob_match",
    "is_supported",
    "load_bytes",
    "load_file",
    "read_checked",
    "read_source",
    "sha256_bytes",
]

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
PDF_SUFFIXES = frozenset({".pdf"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
DOCX_SUFFIXES = frozenset({".docx"})
PPTX_SUFFIXES = frozenset({".pptx"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | PDF_SUFFIXES | HTML_SUFFIXES | DOCX_SUFFIXES | PPTX_SUFFIXES
DEFAULT_MAX_UNPACKED_BYTES: int = IngestSettings.model_fields["max_unpacked_bytes"].default


def is_supported(name: str) -> bool:
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES


def build_document(
    doc_id: str,
    source: str,
    data: bytes,
    page_texts: list[str],
    metadata: dict[str, Any] | None = None,
    sections: tuple[SectionSpan, ...] = (),
) -> Document:
    """Join page texts into one text and remember where each page lies in it."""
    parts: list[str] = []
    spans: list[PageSpan] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        parts.append(page_text)
        spans.append(PageSpan(number=number, start=offset, end=offset + len(page_text)))
        offset += len(page_text)
    return Document(
        doc_id=doc_id,
        source=source,
        content_hash=sha256_bytes(data),
        text="".join(parts),
        pages=tuple(spans) or (PageSpan(1, 0, 0),),
        metadata=dict(metadata or {}),
        sections=sections,
    )


def _page_starts(page_texts: list[str]) -> list[int]:
    starts, offset = [], 0
    for text in page_texts:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    return starts


def _pages_and_sections(
    data: bytes, name: str, suffix: str, meta: dict[str, Any], pdf_password: str | None, max_unpacked: int
) -> tuple[list[str], tuple[SectionSpan, ...]]:
    """Page texts and sections of one file, by its type; a LoaderError says why it cannot be read."""
    if suffix in PDF_SUFFIXES:
        from indexer.loaders.pdf import outline_marks, pdf_pages

        pages, outline = pdf_pages(data, name, pdf_password)
        if not any(p.strip() for p in pages):
            raise LoaderError(f"{name}: no extractable text (a scanned PDF needs OCR first)")
        marks = outline_marks(outline, pages, _page_starts(pages))
        return pages, sections_from_headings(marks, len(PAGE_SEPARATOR.join(pages)))
    if suffix in TEXT_SUFFIXES | MARKDOWN_SUFFIXES:
        text, encoding = decode_text(data, name)
        if not text.strip():
            raise LoaderError(f"{name}: the file is empty (only whitespace)")
        if encoding != "utf-8":
            meta.setdefault("encoding", encoding)
        marks = markdown_headings(text) if suffix in MARKDOWN_SUFFIXES else []
        return [text], sections_from_headings(marks, len(text))
    blocks: list[list[Block]]
    resets = False
    if suffix in HTML_SUFFIXES:
        from indexer.loaders.html import html_blocks

        blocks, empty = html_blocks(data, name), "no text (the page has only scripts, styles or markup)"
    elif suffix in DOCX_SUFFIXES | PPTX_SUFFIXES:
        from indexer.loaders import office

        kind = office.WORD if suffix in DOCX_SUFFIXES else office.POWERPOINT
        office.check_zip(data, name, kind, max_unpacked)
        if kind is office.WORD:
            blocks, empty = office.docx_blocks(data, name), "no text in the Word document"
        else:
            blocks, empty = office.pptx_blocks(data, name), "no text on any slide"
            resets = True  # a slide without a title is not under the previous slide's title
    else:
        raise LoaderError(f"{name}: unsupported file type {suffix or '(none)'!r}")
    pages, marks, page_starts = assemble(blocks)
    if not any(p.strip() for p in pages):
        raise LoaderError(f"{name}: {empty}")
    length = len(PAGE_SEPARATOR.join(pages))
    return pages, sections_from_headings(marks, length, page_starts if resets else ())


def load_bytes(
    data: bytes,
    name: str,
    doc_id: str | None = None,
    source: str | None = None,
    metadata: dict[str, Any] | None = None,
    pdf_password: str | None = None,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> Document:
    """A Document from a file's bytes; ``name`` gives the type (by suffix) and, by default, id and source.

    ``max_unpacked_bytes`` bounds what an Office file (a zip archive) may unpack to. Raises
    ``InvalidInputError`` for a name, doc id or source that cannot be stored (control characters, text
    that is not valid Unicode) and for metadata ``check_metadata`` refuses; ``LoaderError`` for bytes that
    cannot be read as a document of ``name``'s type.
    """
    check_file_name(name)
    doc_id = check_doc_id(doc_id if doc_id is not None else name)
    source = check_source_name(source if source is not None else name)
    meta = check_metadata(metadata)
    suffix = Path(name).suffix.lower()
    if not data:
        raise LoaderError(f"{name}: the file is empty (0 bytes)")
    pages, sections = _pages_and_sections(data, name, suffix, meta, pdf_password, max_unpacked_bytes)
    return build_document(doc_id, source, data, pages, meta, sections)


def load_file(
    source: SourceFile,
    metadata: dict[str, Any] | None = None,
    max_bytes: int | None = None,
    pdf_password: str | None = None,
    data: bytes | None = None,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> Document:
    """Read one source file. Its doc id is its path relative to the ingest root."""
    if data is None:
        data = read_source(source, max_bytes)
    return load_bytes(
        data,
        source.rel_path,
        doc_id=source.rel_path,
        source=str(source.path),
        metadata=metadata,
        pdf_password=pdf_password,
        max_unpacked_bytes=max_unpacked_bytes,
    )
