"""Why the pipeline hands FlagEmbedding several batches per encode() call.

FlagEmbedding 1.4.2 runs the first batch of every encode() call twice (a batch-size probe). This
measures, side by side in one run, one call per batch against one call per group of batches, on the
offline stand-in model (or --model DIR), and prints the ratio.

    .venv/bin/python benchmarks/encode_batching.py [--chunks 128] [--batch-size 16] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from indexer.config import ModelSettings  # noqa: E402
from indexer.encoder import BATCHES_PER_CALL, BGEM3Encoder  # noqa: E402
from indexer.standin import build_standin_model  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="model folder (default: the stand-in, built under .demo/)")
    args = ap.parse_args()

    model = args.model or str(build_standin_model(Path(".demo/standin-model")))
    enc = BGEM3Encoder(ModelSettings(name=model, device="cpu", batch_size=args.batch_size), max_length=512)
    words = " ".join(p.read_text(encoding="utf-8") for p in sorted((SAMPLES / "en").glob("*"))).split()
    texts = [" ".join(words[(i * 37) % 500 : (i * 37) % 500 + 180]) for i in range(args.chunks)]
    group = args.batch_size * BATCHES_PER_CALL

    def per_batch() -> None:
        for i in range(0, len(texts), args.batch_size):
            enc.encode_passages(texts[i : i + args.batch_size])

    def grouped() -> None:
        for i in range(0, len(texts), group):
            enc.encode_passages(texts[i : i + group])

    timings: dict[str, list[float]] = {"one call per batch": [], f"one call per {BATCHES_PER_CALL} batches": []}
    enc.encode_passages(texts[:2])  # warm-up
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, fn in zip(timings, (per_batch, grouped), strict=True):
            t = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    for name, m in medians.items():
        print(f"{name:>28}: {m:7.2f} s  ({args.chunks / m:6.1f} chunks/s)")
    base, ours = medians.values()
    print(f"ratio (per batch / grouped): {base / ours:.2f}x")


if __name__ == "__main__":
    main()
