from dataclasses import replace
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from indexer.chunking import Chunker
from indexer.errors import ChunkingError
from indexer.loaders import build_document, load_bytes
from tests.helpers import sample_texts


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def exact_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def check_chunks(doc, chunks, tokenizer, size: int) -> None:
    assert chunks, "no chunks"
    for c in chunks:
        assert c.text == doc.text[c.start : c.end]
        assert c.token_count == exact_tokens(tokenizer, c.text) <= size
        assert c.text.strip() == c.text
        assert c.text, "empty chunk"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts), f"two chunks start at the same offset: {starts}"
    # Nothing lost: every non-blank character lies in some chunk.
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    lost = [i for i, ch in enumerate(doc.text) if not covered[i] and not ch.isspace()]
    assert not lost, f"characters not in any chunk, e.g. {doc.text[lost[0] : lost[0] + 30]!r}"


@pytest.mark.parametrize("size, overlap", [(32, 0), (64, 8), (128, 16), (512, 64)])
def test_chunks_stay_within_the_token_budget(tokenizer, size: int, overlap: int) -> None:
    text = "\n\n".join(sample_texts())
    doc = build_document("d", "d", text.encode(), [text])
    chunks = list(Chunker(tokenizer, size, overlap).split(doc))
    check_chunks(doc, chunks, tokenizer, size)
    # The budget is used, not wasted (counting special tokens once per piece would halve it).
    assert sum(c.token_count for c in chunks) / len(chunks) >= 0.55 * size


def test_text_without_any_separator_still_splits(tokenizer) -> None:
    text = "абвгдеёжзийклмнопрстуфхцчшщ0123456789qwertyuiop" * 400  # one 18,800-character "word"
    doc = build_document("d", "d", text.encode(), [text])
    chunks = list(Chunker(tokenizer, 100, 10).split(doc))
    assert len(chunks) > 5
    check_chunks(doc, chunks, tokenizer, 100)


def test_8192_ceiling(tokenizer) -> None:
    with pytest.raises(ChunkingError):
        Chunker(tokenizer, 8193)
    text = " ".join(["word"] * 9000) + " " + "x" * 30000
    doc = build_document("d", "d", text.encode(), [text])
    chunks = list(Chunker(tokenizer, 8192, 0).split(doc))
    check_chunks(doc, chunks, tokenizer, 8192)
    assert max(c.token_count for c in chunks) > 4096  # the ceiling is reached, not avoided


def test_repeated_text_keeps_true_offsets(tokenizer) -> None:
    text = "The same sentence again and again. " * 200
    doc = build_document("d", "d", text.encode(), [text])
    chunks = list(Chunker(tokenizer, 40, 8).split(doc))
    check_chunks(doc, chunks, tokenizer, 40)
    assert chunks[-1].end >= len(text.rstrip()) - 1


def test_pages_of_chunks(tokenizer) -> None:
    pages = [f"Page {n} talks about topic number {n}. " * 12 for n in range(1, 5)]
    doc = build_document("d", "d", b"x", pages)
    chunks = list(Chunker(tokenizer, 48, 0).split(doc))
    check_chunks(doc, chunks, tokenizer, 48)
    for c in chunks:
        expected = {n for n in range(1, 5) if f"Page {n} " in c.text or f"number {n}." in c.text}
        assert set(c.pages) >= expected, (c.pages, c.text[:60])
        assert c.pages, c.text[:60]
    assert {p for c in chunks for p in c.pages} == {1, 2, 3, 4}


def test_overlap_must_be_below_size(tokenizer) -> None:
    with pytest.raises(ChunkingError):
        Chunker(tokenizer, 64, 64)


@pytest.mark.parametrize("overlap", [0, 16])
def test_periodic_text_offsets_do_not_drift(tokenizer, overlap: int) -> None:
    text = "First version. " * 300
    doc = build_document("d", "d", text.encode(), [text])
    chunks = list(Chunker(tokenizer, 128, overlap).split(doc))
    check_chunks(doc, chunks, tokenizer, 128)
    gaps = [b.start - a.end for a, b in zip(chunks, chunks[1:], strict=False)]
    assert all(g <= 1 for g in gaps)  # consecutive: overlapping, or one space apart
    if overlap:
        assert all(g < 0 for g in gaps)


# ------------------------------------------------------------------------------------------ heading-aware


def sectioned_markdown() -> str:
    long_clause = " ".join(f"The supplier shall keep record number {i} of every delivery for audit." for i in range(40))
    return (
        "# Supply Agreement\n\nBetween Northwind and Contoso.\n\n"
        "## 1. Definitions\n\n"
        + "Goods means pumps and spare parts listed in the annex of this agreement. "
        * 3
        + "\n\n"
        "## 2. Obligations\n\n"
        "### 2.1 Delivery\n\nDelivery within 14 days.\n\n"
        "### 2.2 Acceptance\n\nAcceptance within 3 days.\n\n"
        "#### 2.2.1 Defects\n\nDefects are reported in writing.\n\n"
        "## 3. Records\n\n" + long_clause + "\n\n"
        "## 4. Term\n\nThe agreement runs for two years and renews itself unless one party objects in writing.\n"
    )


