"""The HTTP service: real uvicorn on a loopback port, real HTTP, real model and engines."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.encoder import BGEM3Encoder
from tests.helpers import ENGINES, REPO, SAMPLES, make_settings
from tests.service_helpers import free_port, serve, service_config, wait_ready

MAX_UPLOAD = 64 * 1024
UNIQUE = "Zebra quartz invoices are reconciled every Tuesday by the orbital finance desk."


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service on Edge with the English samples, no API key."""
    s = make_settings(
        tiny_model_dir, tmp_path_factory.mktemp("svc") / "store", service={"max_upload_bytes": MAX_UPLOAD}
    )
    with serve(s, encoder, [SAMPLES / "en"]) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def detail(r: httpx.Response) -> str:
    return r.json()["detail"]


def test_health_readiness_collection_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert ready.json()["points"] > 0
    info = client.get("/collections/test_docs").json()
    assert info["name"] == "test_docs"
    assert info["points"] == ready.json()["points"]
    assert info["engine"] == "edge"
    assert {"dense", "sparse", "colbert"} <= info["vectors"].keys()
    r = client.get("/collections/other")
    assert r.status_code == 404, r.text
    assert "test_docs" in detail(r)
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/context", "/documents", "/documents/{doc_id}", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_search_and_batch(client: httpx.Client) -> None:
    r = client.post("/search", json={"query": "remote work equipment", "limit": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "hybrid"
    assert len(body["hits"]) == 3
    assert {"id", "score", "doc_id", "source", "pages", "chunk_index", "text", "start", "end"} <= body["hits"][0].keys()
    r = client.post(
        "/search",
        json={"query": "fusion", "mode": "hybrid_colbert", "filter": {"doc_id": "remote-work-policy.md"}, "limit": 2},
    )
    assert r.status_code == 200, r.text
    assert {h["doc_id"] for h in r.json()["hits"]} == {"remote-work-policy.md"}
    r = client.post("/search", json={"query": "fusion", "filter": ["chunk_index>=1"], "mode": "sparse"})
    assert r.status_code == 200, r.text
    assert all(h["chunk_index"] >= 1 for h in r.json()["hits"]), r.json()["hits"]
    some_id = body["hits"][1]["id"]
    r = client.post("/search", json={"query": "remote", "filter": {"must": [{"has_id": [some_id]}]}})
    assert [h["id"] for h in r.json()["hits"]] == [some_id]
    r = client.post("/search/batch", json={"queries": ["reciprocal rank fusion", "home office"], "limit": 2})
    assert r.status_code == 200, r.text
    assert [len(x) for x in r.json()["results"]] == [2, 2]


def test_context_route_cites_and_keeps_the_budget(client: httpx.Client, encoder: BGEM3Encoder) -> None:
    body = {"query": "remote work equipment and security", "limit": 8}
    full = client.post("/context", json={**body, "max_tokens": 100_000}).json()
    hits = client.post("/search", json=body).json()["hits"]
    first = full["citations"][0]  # its label: source, the section when the chunk has one, pages
    assert full["text"].startswith(f"[1] {first['label']}\n"), full["text"]
    assert first["label"].startswith(hits[0]["source"]), (first["label"], hits[0]["source"])
    assert first["label"].endswith(", p. 1"), first["label"]
    assert full["dropped"] == 0
    assert full["tokens"] == len(encoder.tokenizer(full["text"], add_special_tokens=False)["input_ids"])
    assert [c["number"] for c in full["citations"]] == list(range(1, len(full["citations"]) + 1))
    # Chunks of one document that touch are merged: fewer passages than hits, every hit's chunk cited once.
    cited = sorted((c["doc_id"], i) for c in full["citations"] for i in c["chunk_indexes"])
    assert cited == sorted((h["doc_id"], h["chunk_index"]) for h in hits)
    small = client.post("/context", json={**body, "max_tokens": full["tokens"] // 2}).json()
    assert 0 < small["tokens"] <= full["tokens"] // 2
    assert small["dropped"] > 0
    r = client.post("/context", json={**body, "max_tokens": 0})
    assert r.status_code == 422, r.text
    assert "max_tokens" in detail(r)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"query": "x",', 400, "malformed JSON"),
        ("[1, 2", 400, "malformed JSON"),
        ({"query": ""}, 422, "query"),
        ({"query": "   "}, 422, "the query is empty"),
        ({"query": "x" * 10_001}, 422, "at most 10000 characters"),
        ({"query": "word " * 2000}, 422, "exceed 512 tokens"),
        ({"query": "x", "limit": 0}, 422, "limit"),
        ({"query": "x", "limit": 1001}, 422, "limit"),
        ({"query": "x", "limit": "ten"}, 422, "limit"),
        ({"query": "x", "mode": "bm25"}, 422, "mode"),
        ({"query": "x", "filter": {"page": {"about": 3}}}, 422, "gte/gt/lte/lt"),
        ({"query": "x", "filter": ["page>>3"]}, 422, "needs a number"),
        ({"query": "x", "filter": "{not json"}, 422, "not valid JSON"),
        ({"query": "x", "filter": {"must": [{"nonsense": 1}]}}, 422, "invalid Qdrant filter"),
        ({"query": "x", "colour": "red"}, 422, "colour"),
        ({"limit": 3}, 422, "query"),
        ({"query": "x", "filter": {"page": [1, "a"]}}, 422, "only strings or only integers"),
        ({"query": "x", "filter": {"must": [{"key": "", "match": {"value": 1}}]}}, 422, "keys must not be empty"),
        ({"query": "x", "filter": {"must": [{"has_id": ["not-a-uuid"]}]}}, 422, "point ids are UUIDs"),
        ({"query": "x", "filter": {"should": [{"has_id": [123]}]}}, 422, "point ids are UUIDs"),
    ],
)
def test_bad_search_requests_get_a_clear_4xx(client: httpx.Client, body: object, status: int, message: str) -> None:
    if isinstance(body, str):
        r = client.post("/search", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/search", json=body)
    assert r.status_code == status, r.text
    assert message in detail(r)


def test_bad_batch_requests(client: httpx.Client) -> None:
    r = client.post("/search/batch", json={"queries": []})
    assert r.status_code == 422, r.text
    assert "queries" in detail(r)
    r = client.post("/search/batch", json={"queries": ["x"] * 65})
    assert r.status_code == 422, r.text
    assert "the limit is 64" in detail(r)
    r = client.post("/search/batch", json={"queries": ["fine", " "]})
    assert r.status_code == 422, r.text
    assert "empty" in detail(r)
    # One query over the token limit fails the request, not the queries batched with it by other requests.
    r = client.post("/search/batch", json={"queries": ["fine", "word " * 2000]})
    assert r.status_code == 422, r.text
    assert "512 tokens" in detail(r)


@pytest.mark.parametrize(
    ("files", "data", "status", "message"),
    [
        ({"file": ("tool.exe", b"MZ...")}, {}, 415, "unsupported file type"),
        ({"file": ("notes", b"plain")}, {}, 415, "unsupported file type"),
        (
            {"file": ("big.txt", b"a " * (MAX_UPLOAD // 2 + 1))},
            {},
            413,
            f"the file is over the limit of {MAX_UPLOAD} bytes",
        ),
        ({"file": ("huge.txt", b"a " * (4 * MAX_UPLOAD))}, {}, 413, "bytes) is over the limit"),
        ({"file": ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00")}, {}, 422, "binary file"),
        ({"file": ("empty.md", b"  \n")}, {}, 422, "empty"),
        ({"file": ("broken.pdf", b"%PDF-1.4 nonsense")}, {}, 422, "cannot read PDF"),
        ({"file": ("a.txt", b"text")}, {"metadata": "{oops"}, 422, "metadata is not valid JSON"),
        ({"file": ("a.txt", b"text")}, {"metadata": "[1]"}, 422, "JSON object"),
        ({"file": ("a.txt", b"text")}, {"doc_id": "  "}, 422, "doc_id"),
        ({}, {"doc_id": "x"}, 415, "multipart/form-data"),
        ({"other": ("a.txt", b"text")}, {"doc_id": "x"}, 422, "file: required"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(client: httpx.Client, files: dict, data: dict, status: int, message: str) -> None:
    r = client.post("/documents", files=files or None, data=data)
    assert r.status_code == status, r.text
    assert message in detail(r)


def test_delete_unknown_document_is_404(client: httpx.Client) -> None:
    r = client.delete("/documents/never/uploaded.txt")
    assert r.status_code == 404, r.text
    assert "never/uploaded.txt" in detail(r)


@pytest.mark.parametrize("engine", ENGINES)
def test_upload_then_search_finds_it_delete_then_it_is_gone(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, engine: str
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store" if engine == "edge" else ":memory:", engine)
    with serve(s, encoder, [SAMPLES / "ru"]) as url, httpx.Client(base_url=url, timeout=60) as c:
        before = c.get("/collections/test_docs").json()["chunks"]
        r = c.post(
            "/documents",
            files={"file": ("finance.md", UNIQUE.encode())},
            data={"doc_id": "team/finance.md", "metadata": json.dumps({"team": "finance"})},
        )
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["doc_id"] == "team/finance.md"
        assert up["source"] == "finance.md"
        assert up["chunks"] == 1
        assert c.get("/collections/test_docs").json()["chunks"] == before + 1

        for mode in ("dense", "hybrid", "hybrid_colbert"):
            [top] = c.post("/search", json={"query": UNIQUE, "limit": 1, "mode": mode}).json()["hits"]
            assert top["doc_id"] == "team/finance.md", mode
            assert top["text"] == UNIQUE, mode
            assert top["metadata"] == {"team": "finance"}, mode
        hits = c.post("/search", json={"query": "invoices", "filter": {"metadata.team": "finance"}}).json()["hits"]
        assert [h["doc_id"] for h in hits] == ["team/finance.md"]

        # The same doc id again replaces the previous version instead of adding to it.
        r = c.post(
            "/documents",
            files={"file": ("finance.md", (UNIQUE + " Revised.").encode())},
            data={"doc_id": "team/finance.md"},
        )
        assert r.status_code == 201, r.text
        assert c.get("/collections/test_docs").json()["chunks"] == before + 1

        r = c.delete("/documents/team/finance.md")
        assert r.status_code == 200, r.text
        assert r.json() == {"doc_id": "team/finance.md", "deleted": 1}
        assert c.get("/collections/test_docs").json()["chunks"] == before
        hits = c.post("/search", json={"query": UNIQUE, "limit": 5, "mode": "dense"}).json()["hits"]
        assert hits
        assert "team/finance.md" not in {h["doc_id"] for h in hits}
        assert c.post("/search", json={"query": UNIQUE, "filter": {"doc_id": "team/finance.md"}}).json()["hits"] == []
        assert c.delete("/documents/team/finance.md").status_code == 404


def test_pdf_upload_keeps_pages(client: httpx.Client) -> None:
    pdf = SAMPLES / "pdf" / "annual-report-2025.pdf"
    r = client.post("/documents", files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 201, r.text
    hits = client.post("/search", json={"query": "revenue", "filter": {"doc_id": pdf.name}, "limit": 50}).json()["hits"]
    assert len(hits) == r.json()["chunks"]
    assert max(max(h["pages"]) for h in hits) >= 2, [h["pages"] for h in hits]
    assert client.delete(f"/documents/{pdf.name}").json()["deleted"] == len(hits)


def test_api_key_protects_every_route_but_health(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store")
    with serve(s, encoder, api_key="s3cret-key") as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        calls = [
            ("POST", "/search", {"json": {"query": "x"}}),
            ("POST", "/search/batch", {"json": {"queries": ["x"]}}),
            ("POST", "/context", {"json": {"query": "x"}}),
            ("POST", "/documents", {"files": {"file": ("a.txt", b"text")}}),
            ("DELETE", "/documents/a.txt", {}),
            ("POST", "/documents/delete", {"json": {"filter": {"doc_id": "a.txt"}}}),
            ("POST", "/documents/metadata", {"json": {"doc_id": "a.txt", "metadata": {}}}),
            ("GET", "/collections/test_docs", {}),
            ("GET", "/metrics", {}),
            ("POST", "/mcp", {"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}}),
            ("GET", "/openapi.json", {}),
            ("GET", "/docs", {}),
        ]
        for method, path, kw in calls:
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
                r = c.request(method, path, headers=headers, **kw)
                assert r.status_code == 401, (method, path, headers)
                assert "X-API-Key" in detail(r)
        ok = {"X-API-Key": "s3cret-key"}
        assert c.post("/search", json={"query": "x"}, headers=ok).json() == {"mode": "hybrid", "hits": []}
        assert c.post("/documents", files={"file": ("a.txt", b"some text")}, headers=ok).status_code == 201
        assert c.delete("/documents/a.txt", headers=ok).json()["deleted"] == 1
        assert c.get("/collections/test_docs", headers=ok).json()["chunks"] == 0
        assert c.get("/openapi.json", headers=ok).status_code == 200


def test_concurrent_requests_are_answered_as_sequential_ones(url: str, client: httpx.Client) -> None:
    queries = [
        f"{w} policy" for w in ("remote", "equipment", "security", "travel", "hybrid", "fusion", "costs", "data")
    ]
    modes = ["hybrid", "dense", "hybrid_colbert", "sparse"]
    expected = {
        (q, m): client.post("/search", json={"query": q, "limit": 3, "mode": m}).json()["hits"]
        for q in queries
        for m in modes
    }

    async def run(with_upload: bool) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
            calls = [ac.post("/search", json={"query": q, "limit": 3, "mode": m}) for q, m in expected]
            if with_upload:
                calls.append(ac.post("/documents", files={"file": ("during.txt", UNIQUE.encode())}))
                calls.append(ac.post("/search/batch", json={"queries": queries, "limit": 3}))
            return list(await asyncio.gather(*calls))

    for r, want in zip(asyncio.run(run(with_upload=False)), expected.values(), strict=True):
        assert r.status_code == 200
        got = r.json()["hits"]
        # The same hits and scores (equal scores may swap: batched encoding can differ in the last bits).
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], rel=1e-4)
        assert {h["id"]: h["score"] for h in got} == pytest.approx({h["id"]: h["score"] for h in want}, rel=1e-4)
    # Searches, a batch and an upload at once: the embedded store and the model are shared safely.
    responses = asyncio.run(run(with_upload=True))
    assert [r.status_code for r in responses] == [200] * len(expected) + [201, 200]
    assert client.delete("/documents/during.txt").json()["deleted"] == 1


@pytest.mark.slow
def test_cli_serve_owns_the_embedded_store(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``retriever serve`` as a real process; a CLI started meanwhile on the same store says who holds it."""
    cfg = service_config(tmp_path / "svc.toml", tiny_model_dir, tmp_path / "store", "cli_svc")
    port = free_port()
    env = {**os.environ, "RETRIEVER_API_KEY": "k"}
    server = subprocess.Popen(
        [sys.executable, "-m", "retriever", "serve", "--config", str(cfg), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        assert httpx.post(f"{base}/search", json={"query": "x"}, timeout=30).status_code == 401
        r = httpx.post(f"{base}/documents", files={"file": ("a.md", b"# Title\n\nbody")}, headers={"X-API-Key": "k"})
        assert r.status_code == 201
        cli = subprocess.run(
            [sys.executable, "-m", "retriever", "search", "body", "--config", str(cfg)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 3
        assert "already open in another process" in cli.stderr
        assert f"held by pid {server.pid}" in cli.stderr
        assert " serve " in cli.stderr  # names the service
        assert "Traceback" not in cli.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in server.stderr.read()
    server.stderr.close()


def test_the_service_key_comes_from_the_environment_never_from_a_file(tmp_path: Path) -> None:
    from indexer.config import load_settings
    from indexer.errors import ConfigError

    assert load_settings(env={"RETRIEVER_API_KEY": "abc"}).service.api_key == "abc"
    assert load_settings(env={}).service.api_key is None
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[service]\napi_key = "in-a-file"\n')
    with pytest.raises(ConfigError, match="RETRIEVER_API_KEY"):
        load_settings(cfg, env={})
