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
    url: str, key: str | None, calls: list[tuple[str, dict[str, Any]]], statuses: list[int] | None = None
) -> tuple[list[Any], list[Any]]:
    """List the tools, then make ``calls`` in one client session; returns (tools, results). ``statuses``
    collects the HTTP status of every answer the client got."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def seen(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    headers = {"X-API-Key": key} if key is not None else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [seen]})
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        tools = (await client.list_tools()).tools
        results = [await client.call_tool(name, args) for name, args in calls]
    return list(tools), results


def session(
    url: str, key: str | None, *calls: tuple[str, dict[str, Any]], statuses: list[int] | None = None
) -> tuple[list[Any], list[Any]]:
    return asyncio.run(_session(url, key, list(calls), statuses))


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
