"""Find source files and turn each into a Document (text + page layout)."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from indexer.errors import LoaderError
from indexer.models import Document, PageSpan, SourceFile

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES
PAGE_SEPARATOR = "\n\n"  # between the texts of two PDF pages


def glob_match(rel_path: str, pattern: str) -> bool:
    """Match a POSIX relative path; ``*`` crosses folders and a leading ``**/`` also matches the root."""
    if fnmatch.fnmatchcase(rel_path, pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(rel_path, pattern[3:])


def discover(
    paths: Iterable[Path | str], include: Iterable[str] = ("*",), exclude: Iterable[str] = ()
) -> Iterator[SourceFile]:
    """Yield files under each path, in a stable order; a path given as a file is yielded as is.

    Identity (``rel_path``) is relative to the path given: the root of a folder, or the file's own name.
    """
    include, exclude = tuple(include), tuple(exclude)
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield SourceFile(path=path, rel_path=path.name)
            continue
        if not path.is_dir():
            raise LoaderError(f"{path}: no such file or folder")
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                file = Path(folder) / name
                rel = file.relative_to(path).as_posix()
                if any(glob_match(rel, p) for p in include) and not any(glob_match(rel, p) for p in exclude):
                    yield SourceFile(path=file, rel_path=rel)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 with or without a BOM; anything else is a clear error, never mojibake."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoaderError(
            f"{name}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); re-save the file as UTF-8"
        ) from e
    if "\x00" in text:
        raise LoaderError(f"{name}: contains NUL bytes; this looks like a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_pages(data: bytes, name: str) -> list[str]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError(f"{name}: the PDF is encrypted with a password")
        return [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise LoaderError(f"{name}: cannot read PDF ({type(e).__name__}: {e})") from e


def build_document(
    doc_id: str, source: str, data: bytes, page_texts: list[str], metadata: dict[str, Any] | None = None
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
    )


def load_bytes(
    data: bytes,
    name: str,
    doc_id: str | None = None,
    source: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Document:
    """A Document from a file's bytes; ``name`` gives the type (by suffix) and, by default, id and source."""
    suffix = Path(name).suffix.lower()
    if suffix in PDF_SUFFIXES:
        pages = _pdf_pages(data, name)
        if not any(p.strip() for p in pages):
            raise LoaderError(f"{name}: no extractable text (a scanned PDF needs OCR first)")
    elif suffix in TEXT_SUFFIXES:
        pages = [decode_text(data, name)]
        if not pages[0].strip():
            raise LoaderError(f"{name}: the file is empty")
    else:
        raise LoaderError(f"{name}: unsupported file type {suffix or '(none)'!r}")
    return build_document(doc_id or name, source or name, data, pages, metadata)


def load_file(source: SourceFile, metadata: dict[str, Any] | None = None) -> Document:
    """Read one source file. Its doc id is its path relative to the ingest root."""
    try:
        data = source.path.read_bytes()
    except OSError as e:
        raise LoaderError(f"{source.rel_path}: cannot read ({e.strerror or e})") from e
    return load_bytes(data, source.rel_path, doc_id=source.rel_path, source=str(source.path), metadata=metadata)
