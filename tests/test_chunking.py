from pathlib import Path

import pytest
from transformers import AutoTokenizer

from indexer.chunking import Chunker
from indexer.errors import ChunkingError
from indexer.loaders import build_document
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
        assert c.text.strip() == c.text and c.text
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
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
        assert set(c.pages) >= expected and c.pages
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
