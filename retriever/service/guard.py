"""The service's outermost layer (pure ASGI): the API key, bounded request bodies, and a clean 500.

- **API key**: checked on the headers, before any of the body is read.
- **Body limits**: a declared ``Content-Length`` over the route's limit is refused at once (413); every
  body is also counted as it arrives, with or without ``Content-Length``, and reading stops at the
  limit, so neither memory nor an upload's spool file grows past it whatever a client sends.
- **Unexpected errors**: a JSON 500 whose details stay in the log. The exception does not reach the
  server, so the connection stays usable (uvicorn drops a keep-alive connection when an exception
  escapes the application after its response has started, which Starlette's own 500 does).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
INTERNAL_ERROR = "internal error: the service failed on this request (the details are in its log)"


class BodyTooLarge(HTTPException):
    """A request body over its route's limit (raised while it is read, so nothing past it is kept)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes", headers=CLOSE)


# The rest of a refused body is not read: closing the connection spares the server from draining it.
CLOSE = {"Connection": "close"}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class ServiceGuard:
    """ASGI middleware: ``limit_for(method, path)`` gives each request's body limit in bytes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        open_paths: frozenset[str],
        limit_for: Callable[[str, str], int],
        key_valid: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.key_valid = key_valid  # tenant keys (``retriever.service.tenancy``): replaces ``api_key``
        self.open_paths = open_paths
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_tracked)
                return
            await self.app(scope, _limited(receive, self.limit_for(scope["method"], scope["path"])), send_tracked)
        except Exception as e:
            if started:  # too late for another response: the server closes the connection
                raise
            if isinstance(e, HTTPException):
                response = error_response(e.status_code, str(e.detail), dict(e.headers or {}))
            else:
                logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
                response = error_response(500, INTERNAL_ERROR)
            await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        if (self.key or self.key_valid) and scope["path"] not in self.open_paths:
            given = headers.get(API_KEY_HEADER, "").encode("latin-1")  # the bytes as sent
            valid = self.key_valid(given) if self.key_valid else hmac.compare_digest(given, self.key or b"")
            if not valid:
                return error_response(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")
        declared = headers.get("content-length", "")
        limit = self.limit_for(scope["method"], scope["path"])
        if declared.isdigit() and int(declared) > limit:
            detail = f"the request body ({int(declared)} bytes) is over the limit of {limit} bytes"
            return error_response(413, detail, CLOSE)
        return None


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited
