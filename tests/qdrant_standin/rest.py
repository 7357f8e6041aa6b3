"""The stand-in's REST side: Qdrant's routes, envelope, error bodies and JSON body limit."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from qdrant_client import models

from tests.qdrant_standin.core import Call, QdrantStandIn, ServerError, as_json

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/$"), "health"),
    ("GET", re.compile(r"^/collections$"), "list"),
    ("GET", re.compile(r"^/collections/(?P<c>[^/]+)/exists$"), "exists"),
    ("GET", re.compile(r"^/collections/(?P<c>[^/]+)$"), "get"),
    ("PUT", re.compile(r"^/collections/(?P<c>[^/]+)$"), "create"),
    ("DELETE", re.compile(r"^/collections/(?P<c>[^/]+)$"), "delete_collection"),
    ("PUT", re.compile(r"^/collections/(?P<c>[^/]+)/index$"), "create_index"),
    ("PUT", re.compile(r"^/collections/(?P<c>[^/]+)/points$"), "upsert"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points/delete$"), "delete"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points/query/batch$"), "query_batch"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points/query/groups$"), "query_groups"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points/count$"), "count"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points/scroll$"), "scroll"),
    ("POST", re.compile(r"^/collections/(?P<c>[^/]+)/points$"), "retrieve"),
]


def _rest_args(op: str, collection: str | None, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    write = {"wait": query.get("wait") == "true", "ordering": query.get("ordering")}
    if op in ("health", "list"):
        return {}
    if op in ("exists", "get", "delete_collection"):
        return {"collection": collection}
    if op == "create":
        create = models.CreateCollection.model_validate(body)
        names = {"vectors": "vectors_config", "sparse_vectors": "sparse_vectors_config"}
        return {"collection": collection, **{names.get(k, k): getattr(create, k) for k in create.model_fields_set}}
    if op == "create_index":
        schema = body["field_schema"]
        if isinstance(schema, dict):  # index params: {"type": "keyword", "is_tenant": true, ...}
            schema = "tenant" if schema.get("is_tenant") else schema["type"]
        return {"collection": collection, "field_name": body["field_name"], "schema": schema, **write}
    if op == "upsert":
        points = [models.PointStruct.model_validate(p) for p in body["points"]]
        return {"collection": collection, "points": points, **write}
    if op == "delete":
        return {"collection": collection, "selector": models.FilterSelector.model_validate(body), **write}
    if op == "query_batch":
        searches = models.QueryRequestBatch.model_validate(body).searches
        return {"collection": collection, "searches": searches}
    if op == "query_groups":
        body = dict(body)
        group_by, group_size = body.pop("group_by"), body.pop("group_size", 3)
        return {
            "collection": collection,
            "query": models.QueryRequest.model_validate(body),
            "group_by": group_by,
            "group_size": group_size,
        }
    if op == "count":
        req = models.CountRequest.model_validate(body)
        return {"collection": collection, "filter": req.filter}
    if op == "scroll":
        req = models.ScrollRequest.model_validate(body)
        return {
            "collection": collection,
            "filter": req.filter,
            "limit": req.limit,
            "offset": req.offset,
            "with_vectors": req.with_vector,
        }
    req = models.PointRequest.model_validate(body)
    return {"collection": collection, "ids": req.ids, "with_vectors": req.with_vector}


def _restas_json(op: str, value: Any) -> Any:
    if op == "list":
        return {"collections": [{"name": n} for n in value]}
    if op == "exists":
        return {"exists": value}
    if op == "scroll":
        records, offset = value
        return {"points": as_json(records), "next_page_offset": offset}
    if op == "query_batch":
        return [{"points": as_json(r.points)} for r in value]
    return as_json(value)


class RestHandler(BaseHTTPRequestHandler):
    server_standin: QdrantStandIn

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: Any = None, raw: bytes | None = None, headers: dict | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/html")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._answer(status, {"status": {"error": message}, "time": 0.0})

    def _handle(self, method: str) -> None:
        standin = self.server_standin
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body_bytes = self.rfile.read(length) if length else b""
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        routed = [(op, m) for verb, pattern, op in _ROUTES if verb == method and (m := pattern.match(url.path))]
        if not routed:
            self._error(404, f"no route {method} {url.path}")
            return
        op, m = routed[0]
        if standin.garbage.get(op):
            self._answer(200, raw=standin.garbage[op].pop(0))
            return
        if length > standin.max_request_bytes:  # actix-web's JSON limit, answered as Qdrant does
            standin.calls.append(Call(op, "rest", {}, length))
            self._error(
                400, f"JSON payload ({length} bytes) is larger than allowed (limit: {standin.max_request_bytes} bytes)."
            )
            return
        try:
            args = _rest_args(op, m.groupdict().get("c"), json.loads(body_bytes) if body_bytes else {}, query)
            value = standin.run(op, "rest", length, self.headers.get("api-key"), **args)
        except ServerError as e:
            f = e.fault
            if f.raw_body is not None:
                self._answer(f.status, raw=f.raw_body, headers=f.headers)
            else:
                self._answer(f.status, {"status": {"error": f.message}, "time": 0.0}, headers=f.headers)
            return
        if op == "health":
            self._answer(200, as_json(value))
            return
        self._answer(200, {"result": _restas_json(op, value), "status": "ok", "time": 0.0})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
