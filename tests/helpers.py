"""Shared test helpers: paths, settings on the tiny model, and retrievers on every in-process engine.

Test modules import these from here (fixtures live in ``conftest.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexer.config import Settings
from indexer.encoder import Encoder
from indexer.models import PointRecord, SparseVec
from indexer.store import Store

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


def stored_points(store: Store) -> dict[str, tuple]:
    """Every point of the store's collection: its payload and vectors, exactly as stored."""
    ids = [p.id for p in store.scroll()]
    out = {}
    for p in store.retrieve(ids, with_vectors=True):
        vectors = {}
        for name, v in p.vectors.items():
            if hasattr(v, "indices"):
                vectors[name] = (tuple(v.indices), np.asarray(v.values, dtype=np.float32))
            else:
                vectors[name] = np.asarray(v, dtype=np.float32)
        out[p.id] = (p.payload, vectors)
    return out


def assert_same(got: dict, want: dict) -> None:
    """Same ids and payloads exactly; same vectors up to batch-order float noise.

    A chunk encoded in another batch (other neighbours, other padding) gets float32 vectors that
    differ in the last bits, which float16 storage can round one step apart: 1e-3 covers that and
    nothing else (distinct chunks differ by orders of magnitude more).
    """
    assert got.keys() == want.keys(), f"{len(got.keys() - want.keys())} extra, {len(want.keys() - got.keys())} missing"
    for pid, (payload, vectors) in want.items():
        got_payload, got_vectors = got[pid]
        assert got_payload == payload, f"point {pid}: payload differs"
        assert got_vectors.keys() == vectors.keys(), f"point {pid}: vector names differ"
        for name, v in vectors.items():
            g = got_vectors[name]
            if isinstance(v, tuple):
                assert g[0] == v[0], f"point {pid}: sparse indices differ"
                np.testing.assert_allclose(g[1], v[1], rtol=1e-4, atol=1e-5, err_msg=f"point {pid}: {name}")
            else:
                assert g.shape == v.shape, f"point {pid}: {name} shape differs"
                np.testing.assert_allclose(g, v, atol=1e-3, err_msg=f"point {pid}: {name}")


def small_points(n: int, start: int = 0) -> list[PointRecord]:
    """``n`` chunk points with 8-d dense and tiny sparse vectors (no ColBERT), ids numbered from ``start``."""
    rng = np.random.default_rng(start)
    return [
        PointRecord(
            id=f"00000000-0000-0000-0000-{i:012d}",
            payload={"kind": "chunk", "doc_id": "d"},
            dense=rng.normal(size=8).astype(np.float32),
            sparse=SparseVec((1, 2), (0.5, 0.25)),
        )
        for i in range(start, start + n)
    ]
