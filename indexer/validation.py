"""Checks on what callers hand the indexer to store: document ids, file names, sources and metadata.

Every value stored in a payload is later read by other operations (searches answer it as JSON, deletes
match it, the CLI prints it), so what could break them is refused here, before anything is written:
control characters and text that is not valid Unicode, numbers no engine stores (NaN, infinities,
integers beyond 64 bits), and metadata too deep or too large to copy into every chunk.
Pure functions; the CLI, the pipeline and the HTTP service share them.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from indexer.errors import InvalidInputError

MAX_DOC_ID_CHARS = 1024
MAX_NAME_CHARS = 255  # a file name, as most file systems allow
MAX_SOURCE_CHARS = 4096  # a path
MAX_METADATA_BYTES = 64 * 1024  # as compact JSON; metadata is copied into every chunk of the document
MAX_METADATA_DEPTH = 16  # nested objects and arrays
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what engines store as an integer payload


def text_problem(value: str) -> str | None:
    """What makes ``value`` unfit to store as an identifier: a control character or a lone surrogate."""
    for i, c in enumerate(value):
        category = unicodedata.category(c)
        if category == "Cs":
            return f"a lone surrogate (U+{ord(c):04X}) at position {i}: it is not valid Unicode"
        if category == "Cc":
            return f"a control character (U+{ord(c):04X}) at position {i}"
    return None


def show_number(value: int | float) -> str:
    """A number for a message: itself, or its size when it is too long to print (or to convert at all)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def is_valid_unicode(value: str) -> bool:
    """True when ``value`` can be encoded as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(value: str, limit: int = 80) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def _check_identifier(value: Any, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty or blank")
    if len(value) > max_chars:
        raise InvalidInputError(f"{what} is {len(value)} characters long; the limit is {max_chars}")
    problem = text_problem(value)
    if problem:
        raise InvalidInputError(f"{what} {_short(value)} contains {problem}; use printable characters only")
    return value


def check_doc_id(doc_id: Any) -> str:
    """A document id: 1 to ``MAX_DOC_ID_CHARS`` characters, not blank, no control characters."""
    return _check_identifier(doc_id, "doc_id", MAX_DOC_ID_CHARS)


def check_file_name(name: Any) -> str:
    """A file name (an upload's, or a file's path relative to its ingest root)."""
    name = _check_identifier(name, "the file name", MAX_SOURCE_CHARS)
    if len(name.rsplit("/", 1)[-1]) > MAX_NAME_CHARS:
        raise InvalidInputError(f"the file name is over {MAX_NAME_CHARS} characters long")
    return name


def check_source_name(source: Any) -> str:
    """Where a document came from (a path, an upload's name), as stored with it."""
    return _check_identifier(source, "the source", MAX_SOURCE_CHARS)


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Metadata fit for every engine: a JSON object of bounded depth and size (``InvalidInputError`` otherwise).

    Keys are non-empty strings without control characters; values are strings, finite numbers,
    integers within 64 bits, booleans, null, and arrays and objects of those, at most
    ``MAX_METADATA_DEPTH`` levels deep and ``MAX_METADATA_BYTES`` as compact JSON. Returns a plain JSON
    copy (tuples become lists).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    _check_value(metadata, "metadata", 0)
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} (it is copied into every chunk)"
        )
    copy: dict[str, Any] = json.loads(text)
    return copy


def _check_value(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(f"{path}: {show_number(value)} is beyond 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{path}: {value} is not a finite number")
        return
    if isinstance(value, str):
        if not is_valid_unicode(value):
            raise InvalidInputError(f"{path}: the text contains a lone surrogate; it is not valid Unicode")
        return
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_METADATA_DEPTH:
            raise InvalidInputError(f"{path}: metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str) or not key:
                    raise InvalidInputError(f"{path}: keys must be non-empty strings, got {_short(repr(key))}")
                problem = text_problem(key)
                if problem:
                    raise InvalidInputError(f"{path}: the key {_short(key)} contains {problem}")
                _check_value(item, f"{path}.{key}", depth + 1)
        else:
            for i, item in enumerate(value):
                _check_value(item, f"{path}[{i}]", depth + 1)
        return
    raise InvalidInputError(f"{path}: {type(value).__name__} is not a JSON value (use text, numbers, lists, objects)")
