"""Storage options side by side, in one run: bytes per chunk, nDCG@10 and query latency (README "Storage options").

Every option ingests the same evaluation set into a fresh Qdrant Edge collection (Edge applies datatypes
and quantization for real; qdrant-client local mode ignores them) and runs ``retriever eval`` on it
(``retriever.evaluation.run_eval``: every mode, ir-measures). Chunks and queries are encoded once and
reused by every option (pooling and uint8 codes are applied when points are made, not by the model).
Every collection is created with ``indexing_threshold_kb = 1``, so that its segment is indexed, and its
int8 copies built, as in a collection far larger than an evaluation set.

    .venv/bin/python benchmarks/storage_options.py --model DIR --dataset datasets/mini-multilingual \\
        --dataset .eval/manpages --chunk-size 256 --json storage.json

Bytes: ``benchmarks/storage_layout.py`` (allocated blocks of the segments' files, per component, divided
by the number of chunks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.storage_layout import in_ram, measure  # noqa: E402
from indexer.config import Settings  # noqa: E402
from indexer.encoder import BGEM3Encoder  # noqa: E402
from indexer.models import Embedding  # noqa: E402
from indexer.runtime import collection_spec  # noqa: E402
from retriever.datasets import load_beir  # noqa: E402
from retriever.evaluation import run_eval  # noqa: E402

REFERENCE = "float16"


@dataclass(frozen=True)
class Option:
    name: str
    collection: dict[str, Any] = field(default_factory=dict)
    retrieval: dict[str, Any] = field(default_factory=dict)


OPTIONS = (
    Option("float32", {"colbert_datatype": "float32"}),
    Option(REFERENCE),  # the default: ColBERT float16 on disk, dense float32 in RAM
    Option("colbert int8", {"colbert_quantization": "int8"}),
    Option("colbert int8, no rescore", {"colbert_quantization": "int8"}, {"rescore_colbert": False}),
    Option("colbert uint8", {"colbert_datatype": "uint8"}),
    Option("colbert pool 2", {"colbert_pool_factor": 2}),
    Option("colbert pool 3", {"colbert_pool_factor": 3}),
    Option("colbert pool 4", {"colbert_pool_factor": 4}),
    Option("colbert pool 2 + uint8", {"colbert_pool_factor": 2, "colbert_datatype": "uint8"}),
    Option("colbert pool 2 + int8, no rescore", {"colbert_pool_factor": 2, "colbert_quantization": "int8"},
           {"rescore_colbert": False}),
    Option("dense float16", {"dense_datatype": "float16"}),
    Option("dense int8 (originals on disk)", {"dense_quantization": "int8", "dense_on_disk": True}),
    Option("dense int8, no rescore", {"dense_quantization": "int8", "dense_on_disk": True}, {"rescore_dense": False}),
    Option("dense uint8", {"dense_datatype": "uint8"}),
)  # fmt: skip


class CachedEncoder:
    """The model's embeddings, computed once per text and shared by every option."""

    def __init__(self, encoder: BGEM3Encoder) -> None:
        self.inner = encoder
        self.tokenizer = encoder.tokenizer
        self.dense_dim, self.colbert_dim = encoder.dense_dim, encoder.colbert_dim
        self.max_length, self.name, self.fingerprint = encoder.max_length, encoder.name, encoder.fingerprint
        self.cache: dict[tuple[bool, str], Embedding] = {}
        self.seconds = 0.0

    def _encode(self, texts: Sequence[str], query: bool) -> list[Embedding]:
        todo = [t for t in dict.fromkeys(texts) if (query, t) not in self.cache]
        if todo:
            started = time.perf_counter()
            encoded = self.inner.encode_queries(todo) if query else self.inner.encode_passages(todo)
            self.seconds += time.perf_counter() - started
            self.cache.update({(query, t): e for t, e in zip(todo, encoded, strict=True)})
        return [self.cache[(query, t)] for t in texts]

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]:
        return self._encode(texts, query=False)

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]:
        return self._encode(texts, query=True)


