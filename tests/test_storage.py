"""Storage options: uint8 codes scored as cosines, int8 quantization searched with rescoring, ColBERT pooled
for every chunk; each one recorded so that a run with other storage settings is refused. Real engines:
Qdrant Edge (which applies datatypes and quantization) and qdrant-client local mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from indexer import requests as rq
from indexer.config import CollectionSettings, Settings
from indexer.encoder import BGEM3Encoder, fit_multivector, pool_multivector
from indexer.errors import ConfigError, SchemaMismatchError
from indexer.models import Chunk, Embedding, EncodedChunk, SparseVec
from indexer.modes import SearchMode
from indexer.pipeline import ingest
from indexer.points import to_point
from indexer.records import chunks_filter
from indexer.schema import COLBERT, DENSE, CollectionInfo, CollectionSpec, VectorInfo, check_shape
from indexer.storage import EuclidCodes, from_uint8, to_uint8
from indexer.store import open_store
from indexer.store.edge import EdgeStore
from indexer.store.features import unsupported
from indexer.store.qdrant_params import collection_info, collection_params, quantization_config
from retriever import Retriever
from retriever.query import build_request
from retriever.stored import Storage, VectorSearch
from tests.helpers import ENGINES, SAMPLES, make_settings

RNG = np.random.default_rng(7)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------ uint8 codes (pure)


def test_uint8_codes_cover_unit_components_without_clipping() -> None:
    x = np.array([-1.0, -0.5, 0.0, 0.001, 0.5, 1.0], dtype=np.float32)
    codes = to_uint8(x)
    assert codes.dtype == np.uint8 and codes.tolist() == [0, 64, 128, 128, 191, 255]
    assert np.abs(from_uint8(codes) - x).max() <= 0.5 / 127.5 + 1e-7


@pytest.mark.parametrize("dim", [64, 1024])
def test_euclidean_distance_of_codes_gives_back_the_cosine(dim: int) -> None:
    """The cosine of the originals, not that of the offset codes: noise of about 0.003 per document, and an
    offset of about that size per query (the query's own rounding), which leaves its ranking alone."""
    q, docs = unit(RNG.standard_normal(dim)), unit(RNG.standard_normal((2000, dim)) + 0.3)
    cos = docs @ q
    d = np.linalg.norm(to_uint8(docs).astype(np.float64) - to_uint8(q).astype(np.float64), axis=1)
    codes = EuclidCodes(dim)
    recovered = np.array([codes.similarity(x) for x in d])
    err = recovered - cos
    assert abs(err.mean()) < 0.01 and err.std() < 5e-3 and np.abs(err).max() < 0.03
    offset = (to_uint8(docs).astype(np.float64) @ to_uint8(q)) / (
        np.linalg.norm(to_uint8(docs).astype(np.float64), axis=1) * np.linalg.norm(to_uint8(q).astype(np.float64))
    )
    assert np.abs(offset - cos).mean() > 0.1  # why not a cosine of the codes: the offset swamps it
    for sim in (-0.5, 0.0, 0.3, 0.99):
        assert codes.similarity(codes.max_distance(sim)) == pytest.approx(sim, abs=1e-9)
        assert codes.similarity(codes.max_distance(sim, 7), 7) == pytest.approx(sim, abs=1e-9)


# ------------------------------------------------------------------------------------ pooling (pure)


def test_every_chunk_can_be_pooled_by_a_factor() -> None:
    v = unit(RNG.standard_normal((10, 8)))
    pooled = pool_multivector(v, 3)
    assert pooled.shape == (4, 8)
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-6)
    assert np.allclose(pooled[0], unit(v[0:3].mean(0)), atol=1e-6)
    assert np.allclose(pooled[3], v[9], atol=1e-6)  # the short last window
    assert pool_multivector(v, 1) is v
    assert fit_multivector(unit(RNG.standard_normal((3000, 1024)))).shape == (1000, 1024)  # the cap, as before


def point(spec: CollectionSpec, tokens: int = 10) -> Any:
    chunk = Chunk("d", "d", "h", 0, "text", 0, 4, (1,), tokens)
    e = Embedding(unit(RNG.standard_normal(8)), SparseVec((1,), (0.5,)), unit(RNG.standard_normal((tokens, 4))))
    return e, to_point(EncodedChunk(chunk, e), spec)


def test_points_are_stored_as_the_spec_says() -> None:
    e, p = point(CollectionSpec("c", 8, 4, colbert_pool_factor=2, colbert_datatype="uint8", dense_datatype="uint8"))
    assert p.colbert.dtype == np.uint8 and p.colbert.shape == (5, 4)
    assert np.array_equal(p.colbert, to_uint8(pool_multivector(e.colbert, 2)))
    assert p.dense.dtype == np.uint8 and np.array_equal(p.dense, to_uint8(e.dense))
    e, p = point(CollectionSpec("c", 8, None))
    assert p.colbert is None and p.dense is e.dense
    e, p = point(CollectionSpec("c", 8, 4))
    assert p.colbert is e.colbert


