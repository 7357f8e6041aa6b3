"""Bounded load check of `retriever serve`: N concurrent clients, a fixed number of requests, loopback only.

Ingests the samples into a fresh embedded (Edge) store, starts the real service as a separate process
(`python -m retriever serve` on 127.0.0.1, a free port), waits until /readyz answers, then sends
``--requests`` POST /search requests from ``--clients`` concurrent clients (queries and modes in
rotation). Prints throughput, p50/p99 latency and the error count, which must be zero (exit code 1
otherwise). The model is the offline stand-in (all-MiniLM-L6-v2 dressed as BGE-M3, not BGE-M3) unless
``--model DIR`` names another.

    .venv/bin/python benchmarks/service_load.py [--clients 8] [--requests 400] [--mode hybrid] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUERIES = [
    "How much did revenue grow in 2025?",
    "Who pays for home office equipment?",
    "reciprocal rank fusion of dense and sparse results",
    "penalty for late delivery of goods",
    "how are personal data requests handled",
    "ColBERT late interaction reranking",
    "security rules for working outside the office",
    "operating margin and cash flow",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def load(base: str, clients: int, requests: int, modes: list[str]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))

    async def client(c: httpx.AsyncClient) -> None:
        for i in counter:  # shared iterator: exactly `requests` requests in all
            body = {"query": QUERIES[i % len(QUERIES)], "limit": 10, "mode": modes[i % len(modes)]}
            t = time.perf_counter()
            try:
                r = await c.post("/search", json=body)
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as c:
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--mode", action="append", help="retrieval mode(s) to rotate through (default: hybrid)")
    ap.add_argument("--model", default=None, help="model folder (default: the stand-in, built under .demo/)")
    args = ap.parse_args()
    modes = args.mode or ["hybrid"]

    if args.model:
        model, label = args.model, args.model
    else:
        from indexer.standin import build_standin_model

        model = str(build_standin_model(REPO / ".demo" / "standin-model"))
        label = "offline stand-in (all-MiniLM-L6-v2 with BGE-M3-shaped heads; NOT BGE-M3)"
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        common = ["--qdrant-path", str(store), "--model", model, "--collection", "bench"]
        subprocess.run(
            [sys.executable, "-m", "indexer", "ingest", str(REPO / "samples"), "--no-progress", *common],
            cwd=REPO,
            check=True,
        )
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "retriever", "serve", "--port", str(port), *common],
            cwd=REPO,
            env={**os.environ, "RETRIEVER_API_KEY": ""},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(1200):  # up to 120 s for the model to load
                try:
                    ready = httpx.get(f"{base}/readyz", timeout=1)
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    print("the service exited before it was ready", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            else:
                print("the service did not become ready in 120 s", file=sys.stderr)
                return 1
            points = ready.json()["points"]
            asyncio.run(load(base, args.clients, min(args.requests, 2 * args.clients), modes))  # warm-up
            latencies, errors, elapsed = asyncio.run(load(base, args.clients, args.requests, modes))
        finally:
            server.terminate()
            server.wait(timeout=30)
    ms = [x * 1000 for x in latencies]
    print(f"model: {label}")
    print(f"engine: Qdrant Edge (embedded, owned by the service), {points} points; modes: {', '.join(modes)}")
    print(f"cpu cores: {os.cpu_count()}; clients: {args.clients}; requests: {len(latencies)}")
    print(f"throughput: {len(latencies) / elapsed:.1f} requests/s ({elapsed:.1f} s)")
    print(
        f"latency ms: p50 {percentile(ms, 50):.1f}, p99 {percentile(ms, 99):.1f}, "
        f"mean {statistics.fmean(ms):.1f}, max {max(ms):.1f}"
    )
    print(f"errors: {len(errors)}")
    for e in errors[:5]:
        print(f"  {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
