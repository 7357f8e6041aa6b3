"""Heading paths end to end: payloads, hits, the CLI's lines, LangChain metadata, and context expanded to a
section or to neighbouring chunks by chunks fetched from real engines (Qdrant Edge and local mode)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from indexer.config import Settings
from indexer.encoder import BGEM3Encoder
from indexer.loaders import load_bytes
from indexer.models import Hit
from indexer.pipeline import ingest_documents
from indexer.store import Store
from retriever.api import SearchHit
from retriever.cli import format_hits
from retriever.context import build_context, store_chunk_fetcher, token_counter
from tests.office_files import docx_bytes

RULES = [f"Rule {n}: a laptop keeps disk encryption and a screen lock of {n} minutes at most." for n in range(1, 13)]
POLICY = [
    (0, "Security Policy", ["Applies to every employee and contractor."]),
    (1, "1. Scope", ["Company laptops, phones and accounts."]),
    (1, "2. Devices", RULES),
    (1, "3. Incidents", ["Report a lost device to the service desk within one hour."]),
]
SECTION = ("Security Policy", "2. Devices")


@pytest.fixture
def indexed(settings: Settings, encoder: BGEM3Encoder, store: Store) -> list[SearchHit]:
    """The policy ingested (chunks of 128 tokens); every chunk as a hit, in document order."""
    doc = load_bytes(docx_bytes(POLICY), "policy.docx")
    report = ingest_documents([doc], settings, encoder, store)
    assert report.failed == [] and report.chunks > 4
    points = store.scroll()
    hits = [SearchHit.from_hit(Hit(p.id, 1.0, p.payload)) for p in points if p.payload.get("kind") == "chunk"]
    return sorted(hits, key=lambda h: h.chunk_index)


def section_hits(hits: list[SearchHit]) -> list[SearchHit]:
    return [h for h in hits if h.headings[: len(SECTION)] == SECTION]


def test_heading_paths_reach_hits_cli_and_langchain(indexed: list[SearchHit]) -> None:
    devices = section_hits(indexed)
    assert len(devices) >= 3  # the section is longer than one chunk: split inside itself
    assert all(h.headings == SECTION for h in devices)
    assert [h.headings for h in indexed if "one hour" in h.text] == [("Security Policy", "3. Incidents")]
    assert devices[0].as_dict()["headings"] == list(SECTION)
    assert "    § Security Policy › 2. Devices" in format_hits(devices[:1], "dense").splitlines()
    from retriever.langchain import to_document

    assert to_document(devices[0]).metadata["headings"] == list(SECTION)


def test_a_hit_expands_to_its_whole_section(indexed: list[SearchHit], store: Store, encoder: BGEM3Encoder) -> None:
    count = token_counter(encoder.tokenizer)
    devices = section_hits(indexed)
    middle = devices[len(devices) // 2]
    plain = build_context([middle], count, max_tokens=100_000)
    assert plain.citations[0].chunk_indexes == (middle.chunk_index,)
    ctx = build_context([middle], count, 100_000, expand="section", fetch=store_chunk_fetcher(store))
    [citation] = ctx.citations
    assert citation.chunk_indexes == tuple(h.chunk_index for h in devices)  # the section, no more
    assert citation.label == "policy.docx, § Security Policy › 2. Devices, p. 1"
    for rule in RULES:
        assert rule in ctx.text
    assert "Company laptops" not in ctx.text and "one hour" not in ctx.text
    assert ctx.text.startswith("[1] policy.docx, § Security Policy › 2. Devices, p. 1\n2. Devices\n\nRule 1:")
    assert ctx.tokens == count(ctx.text)


def test_expansion_stays_within_the_budget_and_keeps_other_passages(
    indexed: list[SearchHit], store: Store, encoder: BGEM3Encoder
) -> None:
    count = token_counter(encoder.tokenizer)
    devices = section_hits(indexed)
    middle = devices[len(devices) // 2]
    [incidents] = [h for h in indexed if "one hour" in h.text]
    hits = [middle, incidents]
    base = build_context(hits, count, max_tokens=100_000)
    budget = base.tokens + max(count(h.text) for h in devices) + 10  # room for about one more chunk, not the section
    ctx = build_context(hits, count, budget, expand="section", fetch=store_chunk_fetcher(store))
    assert ctx.tokens <= budget and ctx.tokens == count(ctx.text)
    grown, other = ctx.citations
    assert other.chunk_indexes == (incidents.chunk_index,)  # placed before expansion: never dropped for it
    assert middle.chunk_index in grown.chunk_indexes
    assert 1 < len(grown.chunk_indexes) < len(devices)
    assert list(grown.chunk_indexes) == list(range(grown.chunk_indexes[0], grown.chunk_indexes[-1] + 1))


def test_neighbours_expansion_and_a_replaced_version(
    indexed: list[SearchHit], store: Store, encoder: BGEM3Encoder, settings: Settings
) -> None:
    count = token_counter(encoder.tokenizer)
    devices = section_hits(indexed)
    middle = devices[len(devices) // 2]
    fetch = store_chunk_fetcher(store)
    ctx = build_context([middle], count, 100_000, expand="neighbours", fetch=fetch, neighbours=1)
    i = middle.chunk_index
    assert ctx.citations[0].chunk_indexes == (i - 1, i, i + 1)
    # Section expansion never crosses into the next section; neighbours may.
    last = devices[-1]
    across = build_context([last], count, 100_000, expand="neighbours", fetch=fetch)
    assert across.citations[0].chunk_indexes == (last.chunk_index - 1, last.chunk_index, last.chunk_index + 1)
    assert across.citations[0].headings == ("Security Policy",)  # what the merged chunks share
    # A new version of the document replaces the old one: a hit of the old version is not grown with
    # the new version's chunks.
    changed = [*POLICY[:2], (1, "2. Devices", [r.replace("minutes", "min.") for r in RULES]), POLICY[3]]
    ingest_documents([load_bytes(docx_bytes(changed), "policy.docx")], settings, encoder, store)
    stale = build_context([middle], count, 100_000, expand="section", fetch=store_chunk_fetcher(store))
    assert stale.citations[0].chunk_indexes == (i,) and "min." not in stale.text


def test_expansion_needs_a_fetcher_and_a_section(indexed: list[SearchHit], store: Store) -> None:
    with pytest.raises(ValueError, match="needs a fetch function"):
        build_context(indexed[:1], len, 1000, expand="section")
    untitled = replace(indexed[0], headings=())
    ctx = build_context([untitled], len, 100_000, expand="section", fetch=store_chunk_fetcher(store))
    assert ctx.citations[0].chunk_indexes == (untitled.chunk_index,)  # no section to name: not grown


def test_the_service_context_expands_a_hit_to_its_section(settings: Settings, encoder: BGEM3Encoder) -> None:
    from tests.service_helpers import serve

    with serve(settings, encoder) as base, httpx.Client(base_url=base, timeout=60) as client:
        files = {"file": ("policy.docx", docx_bytes(POLICY), "application/octet-stream")}
        assert client.post("/documents", files=files).status_code == 201
        ask = {"query": "Rule 7: a laptop keeps disk encryption", "limit": 1, "max_tokens": 100_000}
        plain = client.post("/context", json=ask).json()
        grown = client.post("/context", json={**ask, "expand": "section"}).json()
        near = client.post("/context", json={**ask, "expand": "neighbours", "neighbours": 1}).json()
        refused = client.post("/context", json={**ask, "expand": "everything"})
    [one], [section], [around] = plain["citations"], grown["citations"], near["citations"]
    [i] = one["chunk_indexes"]
    assert around["chunk_indexes"] == [i - 1, i, i + 1]
    assert section["headings"] == list(SECTION) and i in section["chunk_indexes"]
    assert not all(rule in plain["text"] for rule in RULES)
    assert all(rule in grown["text"] for rule in RULES)  # the whole section, every rule of it
    assert "lost device" not in grown["text"]  # and nothing of the next section
    assert refused.status_code == 422
