"""``indexer ingest|delete|status``: thin wrappers over the pipeline and the admin operations."""

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
from indexer.tenants import require_tenant, scope


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
    p.add_argument("--shards", type=int, help="server: shards of a new collection (default: the server's)")
    p.add_argument("--replication-factor", type=int, help="server: copies of each shard of a new collection")
    p.add_argument(
        "--write-consistency-factor", type=int, help="server: replicas that must apply each write (new collection)"
    )
    p.add_argument("--prune", action="store_true", help="remove documents no longer under the given folders")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first file that fails")
    p.add_argument("--report", type=Path, help="write the run report (per file status, chunks, tokens, seconds, error)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    p.add_argument("--tenant", help="write the documents as this tenant's (README, Tenants)")

    rm = sub.add_parser("delete", help="remove documents by doc id or source path")
    rm.add_argument("--doc-id", action="append", default=[], help="doc id (path relative to its ingest root)")
    rm.add_argument("--source", action="append", default=[], help="source path as ingested")
    rm.add_argument("--tenant", help="delete this tenant's documents (the same doc id elsewhere stays)")
    add_common_args(rm)

    st = sub.add_parser("status", help="list collections with document, chunk and point counts and their model")
    add_common_args(st)
    st.add_argument("--json", action="store_true", help="print as JSON")
    st.add_argument("--tenant", help="count only this tenant's documents, chunks and points")
    return parser


def cmd_ingest(args: argparse.Namespace) -> int:
    from indexer.pipeline import IngestStopped, ingest
    from indexer.runtime import open_runtime

    settings = settings_from_args(
        args,
        {
            "chunking": {"chunk_size": args.chunk_size, "chunk_overlap": args.chunk_overlap},
            "ingest": {"include": args.include, "exclude": args.exclude},
            "model": {"batch_size": args.batch_size},
            "collection": {
                "shard_number": args.shards,
                "replication_factor": args.replication_factor,
                "write_consistency_factor": args.write_consistency_factor,
            },
        },
    )
    with open_runtime(settings, "write") as rt:
        require_tenant(rt.store, settings.tenants.field, args.tenant, "ingest into")
        try:
            report = ingest(
                args.paths,
                settings,
                rt.encoder,
                scope(rt.store, settings.tenants.field, args.tenant),
                recreate=args.recreate,
                progress=not args.no_progress,
                prune=args.prune,
                fail_fast=args.fail_fast,
            )
        except IngestStopped as e:
            _print_report(e.report, args)
            return fail(str(e))
    _print_report(report, args)
    if report.stopped:
        print(f"stopped: {report.stopped}", file=sys.stderr)
    if not report.files:
        print("error: no files found (check the paths and --include/--exclude)", file=sys.stderr)
        return EXIT_NOTHING
    if report.failed or report.busy:
        return EXIT_PARTIAL if report.documents + report.unchanged else EXIT_NOTHING
    if report.documents + report.unchanged == 0:
        print("error: no supported file found (.pdf, .txt, .md)", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def _print_report(report, args: argparse.Namespace) -> None:  # noqa: ANN001 - IngestReport, imported lazily
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    for f in report.skipped + report.failed + report.busy:
        reason = f.error or ""
        # Loader messages already start with the file's name.
        print(f"{f.status}: {reason if reason.startswith(f.source) else f'{f.source}: {reason}'}", file=sys.stderr)
    for doc_id in report.pruned:
        print(f"pruned: {doc_id}", file=sys.stderr)
    print(f"done: {report.summary()}", file=sys.stderr)


def cmd_delete(args: argparse.Namespace) -> int:
    from indexer.admin import delete_documents
    from indexer.leases import LeaseTimings
    from indexer.store import open_store

    if not args.doc_id and not args.source:
        return fail("name documents with --doc-id or --source", 2)
    settings = settings_from_args(args)
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        store.open_collection()
        require_tenant(store, settings.tenants.field, args.tenant, "delete from")
        removed = delete_documents(
            scope(store, settings.tenants.field, args.tenant),
            args.doc_id,
            args.source,
            timings=LeaseTimings.from_settings(settings.ingest),
        )
    finally:
        store.close()
    for doc_id in removed:
        print(f"deleted: {doc_id}")
    if not removed:
        print("nothing matched", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from indexer.admin import collection_status
    from indexer.store import list_collections, open_store

    settings = settings_from_args(args)
    names = [args.collection] if args.collection else list_collections(settings.qdrant)
    rows = []
    for name in names:
        store = open_store(settings.qdrant, name)
        try:
            rows.append(collection_status(scope(store, settings.tenants.field, args.tenant)))
        finally:
            store.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not rows:
        print("no collections")
    for r in rows:
        print(
            f"{r.collection}: {r.documents} documents, {r.chunks} chunks, {r.points} points; "
            f"model {r.model}, chunks {r.chunk_size}/{r.chunk_overlap} tokens"
            + (f"; {r.unfinished} documents being changed or left unfinished" if r.unfinished else "")
            + f"  [{r.location}]"
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.command == "ingest":
            return cmd_ingest(args)
        if args.command == "delete":
            return cmd_delete(args)
        return cmd_status(args)
    except IndexerError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
