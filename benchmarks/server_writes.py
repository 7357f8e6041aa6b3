"""What one CPU core spends to hand BGE-M3 points to a Qdrant server: qdrant-client's own conversion
against ``indexer.store.qdrant_wire``, side by side in one run, per transport.

Each path turns the same batches of points into what goes on the wire: over gRPC, the ``UpsertPoints``
request serialized (what grpcio sends); over REST, the JSON body. The network and the server are not
part of it. Points are BGE-M3's: a 1024-d dense vector, a sparse vector of one weight per two tokens, a
float32 ColBERT matrix of 1024 per token and a payload of the chunk's text; chunk lengths as in
``ingest_throughput.py`` (74 % of 30-512 tokens, 22 % of 512-1024, 4 % of 2048-8000), in batches as the
writer makes them (at most 64 points and 8 MiB). Paths are timed in interleaved rounds; the best round
of each is printed.

    .venv/bin/python benchmarks/server_writes.py [--tokens 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qdrant_client import grpc, models  # noqa: E402
from qdrant_client.conversions.conversion import RestToGrpc  # noqa: E402
from qdrant_client.http.api.points_api import jsonable_encoder  # noqa: E402

from indexer.models import PointRecord, SparseVec  # noqa: E402
from indexer.store.qdrant_params import to_point_struct  # noqa: E402
from indexer.store.qdrant_wire import upsert_body, upsert_request  # noqa: E402

SHAPES = [(0.74, 30, 512), (0.22, 512, 1024), (0.04, 2048, 8000)]
MAX_POINTS, MAX_BYTES = 64, 8 * 1024 * 1024


def chunk_points(tokens: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    shares = np.array([s for s, _, _ in SHAPES])
    points: list[PointRecord] = []
    total = 0
    while total < tokens:
        _, lo, hi = SHAPES[rng.choice(len(SHAPES), p=shares / shares.sum())]
        n = int(rng.integers(lo, hi))
        colbert = rng.normal(size=(n, 1024)).astype(np.float32)
        colbert /= np.linalg.norm(colbert, axis=1, keepdims=True)
        dense = colbert.mean(axis=0)
        dense /= np.linalg.norm(dense)
        ids = np.sort(rng.choice(250_000, size=max(1, n // 2), replace=False))
        sparse = SparseVec(tuple(int(i) for i in ids), tuple(float(w) for w in rng.random(ids.size).astype(np.float32)))
        payload = {"kind": "chunk", "doc_id": f"doc{len(points)}.txt", "text": "слово word " * (n // 3), "page": 1}
        points.append(PointRecord(str(uuid.UUID(int=len(points) + 1)), payload, dense, sparse, colbert))
        total += n
    return points


def batches(points: list[PointRecord]) -> list[list[PointRecord]]:
    out: list[list[PointRecord]] = [[]]
    size = 0
    for p in points:
        n = p.estimated_bytes(4)
        if out[-1] and (len(out[-1]) >= MAX_POINTS or size + n > MAX_BYTES):
            out.append([])
            size = 0
        out[-1].append(p)
        size += n
    return out


def client_grpc(batch: list[PointRecord]) -> bytes:
    structs = [RestToGrpc.convert_point_struct(to_point_struct(p)) for p in batch]
    return grpc.UpsertPoints(collection_name="c", wait=True, points=structs).SerializeToString()


def client_rest(batch: list[PointRecord]) -> bytes:
    return str(jsonable_encoder(models.PointsList(points=[to_point_struct(p) for p in batch]))).encode()


def wire_grpc(batch: list[PointRecord]) -> bytes:
    return upsert_request("c", batch, True).SerializeToString()


PATHS: dict[str, Callable[[list[PointRecord]], bytes]] = {
    "gRPC, qdrant-client": client_grpc,
    "gRPC, qdrant_wire": wire_grpc,
    "REST, qdrant-client": client_rest,
    "REST, qdrant_wire": upsert_body,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    points = chunk_points(args.tokens)
    groups = batches(points)
    tokens = sum(p.colbert.shape[0] for p in points if p.colbert is not None)
    print(f"{len(points)} points, {tokens:,} tokens, {len(groups)} batches; one thread")
    best: dict[str, float] = {}
    sent: dict[str, int] = {}
    for r in range(args.rounds):
        for name in list(PATHS)[:: 1 if r % 2 == 0 else -1]:
            started = time.process_time()
            sent[name] = sum(len(PATHS[name](b)) for b in groups)
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    results = {}
    for name, seconds in best.items():
        results[name] = {"tokens_per_s": tokens / seconds, "seconds": seconds, "bytes_per_token": sent[name] / tokens}
        print(f"{name:22s} {tokens / seconds:10,.0f} tokens/s per core  {sent[name] / tokens:7,.0f} bytes/token")
    for transport in ("gRPC", "REST"):
        ratio = best[f"{transport}, qdrant-client"] / best[f"{transport}, qdrant_wire"]
        print(f"{transport}: qdrant_wire is {ratio:.1f}x qdrant-client's rate")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
