"""The service under hostile input (issue 14): every bad request gets a clear 4xx, bodies are bounded while
they stream, an unexpected error is a clean JSON 500 on a connection that stays usable, and the OpenAPI
schema lists every answer. Real uvicorn on a loopback port, the tiny model, Qdrant Edge."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import Request

from indexer.encoder import BGEM3Encoder
from indexer.versions import DocumentRecord
from retriever.service import create_app
from retriever.service.guard import INTERNAL_ERROR
from retriever.service.state import service_state
from tests.helpers import make_settings
from tests.service_helpers import LiveServer, open_retriever

MAX_UPLOAD = 64 * 1024
MAX_JSON = 32 * 1024
MIN_SHOULD = '{"min_should": {"conditions": [{"key": "page", "match": {"value": 1}}], "min_count": N}}'
LEGACY_SOURCE = "legacy\x00name.txt"  # as an older version stored it: no valid path


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service on Edge holding one record whose source is no valid path (stored before names were checked)."""
    s = make_settings(
        tiny_model_dir,
        tmp_path_factory.mktemp("hard") / "store",
        service={"max_upload_bytes": MAX_UPLOAD, "max_json_bytes": MAX_JSON},
    )
    retriever = open_retriever(s, encoder)
    retriever.store.upsert([DocumentRecord("legacy", LEGACY_SOURCE, "", "0" * 64).point()])
    with LiveServer(create_app(retriever)) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def detail(r: httpx.Response) -> str:
    return r.json()["detail"]


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte for byte (httpx would escape control characters in names)."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--B--\r\n", {"content-type": "multipart/form-data; boundary=B"}


def raw_json(client: httpx.Client, path: str, text: str) -> httpx.Response:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def chunks(client: httpx.Client) -> int:
    return client.get("/collections/test_docs").json()["chunks"]


