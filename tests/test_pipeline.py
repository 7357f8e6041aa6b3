"""Ingestion into both in-process engines: counts, stable ids, versions, schema checks, the ColBERT cap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qdrant_client import models

from indexer.config import Settings
from indexer.encoder import MAX_MULTIVECTOR_FLOATS, BGEM3Encoder
from indexer.errors import SchemaMismatchError, StoreError
from indexer.pipeline import ingest, ingest_documents
from indexer.points import point_id
from indexer.records import chunks_filter, kind_filter
from indexer.schema import COLBERT, CollectionSpec
from indexer.store import Store, open_store
from tests.helpers import SAMPLES, make_settings


def chunk_count(store: Store, flt=None) -> int:
    return store.count(flt) if flt else store.count(kind_filter("chunk"))


def all_ids(store: Store, report) -> set[str]:
    ids = set()
    for f in report.files:
        if f.status == "ok":
            ids |= {point_id(f.doc_id, f.content_hash, i) for i in range(f.chunks)}
    return ids


def test_ingest_samples_then_reingest_changes_nothing(settings: Settings, encoder: BGEM3Encoder, store: Store) -> None:
    first = ingest([SAMPLES], settings, encoder, store, progress=False)
    assert not first.failed, first.failed
    assert first.documents == 7  # 4 text files, 2 PDFs and the README
    assert [f.source for f in first.skipped] == ["make_pdfs.py"]  # listed, not ingested
    assert chunk_count(store) == first.chunks > 20
    assert store.count() == first.chunks + 7 + 1  # one record per document and one for the collection
    ids = all_ids(store, first)
    assert len(store.retrieve(sorted(ids))) == len(ids)
    second = ingest([SAMPLES], settings, encoder, store, progress=False)
    assert (second.documents, second.unchanged, second.chunks) == (0, 7, 0)  # nothing re-encoded
    assert chunk_count(store) == first.chunks
    assert len(store.retrieve(sorted(ids))) == len(ids)
    again = ingest([SAMPLES], settings, encoder, store, progress=False, recreate=True)
    assert again.documents == 7
    assert all_ids(store, again) == ids  # same ids from scratch


def test_payload_of_a_pdf_chunk(settings: Settings, encoder: BGEM3Encoder, store: Store) -> None:
    pdf = SAMPLES / "pdf" / "annual-report-2025.pdf"
    report = ingest([pdf], settings, encoder, store, progress=False, metadata={"lang": "en"})
    [f] = report.files
    points = store.retrieve([point_id(f.doc_id, f.content_hash, i) for i in range(f.chunks)])
    assert {p.payload["doc_id"] for p in points} == {"annual-report-2025.pdf"}
    pages = sorted({pg for p in points for pg in p.payload["pages"]})
    assert pages == [1, 2, 3]
    revenue = [p for p in points if "42.7 million euros" in p.payload["text"]]
    assert revenue, "no chunk holds the revenue figure"
    assert all(p.payload["page"] == 2 for p in revenue), [p.payload["page"] for p in revenue]
    p = points[0].payload
    assert p["source"] == str(pdf)
    assert p["content_hash"] == f.content_hash
    assert p["metadata"] == {"lang": "en"}
    assert p["end"] > p["start"] >= 0
    assert 0 < p["token_count"] <= settings.chunking.chunk_size
    assert sorted(q.payload["chunk_index"] for q in points) == list(range(f.chunks))


def test_changed_document_replaces_its_old_version(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    doc = corpus / "a.txt"
    doc.write_text("First version. " * 300)
    (corpus / "b.txt").write_text("Another document that stays the same.")
    v1 = ingest([corpus], settings, encoder, store, progress=False)
    doc.write_text("Second, much shorter version of the document.")
    v2 = ingest([corpus], settings, encoder, store, progress=False)
    assert v1.chunks > v2.chunks == 1
    assert v2.unchanged == 1
    assert chunk_count(store) == 2
    assert store.count(chunks_filter("a.txt")) == 1
    [a1] = [f for f in v1.files if f.source == "a.txt"]
    old = models.Filter(
        must=[models.FieldCondition(key="content_hash", match=models.MatchValue(value=a1.content_hash))]
    )
    assert store.count(old) == 0


def test_bad_files_are_reported_and_the_rest_ingested(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    (tmp_path / "good.md").write_text("# Title\n\nSome good text.")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "empty.txt").write_text("")
    report = ingest([tmp_path, tmp_path / "missing"], settings, encoder, store, progress=False)
    assert report.documents == 1
    errors = {f.source: f.error for f in report.failed}
    assert set(errors) == {"binary.txt", "broken.pdf", "empty.txt", str(tmp_path / "missing")}
    assert "binary" in errors["binary.txt"]
    assert "PDF" in errors["broken.pdf"]
    assert chunk_count(store) == 1


def test_schema_mismatch_is_a_clear_error(settings: Settings, encoder: BGEM3Encoder, store: Store) -> None:
    ingest([SAMPLES / "en"], settings, encoder, store, progress=False)
    other = CollectionSpec(name=store.collection, dense_dim=1024, colbert_dim=1024)
    with pytest.raises(SchemaMismatchError, match=r"dense: expected a dense vector of size 1024, found .* size 64"):
        store.ensure_collection(other)
    no_colbert = CollectionSpec(name=store.collection, dense_dim=64, colbert_dim=None)
    with pytest.raises(SchemaMismatchError, match="colbert: expected nothing"):
        store.ensure_collection(no_colbert)
    store.ensure_collection(other, recreate=True)
    assert store.count() == 0


def test_chunk_over_1024_tokens_stores_colbert_under_the_cap(
    wide_colbert_model_dir: Path, tmp_path: Path, engine: str
) -> None:
    s = make_settings(
        wide_colbert_model_dir,
        tmp_path / "store" if engine == "edge" else ":memory:",
        engine,
        chunking={"chunk_size": 2048, "chunk_overlap": 0},
    )
    enc = BGEM3Encoder(s.model, max_length=2048)
    (tmp_path / "long.txt").write_text(" ".join(f"слово{i} word{i}" for i in range(160)))
    store = open_store(s.qdrant, s.collection.name)
    try:
        report = ingest([tmp_path / "long.txt"], s, enc, store, progress=False)
        [f] = report.files
        assert f.status == "ok", f.error
        assert f.chunks == 1
        assert f.tokens > 1024
        [p] = store.retrieve([point_id(f.doc_id, f.content_hash, 0)], with_vectors=True)
        colbert = p.vectors[COLBERT]
        assert 0 < len(colbert) <= 1023
        assert len(colbert) * len(colbert[0]) < MAX_MULTIVECTOR_FLOATS
        assert len(colbert[0]) == 1024
    finally:
        store.close()


def test_edge_store_persists_and_is_exclusive(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", "edge")
    store = open_store(s.qdrant, s.collection.name)
    report = ingest([SAMPLES / "ru"], s, encoder, store, progress=False)
    try:
        second = open_store(s.qdrant, s.collection.name)
        with pytest.raises(StoreError, match="already open in another process"):
            second.open_collection()
    finally:
        store.close()
    reopened = open_store(s.qdrant, s.collection.name)
    try:
        assert reopened.open_collection().vector("dense").size == 64
        assert chunk_count(reopened) == report.chunks
    finally:
        reopened.close()
    assert (tmp_path / "store" / "test_docs" / "collection.json").is_file()


def test_missing_collection_is_a_clear_error(settings: Settings) -> None:
    store = open_store(settings.qdrant, "never_created")
    with pytest.raises(StoreError, match="does not exist"):
        store.open_collection()


def test_stray_folder_is_not_overwritten(settings: Settings, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    if settings.qdrant.engine != "edge":
        pytest.skip("Edge keeps one folder per collection")
    stray = Path(settings.qdrant.path) / settings.collection.name
    stray.mkdir(parents=True)
    (stray / "precious.txt").write_text("not ours")
    store = open_store(settings.qdrant, settings.collection.name)
    with pytest.raises(StoreError, match="not a collection folder"):
        ingest([SAMPLES / "en"], settings, encoder, store, progress=False)
    assert (stray / "precious.txt").read_text() == "not ours"
    shutil.rmtree(stray)


def test_ingest_documents_from_memory(settings: Settings, encoder: BGEM3Encoder, store: Store) -> None:
    from indexer.loaders import load_bytes

    doc = load_bytes("Загруженный документ о поставке.".encode(), "upload.txt", doc_id="user-42", metadata={"u": 1})
    report = ingest_documents([doc], settings, encoder, store)
    [f] = report.files
    assert (f.status, f.doc_id, f.chunks) == ("ok", "user-42", 1)
    [p] = store.retrieve([point_id("user-42", doc.content_hash, 0)])
    assert p.payload["source"] == "upload.txt"
    assert p.payload["metadata"] == {"u": 1}