def test_heading_chunks_stay_inside_their_sections(tokenizer) -> None:
    text = sectioned_markdown()
    doc = load_bytes(text.encode(), "contract.md")
    chunks = list(Chunker(tokenizer, 64, 8).split(doc))
    check_chunks(doc, chunks, tokenizer, 64)
    by_path = {s.headings: s for s in doc.sections}
    for c in chunks:
        # A chunk lies inside the sections under its heading path, and only in them.
        inside = [s for s in doc.sections if s.start < c.end and c.start < s.end]
        assert all(s.headings[: len(c.headings)] == c.headings for s in inside), (c.headings, c.text[:60])
    assert not [c.text for c in chunks if c.text.startswith("#") and "\n" not in c.text]  # no heading left alone
    records = [c for c in chunks if c.headings[-1:] == ("3. Records",)]
    assert len(records) > 2  # the long section is split inside itself, every piece keeps its path
    section = by_path[("Supply Agreement", "3. Records")]
    assert all(section.start <= c.start for c in records), (section.start, [c.start for c in records])
    assert all(c.end <= section.end for c in records), (section.end, [c.end for c in records])
    [term] = [c for c in chunks if "two years" in c.text]
    assert term.headings == ("Supply Agreement", "4. Term")
    assert term.text.startswith("## 4. Term"), term.text[:60]


def test_small_sections_merge_with_siblings_and_children_only(tokenizer) -> None:
    doc = load_bytes(sectioned_markdown().encode(), "contract.md")
    chunks = list(Chunker(tokenizer, 64, 8).split(doc))
    # "2. Obligations" is a heading alone: it takes its first child, 2.1.
    [obligations] = [c for c in chunks if "## 2. Obligations" in c.text]
    assert "Delivery within 14 days" in obligations.text
    assert obligations.headings == ("Supply Agreement", "2. Obligations")
    # A deep section does not take a section of another branch ("2.2.1" and "3." share only the title).
    [defects] = [c for c in chunks if "Defects are reported" in c.text]
    assert "3. Records" not in defects.text


def test_plain_splitting_is_a_setting_and_still_names_sections(tokenizer) -> None:
    doc = load_bytes(sectioned_markdown().encode(), "contract.md")
    plain = list(Chunker(tokenizer, 64, 8, headings=False).split(doc))
    unsectioned = list(Chunker(tokenizer, 64, 8).split(replace(doc, sections=())))
    assert [(c.start, c.end) for c in plain] == [(c.start, c.end) for c in unsectioned]
    check_chunks(doc, plain, tokenizer, 64)
    assert [c.headings for c in plain] == [doc.headings_between(c.start, c.end) for c in plain]
    straddling = [c for c in plain if "Acceptance within" in c.text and "Delivery within" in c.text]
    assert straddling, "no plain chunk holds both sections"
    assert straddling[0].headings == ("Supply Agreement", "2. Obligations")  # what both share
    heading_aware = list(Chunker(tokenizer, 64, 8).split(doc))
    assert [(c.start, c.end) for c in heading_aware] != [(c.start, c.end) for c in plain]


def test_separator_free_section_is_cut_by_token_windows(tokenizer) -> None:
    word = "абвгдеёжзийклмнопрстуфхцчшщ0123456789qwertyuiop" * 200
    text = f"# Intro\n\nShort.\n\n# Blob\n\n{word}\n\n# After\n\nThe end."
    doc = load_bytes(text.encode(), "blob.md")
    chunks = list(Chunker(tokenizer, 100, 10).split(doc))
    check_chunks(doc, chunks, tokenizer, 100)
    blob = [c for c in chunks if c.headings == ("Blob",)]
    assert len(blob) > 5
    assert [c for c in chunks if c.headings == ("After",)], "no chunk under the heading after the blob"


def test_slides_keep_their_pages(tokenizer) -> None:
    from tests.office_files import pptx_bytes

    slides = [(f"Slide {n}", f"Point {n}: " + "revenue and costs by region. " * (n * 3), None) for n in range(1, 5)]
    doc = load_bytes(pptx_bytes(slides), "deck.pptx")
    chunks = list(Chunker(tokenizer, 48, 0).split(doc))
    check_chunks(doc, chunks, tokenizer, 48)
    for c in chunks:
        assert c.headings, c.text[:60]
        assert c.pages == (int(c.headings[0].split()[1]),), c.headings  # a slide's chunks: its page, its title
