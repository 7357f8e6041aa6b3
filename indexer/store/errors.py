"""How qdrant-client's exceptions (REST, gRPC, local mode) become this project's store errors."""

from __future__ import annotations

from indexer.errors import StoreError, TransientStoreError

_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def is_transient(e: BaseException) -> bool:
    """Errors worth a retry: the connection, a timeout, an overloaded or restarting server."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        return e.status_code is not None and (e.status_code >= 500 or e.status_code == 429)
    if isinstance(e, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import grpc

        if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
            return e.code().name in _TRANSIENT_GRPC
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        pass
    import httpx

    return isinstance(e, httpx.TransportError)


def store_error(e: Exception, what: str) -> StoreError:
    """``what failed: Type: reason``, transient or not."""
    cls = TransientStoreError if is_transient(e) else StoreError
    return cls(f"{what} failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