# ------------------------------------------------------------------------------------------- names and ids


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([("file", "a\x00b.txt", b"hello")], "the file name 'a\\x00b.txt' contains a control character (U+0000)"),
        ([("file", "a\x1b[31m.txt", b"hello")], "U+001B"),
        ([("file", "ok.txt", b"hello"), ("doc_id", None, b"x\x00y")], "doc_id 'x\\x00y' contains a control character"),
        ([("file", "ok.txt", b"hello"), ("doc_id", None, b"two\nlines")], "U+000A"),
    ],
)
def test_names_and_doc_ids_with_control_characters_are_refused(client: httpx.Client, parts: list, message: str) -> None:
    before = chunks(client)
    body, headers = multipart(parts)
    r = client.post("/documents", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert message in detail(r)
    assert chunks(client) == before


def test_a_stored_source_that_is_no_path_breaks_no_delete(client: httpx.Client) -> None:
    r = client.delete("/documents/never-uploaded.txt")
    assert r.status_code == 404 and "never-uploaded.txt" in detail(r)
    body, headers = multipart([("file", "fine.txt", b"A fine document.")])
    assert client.post("/documents", content=body, headers=headers).status_code == 201
    assert client.delete("/documents/fine.txt").json() == {"doc_id": "fine.txt", "deleted": 1}
    assert client.delete("/documents/legacy").json() == {"doc_id": "legacy", "deleted": 0}  # its record goes


# ------------------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ('{"x": NaN}', "metadata.x: nan is not a finite number"),
        ('{"x": Infinity}', "metadata.x: inf is not a finite number"),
        ('{"x": [1, -Infinity]}', "metadata.x[1]: -inf is not a finite number"),
        ('{"x": 1e400}', "metadata.x: inf is not a finite number"),
        ('{"x": 1' + "0" * 31 + "}", "an integer of 103 bits is beyond 64 bits"),
        ('{"x": ' + "9" * 5000 + "}", "metadata is not valid JSON"),  # too long for Python to convert
        ('{"x": ' * 2000 + "1" + "}" * 2000, "nested"),
        ('{"x": ' * 17 + "1" + "}" * 17, "more than 16 levels deep"),
        (json.dumps({"x": "y" * 70_000}), "the limit is 65536"),
        ('{"x": "\\ud800"}', "lone surrogate"),
        ('{"": 1}', "keys must be non-empty"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_metadata_the_store_cannot_hold_is_a_422_with_the_reason(
    client: httpx.Client, metadata: str, message: str
) -> None:
    before = chunks(client)
    r = client.post("/documents", files={"file": ("m.txt", b"Some text.")}, data={"metadata": metadata})
    assert r.status_code == 422, r.text
    assert message in detail(r)
    assert chunks(client) == before


def test_reupload_of_the_same_bytes_updates_the_metadata_without_encoding(client: httpx.Client) -> None:
    text = b"Quarterly zebra audit of the orbital finance desk."

    def upload(name: str, meta: dict) -> httpx.Response:
        return client.post(
            "/documents", files={"file": (name, text)}, data={"doc_id": "same", "metadata": json.dumps(meta)}
        )

    first = upload("same.txt", {"v": 1})
    assert first.status_code == 201 and first.json()["status"] == "indexed"
    again = upload("renamed.txt", {"v": 2, "tags": ["a"]})
    assert again.status_code == 201, again.text
    body = again.json()
    assert body["status"] == "unchanged" and "None" not in again.text
    assert {k: body[k] for k in ("chunks", "tokens", "content_hash")} == {
        k: first.json()[k] for k in ("chunks", "tokens", "content_hash")
    }
    hits = client.post("/search", json={"query": "zebra audit", "filter": {"doc_id": "same"}}).json()["hits"]
    assert len(hits) == body["chunks"]
    assert all(h["metadata"] == {"v": 2, "tags": ["a"]} and h["source"] == "renamed.txt" for h in hits)
    assert client.post("/search", json={"query": "zebra", "filter": {"metadata.v": 1}}).json()["hits"] == []
    assert client.delete("/documents/same").json()["deleted"] == body["chunks"]


# ------------------------------------------------------------------------------------------- searches


def test_every_query_of_a_batch_is_checked_as_a_single_one(client: httpx.Client) -> None:
    not_unicode = "input should be a valid string, unable to parse raw data as a unicode string"
    r = raw_json(client, "/search/batch", '{"queries": ["fine", "bad \\ud800 text"]}')
    assert r.status_code == 422 and detail(r) == f"queries.1: {not_unicode}"
    r = raw_json(client, "/search", '{"query": "bad \\ud800 text"}')
    assert r.status_code == 422 and detail(r) == f"query: {not_unicode}"
    r = client.post("/search/batch", json={"queries": ["fine", "x" * 10_001]})
    assert r.status_code == 422 and detail(r) == "queries.1: string should have at most 10000 characters"
    r = client.post("/search/batch", json={"queries": ["fine", " \n"]})
    assert r.status_code == 422 and detail(r) == "query #2: the query is empty"


@pytest.mark.parametrize("path", ["/search", "/context", "/search/batch"])
@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (MIN_SHOULD.replace("N", "-1"), "min_count"),
        (MIN_SHOULD.replace("N", str(2**64)), "min_count"),
        ('{"page": 18446744073709551616}', "beyond 64 bits"),
        ('{"must": [{"key": "page", "range": {"gte": NaN}}]}', "finite"),
        ('{"page": {"lt": Infinity}}', "finite"),
        ('{"must": [{"key": "page", "values_count": {"gte": -1}}]}', "values_count"),
        ('{"must": [{"has_id": [18446744073709551616]}]}', "point ids are UUIDs"),
        ('{"page": true}', "not booleans"),
        ('{"must": [{"key": "page", "range": {"gte": true}}]}', "booleans only match"),
    ],
)
def test_filter_numbers_are_checked_before_any_engine(client: httpx.Client, path: str, flt: str, message: str) -> None:
    query = '"queries": ["x"]' if path == "/search/batch" else '"query": "x"'
    r = raw_json(client, path, f'{{{query}, "filter": {flt}}}')
    assert r.status_code == 422, r.text
    assert message in detail(r)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "x", "limit": "5"}, "limit: input should be an integer (a JSON number), not a string"),
        ({"query": "x", "limit": True}, "limit: input should be an integer (a JSON number), not a boolean"),
        ({"query": "x", "limit": 5.5}, "limit: input should be a valid integer, got a number with a fractional part"),
        ({"query": "x", "max_tokens": "100"}, "max_tokens: input should be an integer (a JSON number), not a string"),
        ({"query": "x", "max_tokens": None}, "max_tokens: input should be an integer (a JSON number), not null"),
    ],
)
def test_limits_are_json_integers_not_coerced(client: httpx.Client, body: dict, message: str) -> None:
    r = client.post("/context", json=body)
    assert r.status_code == 422 and detail(r) == message
    assert client.post("/context", json={"query": "x", "limit": 2.0}).status_code == 200  # JSON Schema's integer


