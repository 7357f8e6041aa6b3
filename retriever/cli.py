"""``retriever search "query"``: ranked hits with source, page, score and a snippet."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from indexer.cliutil import EXIT_OK, add_common_args, fail, settings_from_args, setup_logging
from indexer.errors import IndexerError
from retriever.query import SearchMode


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
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    add_common_args(p)

    s = sub.add_parser("serve", help="run the HTTP retrieval service (FastAPI + uvicorn)")
    s.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default from config: 8000)")
    add_common_args(s)
    return parser


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_hits(hits: Sequence, mode: str) -> str:
    if not hits:
        return "no hits"
    lines = []
    for rank, h in enumerate(hits, 1):
        pages = ",".join(str(p) for p in h.pages)
        lines.append(f"{rank:>2}. [{mode} {h.score:.4f}] {h.source}  p.{pages}  #{h.chunk_index}")
        lines.append(f"    {snippet(h.text)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.command == "serve":
            from retriever.service import serve

            serve(settings_from_args(args, {"service": {"host": args.host, "port": args.port}}))
            return EXIT_OK
        from retriever.api import Retriever

        settings = settings_from_args(args, {"retrieval": {"prefetch_limit": args.prefetch_limit}})
        flt = args.filter
        if flt and len(flt) == 1 and flt[0].lstrip().startswith("{"):
            flt = flt[0]
        with Retriever(settings) as r:
            mode = args.mode or settings.retrieval.mode
            hits = r.search(args.query, limit=args.limit, mode=mode, filter=flt)
        if args.json:
            print(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        else:
            print(format_hits(hits, mode))
        return EXIT_OK
    except IndexerError as e:
        return fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
