"""``retriever search "query"``: ranked hits with source, page, score and a snippet.

``retriever eval --dataset DIR``: every mode on a BEIR-layout dataset (nDCG@10, Recall@10 and @100,
MRR@10, median latency).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer.cliutil import EXIT_OK, add_common_args, fail, settings_from_args, setup_logging
from indexer.errors import ConfigError, IndexerError
from indexer.extras import needs
from indexer.modes import SearchMode

SWEEP_DEPTHS = (100, 200, 400, 800)  # retriever.evaluation's defaults (kept here so --help stays instant)
SWEEP_RRF_KS = (2, 10, 30, 60, 100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retriever", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("search", help="search a collection")
    p.add_argument("query", help="the query text")
    p.add_argument("--mode", choices=[m.value for m in SearchMode], help="retrieval mode (default from config)")
    p.add_argument("--limit", type=int, help="number of hits (default from config)")
    p.add_argument(
        "--filter",
        action="append",
        help="KEY=VALUE, KEY!=VALUE, KEY>=N ... (repeatable, all must hold) or a JSON filter",
    )
    p.add_argument("--prefetch-limit", type=int, help="candidates per prefetch leg")
    p.add_argument("--min-score", type=float, help="minimum final score (similarity modes only, not RRF/DBSF)")
    p.add_argument("--min-dense-score", type=float, help="minimum dense cosine, applied inside the prefetches")
    p.add_argument("--min-sparse-score", type=float, help="minimum sparse score, applied inside the prefetches")
    p.add_argument(
        "--group-by",
        nargs="?",
        const="doc_id",
        metavar="FIELD",
        help="results per document: group hits by a payload field (doc_id when no FIELD is given); "
        "--limit then counts groups",
    )
    p.add_argument("--group-size", type=int, help="hits per group (default 1)")
    p.add_argument("--diversity", type=float, help="MMR after the mode, 0 (relevance only) to 1 (difference only)")
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    p.add_argument("--tenant", help="search only this tenant's documents (README, Tenants)")
    add_common_args(p)

    e = sub.add_parser(
        "eval",
        help="evaluate every mode on a BEIR-layout dataset",
        description="Ingest the dataset's corpus into a fresh embedded collection (or, with --collection, "
        "search an existing one), run every mode and print nDCG@10, Recall@10, Recall@100, MRR@10 and "
        "the median engine time per query.",
    )
    e.add_argument("--dataset", required=True, help="folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    e.add_argument("--split", default="test", help="qrels split (default test)")
    e.add_argument("--modes", help="comma-separated modes (default: all)")
    e.add_argument("--index-dir", help="keep the fresh collection in this folder (default: a temporary one)")
    e.add_argument("--prefetch-limit", type=int, help="candidates per prefetch leg")
    e.add_argument("--chunk-size", type=int, help="tokens per chunk for the fresh collection")
    e.add_argument("--json", dest="json_file", help="also write the results to this JSON file")
    e.add_argument("--sweep", action="store_true", help="try prefetch depths and RRF k values")
    e.add_argument("--depths", default=",".join(map(str, SWEEP_DEPTHS)), help="sweep prefetch depths")
    e.add_argument("--rrf-ks", default=",".join(map(str, SWEEP_RRF_KS)), help="sweep RRF k values")
    add_common_args(e)
    d = sub.add_parser("demo", help="ingest the shipped samples and run example searches (works offline)")
    add_common_args(d)
    d.add_argument("--samples", type=Path, default=None, help="folder to ingest (default: the repo's samples/)")
    s = sub.add_parser("serve", help="run the HTTP retrieval service (FastAPI + uvicorn)")
    s.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default from config: 8000)")
    add_common_args(s)
    return parser


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} takes positive integers, got {text!r}")
    return values


def run_eval_command(args: argparse.Namespace) -> int:
    from indexer.runtime import load_encoder
    from retriever.datasets import load_beir
    from retriever.evaluation import format_report, run_eval

    settings = settings_from_args(
        args, {"retrieval": {"prefetch_limit": args.prefetch_limit}, "chunking": {"chunk_size": args.chunk_size}}
    )
    modes = [m.strip() for m in args.modes.split(",")] if args.modes else None
    for m in modes or []:
        SearchMode.parse(m)
    depths, ks = _ints(args.depths, "--depths"), _ints(args.rrf_ks, "--rrf-ks")
    dataset = load_beir(args.dataset, args.split)
    encoder = load_encoder(settings)
    report = run_eval(
        dataset,
        settings,
        encoder,
        existing=args.collection is not None,
        index_dir=args.index_dir,
        modes=modes,
        sweep=args.sweep,
        depths=depths,
        rrf_ks=ks,
    )
    print(format_report(report))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_hits(hits: Sequence, mode: str) -> str:
    if not hits:
        return "no hits"
    lines = []
    group: object = None
    for rank, h in enumerate(hits, 1):
        if h.group is not None and h.group != group:
            group = h.group
            lines.append(f"== {group}")
        pages = ",".join(str(p) for p in h.pages)
        lines.append(f"{rank:>2}. [{mode} {h.score:.4f}] {h.source}  p.{pages}  #{h.chunk_index}")
        if h.headings:
            lines.append(f"    § {' › '.join(h.headings)}")
        lines.append(f"    {snippet(h.text)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.command == "eval":
            return run_eval_command(args)
        if args.command == "demo":
            from retriever.demo import run_demo

            return run_demo(args)
        if args.command == "serve":
            with needs("service", "retriever serve"):
                from retriever.service import serve

            serve(settings_from_args(args, {"service": {"host": args.host, "port": args.port}}))
            return EXIT_OK
        from retriever.api import Retriever

        thresholds = {
            "min_score": args.min_score,
            "min_dense_score": args.min_dense_score,
            "min_sparse_score": args.min_sparse_score,
        }
        settings = settings_from_args(
            args, {"retrieval": {"prefetch_limit": args.prefetch_limit, "mode": args.mode, **thresholds}}
        )
        flt = args.filter
        if flt and len(flt) == 1 and flt[0].lstrip().startswith("{"):
            flt = flt[0]
        with Retriever(settings) as r:
            mode = args.mode or settings.retrieval.mode
            scoped = r if args.tenant is None else r.for_tenant(args.tenant)
            hits = scoped.search(
                args.query,
                limit=args.limit,
                mode=mode,
                filter=flt,
                group_by=args.group_by,
                group_size=args.group_size,
                diversity=args.diversity,
            )
        if args.json:
            print(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        else:
            print(format_hits(hits, mode))
        return EXIT_OK
    except IndexerError as e:
        return fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
