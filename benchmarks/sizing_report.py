"""The tables of docs/sizing.md, computed from ``benchmarks/storage_sizing.py``'s measurements.

    .venv/bin/python benchmarks/sizing_report.py sizing.json [--chunks 100000000 --tokens 512 --replicas 2 --nodes 12]
        [--rate "GPU (assumed)=20000x8" --rate "CPU, 2 cores (measured)=250"]

1. The runs, then linearity: bytes per point by component at every measured size, for each option measured at several.
2. Per chunk of ``--tokens`` tokens (``--tokens - 1`` ColBERT vectors: CLS has none), from the per-point
   bytes measured (ColBERT's per vector: the synthetic points have few), for each storage option.
3. The cluster: RAM and disk in total and per node, for ``--chunks`` chunks, ``--replicas`` copies of every
   shard over ``--nodes`` nodes, and the ColBERT bytes one query's rerank reads (``--candidates`` chunks).
4. Ingest time of ``--chunks`` chunks of ``--tokens`` tokens at each ``--rate NAME=TOKENS_PER_S[xDEVICES]``
   (the encoder's tokens/s per device, from ``benchmarks/ingest_throughput.py`` or an assumption: say which),
   and the write rate into the cluster (default layout, all copies) that the encoders then produce.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GB = 1e9
TB = 1e12


@dataclass(frozen=True)
class Layout:
    """A storage option for the sizing: which measured run gives each vector's bytes."""

    name: str
    colbert: str  # measured option whose colbert.vectors per vector apply
    pool: int = 1
    colbert_int8: bool = False  # plus an int8 copy in RAM (from the "colbert int8" run)
    dense: str = "float16"  # measured option whose dense bytes apply ("float16" run: dense float32 in RAM)
    dense_int8: bool = False  # dense originals on disk, int8 copy in RAM


LAYOUTS = (
    Layout("default: ColBERT float16 on disk, dense float32 in RAM", "float16"),
    Layout("ColBERT float32", "float32"),
    Layout("ColBERT int8 copy in RAM (no rescore), float16 on disk", "float16", colbert_int8=True),
    Layout("ColBERT uint8", "colbert uint8"),
    Layout("ColBERT pool 2 + uint8", "colbert uint8", pool=2),
    Layout("ColBERT pool 4 + uint8", "colbert uint8", pool=4),
    Layout("ColBERT pool 2 + uint8, dense int8 in RAM (float32 on disk)", "colbert uint8", 2, dense_int8=True),
    Layout("ColBERT pool 2 + uint8, dense uint8", "colbert uint8", 2, dense="dense uint8"),
)


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in json.loads(path.read_text()):
        runs.setdefault(r["option"], []).append(r)
    for rs in runs.values():
        rs.sort(key=lambda r: r["points"])
    return runs


