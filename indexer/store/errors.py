"""How qdrant-client's exceptions (REST, gRPC, local mode) become this project's store errors.

One table decides for both transports. Qdrant maps each of its errors to an HTTP status
(``src/actix/helpers.rs``) and to a gRPC code (``lib/storage/src/content_manager/conversions.rs``); a
row here takes a REST status and the gRPC code the server sends for the same error, so a failure is
retried, or not, whichever transport carried it. The server's own reason is kept: the REST body's
``status.error`` ("Wrong input: ...") or the gRPC status details.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from indexer.errors import StoreError, StoreRequestError, TransientStoreError

Outcome = Literal["retry", "refused", "failed"]


@dataclass(frozen=True, slots=True)
class Rule:
    rest: tuple[int, ...]
    grpc: tuple[str, ...]
    outcome: Outcome
    hint: str = ""  # how to fix it, added to the message


RULES: tuple[Rule, ...] = (
    Rule((408,), ("DEADLINE_EXCEEDED",), "retry"),  # the server's or the client's timeout
    Rule((429,), ("RESOURCE_EXHAUSTED",), "retry"),  # rate limited
    Rule((500,), ("INTERNAL",), "retry"),  # Qdrant's ServiceError: e.g. a replica that failed to apply a write
    Rule((502, 503, 504), ("UNAVAILABLE",), "retry"),  # a proxy, a shard unavailable, a server restarting
    Rule((400, 413, 422), ("INVALID_ARGUMENT", "OUT_OF_RANGE"), "refused"),  # "Wrong input", validation, size
    Rule((401, 403), ("UNAUTHENTICATED", "PERMISSION_DENIED"), "failed", "is QDRANT_API_KEY right?"),
    Rule((404,), ("NOT_FOUND",), "failed"),
    Rule((409,), ("ALREADY_EXISTS",), "failed"),
    Rule((507,), (), "failed", "the server is out of disk space"),  # gRPC: see INSUFFICIENT_STORAGE
)
_BY_STATUS = {status: rule for rule in RULES for status in rule.rest}
_BY_CODE = {code: rule for rule in RULES for code in rule.grpc}
# Qdrant's gRPC marks a full disk (REST 507) on RESOURCE_EXHAUSTED, which it shares with rate limiting.
INSUFFICIENT_STORAGE = "qdrant-insufficient-storage"
UNREADABLE_GRPC = "Exception deserializing response!"  # grpcio's details for a reply it cannot decode
MAX_REASON = 500  # characters of a server's reason kept in a message


@dataclass(frozen=True, slots=True)
class Failure:
    """One classified failure: what to do, and what the server (or the connection) said."""

    outcome: Outcome
    reason: str
    retry_after: float | None = None
    hint: str = ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _rest_reason(content: bytes) -> str:
    """Qdrant answers errors as ``{"status": {"error": "..."}}``; a proxy may answer anything."""
    try:
        body = json.loads(content)
        error = body["status"]["error"]
        if isinstance(error, str):
            return error
    except (ValueError, KeyError, TypeError):
        pass
    return content.decode("utf-8", "replace") or "(empty body)"


def _grpc_failure(e: BaseException) -> Failure | None:
    import grpc

    if not isinstance(e, grpc.RpcError) or not hasattr(e, "code"):
        return None
    code = e.code()
    name = code.name if code is not None else "UNKNOWN"
    details = e.details() if hasattr(e, "details") else None
    reason = f"gRPC {name}: {details or '(no details)'}"
    trailing = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    keys = {item[0] for item in trailing or ()}
    if name == "RESOURCE_EXHAUSTED" and INSUFFICIENT_STORAGE in keys:
        return Failure("failed", reason, hint="the server is out of disk space")
    if name == "INTERNAL" and details == UNREADABLE_GRPC:  # grpcio's own code: the reply could not be decoded
        return Failure("failed", f"unreadable response ({reason})")
    rule = _BY_CODE.get(name)
    return Failure(rule.outcome, reason, hint=rule.hint) if rule else Failure("failed", reason)


def classify(e: BaseException) -> Failure:
    """The outcome of one failed call, from the exception qdrant-client (or the network) raised."""
    import httpx
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        status = e.status_code
        reason = f"HTTP {status} {e.reason_phrase}: {_rest_reason(e.content)}".strip()
        rule = _BY_STATUS.get(status) if status is not None else None
        return Failure(rule.outcome, reason, hint=rule.hint) if rule else Failure("failed", reason)
    if isinstance(e, ResourceExhaustedResponse):  # 429 / RESOURCE_EXHAUSTED with a Retry-After, either transport
        return Failure("retry", f"rate limited: {e.message}", float(e.retry_after_s))
    grpc_failure = _grpc_failure(e)
    if grpc_failure is not None:
        return grpc_failure
    if isinstance(e, ResponseHandlingException):  # the request never got an answer, or one the client cannot read
        source = e.source
        if isinstance(source, (httpx.TransportError, ConnectionError, TimeoutError)):
            return Failure("retry", f"{type(source).__name__}: {source}")
        return Failure("failed", f"unreadable response ({type(source).__name__}: {source})")
    if isinstance(e, (httpx.TransportError, ConnectionError, TimeoutError)):
        return Failure("retry", f"{type(e).__name__}: {e}")
    return Failure("failed", f"{type(e).__name__}: {e}")  # local mode's ValueError, a JSON decode error, ...


def already_exists(e: BaseException) -> bool:
    """The server says the thing being created exists (REST 409, gRPC ALREADY_EXISTS): another writer made it."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        return e.status_code == 409
    code = getattr(e, "code", None)
    return callable(code) and getattr(code(), "name", None) == "ALREADY_EXISTS"


def is_transient(e: BaseException) -> bool:
    """Worth a retry: the connection, a timeout, an overloaded, failing or restarting server."""
    return classify(e).outcome == "retry"


def store_error(e: Exception, what: str) -> StoreError:
    """``what failed: reason`` as the error class its outcome calls for."""
    failure = classify(e)
    message = f"{what} failed: {_short(failure.reason)}" + (f"; {failure.hint}" if failure.hint else "")
    if failure.outcome == "retry":
        return TransientStoreError(message, failure.retry_after)
    if failure.outcome == "refused":
        return StoreRequestError(message)
    return StoreError(message)
