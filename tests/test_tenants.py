"""Tenants on the real engines (Qdrant Edge, local mode): one collection, two tenants holding the same doc ids, and
no way for one to see, count, delete, overwrite or infer the other's documents (``indexer.tenants``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from indexer.admin import collection_status, delete_document, delete_documents
from indexer.encoder import BGEM3Encoder
from indexer.errors import InvalidInputError
from indexer.pipeline import ingest, ingest_bytes
from indexer.points import point_id
from indexer.records import KIND_CHUNK, KIND_DOCUMENT, kind_filter
from indexer.store import Store, open_store
from indexer.tenants import TenantStore, check_tenant, scope, scoped_id
from indexer.versions import document_record_id
from retriever import AsyncRetriever, Retriever
from retriever.context import build_context, store_chunk_fetcher, token_counter
from retriever.langchain import M3Retriever
from tests.helpers import ENGINES, SAMPLES, make_settings

FIELD = "tenant"
RU_QUERY = "неустойка за просрочку поставки"  # only tenant b holds the Russian documents
EN_QUERY = "remote work equipment"
MODES = ["dense", "sparse", "hybrid", "hybrid_dbsf", "hybrid_colbert", "colbert", "m3"]


@pytest.fixture(scope="module", params=ENGINES)
def shared(
    request: pytest.FixtureRequest,
    tiny_model_dir: Path,
    encoder: BGEM3Encoder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Retriever]:
    """One collection: tenant a holds samples/en, tenant b samples/en (the same doc ids) and samples/ru."""
    engine = request.param
    root = tmp_path_factory.mktemp(f"tenants-{engine}")
    s = make_settings(tiny_model_dir, root / "store" if engine == "edge" else ":memory:", engine)
    store = open_store(s.qdrant, s.collection.name)
    ingest([SAMPLES / "en"], s, encoder, TenantStore(store, FIELD, "a"), progress=False)
    ingest([SAMPLES / "en", SAMPLES / "ru"], s, encoder, TenantStore(store, FIELD, "b"), progress=False)
    r = Retriever(s, encoder=encoder, store=store)
    yield r
    r.close()


def points_of(store: Store, tenant: str, kind: str = KIND_CHUNK) -> dict[str, dict[str, Any]]:
    """Every point of ``tenant`` as the raw store holds it: {id: payload}."""
    flt = models.Filter(
        must=[
            models.FieldCondition(key=FIELD, match=models.MatchValue(value=tenant)),
            models.FieldCondition(key="kind", match=models.MatchValue(value=kind)),
        ]
    )
    return {p.id: p.payload for p in store.scroll(flt)}


def test_the_same_doc_id_in_two_tenants_is_two_documents(shared: Retriever) -> None:
    store = shared.store
    a_chunks, b_chunks = points_of(store, "a"), points_of(store, "b")
    assert not set(a_chunks) & set(b_chunks)
    a_docs = {p["doc_id"] for p in a_chunks.values()}
    assert a_docs == {"qdrant-hybrid-search-notes.txt", "remote-work-policy.md"}
    assert a_docs < {p["doc_id"] for p in b_chunks.values()}
    for pid, p in a_chunks.items():  # ids: the tenant's id of the id an untenanted ingest would give
        assert pid == scoped_id("a", point_id(p["doc_id"], p["content_hash"], p["chunk_index"]))
    a_records, b_records = points_of(store, "a", KIND_DOCUMENT), points_of(store, "b", KIND_DOCUMENT)
    assert len(a_records) == 2 and len(b_records) == 4
    assert set(a_records) == {scoped_id("a", document_record_id(d)) for d in a_docs}
    assert not set(a_records) & set(b_records)
    # Each tenant's status counts its own documents only.
    a, b = collection_status(scope(store, FIELD, "a")), collection_status(scope(store, FIELD, "b"))
    assert (a.documents, a.chunks) == (2, len(a_chunks))
    assert (b.documents, b.chunks) == (4, len(b_chunks))
    assert a.model == b.model is not None  # the collection's own record is shared


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_finds_only_the_tenants_own_chunks(shared: Retriever, mode: str) -> None:
    a_ids = set(points_of(shared.store, "a"))
    a = shared.for_tenant("a")
    assert {h.id for h in a.search(RU_QUERY, limit=50, mode=mode)} <= a_ids  # sparse: no shared words, no hits
    hits = a.search(EN_QUERY, limit=50, mode=mode)
    assert hits and {h.id for h in hits} <= a_ids
    everything = shared.search(RU_QUERY, limit=50, mode=mode)  # the unscoped view sees b's Russian documents
    assert any(h.id not in a_ids for h in everything)


@pytest.mark.parametrize(
    "flt",
    [
        {"tenant": "b"},
        {"should": [{"key": "tenant", "match": {"value": "b"}}, {"key": "doc_id", "match": {"value": "x"}}]},
        {"must_not": [{"key": "tenant", "match": {"value": "a"}}]},
        {"should": [{"key": "tenant", "match": {"any": ["a", "b"]}}]},
    ],
)
def test_a_filter_on_the_tenant_field_never_widens_the_scope(shared: Retriever, flt: Any) -> None:
    a_ids = set(points_of(shared.store, "a"))
    a = shared.for_tenant("a")
    for mode in ("hybrid", "m3"):
        hits = a.search(RU_QUERY, limit=50, mode=mode, filter=flt)
        assert {h.id for h in hits} <= a_ids
    assert a.search(RU_QUERY, limit=50, filter={"tenant": "b"}) == []
    assert a.search(RU_QUERY, limit=50, filter={"doc_id": "dogovor-postavki.txt"}) == []  # b's only


def test_batch_search_and_the_async_api_are_scoped(shared: Retriever) -> None:
    import asyncio

    a_ids = set(points_of(shared.store, "a"))
    results = shared.for_tenant("a").search_batch([RU_QUERY, EN_QUERY, "договор"], limit=20, mode="dense")
    assert all(r and {h.id for h in r} <= a_ids for r in results)

    async def run() -> tuple[list[Any], int]:
        ar = AsyncRetriever(shared)  # not closed: it would close the shared store
        view = ar.for_tenant("a")
        batch = await view.search_batch([RU_QUERY, EN_QUERY], limit=20, mode="m3")
        count = await view.count(kind_filter(KIND_DOCUMENT))
        await ar.batcher.aclose()
        return batch, count

    batch, count = asyncio.run(run())
    assert all(r and {h.id for h in r} <= a_ids for r in batch)
    assert count == 2


def test_langchain_adapter_is_scoped(shared: Retriever) -> None:
    a_ids = set(points_of(shared.store, "a"))
    docs = M3Retriever(retriever=shared, k=20, mode="hybrid", tenant="a").invoke(RU_QUERY)
    assert docs and {d.id for d in docs} <= a_ids
    docs = M3Retriever(retriever=shared, k=20, tenant="a", filter={"tenant": "b"}).invoke(RU_QUERY)
    assert docs == []


def test_context_expansion_reads_only_the_tenants_chunks(shared: Retriever) -> None:
    a, b = shared.for_tenant("a"), shared.for_tenant("b")
    count = token_counter(shared.encoder.tokenizer)
    a_hits = a.search(EN_QUERY, limit=3)
    ctx = build_context(a_hits, count, 2000, expand="neighbours", fetch=store_chunk_fetcher(a.store))
    assert ctx.citations
    a_texts = {p["text"] for p in points_of(shared.store, "a").values()}
    # Expansion fetched chunks of a only (a's and b's en chunks have the same text: compare by id instead).
    fetch_a = store_chunk_fetcher(a.store)
    b_hit = b.search(RU_QUERY, limit=1)[0]
    assert fetch_a(b_hit, 0, 100) == []  # a hit of b, handed to a's fetcher, gives nothing away
    own = fetch_a(a_hits[0], 0, 100)
    assert own and {h.id for h in own} <= set(points_of(shared.store, "a")) and {h.text for h in own} <= a_texts
    assert a.store.retrieve([b_hit.id]) == []


def test_a_tenant_cannot_delete_overwrite_or_relabel_anothers_document(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, engine: str
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store" if engine == "edge" else ":memory:", engine)
    store = open_store(s.qdrant, s.collection.name)
    try:
        a, b = TenantStore(store, FIELD, "a"), TenantStore(store, FIELD, "b")
        ingest_bytes(b"b's contract: penalty 5% per day", "contract.txt", s, encoder, b, metadata={"owner": "b"})
        ingest_bytes(b"b's secret plan", "secret.txt", s, encoder, b)
        b_before = points_of(store, "b")
        # a writes its own contract.txt (other bytes), then the same bytes as b's with other metadata
        ingest_bytes(b"a's contract: no penalty", "contract.txt", s, encoder, a, metadata={"owner": "a"})
        ingest_bytes(b"b's contract: penalty 5% per day", "contract.txt", s, encoder, a, metadata={"owner": "x"})
        assert points_of(store, "b") == b_before
        assert {p["metadata"].get("owner") for p in points_of(store, "a").values()} == {"x"}
        # the same bytes again: a metadata update without encoding (under a's lease, on a's points only)
        _, result = ingest_bytes(
            b"b's contract: penalty 5% per day", "contract.txt", s, encoder, a, metadata={"owner": "y"}
        )
        assert result.status == "unchanged"
        assert {p["metadata"].get("owner") for p in points_of(store, "a").values()} == {"y"}
        assert points_of(store, "b") == b_before
        # deleting: a's own copy only; b's secret is "no such document" for a
        assert delete_document(a, "secret.txt") is None
        assert delete_documents(a, sources=["secret.txt"]) == []
        assert delete_document(a, "contract.txt") == 1
        assert points_of(store, "b") == b_before and points_of(store, "a") == {}
        assert collection_status(a).documents == 0 and collection_status(b).documents == 2
        with pytest.raises(InvalidInputError, match="names the tenant"):
            a.set_payload(kind_filter(KIND_CHUNK), {FIELD: "b"})
    finally:
        store.close()


def test_without_a_tenant_ids_and_payloads_are_unchanged(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, engine: str
) -> None:
    s = make_settings(tiny_model_dir, tmp_path / "store" if engine == "edge" else ":memory:", engine)
    store = open_store(s.qdrant, s.collection.name)
    try:
        assert scope(store, FIELD, None) is store
        ingest([SAMPLES / "en"], s, encoder, store, progress=False)
        chunks = {p.id: p.payload for p in store.scroll(kind_filter(KIND_CHUNK))}
        records = {p.id: p.payload for p in store.scroll(kind_filter(KIND_DOCUMENT))}
        assert chunks and all(FIELD not in p for p in [*chunks.values(), *records.values()])
        assert set(chunks) == {point_id(p["doc_id"], p["content_hash"], p["chunk_index"]) for p in chunks.values()}
        assert set(records) == {document_record_id(p["doc_id"]) for p in records.values()}
        if engine == "edge":
            assert FIELD not in store.shard.info().payload_schema  # type: ignore[attr-defined]
    finally:
        store.close()


def test_edge_indexes_the_tenant_field_as_the_tenant(shared: Retriever) -> None:
    if shared.store.engine != "edge":
        pytest.skip("local mode has no payload indexes")
    index = shared.store.shard.info().payload_schema[FIELD]  # type: ignore[attr-defined]
    assert str(index.data_type).endswith("Keyword") and index.params.is_tenant is True


@pytest.mark.parametrize("bad", ["", " a", "a/b", "x" * 129, "a\nb", None, 3])
def test_tenant_names_are_checked(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        check_tenant(bad)


def test_the_commands_take_a_tenant(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from indexer import cli as indexer_cli
    from retriever import cli as retriever_cli
    from tests.helpers import CHUNK_SIZE

    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = {CHUNK_SIZE}\n'
        f'chunk_overlap = 16\n[qdrant]\npath = "{tmp_path / "store"}"\n[collection]\nname = "cli_docs"\n'
    )
    common = ["--config", str(cfg)]
    assert indexer_cli.main(["ingest", *common, "--no-progress", "--tenant", "a", str(SAMPLES / "en")]) == 0
    assert indexer_cli.main(["ingest", *common, "--no-progress", "--tenant", "b", str(SAMPLES / "ru")]) == 0
    capsys.readouterr()

    def status(*extra: str) -> dict[str, Any]:
        assert indexer_cli.main(["status", *common, "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)[0]

    assert status("--tenant", "a")["documents"] == 2 and status("--tenant", "b")["documents"] == 2
    assert status()["documents"] == 4  # the operator's view: every tenant
    assert retriever_cli.main(["search", "неустойка", *common, "--tenant", "a", "--json", "--limit", "50"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and {h["doc_id"] for h in hits} <= {"qdrant-hybrid-search-notes.txt", "remote-work-policy.md"}
    assert indexer_cli.main(["delete", *common, "--tenant", "a", "--doc-id", "dogovor-postavki.txt"]) == 4
    assert indexer_cli.main(["delete", *common, "--tenant", "b", "--doc-id", "dogovor-postavki.txt"]) == 0
    capsys.readouterr()
    assert status("--tenant", "b")["documents"] == 1 and status("--tenant", "a")["documents"] == 2
    assert indexer_cli.main(["status", *common, "--tenant", "no/slash"]) == 3
    # Untenanted writes would reach every tenant's document of that doc id: refused on a collection with tenants.
    assert indexer_cli.main(["ingest", *common, "--no-progress", str(SAMPLES / "en")]) == 3
    assert indexer_cli.main(["delete", *common, "--doc-id", "remote-work-policy.md"]) == 3
    assert "holds tenants' documents" in capsys.readouterr().err
    assert status("--tenant", "a")["documents"] == 2


@pytest.mark.parametrize("field", ["doc_id", "kind", "metadata", "1tenant", "a.b", ""])
def test_the_tenant_field_cannot_be_one_the_indexer_writes(field: str) -> None:
    from indexer.config import load_settings
    from indexer.errors import ConfigError

    with pytest.raises(ConfigError, match="tenants.field"):
        load_settings(overrides={"tenants": {"field": field}}, env={})


def test_groups_and_diversity_are_scoped(shared: Retriever) -> None:
    a_ids = set(points_of(shared.store, "a"))
    a = shared.for_tenant("a")
    for query in (EN_QUERY, RU_QUERY):
        grouped = a.search(query, limit=10, mode="hybrid", group_by="doc_id", group_size=3)
        assert {h.id for h in grouped} <= a_ids and {h.doc_id for h in grouped} <= {
            "qdrant-hybrid-search-notes.txt",
            "remote-work-policy.md",
        }
        diverse = a.search(query, limit=10, mode="dense", diversity=0.5)
        assert diverse and {h.id for h in diverse} <= a_ids


def test_delete_and_metadata_by_filter_stay_in_the_tenant(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path, engine: str
) -> None:
    from indexer.admin import delete_where, update_metadata_where

    s = make_settings(tiny_model_dir, tmp_path / "store" if engine == "edge" else ":memory:", engine)
    store = open_store(s.qdrant, s.collection.name)
    try:
        a, b = TenantStore(store, FIELD, "a"), TenantStore(store, FIELD, "b")
        for tenant in (a, b):
            ingest_bytes(b"shared project notes", "notes.txt", s, encoder, tenant, metadata={"project": "apollo"})
        b_before = points_of(store, "b")
        everything = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value="chunk"))])
        assert update_metadata_where(a, everything, {"project": "zeus"}).done == ("notes.txt",)
        assert points_of(store, "b") == b_before
        b_tenant = models.Filter(must=[models.FieldCondition(key=FIELD, match=models.MatchValue(value="b"))])
        assert delete_where(a, b_tenant).done == ()  # a filter naming b finds nothing of a, and deletes nothing
        assert delete_where(a, everything).done == ("notes.txt",)
        assert points_of(store, "b") == b_before and points_of(store, "a") == {}
    finally:
        store.close()


def test_tenant_with_ray_is_refused_before_anything_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from indexer import cli as indexer_cli

    # Ray's actors open their own stores, unscoped: a tenant's run there would write untenanted points.
    store = tmp_path / "store"
    args = ["ingest", str(SAMPLES / "en"), "--qdrant-path", str(store), "--no-progress", "--ray", "--tenant", "a"]
    assert indexer_cli.main(args) == 3
    assert "--tenant does not combine with --ray" in capsys.readouterr().err
    assert not store.exists()  # refused before the store (or the model) was opened
