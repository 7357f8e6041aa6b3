"""``indexer ingest PATH...`` and ``indexer demo``: thin wrappers over the pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer.cliutil import (
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_PARTIAL,
    add_common_args,
    fail,
    settings_from_args,
    setup_logging,
)
from indexer.errors import IndexerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="index files and folders (PDF, .txt, .md)")
    p.add_argument("paths", nargs="+", type=Path, help="files or folders (walked recursively)")
    add_common_args(p)
    p.add_argument("--recreate", action="store_true", help="drop and rebuild the collection first")
    p.add_argument("--chunk-size", type=int, help="tokens per chunk, special tokens included (max 8192)")
    p.add_argument("--chunk-overlap", type=int, help="tokens shared by neighbouring chunks")
    p.add_argument("--include", action="append", help="glob of files to take (repeatable)")
    p.add_argument("--exclude", action="append", help="glob of files to skip (repeatable)")
    p.add_argument("--batch-size", type=int, help="chunks per model forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")

    d = sub.add_parser("demo", help="ingest the shipped samples and run example searches (works offline)")
    add_common_args(d)
    d.add_argument("--samples", type=Path, default=None, help="folder to ingest (default: the repo's samples/)")
    return parser


def cmd_ingest(args: argparse.Namespace) -> int:
    from indexer.encoder import BGEM3Encoder
    from indexer.pipeline import ingest
    from indexer.store import open_store

    settings = settings_from_args(
        args,
        {
            "chunking": {"chunk_size": args.chunk_size, "chunk_overlap": args.chunk_overlap},
            "ingest": {"include": args.include, "exclude": args.exclude},
            "model": {"batch_size": args.batch_size},
        },
    )
    # The store first: an unreachable server must fail before minutes of model loading.
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        encoder = BGEM3Encoder(settings.model, settings.chunking.chunk_size, colbert=settings.collection.colbert)
        report = ingest(args.paths, settings, encoder, store, recreate=args.recreate, progress=not args.no_progress)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    for f in report.failed:
        print(f"failed: {f.source}: {f.error}", file=sys.stderr)
    print(f"done: {report.summary()}", file=sys.stderr)
    if not report.files:
        print("error: no files found (check the paths and --include/--exclude)", file=sys.stderr)
        return EXIT_NOTHING
    if report.documents == 0:
        return EXIT_NOTHING
    return EXIT_PARTIAL if report.failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.command == "ingest":
            return cmd_ingest(args)
        from indexer.demo import run_demo

        return run_demo(args)
    except IndexerError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