def run_option(dataset: Any, base: Settings, encoder: CachedEncoder, option: Option, folder: Path) -> dict[str, Any]:
    settings = base.replace(
        collection={**option.collection, "indexing_threshold_kb": 1}, retrieval=dict(option.retrieval)
    )
    index_dir = folder / option.name.replace(" ", "_").replace(",", "").replace("+", "plus")
    report = run_eval(dataset, settings, encoder, index_dir=index_dir)  # type: ignore[arg-type]
    measured = measure(index_dir / report.collection)
    spec = collection_spec(settings.replace(collection={"name": report.collection}), encoder)  # type: ignore[arg-type]
    chunks = report.chunks
    per_chunk = {k: v / chunks for k, v in measured.items()}

    def vector_bytes(name: str) -> dict[str, float]:
        parts = {k: v for k, v in per_chunk.items() if k.startswith(f"{name}.")}
        return {
            "stored": sum(parts.values()),
            "ram": sum(v for k, v in parts.items() if in_ram(k, spec)),
            "parts": parts,
        }

    return {
        "option": option.name,
        "collection": option.collection,
        "retrieval": option.retrieval,
        "chunks": chunks,
        "bytes_per_chunk": {"colbert": vector_bytes("colbert"), "dense": vector_bytes("dense"), "all": per_chunk},
        "modes": {m.mode: {**m.metrics, "median_ms": m.median_ms} for m in report.results},
    }


def pct(x: float, ref: float) -> str:
    return f"{100 * (x - ref) / ref:+.1f} %" if ref else "n/a"


def format_rows(dataset: str, rows: list[dict[str, Any]]) -> str:
    ref = next(r for r in rows if r["option"] == REFERENCE)
    f32 = next(r for r in rows if r["option"] == "float32")
    f32_colbert = f32["bytes_per_chunk"]["colbert"]["stored"]
    lines = [
        f"dataset {dataset}: {ref['chunks']} chunks",
        "option | ColBERT B/chunk stored (% f32) | in RAM | dense B/chunk stored | in RAM | "
        "nDCG@10 hybrid_colbert (Δ) | colbert (Δ) | dense (Δ) | m3 (Δ) | ms hybrid_colbert (Δ) | ms dense (Δ)",
    ]
    for r in rows:
        c, d = r["bytes_per_chunk"]["colbert"], r["bytes_per_chunk"]["dense"]
        cells = [
            r["option"],
            f"{c['stored']:,.0f} ({100 * c['stored'] / f32_colbert:.0f} %)",
            f"{c['ram']:,.0f}",
            f"{d['stored']:,.0f}",
            f"{d['ram']:,.0f}",
        ]
        for mode in ("hybrid_colbert", "colbert", "dense", "m3"):
            v, v0 = r["modes"][mode]["nDCG@10"], ref["modes"][mode]["nDCG@10"]
            cells.append(f"{v:.4f} ({pct(v, v0)})")
        for mode in ("hybrid_colbert", "dense"):
            v, v0 = r["modes"][mode]["median_ms"], ref["modes"][mode]["median_ms"]
            cells.append(f"{v:.2f} ({pct(v, v0)})")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a local BGE-M3 folder (or the offline stand-in)")
    parser.add_argument("--dataset", action="append", required=True, help="a BEIR folder (repeatable)")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--options", help="comma-separated option names (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    wanted = [o for o in OPTIONS if not args.options or o.name in args.options.split(",")]
    base = Settings().replace(model={"name": args.model, "device": "cpu"}, chunking={"chunk_size": args.chunk_size})
    encoder = CachedEncoder(BGEM3Encoder(base.model, args.chunk_size))
    results: dict[str, Any] = {"model": args.model, "chunk_size": args.chunk_size, "datasets": {}}
    for path in args.dataset:
        dataset = load_beir(path)
        with tempfile.TemporaryDirectory(prefix="m3-storage-") as tmp:
            rows = []
            for option in wanted:
                started = time.perf_counter()
                rows.append(run_option(dataset, base, encoder, option, Path(tmp)))
                print(f"{dataset.name}: {option.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        results["datasets"][dataset.name] = rows
        print(format_rows(dataset.name, rows), flush=True)
    results["encoding_s"] = round(encoder.seconds, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
