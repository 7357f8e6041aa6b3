"""Flags shared by the ``indexer`` and ``retriever`` commands, and how errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from indexer.config import Settings, load_settings

# Exit codes (documented in README.md).
EXIT_OK = 0
EXIT_PARTIAL = 1  # some files failed, the others were ingested
EXIT_USAGE = 2  # bad flags (argparse's own code)
EXIT_ERROR = 3  # nothing could run: bad config, model or store unavailable, schema mismatch
EXIT_NOTHING = 4  # every file failed, or no file was found


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: built-in defaults, or $INDEXER_CONFIG)")
    p.add_argument("--collection", help="collection name")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--qdrant-url", help="Qdrant server URL (or $QDRANT_URL); default: the embedded engine")
    where.add_argument("--qdrant-path", help="embedded storage folder (default .qdrant)")
    p.add_argument("--qdrant-api-key", help="API key for the server (prefer $QDRANT_API_KEY)")
    p.add_argument("--model", help="model: Hugging Face id or local folder (or $INDEXER_MODEL)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")


def settings_from_args(args: argparse.Namespace, extra: dict[str, dict[str, Any]] | None = None) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "collection": {"name": args.collection},
        "qdrant": {"url": args.qdrant_url, "path": args.qdrant_path, "api_key": args.qdrant_api_key},
        "model": {"name": args.model},
    }
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(args.config, overrides)


def setup_logging(verbose: bool) -> None:
    if not verbose:  # transformers configures its own loggers when imported (lazily, later)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:  # third-party chatter that says nothing to a user
        for name in ("httpx", "FlagEmbedding", "transformers", "qdrant_client"):
            logging.getLogger(name).setLevel(logging.ERROR)


def fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
