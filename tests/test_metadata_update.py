"""The same bytes again under the same doc id: the stored version takes the new metadata and name, without
being encoded again (``indexer.admin.update_metadata``), crash-safely. On both in-process engines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from qdrant_client import models

from indexer.admin import delete_documents, update_metadata
from indexer.errors import InvalidInputError, StoreError
from indexer.loaders import load_bytes
from indexer.pipeline import ingest_bytes
from indexer.records import chunks_filter
from indexer.versions import DocumentRecord, document_record_id

TEXT = b"Zebra quartz invoices are reconciled every Tuesday.\n\n" + b"The orbital finance desk signs them. " * 30


class CountingEncoder:
    """The real encoder, counting the passages it is asked to encode."""

    def __init__(self, encoder: Any) -> None:
        self.inner, self.passages = encoder, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_passages(self, texts: Sequence[str]) -> Any:
        self.passages += len(texts)
        return self.inner.encode_passages(texts)


class FailingPayloadStore:
    """The real store, whose ``set_payload`` fails from call ``fail_at`` on (a store lost mid-update)."""

    def __init__(self, store: Any, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = store, fail_at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_payload(self, flt: models.Filter, payload: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise StoreError("the store went away")
        self.inner.set_payload(flt, payload)


def chunk_payloads(store: Any, doc_id: str) -> list[dict[str, Any]]:
    return [p.payload for p in store.scroll(chunks_filter(doc_id))]


def record(store: Any, doc_id: str) -> DocumentRecord:
    [point] = store.retrieve([document_record_id(doc_id)])
    return DocumentRecord.from_payload(point.payload)


def test_same_bytes_again_update_metadata_and_name_without_encoding(settings, encoder, store) -> None:
    counting = CountingEncoder(encoder)
    doc, first = ingest_bytes(TEXT, "a.txt", settings, counting, store, doc_id="d", metadata={"v": 1})
    assert first.status == "ok" and first.chunks > 1 and counting.passages == first.chunks
    ids = sorted(p.id for p in store.scroll(chunks_filter("d")))

    doc2, again = ingest_bytes(TEXT, "b.txt", settings, counting, store, doc_id="d", metadata={"v": 2, "k": [1]})
    assert again.status == "unchanged" and again.error is None
    assert (again.chunks, again.tokens) == (first.chunks, first.tokens)
    assert counting.passages == first.chunks  # nothing encoded again
    assert sorted(p.id for p in store.scroll(chunks_filter("d"))) == ids  # the same points
    payloads = chunk_payloads(store, "d")
    assert all(p["metadata"] == {"v": 2, "k": [1]} and p["source"] == "b.txt" for p in payloads)
    assert record(store, "d").source == "b.txt" and record(store, "d").is_complete(doc.content_hash)
    assert delete_documents(store, sources=["b.txt"]) == ["d"]


def test_bad_metadata_from_python_callers_is_a_clear_error(settings, encoder, store) -> None:
    with pytest.raises(InvalidInputError, match="metadata.x: nan is not a finite number"):
        ingest_bytes(TEXT, "a.txt", settings, encoder, store, metadata={"x": float("nan")})
    with pytest.raises(InvalidInputError, match="levels deep"):
        ingest_bytes(TEXT, "a.txt", settings, encoder, store, metadata={"x": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]})
    with pytest.raises(InvalidInputError, match="beyond 64 bits"):
        load_bytes(TEXT, "a.txt", metadata={"x": 2**64})


def test_an_update_cut_short_leaves_a_complete_version_and_the_same_call_finishes_it(settings, encoder, store) -> None:
    doc, first = ingest_bytes(TEXT, "a.txt", settings, encoder, store, doc_id="d", metadata={"v": 1})
    renamed = load_bytes(TEXT, "b.txt", doc_id="d", source="b.txt", metadata={"v": 2})

    # The store fails after the chunks took the new metadata, before the record took the new name.
    with pytest.raises(StoreError):
        update_metadata(FailingPayloadStore(store, fail_at=2), renamed)
    payloads = chunk_payloads(store, "d")
    assert len(payloads) == first.chunks and all(p["metadata"] == {"v": 2} for p in payloads)
    assert record(store, "d").is_complete(doc.content_hash)  # still names the complete version

    done = update_metadata(store, renamed)  # the same call again finishes the job
    assert done is not None and done.source == "b.txt" and record(store, "d").source == "b.txt"
    assert len(chunk_payloads(store, "d")) == first.chunks

    # A version the store no longer holds as complete is left alone.
    other = load_bytes(TEXT + b"changed", "c.txt", doc_id="d", metadata={"v": 3})
    assert update_metadata(store, other) is None
    assert all(p["metadata"] == {"v": 2} for p in chunk_payloads(store, "d"))
    assert update_metadata(store, load_bytes(TEXT, "x.txt", doc_id="unknown")) is None
