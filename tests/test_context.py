"""Context building: real chunks of a real sample (real tokenizer), merged, cited and cut to a budget."""

from __future__ import annotations

import pytest

from indexer.chunking import Chunker
from indexer.encoder import BGEM3Encoder
from indexer.loaders import load_bytes
from indexer.models import Chunk, Hit
from indexer.points import chunk_payload, point_id
from retriever.api import SearchHit
from retriever.context import build_context, merge_hits, token_counter
from tests.helpers import SAMPLES


def as_hit(chunk: Chunk, score: float = 1.0, doc_id: str | None = None) -> SearchHit:
    payload = chunk_payload(chunk)
    if doc_id is not None:
        payload["doc_id"] = doc_id
    return SearchHit.from_hit(
        Hit(id=point_id(payload["doc_id"], chunk.content_hash, chunk.chunk_index), score=score, payload=payload)
    )


@pytest.fixture(scope="module")
def chunks(encoder: BGEM3Encoder) -> tuple[str, list[Chunk]]:
    path = SAMPLES / "en" / "qdrant-hybrid-search-notes.txt"
    doc = load_bytes(path.read_bytes(), path.name)
    found = list(Chunker(encoder.tokenizer, 48, 12).split(doc))
    assert len(found) >= 6
    return doc.text, found


def test_overlapping_and_adjacent_chunks_merge_into_the_document_text(chunks: tuple[str, list[Chunk]]) -> None:
    text, cs = chunks
    # Out of order, as a ranking returns them: chunks 2, 1 and 3 overlap (chunk_overlap 12 tokens).
    merged = merge_hits([as_hit(cs[2], 0.9), as_hit(cs[1], 0.8), as_hit(cs[3], 0.7)])
    assert len(merged) == 1
    [p] = merged
    assert p.chunks == [1, 2, 3]
    assert " ".join(p.text.split()) == " ".join(text[cs[1].start : cs[3].end].split())
    assert p.score == 0.9


def test_distant_chunks_stay_apart_in_rank_order(chunks: tuple[str, list[Chunk]]) -> None:
    _, cs = chunks
    merged = merge_hits([as_hit(cs[5]), as_hit(cs[0]), as_hit(cs[5])])  # the repeated hit is dropped
    assert [p.chunks for p in merged] == [[5], [0]]


def test_same_text_under_another_doc_id_is_dropped(chunks: tuple[str, list[Chunk]]) -> None:
    _, cs = chunks
    merged = merge_hits([as_hit(cs[0]), as_hit(cs[0], doc_id="copy-of-the-same-file.md")])
    assert len(merged) == 1, merged
    assert merged[0].doc_id == cs[0].doc_id


def test_context_has_numbered_citations_and_fits_the_budget(
    chunks: tuple[str, list[Chunk]], encoder: BGEM3Encoder
) -> None:
    _, cs = chunks
    count = token_counter(encoder.tokenizer)
    hits = [as_hit(cs[4], 0.9), as_hit(cs[0], 0.8), as_hit(cs[1], 0.7)]
    full = build_context(hits, count, max_tokens=100_000)
    assert [c.chunk_indexes for c in full.citations] == [(4,), (0, 1)]
    assert full.text.startswith(f"[1] {cs[4].source}, p. 1\n"), full.text
    assert f"\n\n[2] {cs[0].source}, p. 1\n" in full.text
    assert full.tokens == count(full.text)
    assert full.dropped == 0

    budget = count(full.text) - 1  # one token short: the second passage no longer fits
    cut = build_context(hits, count, max_tokens=budget)
    assert len(cut.citations) == 1, cut.citations
    assert cut.dropped == 1
    assert cut.tokens <= budget
    assert cut.text == full.text.split("\n\n[2]")[0]


def test_a_smaller_later_passage_still_fits(chunks: tuple[str, list[Chunk]], encoder: BGEM3Encoder) -> None:
    _, cs = chunks
    count = token_counter(encoder.tokenizer)
    big = [as_hit(c) for c in cs[:4]]  # one merged passage of four chunks
    small = as_hit(cs[-1])
    budget = count(f"[1] {small.source}, p. 1\n{small.text.strip()}")
    ctx = build_context([*big, small], count, max_tokens=budget)
    assert [c.chunk_indexes for c in ctx.citations] == [(cs[-1].chunk_index,)]
    assert ctx.citations[0].number == 1
    assert ctx.dropped == 1


def test_pages_are_cited_from_every_merged_chunk() -> None:
    def hit(i: int, start: int, end: int, pages: tuple[int, ...]) -> SearchHit:
        return SearchHit(
            id=str(i), score=1.0, text=str(i) * (end - start), doc_id="r.pdf", source="r.pdf", pages=pages,
            chunk_index=i, start=start, end=end,
        )  # fmt: skip

    ctx = build_context([hit(0, 0, 10, (2,)), hit(1, 10, 20, (3,))], len, max_tokens=1000)
    assert [c.label for c in ctx.citations] == ["r.pdf, pp. 2-3"]
    with pytest.raises(ValueError):
        build_context([], len, max_tokens=0)