def measured(runs: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| option | points | ColBERT vectors per point | segments | writing s | writing and optimizing s | "
        "bytes per point on disk | in RAM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for option, rs in runs.items():
        for r in rs:
            lines.append(
                f"| {option} | {r['points']:,} | {r['tokens']} | {r['segments']} | {r['write_s']:,.0f} | "
                f"{r['total_s']:,.0f} | {r['disk_per_point']:,.1f} | {r['ram_per_point']:,.1f} |"
            )
    return "\n".join(lines)


def linearity(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Bytes per point by component at every measured size; linear growth keeps them constant."""
    lines = [
        "| option | component | bytes per point (points: bytes) | change, largest vs smallest |",
        "|---|---|---|---|",
    ]

    def row(option: str, part: str, values: list[tuple[int, float]]) -> str:
        cells = ", ".join(f"{n:,}: {v:,.1f}" for n, v in values)
        first, last = values[0][1], values[-1][1]
        change = f"{(last / first - 1) * 100:+.1f} %" if first else "–"
        return f"| {option} | {part} | {cells} | {change} |"

    for option, rs in runs.items():
        if len(rs) < 2:
            continue
        for part in sorted(rs[-1]["per_point"]):
            lines.append(row(option, part, [(r["points"], r["per_point"].get(part, 0.0)) for r in rs]))
        lines.append(row(option, "**all (segments)**", [(r["points"], r["disk_per_point"]) for r in rs]))
        lines.append(row(option, "**in RAM**", [(r["points"], r["ram_per_point"]) for r in rs]))
    return "\n".join(lines)


def needs(layout: Layout) -> set[str]:
    """The measured options ``layout`` takes bytes from."""
    dense = "dense int8 on disk" if layout.dense_int8 else layout.dense
    return {"float16", layout.colbert, dense} | ({"colbert int8"} if layout.colbert_int8 else set())


def per_chunk(layout: Layout, runs: dict[str, list[dict[str, Any]]], tokens: int) -> dict[str, tuple[float, bool]]:
    """Bytes per chunk by component, and whether Qdrant keeps it in RAM."""
    largest = {k: v[-1] for k, v in runs.items()}
    base = largest["float16"]["per_point"]
    vectors = math.ceil((tokens - 1) / layout.pool)
    colbert_run = largest[layout.colbert]
    per_vector = colbert_run["per_point"]["colbert.vectors"] / colbert_run["tokens"]
    out = {
        "colbert vectors": (per_vector * vectors, False),
        "sparse vectors": (base["sparse.vectors"], False),
        "sparse index": (base["sparse.index"], True),
        "payload": (base["payload"], False),
        "payload indexes, ids": (base["payload_index"] + base["ids"], True),
    }
    if layout.colbert_int8:
        q = largest["colbert int8"]
        out["colbert int8"] = (q["per_point"]["colbert.int8"] / q["tokens"] * vectors, True)
    dense = largest["dense int8 on disk"] if layout.dense_int8 else largest[layout.dense]
    out["dense vectors"] = (dense["per_point"]["dense.vectors"], not layout.dense_int8)
    if layout.dense_int8:
        out["dense int8"] = (dense["per_point"]["dense.int8"], True)
    out["dense HNSW"] = (largest["float16"]["per_point"]["dense.index"], True)
    return out


def cluster(runs: dict[str, list[dict[str, Any]]], chunks: int, tokens: int, replicas: int, nodes: int,
            candidates: int) -> str:  # fmt: skip
    lines = [
        "| option | ColBERT per chunk | RAM per chunk | disk per chunk | RAM, all copies | disk, all copies | "
        f"RAM per node ({nodes}) | disk per node | ColBERT read per query ({candidates} candidates) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layout in LAYOUTS:
        missing = needs(layout) - runs.keys()
        if missing:
            lines.append(f"| {layout.name} | not measured ({', '.join(sorted(missing))}) |" + " |" * 7)
            continue
        parts = per_chunk(layout, runs, tokens)
        ram = sum(v for v, resident in parts.values() if resident)
        disk = sum(v for v, _ in parts.values())
        colbert = parts["colbert vectors"][0]
        rerank = colbert if not layout.colbert_int8 else 0.0
        lines.append(
            f"| {layout.name} | {colbert / 1024:,.0f} KiB | {ram / 1024:,.1f} KiB | {disk / 1024:,.0f} KiB | "
            f"{ram * chunks * replicas / TB:,.2f} TB | {disk * chunks * replicas / TB:,.1f} TB | "
            f"{ram * chunks * replicas / nodes / GB:,.0f} GB | {disk * chunks * replicas / nodes / TB:,.2f} TB | "
            f"{rerank * candidates / 2**20:,.1f} MiB{' (RAM)' if layout.colbert_int8 else ''} |"
        )
    return "\n".join(lines)


def components(runs: dict[str, list[dict[str, Any]]], tokens: int) -> str:
    lines = ["| component (default layout) | bytes per chunk | where |", "|---|---|---|"]
    for name, (value, resident) in per_chunk(LAYOUTS[0], runs, tokens).items():
        lines.append(f"| {name} | {value:,.0f} | {'RAM' if resident else 'disk'} |")
    return "\n".join(lines)


def ingest(runs: dict[str, list[dict[str, Any]]], chunks: int, tokens: int, replicas: int, nodes: int,
           rates: list[str]) -> str:  # fmt: skip
    parts = per_chunk(LAYOUTS[0], runs, tokens)
    disk = sum(v for v, _ in parts.values())
    lines = [
        f"| encoder | tokens/s per device | devices | tokens/s in all | time for {chunks / 1e6:,.0f}M chunks "
        f"({chunks * tokens / 1e9:,.1f} B tokens) | writes into the cluster (default layout, {replicas} copies) "
        f"| per node ({nodes}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        name, _, value = rate.partition("=")
        per_device, _, devices = value.partition("x")
        speed, count = float(per_device), int(devices or 1)
        seconds = chunks * tokens / (speed * count)
        days = seconds / 86400
        took = f"{days:,.1f} days" if days < 365 else f"{days / 365:,.1f} years"
        written = speed * count / tokens * disk * replicas
        lines.append(
            f"| {name} | {speed:,.0f} | {count} | {speed * count:,.0f} | {took} ({seconds / 3600:,.0f} h) | "
            f"{written / 2**20:,.1f} MiB/s | {written / nodes / 2**20:,.1f} MiB/s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("measurements", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000_000)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rate", action="append", default=[], help="NAME=TOKENS_PER_S[xDEVICES], repeatable")
    args = parser.parse_args()
    runs = load(args.measurements)
    print(measured(runs), end="\n\n")
    print(linearity(runs), end="\n\n")
    print(components(runs, args.tokens), end="\n\n")
    print(cluster(runs, args.chunks, args.tokens, args.replicas, args.nodes, args.candidates))
    if args.rate:
        print("\n" + ingest(runs, args.chunks, args.tokens, args.replicas, args.nodes, args.rate))


if __name__ == "__main__":
    main()
