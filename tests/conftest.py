"""Fixtures: a tiny BGE-M3-shaped model built locally, loaded through the real encoder, and stores on
both in-process engines (Qdrant Edge and qdrant-client local mode). Shared helpers: ``tests.helpers``."""

from __future__ import annotations

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
from tests.helpers import ENGINES, make_settings, sample_texts  # noqa: E402
from tests.tiny_model import build_tiny_m3  # noqa: E402


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
