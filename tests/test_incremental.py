"""Incremental runs: unchanged files skipped before encoding, changes, prune, delete, status, provenance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from indexer import cli as indexer_cli
from indexer.admin import collection_status, delete_documents
from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import SchemaMismatchError
from indexer.pipeline import ingest
from indexer.records import kind_filter
from indexer.store import Store, open_store
from tests.helpers import make_settings
from tests.tiny_model import build_tiny_m3


class CountingEncoder:
    """The real encoder, counting what it is asked to encode."""

    def __init__(self, inner: BGEM3Encoder) -> None:
        self.inner = inner
        self.passages = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def encode_passages(self, texts):
        self.passages += len(texts)
        return self.inner.encode_passages(texts)


def corpus(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"doc{i}.txt").write_text(
            f"Document number {i}. " + "Some words about contracts and supply. " * (5 + i)
        )
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "nested.md").write_text("# Nested\n\nA nested markdown document.")
    return root


def chunks(store: Store) -> int:
    return store.count(kind_filter("chunk"))


def test_unchanged_corpus_is_skipped_without_encoding(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    root = corpus(tmp_path / "c")
    counting = CountingEncoder(encoder)
    first = ingest([root], settings, counting, store, progress=False)
    encoded = counting.passages
    assert first.documents == 7
    assert encoded == first.chunks
    second = ingest([root], settings, counting, store, progress=False)
    assert counting.passages == encoded  # nothing encoded again
    assert (second.documents, second.unchanged, second.chunks) == (0, 7, 0)
    assert "7 unchanged" in second.summary()
    assert chunks(store) == first.chunks


def test_changed_document_is_reencoded_alone(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    root = corpus(tmp_path / "c")
    counting = CountingEncoder(encoder)
    ingest([root], settings, counting, store, progress=False)
    before = counting.passages
    (root / "doc2.txt").write_text("A completely different text now.")
    report = ingest([root], settings, counting, store, progress=False)
    assert (report.documents, report.unchanged) == (1, 6)
    assert counting.passages - before == report.chunks == 1
    texts = {p.payload["text"] for p in store.scroll(kind_filter("chunk")) if p.payload["doc_id"] == "doc2.txt"}
    assert texts == {"A completely different text now."}


def test_prune_removes_documents_gone_from_the_root(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    root = corpus(tmp_path / "c")
    other = tmp_path / "other"
    other.mkdir()
    (other / "elsewhere.txt").write_text("A document under another root.")
    ingest([root, other], settings, encoder, store, progress=False)
    (root / "doc1.txt").unlink()
    (root / "sub" / "nested.md").unlink()
    kept = ingest([root], settings, encoder, store, progress=False)
    assert kept.pruned == []
    assert store.count(kind_filter("document")) == 8
    report = ingest([root], settings, encoder, store, progress=False, prune=True)
    assert sorted(report.pruned) == ["doc1.txt", "sub/nested.md"]  # other roots are left alone
    doc_ids = {p.payload["doc_id"] for p in store.scroll(kind_filter("chunk"))}
    assert doc_ids == {"doc0.txt", "doc2.txt", "doc3.txt", "doc4.txt", "doc5.txt", "elsewhere.txt"}
    assert store.count(kind_filter("document")) == 6


def test_delete_by_doc_id_and_source(settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path) -> None:
    root = corpus(tmp_path / "c")
    ingest([root], settings, encoder, store, progress=False)
    assert delete_documents(store, doc_ids=["doc0.txt"]) == ["doc0.txt"]
    assert delete_documents(store, sources=[str(root / "sub" / "nested.md")]) == ["sub/nested.md"]
    assert delete_documents(store, doc_ids=["nope"]) == []
    doc_ids = {p.payload["doc_id"] for p in store.scroll(kind_filter("chunk"))}
    assert "doc0.txt" not in doc_ids
    assert "sub/nested.md" not in doc_ids
    assert len(doc_ids) == 5
    status = collection_status(store)
    assert (status.documents, status.unfinished) == (5, 0)
    assert status.chunks == chunks(store)
    assert status.points == status.chunks + 5 + 1


def test_another_model_or_chunking_is_refused(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path
) -> None:
    root = corpus(tmp_path / "c")
    ingest([root], settings, encoder, store, progress=False)
    twin_dir = build_tiny_m3(tmp_path / "twin", seed=1)  # same shapes, other weights
    twin = BGEM3Encoder(make_settings(twin_dir, "x").model, max_length=settings.chunking.chunk_size)
    with pytest.raises(SchemaMismatchError, match=r"model .* built it, this run uses"):
        ingest([root], settings, twin, store, progress=False)
    other_chunking = settings.replace(chunking={"chunk_overlap": 8})
    with pytest.raises(SchemaMismatchError, match="chunk_overlap=16"):
        ingest([root], other_chunking, encoder, store, progress=False)
    plain = settings.replace(chunking={"headings": False})
    with pytest.raises(SchemaMismatchError, match="split at headings first; this run sets chunking.headings = false"):
        ingest([root], plain, encoder, store, progress=False)
    assert ingest([root], settings, twin, store, progress=False, recreate=True).documents == 7


def test_cli_delete_status_and_report(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = corpus(tmp_path / "c")
    (root / "notes.odt").write_bytes(b"PK\x03\x04")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = 128\nchunk_overlap = 16\n'
        f'[qdrant]\npath = "{tmp_path / "store"}"\n'
    )
    common = ["--config", str(cfg)]
    report_file = tmp_path / "report.json"
    assert indexer_cli.main(["ingest", str(root), "--no-progress", "--report", str(report_file), *common]) == 0
    report = json.loads(report_file.read_text())
    statuses = {f["source"]: f["status"] for f in report["files"]}
    assert statuses["notes.odt"] == "skipped"
    assert statuses["doc0.txt"] == "ok"
    assert all({"chunks", "tokens", "seconds", "error"} <= f.keys() for f in report["files"])
    assert "skipped: notes.odt: unsupported file type '.odt'" in capsys.readouterr().err
    assert indexer_cli.main(["status", *common]) == 0
    out = capsys.readouterr().out
    assert "documents: 7 documents" in out
    assert f"model {tiny_model_dir}" in out
    assert indexer_cli.main(["delete", "--doc-id", "doc3.txt", *common]) == 0
    assert "deleted: doc3.txt" in capsys.readouterr().out
    assert indexer_cli.main(["delete", "--doc-id", "doc3.txt", *common]) == 4
    assert indexer_cli.main(["status", "--json", *common]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["documents"] == 6
    assert row["collection"] == "documents"


def test_documents_hold_their_records(settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path) -> None:
    root = corpus(tmp_path / "c", n=1)
    report = ingest([root], settings, encoder, store, progress=False)
    records = {p.payload["doc_id"]: p.payload for p in store.scroll(kind_filter("document"))}
    assert records["doc0.txt"]["state"] == "complete"
    assert records["doc0.txt"]["content_hash"] == report.files[0].content_hash
    assert records["doc0.txt"]["chunks"] == report.files[0].chunks
    assert records["doc0.txt"]["root"] == str(root.resolve())


def test_reopening_an_edge_store_keeps_everything(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", "edge")
    root = corpus(tmp_path / "c")
    store = open_store(s.qdrant, s.collection.name)
    first = ingest([root], s, encoder, store, progress=False)
    store.close()
    store = open_store(s.qdrant, s.collection.name)
    try:
        assert ingest([root], s, encoder, store, progress=False).unchanged == first.documents
    finally:
        store.close()


def test_untouched_files_are_not_even_read(
    settings: Settings, encoder: BGEM3Encoder, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = corpus(tmp_path / "c")
    ingest([root], settings, encoder, store, progress=False)
    reads: list[str] = []
    original = Path.read_bytes

    def counting_read(self: Path) -> bytes:
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting_read)
    assert ingest([root], settings, encoder, store, progress=False).unchanged == 7
    assert reads == []  # size and modification time matched the records
    os.utime(root / "doc1.txt", ns=(1_000_000_000, 1_000_000_000))  # touched, same bytes
    report = ingest([root], settings, encoder, store, progress=False)
    assert reads == ["doc1.txt"]
    assert report.unchanged == 7
    assert report.documents == 0
    assert ingest([root], settings, encoder, store, progress=False).unchanged == 7
    assert reads == ["doc1.txt"]  # the record learnt the new modification time
