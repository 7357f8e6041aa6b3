"""Pure translation between the index contract and qdrant-client: connection options, collection
parameters, an existing collection read back, points, and REST request sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from indexer.config import QdrantSettings
from indexer.errors import StoreRequestError
from indexer.models import PointRecord
from indexer.schema import COLBERT, DENSE, SPARSE, CollectionInfo, CollectionSpec, PayloadType, VectorInfo
from indexer.storage import distance_for

_DATATYPES = {"float32": models.Datatype.FLOAT32, "float16": models.Datatype.FLOAT16, "uint8": models.Datatype.UINT8}
_DISTANCES = {"cosine": models.Distance.COSINE, "euclid": models.Distance.EUCLID}
PAYLOAD_TYPES: dict[str, models.PayloadSchemaType | models.KeywordIndexParams] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),  # server >= 1.11
}


def client_options(settings: QdrantSettings) -> dict[str, Any]:
    """Connection arguments for a server, the same for ``QdrantClient`` and ``AsyncQdrantClient``.

    qdrant-client takes whole seconds (it rounds a float up itself; ``int()`` would make 0.5 s a timeout of 0).
    Its own version check only warns; the store reads the version itself (``indexer.store.features``).
    """
    return {
        "url": settings.url,
        "api_key": settings.api_key,
        "prefer_grpc": settings.prefer_grpc,
        "grpc_port": settings.grpc_port,
        "timeout": math.ceil(settings.timeout),
        "check_compatibility": False,
    }


def quantization_config(spec: CollectionSpec, kind: str) -> models.ScalarQuantization | None:
    """A vector's scalar quantization (``always_ram`` rather than 1.19's ``memory``: every supported server
    reads it)."""
    if kind == "none":
        return None
    return models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=spec.quantization_quantile, always_ram=spec.quantization_always_ram
        )
    )


def collection_params(spec: CollectionSpec) -> dict[str, Any]:
    """``create_collection`` arguments for the spec: named dense, sparse and ColBERT vectors, cluster and
    segment settings where the spec sets them (the server's defaults otherwise)."""
    dense = {
        DENSE: models.VectorParams(
            size=spec.dense_dim,
            distance=_DISTANCES[distance_for(spec.dense_datatype)],
            datatype=_DATATYPES[spec.dense_datatype],
            quantization_config=quantization_config(spec, spec.dense_quantization),
            on_disk=spec.dense_on_disk,
        )
    }
    if spec.colbert_dim is not None:
        dense[COLBERT] = models.VectorParams(
            size=spec.colbert_dim,
            distance=_DISTANCES[distance_for(spec.colbert_datatype)],
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),  # rerank only: no graph (Qdrant's own advice)
            datatype=_DATATYPES[spec.colbert_datatype],
            quantization_config=quantization_config(spec, spec.colbert_quantization),
            on_disk=spec.colbert_on_disk,
        )
    # No IDF modifier: BGE-M3 lexical weights are learned and scored by a plain dot product.
    sparse = {SPARSE: models.SparseVectorParams(index=models.SparseIndexParams(on_disk=False), modifier=None)}
    params: dict[str, Any] = {"vectors_config": dense, "sparse_vectors_config": sparse}
    for key in ("shard_number", "replication_factor", "write_consistency_factor"):
        if getattr(spec, key) is not None:
            params[key] = getattr(spec, key)
    if spec.max_segment_size_kb is not None or spec.indexing_threshold_kb is not None:
        params["optimizers_config"] = models.OptimizersConfigDiff(
            max_segment_size=spec.max_segment_size_kb, indexing_threshold=spec.indexing_threshold_kb
        )
    return params


def _on_disk(v: models.VectorParams) -> bool:
    """Served from disk: ``on_disk`` (to 1.18), or ``memory = "cold"`` (1.19 and later), which overrides it."""
    memory = getattr(v, "memory", None)
    if memory is not None:
        return str(getattr(memory, "value", memory)) == "cold"
    return bool(v.on_disk)


def _value(enum: Any, default: str) -> str:
    return str(getattr(enum, "value", enum)).lower() if enum is not None else default


