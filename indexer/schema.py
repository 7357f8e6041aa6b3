"""The index contract: vector names, collection parameters and payload fields, defined here only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from qdrant_client import models

from indexer.config import CollectionSettings
from indexer.errors import SchemaMismatchError

DENSE = "dense"
SPARSE = "sparse"
COLBERT = "colbert"

# Payload fields written for every chunk, and the index type of those that filters use.
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    "kind": models.PayloadSchemaType.KEYWORD,  # chunk | document | collection (see indexer.records)
    "state": models.PayloadSchemaType.KEYWORD,
    "root": models.PayloadSchemaType.KEYWORD,
    "doc_id": models.PayloadSchemaType.KEYWORD,
    "source": models.PayloadSchemaType.KEYWORD,
    "content_hash": models.PayloadSchemaType.KEYWORD,
    "chunk_index": models.PayloadSchemaType.INTEGER,
    "pages": models.PayloadSchemaType.INTEGER,
}

_DATATYPES = {"float32": models.Datatype.FLOAT32, "float16": models.Datatype.FLOAT16}


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """What a collection must look like for a given model and configuration."""

    name: str
    dense_dim: int
    colbert_dim: int | None  # None: ColBERT vectors are not stored
    dense_datatype: str = "float32"
    colbert_datatype: str = "float16"
    colbert_on_disk: bool = True

    @classmethod
    def for_model(cls, settings: CollectionSettings, dense_dim: int, colbert_dim: int) -> CollectionSpec:
        """Vector sizes follow the model, never a hard-coded 1024."""
        return cls(
            name=settings.name,
            dense_dim=dense_dim,
            colbert_dim=colbert_dim if settings.colbert else None,
            dense_datatype=settings.dense_datatype,
            colbert_datatype=settings.colbert_datatype,
            colbert_on_disk=settings.colbert_on_disk,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vector_shape(self) -> dict[str, Any]:
        """The part of the spec that stored points depend on: names, sizes and kinds of vectors."""
        shape: dict[str, Any] = {DENSE: {"size": self.dense_dim, "multivector": False}, SPARSE: "sparse"}
        if self.colbert_dim is not None:
            shape[COLBERT] = {"size": self.colbert_dim, "multivector": True}
        return shape


def qdrant_vectors(
    spec: CollectionSpec,
) -> tuple[dict[str, models.VectorParams], dict[str, models.SparseVectorParams]]:
    """Named vectors for qdrant-client's ``create_collection`` (server and local mode)."""
    dense = {
        DENSE: models.VectorParams(
            size=spec.dense_dim, distance=models.Distance.COSINE, datatype=_DATATYPES[spec.dense_datatype]
        )
    }
    if spec.colbert_dim is not None:
        dense[COLBERT] = models.VectorParams(
            size=spec.colbert_dim,
            distance=models.Distance.COSINE,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),  # rerank only: no graph (Qdrant's own advice)
            datatype=_DATATYPES[spec.colbert_datatype],
            on_disk=spec.colbert_on_disk,
        )
    # No IDF modifier: BGE-M3 lexical weights are learned and scored by a plain dot product.
    sparse = {SPARSE: models.SparseVectorParams(index=models.SparseIndexParams(on_disk=False), modifier=None)}
    return dense, sparse


def edge_config(spec: CollectionSpec) -> Any:
    """The same collection for Qdrant Edge (its own pyo3 classes)."""
    import qdrant_edge as qe

    datatypes = {"float32": qe.VectorStorageDatatype.Float32, "float16": qe.VectorStorageDatatype.Float16}
    vectors = {
        DENSE: qe.EdgeVectorParams(
            size=spec.dense_dim, distance=qe.Distance.Cosine, datatype=datatypes[spec.dense_datatype]
        )
    }
    if spec.colbert_dim is not None:
        vectors[COLBERT] = qe.EdgeVectorParams(
            size=spec.colbert_dim,
            distance=qe.Distance.Cosine,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            datatype=datatypes[spec.colbert_datatype],
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            on_disk=spec.colbert_on_disk,
        )
    return qe.EdgeConfig(vectors=vectors, sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()})


def shape_of_qdrant_collection(info: models.CollectionInfo) -> dict[str, Any]:
    """``vector_shape()`` of an existing qdrant-client collection."""
    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors} if params.vectors else {}
    shape: dict[str, Any] = {
        name: {"size": v.size, "multivector": v.multivector_config is not None} for name, v in vectors.items()
    }
    for name in params.sparse_vectors or {}:
        shape[name] = "sparse"
    return shape


def check_shape(collection: str, expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Raise a schema-mismatch error naming every difference."""
    if expected == actual:
        return
    diffs = []
    for name in sorted(set(expected) | set(actual), key=str):
        want, have = expected.get(name), actual.get(name)
        if want != have:
            diffs.append(f"{name or '<unnamed>'}: expected {_describe(want)}, found {_describe(have)}")
    raise SchemaMismatchError(
        f"collection {collection!r} exists with other vectors than this configuration needs ({'; '.join(diffs)}). "
        "Use another collection name, the model that built it, or --recreate to rebuild it"
    )


def _describe(v: Any) -> str:
    if v is None:
        return "nothing"
    if v == "sparse":
        return "a sparse vector"
    return f"{'a multivector' if v['multivector'] else 'a dense vector'} of size {v['size']}"
