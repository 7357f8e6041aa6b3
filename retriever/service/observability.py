"""What the service tells operators: Prometheus metrics, a request id on every answer and log line, JSON logs.

- ``Metrics``: one registry per app (several apps in one process, as in tests, never collide).
- ``RequestContext`` (pure ASGI, outermost): takes the client's ``X-Request-ID`` when it is sane (1 to 128
  characters of letters, digits and ``._:-``) or makes one, returns it on the answer, keeps it for the
  request's log lines, writes one access-log line and counts the request by route, method, mode, status.
- ``configure_logging``: text or JSON lines, each with the request id ("-" outside requests).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What the running request has said about itself (its id; the search mode once a route knows it). A dict, so
# that a route's note is seen by the middleware that made it (and by worker threads, which copy the context).
_CURRENT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("retriever_request", default=None)

access_log = logging.getLogger("retriever.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def request_id() -> str:
    """The running request's id, or "-" outside a request."""
    current = _CURRENT.get()
    return current["id"] if current else "-"


def note(**fields: str) -> None:
    """Tell the metrics about the running request (e.g. ``mode``)."""
    current = _CURRENT.get()
    if current is not None:
        current.update(fields)


class Metrics:
    """The service's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ["route", "method", "mode", "status"]
        r = self.registry
        self.requests = Counter("retriever_requests", "HTTP requests answered", labels, registry=r)
        self.latency = Histogram(
            "retriever_request_duration_seconds", "Time to answer", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.encode = Histogram(
            "retriever_query_encode_seconds",
            "Model time of one query-encoding call (several queries may share one)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.encoded = Counter("retriever_queries_encoded", "Queries encoded", registry=r)
        self.model_wait = Histogram(
            "retriever_model_wait_seconds",
            "Time a model call waited for its turn (query: other queries; upload: queries first)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "retriever_queue_depth", "Work waiting: queries for the model, writes", ["queue"], registry=r
        )
        self.documents = Counter(
            "retriever_documents_ingested", "Uploaded documents by outcome", ["status"], registry=r
        )
        self.chunks = Counter("retriever_chunks_ingested", "Chunks encoded and written by uploads", registry=r)
        self.deleted = Counter("retriever_documents_deleted", "Documents deleted", registry=r)
        self.store_errors = Counter(
            "retriever_store_errors", "Vector store failures that reached a request", ["error"], registry=r
        )

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def watch(self, retriever: Any, writes: Callable[[], int]) -> None:
        """Hook into an ``AsyncRetriever``: model time and waits as they happen, queue depths when scraped."""
        encoder = retriever.encoder

        def on_query(texts: int, seconds: float) -> None:
            self.encode.observe(seconds)
            self.encoded.inc(texts)

        encoder.on_query = on_query
        encoder.scheduler.on_wait = lambda kind, seconds: self.model_wait.labels(kind).observe(seconds)
        # queries: texts waiting for a model call; model: query calls waiting for the model; writes:
        # uploads and deletes waiting for the write lock or holding it.
        self.queue.labels("queries").set_function(lambda: len(retriever.batcher.pending))
        self.queue.labels("model").set_function(lambda: encoder.scheduler.queries)
        self.queue.labels("writes").set_function(writes)

    def store_error(self, exc: BaseException) -> None:
        self.store_errors.labels(type(exc).__name__).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"  # never the raw path: its values are unbounded


class RequestContext:
    """ASGI middleware: request id, access log line and request metrics (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        info = {"id": given if _SANE_ID.match(given) else uuid.uuid4().hex, "mode": ""}
        token = _CURRENT.set(info)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = info["id"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            labels = (_route(scope), scope["method"], info["mode"], str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(seconds)
            access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000)
            _CURRENT.reset(token)


# ------------------------------------------------------------------------------------------- logging


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(log_format: str = "text", level: str | int = "INFO") -> logging.Handler:
    """The root logger writes every line (the service's, uvicorn's, the libraries') with the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through the root handler, not their own
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler
