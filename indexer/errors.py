"""One error family for the whole package: the CLI turns any of them into one clear line."""


class IndexerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(IndexerError):
    """The configuration file, environment or flags are invalid."""


class LoaderError(IndexerError):
    """A source file could not be read or decoded."""


class InvalidInputError(IndexerError):
    """A value a caller gave (document id, file name, metadata) cannot be stored as it is."""


class ChunkingError(IndexerError):
    """A text could not be split within the token budget."""


class ModelLoadError(IndexerError):
    """The embedding model could not be loaded."""


class EncodingError(IndexerError):
    """The model failed on some input, or would have truncated it."""


class StoreError(IndexerError):
    """The vector store failed or is unreachable."""


class SchemaMismatchError(StoreError):
    """An existing collection does not match the configured vectors."""


class QueryError(IndexerError):
    """A search request is invalid (unknown mode, malformed filter, ...)."""


class StoreRequestError(StoreError):
    """The store refused the request itself (HTTP 400/413/422, gRPC INVALID_ARGUMENT): sending it again cannot help."""


class TransientStoreError(StoreError):
    """A store error worth retrying (connection lost, timeout, overload, a server restarting)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds the server asked the client to wait (429 Retry-After), if any


class DocumentBusy(IndexerError):
    """Another live writer holds the document's lease (see ``indexer.leases``); try again once it is done."""


class LeaseLost(IndexerError):
    """This run's lease on a document lapsed (it was not renewed in time); the run must not change it any more."""
