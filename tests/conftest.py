"""Shared fixtures: a tiny BGE-M3-shaped model built locally, loaded through the real FlagEmbedding,
and stores on both in-process engines (Qdrant Edge and qdrant-client local mode)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from indexer.config import Settings  # noqa: E402
from indexer.encoder import BGEM3Encoder  # noqa: E402
from indexer.store import Store, open_store  # noqa: E402
from tests.tiny_model import build_tiny_m3  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
ENGINES = ["edge", "local"]
CHUNK_SIZE = 128


def sample_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(SAMPLES.rglob("*")) if p.suffix in (".txt", ".md")]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_m3(tmp_path_factory.mktemp("models") / "tiny-m3", vocab_corpus=sample_texts())


@pytest.fixture(scope="session")
def wide_colbert_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ColBERT vectors of BGE-M3's real width (1024), to meet Qdrant's multivector cap."""
    return build_tiny_m3(
        tmp_path_factory.mktemp("models") / "tiny-m3-colbert1024",
        colbert_dim=1024,
        vocab_corpus=sample_texts(),
    )


def make_settings(model_dir: Path, store_path: Path | str, engine: str = "edge", **sections: dict) -> Settings:
    base = Settings().replace(
        model={"name": str(model_dir), "device": "cpu", "batch_size": 8},
        chunking={"chunk_size": CHUNK_SIZE, "chunk_overlap": 16},
        qdrant={"engine": engine, "path": str(store_path)},
        collection={"name": "test_docs", "colbert_datatype": "float32"},
    )
    return base.replace(**sections) if sections else base


@contextlib.contextmanager
def retrievers_on_every_engine(
    model_dir: Path, encoder: BGEM3Encoder, root: Path, paths: list[Path], **sections: dict
) -> Iterator[dict]:
    """``paths`` indexed into each in-process engine, with a Retriever open on each: {engine: retriever}."""
    from indexer.pipeline import ingest
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


@pytest.fixture(scope="session")
def encoder(tiny_model_dir: Path) -> BGEM3Encoder:
    s = make_settings(tiny_model_dir, ":memory:")
    return BGEM3Encoder(s.model, max_length=s.chunking.chunk_size)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(tiny_model_dir: Path, tmp_path: Path, engine: str) -> Settings:
    path = tmp_path / "store" if engine == "edge" else ":memory:"
    return make_settings(tiny_model_dir, path, engine)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings.qdrant, settings.collection.name)
    yield s
    s.close()
