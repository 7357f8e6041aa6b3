"""Bounded load check of `retriever serve`: N concurrent clients, a fixed number of requests, loopback only.

Ingests the samples into a fresh embedded (Edge) store, starts the real service as a separate process
(`python -m retriever serve` on 127.0.0.1, a free port), waits until /readyz answers, then sends
``--requests`` POST /search requests from ``--clients`` concurrent clients (queries and modes in
rotation). Prints throughput, p50/p99 latency and the error count, which must be zero (exit code 1
otherwise). The model is the offline stand-in (all-MiniLM-L6-v2 dressed as BGE-M3, not BGE-M3) unless
``--model DIR`` names another.

``--uploads N``: the same searches again while N clients upload documents without pause (each upload new
text, so every chunk is encoded), and p50/p99 of both runs side by side with their ratio; the machine's
load average is printed before and after each run (other processes' load changes the numbers).

    .venv/bin/python benchmarks/service_load.py [--clients 8] [--requests 400] [--mode hybrid] [--model DIR]
    .venv/bin/python benchmarks/service_load.py --clients 4 --requests 200 --uploads 1
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


def upload_text(n: int, paragraphs: int) -> bytes:
    """A document no upload has sent before (so the service must encode it), of ``paragraphs`` paragraphs."""
    words = " ".join(QUERIES).split()
    lines = []
    for p in range(paragraphs):
        rotated = words[(n + p) % len(words) :] + words[: (n + p) % len(words)]
        lines.append(f"Upload {n}, paragraph {p}: " + " ".join(rotated * 4))
    return "\n\n".join(lines).encode()


async def uploader(base: str, stop: asyncio.Event, paragraphs: int, first: int, done: list[int]) -> list[str]:
    """Upload new documents one after another until ``stop``; ``done`` collects each upload's chunk count."""
    errors: list[str] = []
    n = first
    async with httpx.AsyncClient(base_url=base, timeout=600) as c:
        while not stop.is_set():
            files = {"file": (f"upload-{n % 50}.txt", upload_text(n, paragraphs))}
            try:
                r = await c.post("/documents", files=files)
                if r.status_code == 201:
                    done.append(r.json()["chunks"])
                else:
                    errors.append(f"upload {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"upload {type(e).__name__}: {e}")
            n += 1
    return errors


async def load_during_uploads(
    base: str, clients: int, requests: int, modes: list[str], uploaders: int, paragraphs: int
) -> tuple[list[float], list[str], float, list[int]]:
    stop = asyncio.Event()
    done: list[int] = []
    tasks = [asyncio.create_task(uploader(base, stop, paragraphs, 1000 * (i + 1), done)) for i in range(uploaders)]
    while not done and not any(t.done() for t in tasks):  # searches start once uploads are under way
        await asyncio.sleep(0.05)
    latencies, errors, elapsed = await load(base, clients, requests, modes)
    stop.set()
    for t in tasks:
        errors += await t
    return latencies, errors, elapsed, done


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


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
    ap.add_argument("--uploads", type=int, default=0, help="also measure while N clients upload documents")
    ap.add_argument("--upload-paragraphs", type=int, default=12, help="paragraphs per uploaded document")
    ap.add_argument("--slice-tokens", type=int, help="service.upload_slice_tokens (default from config)")
    args = ap.parse_args()
    modes = args.mode or ["hybrid"]

    if args.model:
        model, label = args.model, args.model
    else:
        from indexer.standin import build_standin_model

        model = str(build_standin_model(REPO / ".demo" / "standin-model"))
        label = "offline stand-in (all-MiniLM-L6-v2 with BGE-M3-shaped heads; NOT BGE-M3)"
    runs: dict[str, tuple[list[float], float, str]] = {}
    errors: list[str] = []
    uploaded: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        common = ["--qdrant-path", str(store), "--model", model, "--collection", "bench"]
        subprocess.run(
            [sys.executable, "-m", "indexer", "ingest", str(REPO / "samples"), "--no-progress", *common],
            cwd=REPO,
            check=True,
        )
        port = free_port()
        env = {**os.environ, "RETRIEVER_API_KEY": ""}
        if args.slice_tokens:
            config = Path(tmp) / "bench.toml"
            config.write_text(f"[service]\nupload_slice_tokens = {args.slice_tokens}\n")
            env["INDEXER_CONFIG"] = str(config)
        server = subprocess.Popen(
            [sys.executable, "-m", "retriever", "serve", "--port", str(port), *common], cwd=REPO, env=env
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
            before = loadavg()
            latencies, errs, elapsed = asyncio.run(load(base, args.clients, args.requests, modes))
            runs["idle"] = (latencies, elapsed, f"{before} -> {loadavg()}")
            errors += errs
            if args.uploads:
                before = loadavg()
                latencies, errs, elapsed, uploaded = asyncio.run(
                    load_during_uploads(base, args.clients, args.requests, modes, args.uploads, args.upload_paragraphs)
                )
                runs["during uploads"] = (latencies, elapsed, f"{before} -> {loadavg()}")
                errors += errs
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"model: {label}")
    print(f"engine: Qdrant Edge (embedded, owned by the service), {points} points; modes: {', '.join(modes)}")
    print(f"cpu cores: {os.cpu_count()}; clients: {args.clients}; requests per run: {args.requests}")
    if args.uploads:
        print(
            f"uploads: {args.uploads} client(s) uploading without pause; {len(uploaded)} documents, "
            f"{sum(uploaded)} chunks uploaded during the search run"
        )
    print(f"{'run':<16}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}   load average (1/5/15 min)")
    stats = {}
    for name, (latencies, elapsed, load_average) in runs.items():
        ms = [x * 1000 for x in latencies]
        stats[name] = (percentile(ms, 50), percentile(ms, 99))
        print(
            f"{name:<16}{len(ms) / elapsed:>8.1f}{stats[name][0]:>9.1f}{stats[name][1]:>9.1f}"
            f"{statistics.fmean(ms):>9.1f}{max(ms):>9.1f}   {load_average}"
        )
    if "during uploads" in stats:
        (p50, p99), (u50, u99) = stats["idle"], stats["during uploads"]
        print(f"during uploads / idle: p50 x{u50 / p50:.2f}, p99 x{u99 / p99:.2f} (target: p99 at most x2)")
    print(f"errors: {len(errors)}")
    for e in errors[:5]:
        print(f"  {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
