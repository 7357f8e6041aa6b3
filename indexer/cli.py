"""``indexer ingest|delete|metadata|status``: thin wrappers over the pipeline and the admin operations."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    p.add_argument(
        "--batch-size", type=int, help="chunks per encoder call / 8 (forward passes: model.max_batch_tokens)"
    )
    p.add_argument("--shards", type=int, help="server: shards of a new collection (default: the server's)")
    p.add_argument("--replication-factor", type=int, help="server: copies of each shard of a new collection")
    p.add_argument(
        "--write-consistency-factor", type=int, help="server: replicas that must apply each write (new collection)"
    )
    p.add_argument("--prune", action="store_true", help="remove documents no longer under the given folders")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster (ADDRESS, or $RAY_ADDRESS, or a local Ray); needs the 'ray' extra",
    )
    p.add_argument("--ray-actors", type=int, help="--ray: encoding actors (default: one per GPU, else one per node)")
    p.add_argument("--partition", metavar="I/N", help="take share I of N (0 <= I < N) of the documents, by doc id")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first file that fails")
    p.add_argument("--report", type=Path, help="write the run report (per file status, chunks, tokens, seconds, error)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    p.add_argument("--tenant", help="write the documents as this tenant's (README, Tenants)")

    rm = sub.add_parser("delete", help="remove documents by doc id, source path or payload filter")
    rm.add_argument("--doc-id", action="append", default=[], help="doc id (path relative to its ingest root)")
    rm.add_argument("--source", action="append", default=[], help="source path as ingested")
    rm.add_argument("--tenant", help="delete this tenant's documents (the same doc id elsewhere stays)")
    add_where_args(rm)
    add_common_args(rm)

    md = sub.add_parser("metadata", help="replace documents' user metadata without encoding them again")
    md.add_argument("--doc-id", action="append", default=[], help="doc id (repeatable)")
    md.add_argument("--tenant", help="change this tenant's documents only")
    add_where_args(md)
    md.add_argument(
        "--set", required=True, dest="metadata", help='the new metadata, a JSON object: \'{"project": "x"}\''
    )
    add_common_args(md)

    st = sub.add_parser("status", help="list collections with document, chunk and point counts and their model")
    add_common_args(st)
    st.add_argument("--json", action="store_true", help="print as JSON")
    st.add_argument("--tenant", help="count only this tenant's documents, chunks and points")
    return parser


def cmd_ingest(args: argparse.Namespace) -> int:
    from indexer.distributed import parse_partition
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
    options = {
        "recreate": args.recreate,
        "progress": not args.no_progress,
        "prune": args.prune,
        "fail_fast": args.fail_fast,
        "partition": parse_partition(args.partition) if args.partition else None,
    }
    if args.tenant and args.ray is not None:  # the actors open their own stores, unscoped
        return fail("--tenant does not combine with --ray yet: ingest a tenant's documents without --ray")
    with open_runtime(settings, "write") as rt:
        require_tenant(rt.store, settings.tenants.field, args.tenant, "ingest into")
        try:
            store = scope(rt.store, settings.tenants.field, args.tenant)
            if args.ray is None:
                report = ingest(args.paths, settings, rt.encoder, store, **options)
            else:
                from indexer.distributed.ray_run import ingest_on_ray

                address = args.ray or None
                report = ingest_on_ray(
                    args.paths, settings, rt.encoder, rt.store, address=address, actors=args.ray_actors, **options
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


def add_where_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="documents with a chunk whose payload FIELD equals VALUE, e.g. metadata.project=apollo (repeatable: "
        "all must hold; VALUE is read as JSON when it is a number or boolean, else as text)",
    )
    p.add_argument("--where-json", metavar="FILTER", help="a filter in Qdrant's JSON syntax: '{\"must\": [...]}'")


def where_filter(args: argparse.Namespace) -> Any:
    """The payload filter of ``--where`` and ``--where-json`` (None when neither is given)."""
    from indexer.admin import where_filter as build

    return build(args.where, args.where_json)


def _outcome(done: Sequence[str], busy: Sequence[str], verb: str) -> int:
    for doc_id in done:
        print(f"{verb}: {doc_id}")
    for doc_id in busy:
        print(f"busy: {doc_id}: another writer is changing it; run the same command again", file=sys.stderr)
    if busy:
        return EXIT_PARTIAL
    if not done:
        print("nothing matched", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from indexer.admin import delete_documents, delete_where
    from indexer.leases import LeaseTimings
    from indexer.store import open_store

    flt = where_filter(args)
    if not args.doc_id and not args.source and flt is None:
        return fail("name documents with --doc-id, --source, --where or --where-json", 2)
    if flt is not None and (args.doc_id or args.source):
        return fail("--where and --where-json take no --doc-id or --source: run them separately", 2)
    settings = settings_from_args(args)
    timings = LeaseTimings.from_settings(settings.ingest)
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        store.open_collection()
        require_tenant(store, settings.tenants.field, args.tenant, "delete from")
        store = scope(store, settings.tenants.field, args.tenant)
        if flt is not None:
            report = delete_where(store, flt, timings=timings)
            return _outcome(report.done, report.busy, "deleted")
        removed = delete_documents(store, args.doc_id, args.source, timings=timings)
    finally:
        store.close()
    return _outcome(removed, (), "deleted")


def cmd_metadata(args: argparse.Namespace) -> int:
    from indexer.admin import set_metadata, update_metadata_where
    from indexer.errors import DocumentBusy, InvalidInputError
    from indexer.leases import LeaseTimings
    from indexer.store import open_store

    flt = where_filter(args)
    if bool(args.doc_id) == (flt is not None):
        return fail("name documents with --doc-id, or with --where / --where-json (not both)", 2)
    try:
        metadata = json.loads(args.metadata)
    except ValueError as e:
        raise InvalidInputError(f"--set is not valid JSON: {e}") from e
    settings = settings_from_args(args)
    timings = LeaseTimings.from_settings(settings.ingest)
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        store.open_collection()
        require_tenant(store, settings.tenants.field, args.tenant, "change metadata in")
        store = scope(store, settings.tenants.field, args.tenant)
        if flt is not None:
            report = update_metadata_where(store, flt, metadata, timings=timings)
            return _outcome(report.done, report.busy, "updated")
        done, busy = [], []
        for doc_id in args.doc_id:
            try:
                if set_metadata(store, doc_id, metadata, timings=timings) is not None:
                    done.append(doc_id)
            except DocumentBusy:
                busy.append(doc_id)
    finally:
        store.close()
    return _outcome(done, busy, "updated")


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
        if args.command == "metadata":
            return cmd_metadata(args)
        return cmd_status(args)
    except IndexerError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
