"""Delete and update by filter, and metadata without re-encoding: real model, both in-process engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import models

from indexer import cli
from indexer.admin import delete_where, matching_documents, set_metadata, update_metadata_where
from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import DocumentBusy, InvalidInputError
from indexer.leases import Leases, LeaseTimings, Owner
from indexer.pipeline import ingest_bytes
from indexer.records import KIND_DOCUMENT, chunks_filter, kind_filter
from indexer.store import SerializedStore, Store
from indexer.writer import Writer
from retriever.service import create_app
from tests.helpers import CHUNK_SIZE, make_settings
from tests.service_helpers import LiveServer, open_retriever

DOCS = {
    "a1": {"project": "apollo", "year": 1969},
    "a2": {"project": "apollo", "year": 1970},
    "a3": {"project": "apollo", "year": 1972},
    "g1": {"project": "gemini", "year": 1965},
}
QUICK = LeaseTimings(busy_wait_seconds=0.2)


def project(name: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="metadata.project", match=models.MatchValue(value=name))])


def text_of(doc_id: str) -> bytes:
    return (f"Mission log of {doc_id}. " + "The crew checked every system twice before the burn. " * 12).encode()


@pytest.fixture
def loaded(settings: Settings, encoder: BGEM3Encoder, store: Store) -> SerializedStore:
    shared = SerializedStore(store)
    for doc_id, meta in DOCS.items():
        _, result = ingest_bytes(
            text_of(doc_id), f"{doc_id}.txt", settings, encoder, shared, doc_id=doc_id, metadata=meta
        )
        assert result.status == "ok" and result.chunks >= 2
    return shared


def chunks(store: Store, doc_id: str) -> list[Any]:
    return list(store.scroll(chunks_filter(doc_id)))


def records(store: Store) -> set[str]:
    return {p.payload["doc_id"] for p in store.scroll(kind_filter(KIND_DOCUMENT))}


def test_delete_where_removes_every_match_and_reports_the_busy_one(loaded: SerializedStore) -> None:
    store = loaded
    sizes = {d: len(chunks(store, d)) for d in DOCS}
    assert matching_documents(store, project("apollo")) == ["a1", "a2", "a3"]
    other = Leases(store, Owner.new("another writer"), QUICK)
    held = other.claim("a2", None)  # another writer is changing a2 now
    report = delete_where(store, project("apollo"), timings=QUICK)
    assert report.done == ("a1", "a3") and report.busy == ("a2",)
    assert report.chunks == sizes["a1"] + sizes["a3"]
    assert chunks(store, "a1") == [] == chunks(store, "a3")
    assert records(store) == {"a2", "g1"}
    assert len(chunks(store, "a2")) == sizes["a2"] and len(chunks(store, "g1")) == sizes["g1"]
    other.release(held, Writer(store, fence=other.fence))
    other.close()
    again = delete_where(store, project("apollo"), timings=QUICK)  # the same call again finishes the job
    assert again.done == ("a2",) and again.busy == () and again.chunks == sizes["a2"]
    assert records(store) == {"g1"} and matching_documents(store, project("apollo")) == []
    assert delete_where(store, project("apollo")).done == ()


def test_delete_where_takes_any_payload_condition_and_refuses_an_empty_filter(loaded: SerializedStore) -> None:
    store = loaded
    older = models.Filter(must=[models.FieldCondition(key="metadata.year", range=models.Range(lt=1970))])
    assert matching_documents(store, older) == ["a1", "g1"]
    assert delete_where(store, older).done == ("a1", "g1")
    assert records(store) == {"a2", "a3"}
    for empty in (models.Filter(), models.Filter(must=[])):
        with pytest.raises(InvalidInputError, match="without conditions would delete every document"):
            delete_where(store, empty)
    assert records(store) == {"a2", "a3"}


def test_metadata_is_replaced_without_encoding(loaded: SerializedStore) -> None:
    store = loaded
    before = {p.id: p.payload for p in chunks(store, "g1")}
    assert set_metadata(store, "g1", {"project": "mercury", "crew": ["Glenn"]}) == len(before)
    after = {p.id: p.payload for p in chunks(store, "g1")}
    assert after.keys() == before.keys()  # the same points: nothing was encoded or written again
    for pid, payload in after.items():
        assert payload["metadata"] == {"project": "mercury", "crew": ["Glenn"]}
        assert {k: v for k, v in payload.items() if k != "metadata"} == {
            k: v for k, v in before[pid].items() if k != "metadata"
        }
    assert (
        matching_documents(store, project("mercury")) == ["g1"] and matching_documents(store, project("gemini")) == []
    )
    assert set_metadata(store, "nope", {"x": 1}) is None
    with pytest.raises(InvalidInputError):
        set_metadata(store, "g1", {"bad": float("nan")})


def test_update_metadata_where_and_busy_documents(loaded: SerializedStore) -> None:
    store = loaded
    other = Leases(store, Owner.new("another writer"), QUICK)
    held = other.claim("a3", None)
    with pytest.raises(DocumentBusy):
        set_metadata(store, "a3", {"project": "artemis"}, timings=QUICK)
    report = update_metadata_where(store, project("apollo"), {"project": "artemis"}, timings=QUICK)
    assert report.done == ("a1", "a2") and report.busy == ("a3",)
    assert report.chunks == len(chunks(store, "a1")) + len(chunks(store, "a2"))
    assert matching_documents(store, project("artemis")) == ["a1", "a2"]
    assert matching_documents(store, project("apollo")) == ["a3"]  # left as it was
    other.release(held, Writer(store, fence=other.fence))
    other.close()
    with pytest.raises(InvalidInputError, match="without conditions would update every document"):
        update_metadata_where(store, models.Filter(), {"x": 1})


# ------------------------------------------------------------------------------------------- CLI


def test_cli_metadata_then_delete_by_filter(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (corpus / name).write_bytes(text_of(name))
    config = tmp_path / "test.toml"
    config.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = {CHUNK_SIZE}\n'
        f'chunk_overlap = 16\n[qdrant]\npath = "{tmp_path / "store"}"\n[collection]\nname = "cli_where"\n'
    )
    common = ["--config", str(config)]
    assert cli.main(["ingest", str(corpus), "--no-progress", *common]) == 0
    capsys.readouterr()
    tag = ["metadata", "--doc-id", "a.txt", "--doc-id", "b.txt", "--set", '{"project": "apollo", "n": 2}', *common]
    assert cli.main(tag) == 0
    assert capsys.readouterr().out.splitlines() == ["updated: a.txt", "updated: b.txt"]
    retag = ["metadata", "--where", "metadata.project=apollo", "--where", "metadata.n=2", "--set", '{"project": "x"}']
    assert cli.main([*retag, *common]) == 0
    assert capsys.readouterr().out.splitlines() == ["updated: a.txt", "updated: b.txt"]
    assert cli.main(["delete", "--where", "metadata.project=apollo", *common]) == 4  # nothing matches any more
    assert "nothing matched" in capsys.readouterr().err
    qdrant = '{"must": [{"key": "metadata.project", "match": {"value": "x"}}]}'
    assert cli.main(["delete", "--where-json", qdrant, *common]) == 0
    assert capsys.readouterr().out.splitlines() == ["deleted: a.txt", "deleted: b.txt"]
    assert cli.main(["status", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)[0]["documents"] == 1  # c.txt
    assert cli.main(["delete", "--where", "nonsense", *common]) == 3
    assert "write FIELD=VALUE" in capsys.readouterr().err
    assert cli.main(["delete", "--where-json", '{"must": 5}', *common]) == 3
    assert "not a Qdrant filter" in capsys.readouterr().err
    assert cli.main(["delete", "--where", "a=1", "--doc-id", "c.txt", *common]) == 2


# ------------------------------------------------------------------------------------------- service


def test_service_delete_and_metadata_by_filter(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", ingest={"busy_wait_seconds": 0.3})
    app = create_app(open_retriever(s, encoder))
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        for doc_id, meta in DOCS.items():
            files = {"file": (f"{doc_id}.txt", text_of(doc_id))}
            r = c.post("/documents", files=files, data={"doc_id": doc_id, "metadata": json.dumps(meta)})
            assert r.status_code == 201
        sizes = {d: c.post("/search", json={"query": "x", "filter": {"doc_id": d}, "limit": 100}).json() for d in DOCS}
        sizes_n = {d: len(v["hits"]) for d, v in sizes.items()}

        r = c.post("/documents/metadata", json={"doc_id": "g1", "metadata": {"project": "mercury"}})
        assert r.status_code == 200 and r.json() == {"documents": ["g1"], "chunks": sizes_n["g1"]}
        hits = c.post("/search", json={"query": "crew", "filter": {"metadata.project": "mercury"}}).json()["hits"]
        assert hits and {h["doc_id"] for h in hits} == {"g1"} and hits[0]["metadata"] == {"project": "mercury"}
        r = c.post("/documents/metadata", json={"filter": ["metadata.year<=1970"], "metadata": {"era": "early"}})
        assert r.status_code == 200 and r.json()["documents"] == ["a1", "a2"]  # g1's metadata has no year now

        bad = [
            ({"doc_id": "nope", "metadata": {}}, 404, "no document 'nope'"),
            ({"doc_id": "g1", "filter": {"doc_id": "g1"}, "metadata": {}}, 422, "one of them"),
            ({"metadata": {}}, 422, "one of them"),
            ({"filter": {}, "metadata": {}}, 422, "without conditions"),
            ({"filter": {"page": {"gte": "x"}}, "metadata": {}}, 422, "page"),
            ({"doc_id": "g1", "metadata": {"": 1}}, 422, "metadata"),
        ]
        for body, status, message in bad:
            r = c.post("/documents/metadata", json=body)
            assert r.status_code == status and message in r.json()["detail"], (body, r.text)
        assert c.post("/documents/delete", json={"filter": {}}).status_code == 422
        assert c.post("/documents/delete", json={"filter": None}).status_code == 422
        assert c.post("/documents/delete", content=b"filter", headers={"content-type": "text/plain"}).status_code == 415

        store = app.state.service.retriever.store
        other = Leases(store, Owner.new("another writer"), QUICK)
        held = other.claim("a2", None)  # another writer is changing a2 now
        r = c.post("/documents/delete", json={"filter": {"metadata.era": "early"}})
        assert r.status_code == 409 and "deleted 1 documents; 1 others" in r.json()["detail"]
        assert "'a2'" in r.json()["detail"]
        r = c.post("/documents/metadata", json={"doc_id": "a2", "metadata": {}})
        assert r.status_code == 409
        other.release(held, Writer(store, fence=other.fence))
        other.close()
        r = c.post("/documents/delete", json={"filter": {"metadata.era": "early"}})
        assert r.status_code == 200 and r.json() == {"documents": ["a2"], "chunks": sizes_n["a2"]}
        left = c.post("/search", json={"query": "crew", "limit": 100}).json()["hits"]
        assert {h["doc_id"] for h in left} == {"a3", "g1"}
        assert c.get("/collections/test_docs").json()["documents"] == 2
