"""Metrics, request ids and logs: /metrics scraped before and after real requests to the real service."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.encoder import BGEM3Encoder
from retriever.service import create_app
from retriever.service.observability import JsonFormatter, RequestIdFilter, configure_logging
from tests.helpers import SAMPLES, make_settings
from tests.service_helpers import LiveServer, open_retriever, serve

KEY = "metrics-key"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(c: httpx.Client, headers: dict[str, str] | None = None) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics", headers=headers or {"X-API-Key": KEY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = make_settings(tiny_model_dir, tmp_path_factory.mktemp("obs") / "store")
    with serve(s, encoder, [SAMPLES / "en"], api_key=KEY) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
        yield c


def test_requests_latency_encoding_and_ingest_are_counted(client: httpx.Client) -> None:
    before = scrape(client)
    assert client.post("/search", json={"query": "install the software", "mode": "dense"}).status_code == 200
    assert client.post("/search/batch", json={"queries": ["a", "b", "c"]}).status_code == 200
    assert client.post("/search", json={"query": "x", "limit": 0}).status_code == 422
    assert client.post("/search", json={"query": "x"}, headers={"X-API-Key": "wrong"}).status_code == 401
    text = "Observability counts uploads. " * 40
    r = client.post("/documents", files={"file": ("obs.txt", text.encode())}, data={"doc_id": "obs"})
    assert r.status_code == 201
    chunks = r.json()["chunks"]
    assert (
        client.post("/documents", files={"file": ("obs.txt", text.encode())}, data={"doc_id": "obs"}).json()["status"]
        == "unchanged"
    )
    assert client.delete("/documents/obs").status_code == 200
    assert client.delete("/documents/obs").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "POST", "status": "200"}
    assert moved("retriever_requests_total", route="/search", mode="dense", **ok) == 1
    assert moved("retriever_requests_total", route="/search/batch", mode="hybrid", **ok) == 1
    assert moved("retriever_request_duration_seconds_count", route="/search", mode="dense", **ok) == 1
    assert moved("retriever_request_duration_seconds_sum", route="/search", mode="dense", **ok) > 0
    # A request refused before a route runs has no mode; one refused by the key has no route either.
    assert moved("retriever_requests_total", route="/search", method="POST", mode="", status="422") == 1
    assert moved("retriever_requests_total", route="unmatched", method="POST", mode="", status="401") == 1
    assert moved("retriever_requests_total", route="/documents/{doc_id:path}", method="DELETE", mode="", status="404")
    assert moved("retriever_queries_encoded_total") == 4  # the single query and the batch of three
    assert 1 <= moved("retriever_query_encode_seconds_count") <= 2  # the batch is one model call
    assert moved("retriever_query_encode_seconds_sum") > 0
    assert moved("retriever_model_wait_seconds_count", kind="query") >= 1
    assert moved("retriever_model_wait_seconds_count", kind="upload") >= 1
    assert moved("retriever_documents_ingested_total", status="ok") == 1
    assert moved("retriever_documents_ingested_total", status="unchanged") == 1
    assert chunks >= 2 and moved("retriever_chunks_ingested_total") == chunks
    assert moved("retriever_documents_deleted_total") == 1
    for queue in ("queries", "model", "writes"):  # nothing waits between requests
        assert (("retriever_queue_depth", (("queue", queue),))) in after
        assert value(after, "retriever_queue_depth", queue=queue) == 0


def test_metrics_need_the_key_unless_open(client: httpx.Client, url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        r = anonymous.get("/metrics")
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    spec = client.get("/openapi.json").json()
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_request_ids_in_headers_and_log_lines(client: httpx.Client) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("retriever.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        given = client.post("/search", json={"query": "x"}, headers={"X-Request-ID": "trace-42:a.b_c"})
        made = client.post("/search", json={"query": "x"})
        refused = client.post("/search", json={"query": "x"}, headers={"X-Request-ID": "bad id\twith spaces"})
        too_long = client.get("/healthz", headers={"X-Request-ID": "a" * 129})
        unauthorized = client.get("/metrics", headers={"X-API-Key": "", "X-Request-ID": "who-asks"})
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    assert given.headers["X-Request-ID"] == "trace-42:a.b_c"
    ids = [r.headers["X-Request-ID"] for r in (made, refused, too_long)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 3  # made here, each its own
    assert unauthorized.status_code == 401 and unauthorized.headers["X-Request-ID"] == "who-asks"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["trace-42:a.b_c", *ids[:2], ids[2], "who-asks"]
    assert lines[0]["logger"] == "retriever.access" and lines[0]["level"] == "INFO"
    assert "POST /search 200" in lines[0]["message"] and "GET /metrics 401" in lines[-1]["message"]


def test_configured_logging_writes_the_request_id_in_text_and_json(caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for fmt in ("text", "json"):
            handler = configure_logging(fmt, "info")
            stream = io.StringIO()
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(stream)
            logging.getLogger("retriever.test").info("hello %s", "there")
            line = stream.getvalue().strip()
            if fmt == "json":
                record = json.loads(line)
                assert record["message"] == "hello there" and record["request_id"] == "-"
                assert record["logger"] == "retriever.test" and record["level"] == "INFO"
            else:
                assert line.endswith("INFO retriever.test [-] hello there")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_store_errors_are_counted_and_open_metrics_need_no_key(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store", service={"open_metrics": True})
    retriever = open_retriever(s, encoder)
    with LiveServer(create_app(retriever, api_key="k")) as url, httpx.Client(base_url=url, timeout=60) as c:
        before = scrape(c, headers={})  # no key needed
        assert c.post("/search", json={"query": "x"}).status_code == 401  # the other routes still need it
        retriever.store.close()  # the store fails from now on
        r = c.post("/search", json={"query": "anything"}, headers={"X-API-Key": "k"})
        assert r.status_code == 503
        after = scrape(c, headers={})
    errors = {k: v for k, v in after.items() if k[0] == "retriever_store_errors_total"}
    assert sum(errors.values()) - sum(v for k, v in before.items() if k[0] == "retriever_store_errors_total") == 1
    assert value(after, "retriever_requests_total", route="/search", method="POST", mode="hybrid", status="503") == 1
