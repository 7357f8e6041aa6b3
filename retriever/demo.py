"""``retriever demo``: ingest the shipped samples into an embedded store and run example searches.

Works offline: when the configured model (BAAI/bge-m3 by default) cannot be loaded, and only here,
it falls back to a stand-in model built from a PyPI package, and says so loudly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from indexer.cliutil import EXIT_OK, EXIT_PARTIAL, settings_from_args
from indexer.errors import ModelLoadError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_STORE = ".demo/qdrant"
STANDIN_DIR = ".demo/standin-model"

EXAMPLE_QUERIES = [
    ("How much did revenue grow in 2025?", "hybrid"),
    ("неустойка за просрочку поставки", "hybrid_colbert"),
    ("сроки рассмотрения обращений", "sparse"),
    ("Which equipment does the company provide to remote employees?", "dense"),
    ("reciprocal rank fusion of dense and sparse results", "colbert"),
    ("права субъекта персональных данных", "hybrid_dbsf"),
    ("What are the main risks for 2026?", "m3"),
]


def _banner(text: str) -> str:
    line = "!" * 100
    return f"\n{line}\n{text}\n{line}\n"


def run_demo(args: argparse.Namespace) -> int:
    from indexer.pipeline import ingest
    from indexer.runtime import load_encoder, open_runtime
    from indexer.standin import STANDIN_NOTICE, build_standin_model
    from retriever.api import Retriever
    from retriever.cli import format_hits

    samples = args.samples or Path(os.path.relpath(REPO_ROOT / "samples"))
    overrides: dict[str, dict[str, Any]] = {
        "qdrant": {"engine": "edge"},
        "ingest": {"exclude": ["README.md", "*.py"]},
    }
    if not args.qdrant_url and not args.qdrant_path:
        overrides["qdrant"]["path"] = DEMO_STORE
    settings = settings_from_args(args, overrides)
    standin = False
    try:
        encoder = load_encoder(settings)
        encoder.load()  # the demo's fallback needs to know now whether the model loads
    except ModelLoadError as e:
        print(f"could not load {settings.model.name!r}: {e}", file=sys.stderr)
        standin_dir = build_standin_model(Path(STANDIN_DIR))
        settings = settings.replace(model={"name": str(standin_dir)}, collection={"name": "demo_standin"})
        encoder = load_encoder(settings)
        standin = True
        print(_banner(STANDIN_NOTICE), file=sys.stderr)

    print(f"model: {encoder.name} ({encoder.dense_dim}-d dense, {encoder.colbert_dim}-d ColBERT, {encoder.device})")
    with open_runtime(settings, "write", encoder=encoder) as rt:
        report = ingest([samples], settings, rt.encoder, rt.store, recreate=True, progress=True)
    print(f"ingested {samples}: {report.summary()}")
    for f in report.failed:
        print(f"  failed: {f.source}: {f.error}")

    with Retriever(settings, encoder=encoder) as retriever:
        for query, mode in EXAMPLE_QUERIES:
            print(f"\n=== {query!r}  (mode {mode})")
            print(format_hits(retriever.search(query, limit=3, mode=mode), mode))
    if standin:
        print(_banner(STANDIN_NOTICE + "\nThe rankings above come from the stand-in, not from BGE-M3."))
    return EXIT_PARTIAL if report.failed else EXIT_OK
