"""What a run has to do with each source: the items under the given paths, and whether one changed.

A document's record says what the collection holds of it; a file whose size and modification time match
its record is not even read, and one whose bytes hash to the recorded version is not parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.errors import LoaderError
from indexer.loaders import check_source, discover, is_supported, load_file, read_checked, sha256_bytes
from indexer.models import Document, SourceFile
from indexer.report import FileResult, IngestReport
from indexer.versions import DocumentRecord, FileStat

NO_FILE: FileStat = (None, None)


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to ingest: a file found under a root, or a document already in memory."""

    source: str
    root: str
    file: SourceFile | None = None
    document: Document | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """What to do with an item: write ``document`` (read from a file of ``file_stat``), or nothing.

    ``refresh`` is the record of an unchanged document whose file was touched: rewriting it with the new
    modification time lets the next run skip the file without reading it. ``data``: the bytes of a
    changed file, still to be parsed (``examine`` leaves that to ``parse``, which may run elsewhere).
    """

    document: Document | None = None
    file_stat: FileStat = NO_FILE
    refresh: DocumentRecord | None = None
    data: bytes | None = None


def item_doc_id(item: Item) -> str:
    """The doc id an item is stored under (a file's path relative to its root)."""
    if item.document is not None:
        return item.document.doc_id
    return item.file.rel_path if item.file is not None else item.source


def find_items(
    paths: Sequence[Path | str], settings: Settings, report: IngestReport
) -> tuple[list[Item], dict[str, set[str]]]:
    """Files under each path, and per folder root the doc ids found there (for --prune)."""
    items: list[Item] = []
    found: dict[str, set[str]] = {}
    for path in paths:
        p = Path(path)
        root = str(p.resolve() if p.is_dir() else p.resolve().parent)
        try:
            sources = list(discover([p], settings.ingest.include, settings.ingest.exclude))
        except LoaderError as e:
            report.files.append(FileResult(source=str(path), status="failed", error=str(e)))
            continue
        if p.is_dir():
            found.setdefault(root, set()).update(s.rel_path for s in sources)
        items.extend(Item(source=s.rel_path, root=root, file=s) for s in sources)
    return items, found


def load_if_changed(
    item: Item, result: FileResult, settings: Settings, metadata: dict[str, Any] | None, known: DocumentRecord | None
) -> Load:
    """Decide what to do with an item (``result`` gets its status) from its ``known`` record; writes nothing.

    A file whose size and modification time match its record is not read at all; otherwise its
    bytes are hashed, and only a changed hash leads to parsing.
    """
    load = examine(item, result, settings, known)
    if load.data is None:
        return load
    assert item.file is not None
    return Load(document=parse(item.file, load.data, settings, metadata), file_stat=load.file_stat)


def examine(item: Item, result: FileResult, settings: Settings, known: DocumentRecord | None) -> Load:
    """``load_if_changed`` up to parsing: a changed file comes back as its bytes (``Load.data``)."""
    if item.document is not None:
        doc = item.document
        result.doc_id, result.content_hash = doc.doc_id, doc.content_hash
        if known is not None and known.is_complete(doc.content_hash):
            result.status = "unchanged"
            return Load()
        return Load(document=doc)
    assert item.file is not None
    if not is_supported(item.file.rel_path):
        result.status = "skipped"
        result.error = f"unsupported file type {Path(item.file.rel_path).suffix or '(none)'!r}"
        return Load()
    st = check_source(item.file, settings.ingest.max_file_bytes)
    result.doc_id = item.file.rel_path
    if known and known.is_complete() and (known.file_size, known.file_mtime_ns) == (st.st_size, st.st_mtime_ns):
        result.status, result.content_hash = "unchanged", known.content_hash
        return Load()
    data = read_checked(item.file)
    result.content_hash = sha256_bytes(data)
    file_stat = (len(data), st.st_mtime_ns)
    if known is not None and known.is_complete(result.content_hash):
        result.status = "unchanged"
        return Load(refresh=known.with_file(file_stat))
    return Load(file_stat=file_stat, data=data)


def parse(file: SourceFile, data: bytes, settings: Settings, metadata: dict[str, Any] | None) -> Document:
    """The document in a changed file's bytes (raises ``LoaderError`` for what cannot be read)."""
    ingest = settings.ingest
    return load_file(
        file,
        metadata,
        pdf_password=ingest.pdf_password,
        data=data,
        max_unpacked_bytes=ingest.max_unpacked_bytes,
    )