# ------------------------------------------------------------------------------------ settings and spec


def test_storage_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="colbert_quantization = int8 on colbert_datatype = uint8"):
        Settings().replace(collection={"colbert_datatype": "uint8", "colbert_quantization": "int8"})
    with pytest.raises(ConfigError, match="colbert_pool_factor"):
        Settings().replace(collection={"colbert_pool_factor": 0})
    with pytest.raises(ConfigError, match="quantization_quantile"):
        Settings().replace(collection={"quantization_quantile": 0.3})


def test_spec_and_server_params_of_the_storage_options() -> None:
    settings = CollectionSettings(
        dense_datatype="uint8", colbert_quantization="int8", quantization_quantile=0.95, colbert_pool_factor=4
    )
    spec = CollectionSpec.for_model(settings, 1024, 1024, chunk_size=512)
    info = spec.info()
    assert info.vector(DENSE) == VectorInfo(DENSE, "dense", 1024, "euclid", "uint8", on_disk=False, quantization="none")
    assert info.vector(COLBERT).quantization == "int8" and info.vector(COLBERT).distance == "cosine"
    assert spec.indexing_threshold_kb == 128 * 2 * 2_500  # segments sized for 512 / 4 pooled float16 vectors
    params = collection_params(spec)
    dense, colbert = params["vectors_config"][DENSE], params["vectors_config"][COLBERT]
    assert (dense.datatype, dense.distance, dense.quantization_config) == (
        models.Datatype.UINT8,
        models.Distance.EUCLID,
        None,
    )
    assert colbert.quantization_config.scalar.quantile == 0.95 and colbert.quantization_config.scalar.always_ram
    # what a server answers for such a collection reads back as the spec (vector-level or collection-level)
    config = models.CollectionConfig(
        params=models.CollectionParams(
            vectors=params["vectors_config"], sparse_vectors=params["sparse_vectors_config"]
        ),
        hnsw_config=models.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
        optimizer_config=models.OptimizersConfig(
            deleted_threshold=0.2, vacuum_min_vector_number=1000, default_segment_number=0, flush_interval_sec=5
        ),
        wal_config=None,
    )

    def read(c: models.CollectionConfig) -> CollectionInfo:
        return collection_info("c", models.CollectionInfo(status="green", optimizer_status="ok", segments_count=1,
                                                          config=c, payload_schema={}))  # fmt: skip

    check_shape(info, read(config))
    assert read(config).vector(COLBERT).quantization == "int8" and read(config).vector(DENSE).quantization == "none"
    colbert.quantization_config = None  # set for the whole collection instead: every vector quantized
    config.quantization_config = quantization_config(spec, "int8")
    with pytest.raises(SchemaMismatchError, match="dense: quantization expected none, found int8"):
        check_shape(info, read(config))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colbert_quantization": "int8"}, "colbert: quantization expected int8, found none"),
        ({"dense_datatype": "uint8"}, "dense: distance expected euclid, found cosine; dense: datatype expected uint8"),
        ({"dense_on_disk": True}, "dense: on_disk expected true, found false"),
    ],
)
def test_an_edge_collection_of_other_storage_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    EdgeStore(tmp_path, "c").ensure_collection(CollectionSpec.for_model(CollectionSettings(name="c"), 8, 4))
    store = EdgeStore(tmp_path, "c")
    with pytest.raises(SchemaMismatchError, match=message):
        store.ensure_collection(CollectionSpec.for_model(CollectionSettings(name="c", **change), 8, 4))
    store.close()