def _quantization(config: Any) -> str:
    """A vector's (or the collection's) quantization config as ``"int8"``, ``"none"``, or its kind's name."""
    if config is None or isinstance(config, models.Disabled):
        return "none"
    if isinstance(config, models.ScalarQuantization):
        return _value(config.scalar.type, "int8")
    return type(config).__name__.replace("Quantization", "").lower()  # binary, product, turbo: not ours


def collection_info(name: str, info: models.CollectionInfo) -> CollectionInfo:
    """An existing qdrant-client collection, engine-neutral, with the details ``check_shape`` compares."""
    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors} if params.vectors else {}
    default_m = info.config.hnsw_config.m if info.config.hnsw_config is not None else None
    default_quantization = info.config.quantization_config
    found = [
        VectorInfo(
            n,
            "multivector" if v.multivector_config is not None else "dense",
            v.size,
            distance=_value(v.distance, "cosine"),
            datatype=_value(v.datatype, "float32"),
            hnsw_m=v.hnsw_config.m if v.hnsw_config is not None and v.hnsw_config.m is not None else default_m,
            on_disk=_on_disk(v),
            quantization=_quantization(v.quantization_config or default_quantization),
        )
        for n, v in vectors.items()
    ]
    found += [
        VectorInfo(n, "sparse", modifier=_value(s.modifier, "none")) for n, s in (params.sparse_vectors or {}).items()
    ]
    return CollectionInfo(name, tuple(sorted(found, key=lambda v: v.name)))


def missing_indexes(schema: dict[str, Any], wanted: dict[str, PayloadType]) -> dict[str, PayloadType]:
    """Payload indexes ``wanted`` that ``schema`` (a collection's ``payload_schema``) lacks or has as another type."""
    have = {field: _value(getattr(i, "data_type", None), "") for field, i in schema.items()}
    for field, i in schema.items():
        if have[field] == "keyword" and getattr(getattr(i, "params", None), "is_tenant", None):
            have[field] = "tenant"
    return {field: kind for field, kind in wanted.items() if have.get(field) != kind}


def to_point_struct(p: PointRecord) -> models.PointStruct:
    vector: dict[str, Any] = {}
    if p.dense is not None:
        vector[DENSE] = p.dense.tolist()
    if p.sparse is not None:
        vector[SPARSE] = models.SparseVector(indices=list(p.sparse.indices), values=list(p.sparse.values))
    if p.colbert is not None:
        vector[COLBERT] = p.colbert.tolist()
    return models.PointStruct(id=p.id, vector=vector, payload=p.payload)


# ------------------------------------------------------------------------------ REST request sizes

_BATCH_ENVELOPE = len('{"searches":[]}')


def json_bytes(request: models.QueryRequest) -> int:
    """The request's size in the REST body, serialized as qdrant-client serializes it."""
    return len(request.model_dump_json(by_alias=True, exclude_unset=True, exclude_none=True).encode())


def split_by_bytes(requests: Sequence[models.QueryRequest], limit: int) -> list[list[models.QueryRequest]]:
    """Consecutive groups whose ``/points/query/batch`` body stays within ``limit`` bytes, in order.

    One 512-token ColBERT query is about 11 MB of JSON: a batch of them passes the server's REST limit
    (``service.max_request_size_mb``, 32 MB), which it answers with a 400. A single request over the limit
    cannot be split and is refused here, before it is sent.
    """
    groups: list[list[models.QueryRequest]] = []
    size = 0
    for r in requests:
        n = json_bytes(r)
        if _BATCH_ENVELOPE + n > limit:
            raise StoreRequestError(
                f"one search is {n} bytes of JSON, over the server's REST request limit of {limit} bytes "
                "(qdrant.max_request_bytes, the server's service.max_request_size_mb): use gRPC "
                "(qdrant.prefer_grpc = true), which has no such limit, or a shorter query"
            )
        if groups and size + 1 + n <= limit:
            groups[-1].append(r)
            size += 1 + n
        else:
            groups.append([r])
            size = _BATCH_ENVELOPE + n
    return groups
