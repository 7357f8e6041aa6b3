"""The MCP endpoint: the mcp package's own client over streamable HTTP, against the real service (uvicorn on a
loopback port, the real model and engine), behind the same API key as every route."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.encoder import BGEM3Encoder
from tests.helpers import REPO, SAMPLES, make_settings
from tests.service_helpers import serve

KEY = "mcp-s3cret"


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = make_settings(tiny_model_dir, tmp_path_factory.mktemp("mcp") / "store")
    with serve(s, encoder, [SAMPLES / "en"], api_key=KEY) as base:
        yield base


async def _session(
    url: str,
    key: str | None,
    calls: list[tuple[str, dict[str, Any]]],
    statuses: list[int] | None = None,
    tenant: str | None = None,
) -> tuple[list[Any], list[Any]]:
    """List the tools, then make ``calls`` in one client session; returns (tools, results). ``statuses``
    collects the HTTP status of every answer the client got; ``tenant`` is sent in ``X-Tenant``."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def seen(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    headers = {"X-API-Key": key} if key is not None else {}
    if tenant is not None:
        headers["X-Tenant"] = tenant
    http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [seen]})
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        tools = (await client.list_tools()).tools
        results = [await client.call_tool(name, args) for name, args in calls]
    return list(tools), results


def session(
    url: str,
    key: str | None,
    *calls: tuple[str, dict[str, Any]],
    statuses: list[int] | None = None,
    tenant: str | None = None,
) -> tuple[list[Any], list[Any]]:
    return asyncio.run(_session(url, key, list(calls), statuses, tenant))


def payload(result: Any) -> Any:
    """A tool's answer: its structured content, which must equal the JSON of its text content."""
    assert not result.is_error, result.content
    text = json.loads(result.content[0].text)
    structured = result.structured_content
    assert structured == text or structured == {"result": text}, (structured, text)
    return text


def test_tools_are_listed_with_their_arguments(url: str) -> None:
    tools, _ = session(url, KEY)
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"search", "context"}
    search = by_name["search"].input_schema
    assert search["required"] == ["query"]
    assert {"query", "limit", "mode", "filter", "group_by", "group_size", "diversity"} <= set(search["properties"])
    assert "max_tokens" in by_name["context"].input_schema["properties"]


def test_search_and_context_answer_as_the_http_routes(url: str) -> None:
    query = "how do I install the software"
    args = {"query": query, "limit": 3, "mode": "hybrid"}
    calls_before = tool_calls(url)
    _, (searched, grouped, ctx, filtered) = session(
        url,
        KEY,
        ("search", args),
        ("search", {"query": query, "limit": 2, "group_by": "doc_id"}),
        ("context", {"query": query, "max_tokens": 120}),
        ("search", {"query": query, "filter": ["chunk_index>=1000"]}),
    )
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
        http_search = c.post("/search", json=args).json()
        http_grouped = c.post("/search", json={"query": query, "limit": 2, "group_by": "doc_id"}).json()
        http_ctx = c.post("/context", json={"query": query, "max_tokens": 120}).json()
    got = payload(searched)
    assert got["mode"] == "hybrid" and 1 <= len(got["hits"]) <= 3
    assert got == http_search
    got_grouped = payload(grouped)
    assert got_grouped == http_grouped
    docs = [h["doc_id"] for h in got_grouped["hits"]]
    assert len(docs) == len(set(docs)) == 2  # one hit per document
    got_ctx = payload(ctx)
    assert got_ctx == http_ctx
    assert got_ctx["citations"] and "[1]" in got_ctx["text"] and got_ctx["tokens"] <= 120
    assert payload(filtered)["hits"] == []  # the filter reached the engine
    assert tool_calls(url) - calls_before == 4  # counted under /mcp with the mode, as the routes are


def tool_calls(url: str) -> float:
    """MCP requests answered 200 that ran a search in mode hybrid, from /metrics."""
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
        metrics = c.get("/metrics").text
    labels = 'method="POST",mode="hybrid",route="/mcp",status="200"'
    found = re.findall(r"retriever_requests_total\{" + re.escape(labels) + r"\} (\S+)", metrics)
    return float(found[0]) if found else 0.0


def test_bad_arguments_are_tool_errors_with_the_routes_messages(url: str) -> None:
    _, results = session(
        url,
        KEY,
        ("search", {"query": "x", "limit": 0}),
        ("search", {"query": "x", "mode": "nonsense"}),
        ("search", {"query": "x", "filter": {"page": {"gte": "many"}}}),
        ("context", {"query": "", "max_tokens": 10}),
        ("search", {"query": "x", "group_size": 3}),  # valid: group_size without group_by is ignored
    )
    *errors, fine = results
    messages = [r.content[0].text for r in errors]
    assert all(r.is_error for r in errors), messages
    assert "limit" in messages[0] and "greater than or equal to 1" in messages[0]
    assert "mode" in messages[1]
    assert "filter" in messages[2] or "page" in messages[2]
    assert "query" in messages[3]
    assert not fine.is_error


