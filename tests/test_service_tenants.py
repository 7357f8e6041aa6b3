"""The service with tenant keys: each key reads and writes only its tenant, through every route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.config import load_settings
from indexer.encoder import BGEM3Encoder
from indexer.errors import ConfigError
from indexer.tenants import TenantStore
from retriever.service import create_app
from retriever.service.tenancy import TenantKeys, hash_key
from tests.helpers import SAMPLES, make_settings
from tests.service_helpers import LiveServer, open_retriever

KEY_A, KEY_B, ADMIN = "key-of-a", "key-of-b", "admin-key"
A, B, ADMIN_H = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}, {"X-API-Key": ADMIN}
SECRET = "Zebra quartz invoices are reconciled every Tuesday by the orbital finance desk."


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service on Edge whose keys map to tenants a and b (and an admin key); b holds samples/ru, both samples/en."""
    root = tmp_path_factory.mktemp("svc-tenants")
    keys = root / "keys.txt"
    keys.write_text(f"# tenant keys\n{hash_key(KEY_A)} a\n{hash_key(KEY_B)} b\n")
    s = make_settings(tiny_model_dir, root / "store", tenants={"keys_file": str(keys), "keys": f"{hash_key(ADMIN)} *"})
    r = open_retriever(s, encoder)
    from indexer.pipeline import ingest

    ingest([SAMPLES / "en"], s, encoder, TenantStore(r.store, "tenant", "a"), progress=False)
    ingest([SAMPLES / "en", SAMPLES / "ru"], s, encoder, TenantStore(r.store, "tenant", "b"), progress=False)
    with LiveServer(create_app(r)) as base:
        yield base