def test_a_run_with_another_pool_factor_is_refused(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path):
    s = make_settings(tiny_model_dir, tmp_path / "s", collection={"name": "c", "colbert_pool_factor": 2})
    store = open_store(s.qdrant, "c")
    ingest([SAMPLES / "en" / "remote_work.md"], s, encoder, store, progress=False)
    for chunk in store.scroll(chunks_filter()):
        [stored] = store.retrieve([chunk.id], with_vectors=True)
        vectors = chunk.payload["token_count"] - 1  # every token but CLS
        assert len(stored.vectors[COLBERT]) == -(-vectors // 2)
    store.close()
    other = s.replace(collection={"colbert_pool_factor": 3})
    store = open_store(other.qdrant, "c")
    with pytest.raises(SchemaMismatchError, match="pooled by 2; this run sets collection.colbert_pool_factor = 3"):
        ingest([SAMPLES / "en" / "remote_work.md"], other, encoder, store, progress=False)
    store.close()


# ------------------------------------------------------------------------------------ requests (pure)

Q = Embedding(unit(RNG.standard_normal(8)), SparseVec((3,), (0.2,)), unit(RNG.standard_normal((3, 4))))


def storage(dense: dict[str, Any], colbert: dict[str, Any], **search: Any) -> Storage:
    d = VectorInfo(DENSE, "dense", 8, **dense)
    c = VectorInfo(COLBERT, "multivector", 4, **colbert)
    return Storage(VectorSearch(d, **search), VectorSearch(c, **search))


def prefetches(p: Any) -> list[rq.Prefetch]:
    out = []
    for x in p.prefetch:
        out += [x, *prefetches(x)]
    return out


def searches_of(request: rq.Request) -> list[Any]:
    """Every request or prefetch that searches a named vector."""
    return [p for p in [request, *prefetches(request)] if p.using is not None]


@pytest.mark.parametrize("mode", ["dense", "hybrid", "hybrid_dbsf", "hybrid_colbert", "colbert", "m3"])
def test_rescoring_params_go_where_quantized_vectors_are_searched(mode: str) -> None:
    s = storage({"quantization": "int8"}, {"quantization": "int8"}, rescore=False, oversampling=2.0)
    request = build_request(mode, Q, storage=s)
    found = searches_of(request)
    assert {p.using for p in found} >= {DENSE}
    for p in found:
        if p.using == "sparse":
            assert p.params is None
        else:
            assert p.params == rq.Rescoring(rescore=False, oversampling=2.0)
    plain = build_request(mode, Q, storage=storage({"quantization": "none"}, {}))
    assert all(p.params is None for p in searches_of(plain))


def test_codes_are_searched_with_coded_queries_and_scored_as_cosines() -> None:
    s = storage({"datatype": "uint8"}, {"datatype": "uint8"})
    r = build_request("dense", Q, storage=s, min_dense_score=0.4)
    [inner] = r.prefetch
    assert inner.query == rq.Nearest(to_uint8(Q.dense).tolist()) and inner.using == DENSE
    assert isinstance(r.query, rq.Formula) and r.score_threshold == 0.4  # on the cosine scale
    r = build_request("hybrid", Q, storage=s, min_dense_score=0.4)
    dense_leg = next(p for p in r.prefetch if p.using == DENSE)
    assert dense_leg.score_threshold == pytest.approx(EuclidCodes(8).max_distance(0.4))  # a maximum distance
    r = build_request("hybrid_dbsf", Q, storage=s)
    assert isinstance(r.prefetch[0].query, rq.Formula)  # DBSF fuses cosines, not distances
    r = build_request("colbert", Q, storage=s, min_score=0.5)
    [rerank] = r.prefetch
    assert rerank.using == COLBERT and rerank.query == rq.Nearest(to_uint8(Q.colbert).tolist())
    assert isinstance(r.query, rq.Formula) and r.score_threshold == pytest.approx(0.5 * 3)
    assert s.uses_formula(SearchMode.DENSE) and not s.uses_formula(SearchMode.HYBRID)
    reason = unsupported((1, 13, 0), "http://q", SearchMode.DENSE, None, formula=s.uses_formula(SearchMode.DENSE))
    assert "distances of uint8 vectors" in reason and "1.14.0" in reason


# ------------------------------------------------------------------------------------ real engines

QUERIES = ["remote work equipment", "late delivery penalty", "password policy"]


def search_all(r: Retriever, mode: str) -> list[dict[str, float]]:
    return [{h.id: h.score for h in hits} for hits in r.search_batch(QUERIES, limit=10, mode=mode)]


@pytest.fixture(scope="module")
def float_and_coded(tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The samples in float32 and in uint8 codes (dense and ColBERT), on every in-process engine."""
    root = tmp_path_factory.mktemp("coded")
    out: dict[tuple[str, str], Retriever] = {}
    for engine in ENGINES:
        for kind, coll in [("float", {}), ("codes", {"dense_datatype": "uint8", "colbert_datatype": "uint8"})]:
            path = root / f"{engine}-{kind}" if engine == "edge" else ":memory:"
            s = make_settings(tiny_model_dir, path, engine, collection={"name": "c", **coll})
            store = open_store(s.qdrant, "c")
            ingest([SAMPLES / "en"], s, encoder, store, progress=False)
            out[(engine, kind)] = Retriever(s, encoder=encoder, store=store)
    yield out
    for r in out.values():
        r.close()


@pytest.mark.parametrize("mode", ["dense", "colbert", "hybrid_colbert", "m3", "hybrid_dbsf"])
def test_uint8_codes_score_like_floats_on_every_engine(float_and_coded: Any, mode: str) -> None:
    reference = search_all(float_and_coded[("edge", "float")], mode)
    for engine in ENGINES:
        coded = search_all(float_and_coded[(engine, "codes")], mode)
        for want, got in zip(reference, coded, strict=True):
            shared = want.keys() & got.keys()
            assert len(shared) >= 8  # the same hits but for near-ties at the bottom
            tolerance = 0.5 if mode == "hybrid_dbsf" else 0.02  # DBSF rescales by the candidates' spread
            for pid in shared:
                assert got[pid] == pytest.approx(want[pid], abs=tolerance), (engine, pid)
    edge, local = (
        search_all(float_and_coded[("edge", "codes")], mode),
        search_all(float_and_coded[("local", "codes")], mode),
    )
    for a, b in zip(edge, local, strict=True):  # one request, the same codes: both engines agree (ties aside)
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4) for k in a)


def test_uint8_thresholds_apply_on_the_cosine_scale(float_and_coded: Any) -> None:
    r = float_and_coded[("edge", "codes")]
    hits = r.search(QUERIES[0], limit=10, mode="dense")
    cut = hits[4].score - 1e-3
    strict = Retriever(r.settings.replace(retrieval={"min_dense_score": cut}), encoder=r.encoder, store=r.store)
    assert [h.id for h in strict.search(QUERIES[0], limit=10, mode="dense")] == [h.id for h in hits[:5]]
    strict = Retriever(r.settings.replace(retrieval={"min_dense_score": cut}), encoder=r.encoder, store=r.store)
    assert {h.id for h in strict.search(QUERIES[0], limit=10, mode="hybrid")} <= {
        h.id for h in r.search(QUERIES[0], limit=100, mode="hybrid")
    }


@pytest.mark.slow
def test_int8_quantization_is_built_and_rescoring_restores_exact_scores(
    tiny_model_dir: Path, encoder: BGEM3Encoder, tmp_path: Path
) -> None:
    exact_s = make_settings(tiny_model_dir, tmp_path / "exact", collection={"name": "c", "indexing_threshold_kb": 1})
    quant = {"name": "c", "indexing_threshold_kb": 1, "colbert_quantization": "int8", "dense_quantization": "int8"}
    quant_s = make_settings(tiny_model_dir, tmp_path / "int8", collection=quant)
    for s in (exact_s, quant_s):
        store = open_store(s.qdrant, "c")
        ingest([SAMPLES / "en"], s, encoder, store, progress=False)
        store.close()  # Edge optimizes: the segment is indexed, the int8 copies built
    assert list((tmp_path / "int8" / "c" / "segments").rglob("vector_storage-colbert/quantized.data"))
    assert not list((tmp_path / "exact" / "c" / "segments").rglob("quantized.data"))
    with Retriever(exact_s, encoder=encoder) as r:
        exact = search_all(r, "colbert")
    with Retriever(quant_s, encoder=encoder) as r:
        rescored = search_all(r, "colbert")
    no_rescore = quant_s.replace(retrieval={"rescore_colbert": False, "rescore_dense": False})
    with Retriever(no_rescore, encoder=encoder) as r:
        quantized = search_all(r, "colbert")
    for want, got, rough in zip(exact, rescored, quantized, strict=True):
        rescored_shared = want.keys() & got.keys()  # the dense candidates come from an HNSW graph: near-ties
        assert len(rescored_shared) >= 9 and all(got[k] == pytest.approx(want[k], abs=1e-6) for k in rescored_shared)
        shared = want.keys() & rough.keys()
        assert shared and all(rough[k] == pytest.approx(want[k], abs=0.02) for k in shared)
        assert any(rough[k] != pytest.approx(want[k], abs=1e-6) for k in shared)  # the int8 copy was searched


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_server_collection_keeps_its_storage_options(transport: str) -> None:
    """Created with quantization and uint8 codes, read back over the wire as the same spec; other options refused."""
    from tests.qdrant_standin import QdrantStandIn

    settings = CollectionSettings(name="c", dense_datatype="uint8", colbert_quantization="int8", dense_on_disk=True)
    spec = CollectionSpec.for_model(settings, 8, 4)
    with QdrantStandIn() as srv:
        qdrant = Settings().replace(qdrant=srv.qdrant(transport == "grpc")).qdrant
        store = open_store(qdrant, "c")
        store.ensure_collection(spec)
        store.close()
        store = open_store(qdrant, "c")
        store.ensure_collection(spec)  # the same options pass
        other = CollectionSpec.for_model(settings.model_copy(update={"colbert_quantization": "none"}), 8, 4)
        with pytest.raises(SchemaMismatchError, match="colbert: quantization expected none, found int8"):
            store.ensure_collection(other)
        store.close()
