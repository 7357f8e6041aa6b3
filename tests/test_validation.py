"""What may be stored: document ids, file names and metadata (``indexer.validation``), and the loaders and
the pipeline refusing the rest with a clear error before anything is written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from indexer.errors import InvalidInputError
from indexer.loaders import load_bytes
from indexer.validation import (
    MAX_DOC_ID_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    check_doc_id,
    check_file_name,
    check_metadata,
)


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("doc_id", "reason"),
    [
        ("a\x00b", r"U\+0000"),
        ("line\nbreak", r"U\+000A"),
        ("tab\there", r"U\+0009"),
        ("del\x7f", r"U\+007F"),
        ("c1\x85", r"U\+0085"),
        ("lone\ud800", "lone surrogate"),
        ("", "empty"),
        ("   ", "blank"),
        ("x" * (MAX_DOC_ID_CHARS + 1), "the limit is 1024"),
        (42, "must be a string"),
    ],
)
def test_doc_ids_with_control_characters_or_bad_text_are_refused(doc_id: object, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        check_doc_id(doc_id)


def test_ordinary_doc_ids_and_names_pass() -> None:
    for ok in ("contracts/2026/acme.pdf", "Договор №5.txt", "a b (1).md", "x" * MAX_DOC_ID_CHARS, "emoji 🙂.txt"):
        assert check_doc_id(ok) == ok
    assert check_file_name("report.pdf") == "report.pdf"
    with pytest.raises(InvalidInputError, match="over 255 characters"):
        check_file_name("x" * 256 + ".txt")
    with pytest.raises(InvalidInputError, match=r"U\+0000"):
        check_file_name("a\x00.txt")


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"x": math.nan}, "metadata.x: nan is not a finite number"),
        ({"x": math.inf}, "not a finite number"),
        ({"x": [1, -math.inf]}, r"metadata.x\[1\]: -inf"),
        ({"x": 2**63}, "9223372036854775808 is beyond 64 bits"),
        ({"x": -(2**63) - 1}, "beyond 64 bits"),
        ({"x": {"y": "\udc80"}}, "metadata.x.y: .*lone surrogate"),
        ({"": 1}, "keys must be non-empty strings"),
        ({1: "a"}, "keys must be non-empty strings"),
        ({"a\x00": 1}, r"U\+0000"),
        ({"x": {1, 2}}, "set is not a JSON value"),
        ({"x": b"bytes"}, "bytes is not a JSON value"),
        (nested(MAX_METADATA_DEPTH + 1), f"more than {MAX_METADATA_DEPTH} levels"),
        ({"big": "x" * MAX_METADATA_BYTES}, "the limit is 65536"),
        ([1, 2], "must be a JSON object"),
        ("{}", "must be a JSON object"),
    ],
)
def test_metadata_the_store_cannot_hold_is_refused_with_the_reason(metadata: object, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        check_metadata(metadata)


def test_metadata_that_fits_is_returned_as_plain_json() -> None:
    meta = {"team": "finance", "n": 2**63 - 1, "f": 0.5, "ok": True, "none": None, "tags": ("a", "b")}
    assert check_metadata(meta) == {**meta, "tags": ["a", "b"]}
    assert check_metadata(nested(MAX_METADATA_DEPTH)) == nested(MAX_METADATA_DEPTH)
    assert check_metadata(None) == {}


def test_deep_metadata_is_refused_without_recursing_through_it() -> None:
    deep: list = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    with pytest.raises(InvalidInputError, match="levels deep"):
        check_metadata({"x": deep})


def test_load_bytes_refuses_bad_names_ids_and_metadata_before_reading() -> None:
    with pytest.raises(InvalidInputError, match=r"the file name.*U\+0000"):
        load_bytes(b"text", "a\x00b.txt")
    with pytest.raises(InvalidInputError, match=r"doc_id.*U\+001B"):
        load_bytes(b"text", "a.txt", doc_id="esc\x1b[31m")
    with pytest.raises(InvalidInputError, match="the source .* lone surrogate"):
        load_bytes(b"text", "a.txt", source="/tmp/\udcff.txt")
    with pytest.raises(InvalidInputError, match="metadata.score: nan"):
        load_bytes(b"text", "a.txt", metadata={"score": float("nan")})
    doc = load_bytes(b"text", "a.txt", metadata={"k": [1, 2]})
    assert (doc.doc_id, doc.source, doc.metadata) == ("a.txt", "a.txt", {"k": [1, 2]})


def test_ingest_reports_a_file_named_with_control_characters_and_goes_on(
    tmp_path: Path, settings, encoder, store
) -> None:
    from indexer.pipeline import ingest
    from indexer.records import kind_filter

    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.txt").write_text("A perfectly ordinary document about invoices.")
    (root / "bad\x1b.txt").write_text("A file whose name carries an escape character.")
    report = ingest([root], settings, encoder, store, progress=False)
    by_source = {f.source: f for f in report.files}
    assert by_source["good.txt"].status == "ok"
    assert by_source["bad\x1b.txt"].status == "failed" and "U+001B" in (by_source["bad\x1b.txt"].error or "")
    assert store.count(kind_filter("document")) == 1
    with pytest.raises(InvalidInputError, match="metadata.x: inf"):
        ingest([root], settings, encoder, store, progress=False, metadata={"x": float("inf")})
    assert json.dumps(report.as_dict())  # the report itself stays printable


def test_a_stored_source_that_is_no_valid_path_breaks_no_delete(settings, encoder, store) -> None:
    """Records written before names were checked may hold any text; deleting by source resolves paths."""
    from indexer.admin import delete_documents
    from indexer.pipeline import ingest_bytes
    from indexer.versions import DocumentRecord

    ingest_bytes(b"An ordinary document.", "fine.txt", settings, encoder, store)
    legacy = [
        DocumentRecord("legacy-nul", "bad\x00name.txt", "", "0" * 64),
        DocumentRecord("legacy-long", "x" * 5000, "", "1" * 64),
    ]
    store.upsert([r.point() for r in legacy])
    assert delete_documents(store, sources=["never-ingested.txt"]) == []
    assert delete_documents(store, sources=["fine.txt"]) == ["fine.txt"]
    assert delete_documents(store, sources=["bad\x00name.txt"]) == ["legacy-nul"]
    assert delete_documents(store, doc_ids=["legacy-long"]) == ["legacy-long"]


def test_an_integer_too_long_to_print_is_named_by_its_size() -> None:
    with pytest.raises(InvalidInputError, match="metadata.x: an integer of 16610 bits is beyond 64 bits"):
        check_metadata({"x": 10**5000})
