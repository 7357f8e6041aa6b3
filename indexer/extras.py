"""Optional dependencies (pyproject extras): a missing one is a clear error naming the extra to install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from indexer.errors import ConfigError


@contextmanager
def needs(extra: str, what: str) -> Iterator[None]:
    """Turn a missing module inside the block into ``ConfigError`` saying which extra brings it."""
    try:
        yield
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"{what} needs the optional dependencies '{extra}' ({e.name} is not installed): "
            f"pip install 'm3-qdrant-rag[{extra}]' (make setup installs every extra)"
        ) from e
