"""One place that wires a run from ``Settings``: the store first, then the model.

The order is on purpose: an unreachable server, a missing collection or an embedded store held by
another process fails in a moment, before minutes of model loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from indexer.config import Settings
from indexer.encoder import BGEM3Encoder, Encoder
from indexer.schema import CollectionInfo, CollectionSpec
from indexer.store import Store, open_store

Purpose = Literal["write", "read", "serve"]


def load_encoder(settings: Settings) -> BGEM3Encoder:
    """The configured model, for chunks of the configured size."""
    return BGEM3Encoder(settings.model, settings.chunking.chunk_size, colbert=settings.collection.colbert)


def collection_spec(settings: Settings, encoder: Encoder) -> CollectionSpec:
    """The collection this configuration and model make."""
    return CollectionSpec.for_model(
        settings.collection, encoder.dense_dim, encoder.colbert_dim, settings.chunking.chunk_size
    )


@dataclass(slots=True)
class Runtime:
    """An open store and a model, wired from one ``Settings``; closing it closes the store."""

    settings: Settings
    store: Store
    encoder: Encoder
    info: CollectionInfo | None = None  # the collection as opened (purposes "read" and "serve")

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_runtime(
    settings: Settings,
    purpose: Purpose = "write",
    *,
    encoder: Encoder | None = None,
    store: Store | None = None,
) -> Runtime:
    """Open the store, check it for ``purpose``, then load the model (unless one is given).

    - ``write``: the store must be usable now (reachable, not held elsewhere); the run creates or checks
      the collection itself.
    - ``read``: the collection must exist.
    - ``serve``: like read, but an empty collection is created when there is none yet.
    """
    store = store or open_store(settings.qdrant, settings.collection.name)
    try:
        info = None
        if purpose == "read":
            info = store.open_collection()
        else:
            store.check_available()
        encoder = encoder or load_encoder(settings)
        if purpose == "serve":
            store.ensure_collection(collection_spec(settings, encoder))
            info = store.open_collection()
    except BaseException:
        store.close()
        raise
    return Runtime(settings, store, encoder, info)