def test_the_api_key_guards_the_endpoint(url: str) -> None:
    from mcp.shared.exceptions import MCPError

    for key in (None, "wrong"):
        statuses: list[int] = []
        with pytest.RaisesGroup(MCPError, flatten_subgroups=True):  # the client cannot connect
            session(url, key, statuses=statuses)
        assert statuses and set(statuses) == {401}
    statuses = []
    session(url, KEY, statuses=statuses)
    assert statuses and set(statuses) <= {200, 202}
    with httpx.Client(base_url=url, timeout=60) as c:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        r = c.post("/mcp", json=body, headers={"Accept": "application/json, text/event-stream"})
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert r.headers["X-Request-ID"]


def test_the_endpoint_leaves_the_applications_logging_alone() -> None:
    code = (
        "import logging; from indexer.config import Settings; from retriever.service.mcp_tools import McpEndpoint; "
        "McpEndpoint(Settings()); print(logging.getLogger().handlers)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"  # the SDK's basicConfig added no handler to the root logger


# ------------------------------------------------------------------------------------------- tenant keys

KEY_A, KEY_B, ADMIN = "mcp-key-of-a", "mcp-key-of-b", "mcp-admin-key"
TEXTS = {
    "a": "Amber lighthouse ledgers are audited every Monday by the harbour office of tenant alpha.",
    "b": "Violet submarine soup needs seven onions, says the galley handbook of tenant bravo.",
}


@pytest.fixture(scope="module")
def tenants_url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service with tenant keys (a, b, an admin key); each tenant holds ``notes.txt``, with its own text."""
    from indexer.pipeline import ingest
    from indexer.tenants import TenantStore
    from retriever.service import create_app
    from retriever.service.tenancy import hash_key
    from tests.service_helpers import LiveServer, open_retriever

    root = tmp_path_factory.mktemp("mcp-tenants")
    keys = f"{hash_key(KEY_A)} a;{hash_key(KEY_B)} b;{hash_key(ADMIN)} *"
    s = make_settings(tiny_model_dir, root / "store", tenants={"keys": keys})
    r = open_retriever(s, encoder)
    for tenant, text in TEXTS.items():
        (root / tenant).mkdir()
        (root / tenant / "notes.txt").write_text(text, encoding="utf-8")
        ingest([root / tenant], s, encoder, TenantStore(r.store, "tenant", tenant), progress=False)
    with LiveServer(create_app(r)) as base:
        yield base


@pytest.mark.parametrize(
    ("key", "tenant", "own"),
    [(KEY_A, None, "a"), (KEY_B, None, "b"), (KEY_A, "a", "a"), (ADMIN, "a", "a"), (ADMIN, "b", "b")],
)
def test_tools_answer_for_the_keys_tenant_only(tenants_url: str, key: str, tenant: str | None, own: str) -> None:
    other = "b" if own == "a" else "a"
    query = {"query": "amber lighthouse ledgers and violet submarine soup", "limit": 10, "mode": "dense"}
    fenced = {**query, "filter": {"tenant": other}}  # a client filter naming the other tenant
    _, (found, found_fenced, ctx, ctx_fenced) = session(
        tenants_url,
        key,
        ("search", query),
        ("search", fenced),
        ("context", {**query, "max_tokens": 200}),
        ("context", {**fenced, "max_tokens": 200}),
        tenant=tenant,
    )
    hits = payload(found)["hits"]
    assert hits and {h["doc_id"] for h in hits} == {"notes.txt"}  # the same doc id in both tenants
    assert all(h["text"] in TEXTS[own] for h in hits), hits
    assert payload(found_fenced)["hits"] == []
    got = payload(ctx)
    assert got["citations"] and {c["doc_id"] for c in got["citations"]} == {"notes.txt"}
    assert TEXTS[own].split()[0] in got["text"] and TEXTS[other].split()[0] not in got["text"]
    empty = payload(ctx_fenced)
    assert empty["citations"] == [] and TEXTS[other].split()[0] not in empty["text"]


@pytest.mark.parametrize(
    ("key", "tenant", "status", "detail"),
    [
        (ADMIN, None, 422, "X-Tenant"),  # an admin key names no tenant
        (KEY_A, "b", 403, "not allowed"),  # a tenant's key names another tenant
        (KEY_A, "a/../b", 403, "not allowed"),
        (ADMIN, "a/../b", 422, "tenant"),
        (None, "a", 401, "X-API-Key"),
    ],
)
def test_keys_that_may_not_act_for_the_tenant_are_refused(
    tenants_url: str, key: str | None, tenant: str | None, status: int, detail: str
) -> None:
    from mcp.shared.exceptions import MCPError

    statuses: list[int] = []
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):  # the client cannot even list the tools
        session(tenants_url, key, ("search", {"query": "amber lighthouse"}), statuses=statuses, tenant=tenant)
    assert statuses and set(statuses) == {status}
    headers = {"Accept": "application/json, text/event-stream"}
    headers |= {"X-API-Key": key} if key is not None else {}
    headers |= {"X-Tenant": tenant} if tenant is not None else {}
    call = {"name": "search", "arguments": {"query": "amber lighthouse"}}
    with httpx.Client(base_url=tenants_url, timeout=60) as c:
        r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}, headers=headers)
    assert r.status_code == status and detail in r.json()["detail"]  # refused before the tool ran
