"""The ingestion pipeline: sources -> documents -> chunks -> encoded batches -> points -> store.

Every stage streams, so memory stays bounded by one document plus one encoding group, whatever the
corpus size. Chunks of many documents share an encoding call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from qdrant_client import models
from tqdm import tqdm

from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.encoder import BATCHES_PER_CALL, Encoder
from indexer.errors import EncodingError, IndexerError, LoaderError
from indexer.loaders import discover, load_file
from indexer.models import Chunk, Document, EncodedChunk, SourceFile
from indexer.points import to_point
from indexer.schema import CollectionSpec
from indexer.store import Store
from indexer.writer import Writer

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FileResult:
    source: str
    status: str = "ok"  # ok | failed
    chunks: int = 0
    tokens: int = 0
    error: str | None = None
    doc_id: str | None = None
    content_hash: str | None = None


@dataclass(slots=True)
class IngestReport:
    collection: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def documents(self) -> int:
        return sum(f.status == "ok" for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status == "ok")

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files if f.status == "ok")

    def summary(self) -> str:
        return (
            f"{self.documents} documents, {self.chunks} chunks, {self.tokens} tokens into {self.collection!r} "
            f"in {self.seconds:.1f}s; {len(self.failed)} failed"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "documents": self.documents,
            "chunks": self.chunks,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "files": [
                {
                    "source": f.source,
                    "status": f.status,
                    "chunks": f.chunks,
                    "tokens": f.tokens,
                    "error": f.error,
                }
                for f in self.files
            ],
        }


def doc_filter(doc_id: str, keep_hash: str | None = None) -> models.Filter:
    """Points of ``doc_id``; with ``keep_hash``, only those of other versions than that one."""
    must = [models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]
    must_not = None
    if keep_hash is not None:
        must_not = [models.FieldCondition(key="content_hash", match=models.MatchValue(value=keep_hash))]
    return models.Filter(must=must, must_not=must_not)


def _sources(paths: Sequence[Path | str], settings: Settings, report: IngestReport) -> list[SourceFile]:
    found: list[SourceFile] = []
    for path in paths:
        try:
            found.extend(discover([path], settings.ingest.include, settings.ingest.exclude))
        except LoaderError as e:
            report.files.append(FileResult(source=str(path), status="failed", error=str(e)))
    return found


DocumentSource = Callable[[], Document]  # loads (reads, parses) one document when called


def _chunked_documents(
    items: Iterable[tuple[str, DocumentSource]], chunker: Chunker, report: IngestReport
) -> Iterator[tuple[FileResult, list[Chunk]]]:
    """Load and chunk one document at a time; a bad one is recorded and skipped before anything is written."""
    for source, load in items:
        result = FileResult(source=source)
        report.files.append(result)
        try:
            doc = load()
            chunks = list(chunker.split(doc))
            if not chunks:
                raise LoaderError(f"{source}: no text to index")
        except IndexerError as e:
            result.status, result.error = "failed", str(e)
            logger.warning("skipped %s", e)
            continue
        result.doc_id, result.content_hash = doc.doc_id, doc.content_hash
        yield result, chunks


def ingest(
    paths: Sequence[Path | str],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    recreate: bool = False,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> IngestReport:
    """Index files and folders into the configured collection; returns what happened to each file."""
    report = IngestReport(collection=store.collection)
    sources = _sources(paths, settings, report)
    items = [(src.rel_path, partial(load_file, src, metadata)) for src in sources]
    return _ingest(items, len(items), report, settings, encoder, store, recreate=recreate, progress=progress)


def ingest_documents(
    documents: Sequence[Document],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    progress: bool = False,
) -> IngestReport:
    """Index documents already in memory (uploads): same chunking, ids, versions and report as files."""
    report = IngestReport(collection=store.collection)
    items = [(doc.doc_id, partial(lambda d: d, doc)) for doc in documents]
    return _ingest(items, len(items), report, settings, encoder, store, recreate=False, progress=progress)


def _ingest(
    items: Iterable[tuple[str, DocumentSource]],
    total: int,
    report: IngestReport,
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    recreate: bool,
    progress: bool,
) -> IngestReport:
    started = time.perf_counter()
    spec = CollectionSpec.for_model(settings.collection, encoder.dense_dim, encoder.colbert_dim)
    store.ensure_collection(spec, recreate=recreate)
    chunker = Chunker(encoder.tokenizer, settings.chunking.chunk_size, settings.chunking.chunk_overlap)
    writer = Writer(
        store,
        max_points=settings.ingest.write_batch_points,
        max_bytes=settings.ingest.write_batch_bytes,
        retries=settings.ingest.write_retries,
    )
    group_size = settings.model.batch_size * BATCHES_PER_CALL
    files_bar = tqdm(total=total, unit="file", desc="files", disable=not progress)
    chunks_bar = tqdm(unit="chunk", desc="chunks", disable=not progress)
    tokens = 0
    group: list[tuple[FileResult, Chunk]] = []

    def encode_group() -> None:
        nonlocal tokens
        if not group:
            return
        try:
            embeddings = encoder.encode_passages([c.text for _, c in group])
        except EncodingError as e:
            for result in {id(r): r for r, _ in group}.values():
                result.status, result.error = "failed", str(e)
            group.clear()
            return
        for (result, chunk), emb in zip(group, embeddings, strict=True):
            writer.add(to_point(EncodedChunk(chunk, emb), colbert=spec.colbert_dim is not None))
            result.chunks += 1
            result.tokens += chunk.token_count
            tokens += chunk.token_count
        chunks_bar.update(len(group))
        chunks_bar.set_postfix(tokens=tokens)
        group.clear()

    done = len(report.files)
    try:
        for result, chunks in _chunked_documents(items, chunker, report):
            for chunk in chunks:
                group.append((result, chunk))
                if len(group) >= group_size:
                    encode_group()
            files_bar.update(len(report.files) - done - files_bar.n)
        encode_group()
        writer.close()
        files_bar.update(len(report.files) - done - files_bar.n)
        # Only now, with the new version of each document complete, drop its older versions.
        for f in report.files:
            if f.status == "ok" and f.doc_id is not None:
                store.delete(doc_filter(f.doc_id, keep_hash=f.content_hash))
    finally:
        files_bar.close()
        chunks_bar.close()
    report.seconds = time.perf_counter() - started
    logger.info("ingest: %s", report.summary())
    return report
