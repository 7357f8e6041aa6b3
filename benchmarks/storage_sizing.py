"""Bytes per point on Qdrant Edge at 10k and 100k points, by component, for the storage options (docs/sizing.md).

Synthetic points of BGE-M3's shapes are written straight to the store through the same code as an ingest
(``indexer.points.to_point``, ``EdgeStore``): a 1024-d unit dense vector, a sparse vector of ``--sparse``
token weights, ``--tokens`` ColBERT vectors of 1024 dims, and a payload as a chunk's (``--chars`` of text,
its ids, offsets and pages; ten chunks per document). Bytes per point do not depend on the model's
weights, only on these shapes; ColBERT is kept to a few tokens so that 100k points fit the disk, and its
bytes are per token (the 100M sizing scales them to 512). The collection is closed (Edge optimizes it:
segments indexed, int8 copies built) and measured by ``benchmarks/storage_layout.py``.

    .venv/bin/python benchmarks/storage_sizing.py --points 10000,100000 --options float16 --json sizing.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.storage_layout import in_ram, measure  # noqa: E402
from indexer.config import CollectionSettings  # noqa: E402
from indexer.models import Chunk, Embedding, EncodedChunk, SparseVec  # noqa: E402
from indexer.points import to_point  # noqa: E402
from indexer.schema import CollectionSpec  # noqa: E402
from indexer.store.edge import EdgeStore  # noqa: E402

DIM = 1024  # BGE-M3's dense and ColBERT width
VOCABULARY = 250_002

OPTIONS: dict[str, dict[str, Any]] = {
    "float16": {},  # the default: ColBERT float16 on disk, dense float32 in RAM
    "float32": {"colbert_datatype": "float32"},
    "colbert int8": {"colbert_quantization": "int8"},
    "colbert uint8": {"colbert_datatype": "uint8"},
    "dense int8 on disk": {"dense_quantization": "int8", "dense_on_disk": True},
    "dense uint8": {"dense_datatype": "uint8"},
}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def prose() -> str:
    """Real text for the payloads (this repository's README and samples): payloads are stored compressed."""
    repo = Path(__file__).resolve().parent.parent
    files = [repo / "README.md", *sorted((repo / "samples").rglob("*.md")), *sorted((repo / "samples").rglob("*.txt"))]
    return "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files if f.is_file())


def points(n: int, tokens: int, sparse: int, chars: int, spec: CollectionSpec, seed: int = 0) -> Any:
    """``n`` synthetic chunks as the points an ingest would write, in batches of 64."""
    rng = np.random.default_rng(seed)
    corpus = prose()
    for start in range(0, n, 64):
        batch = []
        for i in range(start, min(start + 64, n)):
            offset = int(rng.integers(0, len(corpus) - chars))
            text = corpus[offset : offset + chars]
            chunk = Chunk(f"doc-{i // 10:07d}.pdf", f"doc-{i // 10:07d}.pdf", f"{i // 10:064x}", i % 10, text,
                          0, len(text), (i % 10 + 1,), tokens)  # fmt: skip
            indices = np.sort(rng.choice(VOCABULARY, sparse, replace=False))
            weights = rng.random(sparse).astype(np.float32)
            embedding = Embedding(
                unit(rng.standard_normal(DIM, dtype=np.float32)),
                SparseVec(tuple(int(x) for x in indices), tuple(float(x) for x in weights)),
                unit(rng.standard_normal((tokens, DIM), dtype=np.float32)),
            )
            batch.append(to_point(EncodedChunk(chunk, embedding), spec))
        yield batch


def run(n: int, option: str, tokens: int, sparse: int, chars: int, root: Path) -> dict[str, Any]:
    settings = CollectionSettings(name="sizing", **OPTIONS[option])
    spec = CollectionSpec.for_model(settings, DIM, DIM, chunk_size=tokens)
    store = EdgeStore(root, "sizing")
    started = time.perf_counter()
    store.ensure_collection(spec)
    for batch in points(n, tokens, sparse, chars, spec):
        store.upsert(batch)
    written = time.perf_counter() - started
    store.close()  # flush and optimize
    seconds = time.perf_counter() - started
    measured = measure(root / "sizing")
    segments = {k: v for k, v in measured.items() if k != "wal"}
    return {
        "option": option,
        "points": n,
        "tokens": tokens,
        "sparse": sparse,
        "chars": chars,
        "write_s": round(written, 1),
        "total_s": round(seconds, 1),
        "segments": len(list((root / "sizing" / "segments").iterdir())),
        "bytes": measured,
        "per_point": {k: round(v / n, 1) for k, v in segments.items()},
        "ram_per_point": round(sum(v for k, v in segments.items() if in_ram(k, spec)) / n, 1),
        "disk_per_point": round(sum(segments.values()) / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", default="10000,100000")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--tokens", type=int, default=32, help="ColBERT vectors per point")
    parser.add_argument("--sparse", type=int, default=200, help="sparse weights per point (a 512-token chunk's)")
    parser.add_argument("--chars", type=int, default=2000, help="characters of text per chunk (about 512 tokens)")
    parser.add_argument("--dir", help="where to write the collections (default: a temporary folder)")
    parser.add_argument("--json", help="append the results to this JSON file")
    args = parser.parse_args()
    results = []
    for option in args.options.split(","):
        for n in (int(x) for x in args.points.split(",")):
            with tempfile.TemporaryDirectory(prefix="m3-sizing-", dir=args.dir) as tmp:
                r = run(n, option, args.tokens, args.sparse, args.chars, Path(tmp))
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.json:
                path = Path(args.json)
                done = json.loads(path.read_text()) if path.exists() else []
                path.write_text(json.dumps([*done, r], indent=2) + "\n")


if __name__ == "__main__":
    main()
