"""Against a real Qdrant server: run with QDRANT_URL set (e.g. after `docker compose up -d qdrant`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from indexer.encoder import BGEM3Encoder
from indexer.errors import SchemaMismatchError
from indexer.pipeline import ingest
from indexer.schema import CollectionSpec
from indexer.store import open_store
from retriever import Retriever, SearchMode
from tests.helpers import SAMPLES, make_settings

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL"),
]


@pytest.mark.parametrize("grpc", [True, False])
def test_ingest_and_search_on_a_server(tiny_model_dir: Path, encoder: BGEM3Encoder, grpc: bool) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    s = make_settings(
        tiny_model_dir,
        ":memory:",
        qdrant={
            "url": os.environ["QDRANT_URL"],
            "api_key": os.environ.get("QDRANT_API_KEY"),
            "prefer_grpc": grpc,
        },
        collection={"name": name, "colbert_datatype": "float16"},
    )
    store = open_store(s.qdrant, name)
    try:
        first = ingest([SAMPLES], s, encoder, store, progress=False)
        assert store.count() == first.chunks
        ingest([SAMPLES], s, encoder, store, progress=False)
        assert store.count() == first.chunks
        with pytest.raises(SchemaMismatchError):
            store.ensure_collection(CollectionSpec(name=name, dense_dim=1024, colbert_dim=1024))
        r = Retriever(s, encoder=encoder, store=store)
        for mode in SearchMode:
            hits = r.search("неустойка за просрочку", limit=5, mode=mode, filter={"doc_id": "ru/dogovor-postavki.txt"})
            assert hits and {h.doc_id for h in hits} == {"ru/dogovor-postavki.txt"}
    finally:
        store.client.delete_collection(name)
        store.close()