@pytest.fixture
def c(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def doc_ids(hits: list[dict]) -> set[str]:
    return {h["doc_id"] for h in hits}


EN_DOCS = {"qdrant-hybrid-search-notes.txt", "remote-work-policy.md"}


def test_keys_decide_the_tenant_and_wrong_ones_are_refused(c: httpx.Client) -> None:
    body = {"query": "неустойка за просрочку поставки", "limit": 50, "mode": "dense"}
    assert c.post("/search", json=body).status_code == 401
    assert c.post("/search", json=body, headers={"X-API-Key": "nope"}).status_code == 401
    assert c.post("/search", json=body, headers={"X-API-Key": hash_key(KEY_A)}).status_code == 401  # the digest
    assert doc_ids(c.post("/search", json=body, headers=A).json()["hits"]) <= EN_DOCS
    assert doc_ids(c.post("/search", json=body, headers=B).json()["hits"]) - EN_DOCS  # b's Russian documents
    r = c.post("/search", json=body, headers={**A, "X-Tenant": "b"})
    assert r.status_code == 403 and "not allowed" in r.json()["detail"]
    assert c.post("/search", json=body, headers={**A, "X-Tenant": "a"}).status_code == 200
    r = c.post("/search", json=body, headers=ADMIN_H)
    assert r.status_code == 422 and "X-Tenant" in r.json()["detail"]
    as_b = c.post("/search", json=body, headers={**ADMIN_H, "X-Tenant": "b"}).json()["hits"]
    assert doc_ids(as_b) == doc_ids(c.post("/search", json=body, headers=B).json()["hits"])
    assert c.post("/search", json=body, headers={**ADMIN_H, "X-Tenant": "a/../b"}).status_code == 422
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").json()["points"] == 0  # open to anyone: the collection's size is not told
    assert c.post("/mcp", json={}, headers=ADMIN_H).status_code == 422  # /mcp: the same keys (tests/test_mcp.py)
    assert c.post("/mcp", json={}, headers={**A, "X-Tenant": "b"}).status_code == 403
    schema = c.get("/openapi.json", headers=A).json()
    search = schema["paths"]["/search"]["post"]
    assert {"401", "403", "422"} <= set(search["responses"])
    schemes = schema["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-API-Key", "X-Tenant"}
    assert {name for scheme in search["security"] for name in scheme} == set(schemes)


@pytest.mark.parametrize(
    "flt",
    [
        {"tenant": "b"},
        {"doc_id": "dogovor-postavki.txt"},
        {"should": [{"key": "tenant", "match": {"any": ["a", "b"]}}]},
    ],  # noqa: E501
)
def test_search_batch_and_context_stay_in_the_tenant(c: httpx.Client, flt: object) -> None:
    q = "неустойка за просрочку поставки"
    hits = c.post("/search", json={"query": q, "filter": flt, "limit": 50, "mode": "dense"}, headers=A).json()["hits"]
    assert doc_ids(hits) <= EN_DOCS
    if "should" not in flt:  # type: ignore[operator]
        assert hits == []  # b's tenant or b's document: nothing of a matches
    else:
        assert hits  # a's own documents still match
    batch = c.post("/search/batch", json={"queries": [q, "remote work"], "limit": 50, "filter": flt}, headers=A).json()
    assert all(doc_ids(hits) <= EN_DOCS for hits in batch["results"])
    ctx = c.post("/context", json={"query": q, "limit": 50, "filter": flt}, headers=A).json()
    assert {cit["doc_id"] for cit in ctx["citations"]} <= EN_DOCS
    ctx = c.post("/context", json={"query": q, "limit": 50}, headers=A).json()
    assert ctx["citations"] and {cit["doc_id"] for cit in ctx["citations"]} <= EN_DOCS
    assert "поставк" not in ctx["text"].lower()


def test_counts_uploads_and_deletes_touch_only_the_tenant(c: httpx.Client) -> None:
    a0 = c.get("/collections/test_docs", headers=A).json()
    b0 = c.get("/collections/test_docs", headers=B).json()
    assert (a0["documents"], b0["documents"]) == (2, 4)
    # a uploads a document under one of b's doc ids: a second document, b's stays as it was
    r = c.post(
        "/documents",
        files={"file": ("x.txt", SECRET.encode())},
        data={"doc_id": "dogovor-postavki.txt", "metadata": json.dumps({"by": "a"})},
        headers=A,
    )
    assert r.status_code == 201, r.text
    assert c.get("/collections/test_docs", headers=B).json() == b0
    b_hits = c.post("/search", json={"query": SECRET, "limit": 50, "mode": "dense"}, headers=B).json()["hits"]
    assert all(h["text"] != SECRET for h in b_hits)
    [top] = c.post("/search", json={"query": SECRET, "limit": 1, "mode": "dense"}, headers=A).json()["hits"]
    assert top["text"] == SECRET and top["metadata"] == {"by": "a"}
    # a deletes "its" dogovor-postavki.txt: only a's goes; b's politika (b only) is not a's to delete
    assert c.delete("/documents/politika-personalnyh-dannyh.md", headers=A).status_code == 404
    assert c.delete("/documents/dogovor-postavki.txt", headers=A).json()["deleted"] == 1
    assert c.delete("/documents/dogovor-postavki.txt", headers=A).status_code == 404
    assert c.get("/collections/test_docs", headers=B).json() == b0
    assert c.get("/collections/test_docs", headers=A).json() == a0
    # b deletes a shared doc id: a's copy stays
    assert c.delete("/documents/remote-work-policy.md", headers=B).status_code == 200
    assert c.get("/collections/test_docs", headers=A).json() == a0
    assert c.get("/collections/test_docs", headers=B).json()["documents"] == 3


def test_the_keys_file_format_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "keys.txt"
    for text, message in [
        ("abc a\n", "sha256"),
        (f"{hash_key('k')}\n", "sha256"),
        (f"{hash_key('k')} a/b\n", "invalid tenant"),
        ("# only comments\n", "no keys"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            TenantKeys.from_settings(load_settings(overrides={"tenants": {"keys_file": str(bad)}}, env={}))
    s = load_settings(env={"RETRIEVER_TENANT_KEYS": f"{hash_key('k1')} a; sha256:{hash_key('k2').upper()} *"})
    keys = TenantKeys.from_settings(s)
    assert keys is not None
    assert keys.tenant_for(b"k1", None) == "a" and keys.tenant_for(b"k2", "z") == "z"
    assert keys.lookup(b"k3") is None
    assert TenantKeys.from_settings(load_settings(env={})) is None  # no tenant keys: the service as before


def test_a_collection_with_tenants_is_not_served_without_tenant_keys(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    from indexer.pipeline import ingest_bytes

    s = make_settings(tiny_model_dir, tmp_path / "store")
    r = open_retriever(s, encoder)
    try:
        create_app(r, api_key="single-key")  # no tenants yet: served as before
        ingest_bytes(b"a's text", "a.txt", s, encoder, TenantStore(r.store, "tenant", "a"))
        with pytest.raises(ConfigError, match="holds tenants' documents"):
            create_app(r, api_key="single-key")
        assert create_app(r, keys=TenantKeys.parse(f"{hash_key(KEY_A)} a", "test")) is not None
    finally:
        r.close()


def test_bulk_routes_stay_in_the_tenant(c: httpx.Client) -> None:
    b0 = c.get("/collections/test_docs", headers=B).json()
    r = c.post("/documents/metadata", json={"filter": {"tenant": "b"}, "metadata": {"x": 1}}, headers=A)
    assert r.status_code in (200, 404) and not r.json().get("done")
    r = c.post("/documents/delete", json={"filter": {"kind": "chunk"}}, headers=A)  # everything a holds
    assert r.status_code == 200, r.text
    assert c.get("/collections/test_docs", headers=A).json()["documents"] == 0
    assert c.get("/collections/test_docs", headers=B).json() == b0
