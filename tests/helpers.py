"""Shared test helpers: paths, settings on the tiny model, and retrievers on every in-process engine.

Test modules import these from here (fixtures live in ``conftest.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.encoder import Encoder

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
ENGINES = ["edge", "local"]
CHUNK_SIZE = 128


def sample_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(SAMPLES.rglob("*")) if p.suffix in (".txt", ".md")]


def make_settings(model_dir: Path, store_path: Path | str, engine: str = "edge", **sections: Any) -> Settings:
    base = Settings().replace(
        model={"name": str(model_dir), "device": "cpu", "batch_size": 8},
        chunking={"chunk_size": CHUNK_SIZE, "chunk_overlap": 16},
        qdrant={"engine": engine, "path": str(store_path)},
        collection={"name": "test_docs", "colbert_datatype": "float32"},
    )
    return base.replace(**sections) if sections else base


@contextlib.contextmanager
def retrievers_on_every_engine(
    model_dir: Path, encoder: Encoder, root: Path, paths: list[Path], **sections: Any
) -> Iterator[dict[str, Any]]:
    """``paths`` indexed into each in-process engine, with a Retriever open on each: {engine: retriever}."""
    from indexer.pipeline import ingest
    from indexer.store import open_store
    from retriever import Retriever

    out = {}
    try:
        for engine in ENGINES:
            s = make_settings(model_dir, root / engine if engine == "edge" else ":memory:", engine, **sections)
            store = open_store(s.qdrant, s.collection.name)
            ingest(paths, s, encoder, store, progress=False)
            out[engine] = Retriever(s, encoder=encoder, store=store)
        yield out
    finally:
        for r in out.values():
            r.close()