def test_error_texts_say_what_was_wrong_without_internals(client: httpx.Client) -> None:
    for body in (
        {"query": "x", "filter": {"must": [{"nonsense": 1}]}},
        {"query": "x", "filter": 5},
        {"query": 5},
        {"queries": "not a list"},
    ):
        text = detail(client.post("/search", json=body))
        assert text and not any(s in text for s in ("pydantic", "input_value", "[type=", "dict[", "list[", "\n"))
    assert detail(client.post("/search", json={"query": "x", "filter": 5})) == (
        "filter: input should be a valid dictionary or input should be a valid list or input should be a valid string"
    )
    r = client.post("/search", content=b'{"query": "x"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in detail(r)
    r = client.post("/documents", json={"file": "x"})
    assert r.status_code == 415 and "multipart/form-data" in detail(r)


# ------------------------------------------------------------------------------------------- bodies


def test_a_json_body_over_the_limit_is_refused(client: httpx.Client) -> None:
    big = {"query": "x", "filter": {"doc_id": "y" * MAX_JSON}}
    r = client.post("/search", json=big)  # with Content-Length: refused before it is read
    assert r.status_code == 413 and f"over the limit of {MAX_JSON} bytes" in detail(r)
    assert client.get("/healthz").status_code == 200


def test_a_chunked_body_is_cut_at_the_limit_on_a_real_connection(url: str) -> None:
    """Without Content-Length: the server stops reading at the limit and closes; the client's upload stops."""
    sent = 0
    total = 64 * 1024 * 1024

    def body(prefix: bytes) -> Iterator[bytes]:
        nonlocal sent
        yield prefix
        while sent < total:
            sent += 64 * 1024
            yield b"a" * (64 * 1024)

    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
    with httpx.Client(base_url=url, timeout=60) as c:
        for path, prefix, ctype in (
            ("/documents", head, "multipart/form-data; boundary=B"),
            ("/search", b'{"query": "', "application/json"),
        ):
            sent = 0
            try:
                r = c.post(path, content=body(prefix), headers={"content-type": ctype})
                assert r.status_code == 413, r.text
            except httpx.TransportError:
                pass  # the server closed while the client was still sending: also a refusal
            assert sent < total // 4, f"{path}: the server read {sent} bytes of an endless body"
        assert c.get("/healthz").status_code == 200


def test_bodies_are_counted_as_they_arrive_and_reading_stops_at_the_limit(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    """In-process, message by message: the app never pulls more than the limit plus one chunk."""
    s = make_settings(tiny_model_dir, tmp_path / "store", service={"max_upload_bytes": MAX_UPLOAD})
    app = create_app(open_retriever(s, encoder))
    chunk = 16 * 1024
    pulled = {"bytes": 0}

    async def endless(prefix: bytes) -> AsyncIterator[bytes]:
        yield prefix
        for _ in range(100_000):
            pulled["bytes"] += chunk
            yield b"a" * chunk

    async def run() -> list[httpx.Response]:
        out = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc", timeout=60) as c:
                head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
                for path, prefix, ctype in (
                    ("/documents", head, "multipart/form-data; boundary=B"),
                    ("/search/batch", b'{"queries": ["', "application/json"),
                ):
                    pulled["bytes"] = 0
                    r = await c.post(path, content=endless(prefix), headers={"content-type": ctype})
                    out.append((r, pulled["bytes"]))
        return out

    (upload, upload_read), (batch, batch_read) = asyncio.run(run())
    upload_limit = MAX_UPLOAD + 256 * 1024
    assert upload.status_code == 413 and upload.headers["connection"] == "close"
    assert upload_limit <= upload_read <= upload_limit + chunk
    json_limit = s.service.max_json_bytes
    assert batch.status_code == 413 and f"over the limit of {json_limit} bytes" in batch.json()["detail"]
    assert json_limit <= batch_read <= json_limit + chunk


# ------------------------------------------------------------------------------------------- 500


def test_an_unexpected_error_is_a_clean_500_and_the_connection_stays_usable(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store")
    retriever = open_retriever(s, encoder)
    app = create_app(retriever)
    failures = ["boom: secret internal detail"]

    def failing_once(request: Request) -> object:  # a fault injected where routes get the service
        if failures:
            raise RuntimeError(failures.pop())
        return request.app.state.service

    app.dependency_overrides[service_state] = failing_once
    with caplog.at_level(logging.ERROR), LiveServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r1 = c.post("/search", json={"query": "anything"})
        assert r1.status_code == 500 and r1.json() == {"detail": INTERNAL_ERROR}
        assert r1.headers.get("connection") != "close"
        r2 = c.post("/search", json={"query": "anything"})  # the same keep-alive connection
        assert r2.status_code == 200 and r2.json()["hits"] == []
        local = [r.extensions["network_stream"].get_extra_info("client_addr") for r in (r1, r2)]
        assert local[0] == local[1]
        assert "secret internal detail" in caplog.text  # the details are in the log, not in the answer

        # A failing store: 503, its message (paths, engine text) in the log only.
        retriever.store.close()
        r = c.post("/search", json={"query": "anything"})
        assert r.status_code == 503 and "vector store" in detail(r) and "not open" not in detail(r)
        r = c.get("/readyz")
        assert r.status_code == 503 and "not ready" in detail(r)
        assert "is not open" in caplog.text


# ------------------------------------------------------------------------------------------- schema


def test_the_openapi_schema_lists_every_answer_with_a_string_detail(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "string"
    expected = {
        ("get", "/healthz"): {"200", "413", "500"},
        ("get", "/readyz"): {"200", "413", "500", "503"},
        ("post", "/search"): {"200", "400", "413", "415", "422", "500", "503"},
        ("post", "/search/batch"): {"200", "400", "413", "415", "422", "500", "503"},
        ("post", "/context"): {"200", "400", "413", "415", "422", "500", "503"},
        ("post", "/documents"): {"201", "400", "409", "413", "415", "422", "500", "503"},
        ("delete", "/documents/{doc_id}"): {"200", "404", "409", "413", "500", "503"},
        ("get", "/collections/{name}"): {"200", "404", "413", "500", "503"},
        ("get", "/metrics"): {"200", "413", "500"},
        ("post", "/documents/delete"): {"200", "400", "409", "413", "415", "422", "500", "503"},
        ("post", "/documents/metadata"): {"200", "400", "404", "409", "413", "415", "422", "500", "503"},
    }
    found = {(m, p): set(op["responses"]) for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert found == expected
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    for (method, path), codes in expected.items():
        responses = spec["paths"][path][method]["responses"]
        for code in codes:
            if (path, code) == ("/metrics", "200"):
                continue
            ref = responses[code]["content"]["application/json"]["schema"].get("$ref", "")
            assert code < "400" or ref.endswith("/ErrorResponse"), (method, path, code)
            assert code >= "400" or ref, (method, path, code)  # every success has a response model
    assert "security" not in spec["paths"]["/search"]["post"]  # no key, no scheme
