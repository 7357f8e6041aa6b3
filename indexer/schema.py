"""The index contract, engine-neutral: vector names, sizes, distances, datatypes and payload fields.

Each store backend turns a ``CollectionSpec`` into its engine's own collection parameters and reads an
existing collection back as a ``CollectionInfo``; nothing else in the code knows engine types.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from indexer.config import CollectionSettings
from indexer.errors import SchemaMismatchError
from indexer.storage import BYTES_PER_COMPONENT, distance_for

DENSE = "dense"
SPARSE = "sparse"
COLBERT = "colbert"

# Distances: dense and ColBERT use cosine (BGE-M3's vectors are L2-normalised), or Euclidean distance for uint8
# codes of them, which ranks as cosine ranks the originals (indexer.storage); sparse is always a dot product.

# Payload fields that filters and bookkeeping use, and their index type ("keyword" or "integer").
PayloadType = Literal["keyword", "integer", "tenant"]  # "tenant": a keyword index marked is_tenant
PAYLOAD_INDEXES: dict[str, PayloadType] = {
    "kind": "keyword",  # chunk | document | collection (see indexer.records)
    "state": "keyword",
    "root": "keyword",
    "doc_id": "keyword",
    "source": "keyword",
    "content_hash": "keyword",
    "chunk_index": "integer",
    "pages": "integer",
}
KEYWORD_FIELDS = frozenset(k for k, v in PAYLOAD_INDEXES.items() if v == "keyword")
# The tenant field's index (``indexer.tenants``): a keyword index marked ``is_tenant`` where the engine has one.
TENANT_INDEX: PayloadType = "tenant"


def payload_indexes(tenant_field: str | None) -> dict[str, PayloadType]:
    """The payload indexes a collection needs: ``PAYLOAD_INDEXES``, and the tenant field's when it has tenants."""
    indexes = dict(PAYLOAD_INDEXES)
    if tenant_field is not None:
        indexes[tenant_field] = TENANT_INDEX
    return indexes


VectorKind = Literal["dense", "multivector", "sparse"]

# Details of a vector that an existing collection must share with the configuration: (attribute, label).
DETAILS = (
    ("distance", "distance"),
    ("datatype", "datatype"),
    ("modifier", "modifier"),
    ("hnsw_m", "HNSW m"),
    ("on_disk", "on_disk"),
    ("quantization", "quantization"),
)


@dataclass(frozen=True, slots=True)
class VectorInfo:
    """One named vector of a collection, as far as stored points and scores depend on it.

    The details after ``size`` are None where unknown (a collection record from an older build) or where the
    configuration does not decide them; a None on either side is not compared.
    """

    name: str
    kind: VectorKind
    size: int | None = None  # None for sparse vectors
    distance: str | None = None  # "cosine", "dot", "euclid", "manhattan" (dense and multivector)
    datatype: str | None = None  # "float32", "float16", "uint8", ...
    modifier: str | None = None  # sparse: "none" or "idf"
    hnsw_m: int | None = None  # HNSW links per node; 0: no graph (rerank-only ColBERT)
    on_disk: bool | None = None  # vectors served from disk
    quantization: str | None = None  # "none" or "int8" (scalar): an int8 copy searched first

    @property
    def quantized(self) -> bool:
        return self.quantization not in (None, "none")

    @property
    def codes(self) -> bool:
        """Stored as uint8 codes (``indexer.storage``): queries are mapped, scores are distances."""
        return self.datatype == "uint8"

    def describe(self) -> str:
        if self.kind == "sparse":
            return "a sparse vector"
        return f"{'a multivector' if self.kind == 'multivector' else 'a dense vector'} of size {self.size}"

    def differences(self, other: VectorInfo) -> list[str]:
        """What differs in the details both sides know, as ``label expected X, found Y``."""
        out = []
        for attr, label in DETAILS:
            want, have = getattr(self, attr), getattr(other, attr)
            if want is not None and have is not None and want != have:
                out.append(f"{label} expected {_show(want)}, found {_show(have)}")
        return out

    def as_dict(self) -> dict[str, Any] | str:
        """The JSON form the service reports (and Edge's collection record stores)."""
        return "sparse" if self.kind == "sparse" else {"size": self.size, "multivector": self.kind == "multivector"}

    @classmethod
    def from_dict(cls, name: str, value: dict[str, Any] | str) -> VectorInfo:
        if value == "sparse":
            return cls(name, "sparse")
        assert isinstance(value, dict)
        return cls(name, "multivector" if value["multivector"] else "dense", int(value["size"]))


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What an existing collection holds: its named vectors (engine-neutral)."""

    name: str
    vectors: tuple[VectorInfo, ...]

    def vector(self, name: str) -> VectorInfo | None:
        return next((v for v in self.vectors if v.name == name), None)

    def has(self, name: str) -> bool:
        return self.vector(name) is not None

    def vectors_dict(self) -> dict[str, Any]:
        return {v.name: v.as_dict() for v in self.vectors}

    @classmethod
    def from_dict(cls, name: str, vectors: dict[str, Any]) -> CollectionInfo:
        return cls(name, tuple(VectorInfo.from_dict(k, v) for k, v in sorted(vectors.items())))


# Segment sizing for a server collection with ColBERT. Qdrant sizes a segment by its largest vector storage,
# which with ColBERT is ColBERT's (a 512-token chunk in float16: 1 MiB, 256 times its dense vector). Its defaults
# (index a segment from 10,000 KB, segments up to 256,000 KB per indexing thread) would then hold about ten
# chunks before indexing and a few hundred per segment: many small segments, each searched on its own, and
# dense HNSW graphs built again and again as they merge. These counts keep the dense intent of the defaults
# (2,500 points before indexing) and segments of 20,000 chunks.
INDEXING_CHUNKS = 2_500
SEGMENT_CHUNKS = 20_000


def optimizer_sizes(
    settings: CollectionSettings, colbert_dim: int | None, chunk_size: int
) -> tuple[int | None, int | None]:
    """(max_segment_size_kb, indexing_threshold_kb): the configured values, else derived from ColBERT's size."""
    per_chunk_kb = None
    if colbert_dim:
        rows = math.ceil(chunk_size / settings.colbert_pool_factor)
        per_chunk_kb = rows * colbert_dim * BYTES_PER_COMPONENT[settings.colbert_datatype] / 1024
    segment = settings.max_segment_size_kb
    indexing = settings.indexing_threshold_kb
    if per_chunk_kb is not None:
        segment = segment or round(per_chunk_kb * SEGMENT_CHUNKS)
        indexing = indexing or round(per_chunk_kb * INDEXING_CHUNKS)
    return segment, indexing


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """What a collection must look like for a given model and configuration."""

    name: str
    dense_dim: int
    colbert_dim: int | None  # None: ColBERT vectors are not stored
    dense_datatype: str = "float32"
    colbert_datatype: str = "float16"
    colbert_on_disk: bool = True
    dense_on_disk: bool = False
    dense_quantization: str = "none"
    colbert_quantization: str = "none"
    quantization_quantile: float = 0.99
    quantization_always_ram: bool = True
    colbert_pool_factor: int = 1  # checked through the collection's record (indexer.records), as Qdrant cannot
    # Server only, applied at creation (None: the server's default); not part of the shape check. The segment
    # sizes apply to Qdrant Edge too.
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    max_segment_size_kb: int | None = None
    indexing_threshold_kb: int | None = None
    tenant_field: str | None = None  # indexed as the tenant (``indexer.tenants``) when the collection has tenants

    @classmethod
    def for_model(
        cls, settings: CollectionSettings, dense_dim: int, colbert_dim: int, chunk_size: int = 512
    ) -> CollectionSpec:
        """Vector sizes follow the model, never a hard-coded 1024."""
        colbert = colbert_dim if settings.colbert else None
        segment, indexing = optimizer_sizes(settings, colbert, chunk_size)
        return cls(
            name=settings.name,
            dense_dim=dense_dim,
            colbert_dim=colbert,
            dense_datatype=settings.dense_datatype,
            colbert_datatype=settings.colbert_datatype,
            colbert_on_disk=settings.colbert_on_disk,
            dense_on_disk=settings.dense_on_disk,
            dense_quantization=settings.dense_quantization,
            colbert_quantization=settings.colbert_quantization,
            quantization_quantile=settings.quantization_quantile,
            quantization_always_ram=settings.quantization_always_ram,
            colbert_pool_factor=settings.colbert_pool_factor if colbert else 1,
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
            max_segment_size_kb=segment,
            indexing_threshold_kb=indexing,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionSpec:
        """A spec as ``as_dict`` wrote it, by this build or an older one (fields it lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def info(self) -> CollectionInfo:
        """The collection this spec makes: names, kinds, sizes and the details that scores and storage depend on."""
        vectors = [
            VectorInfo(
                DENSE,
                "dense",
                self.dense_dim,
                distance_for(self.dense_datatype),
                self.dense_datatype,
                on_disk=self.dense_on_disk,
                quantization=self.dense_quantization,
            ),
            VectorInfo(SPARSE, "sparse", modifier="none"),  # no IDF: BGE-M3's lexical weights are learned
        ]
        if self.colbert_dim is not None:
            vectors.append(
                VectorInfo(
                    COLBERT,
                    "multivector",
                    self.colbert_dim,
                    distance_for(self.colbert_datatype),
                    self.colbert_datatype,
                    hnsw_m=0,
                    on_disk=self.colbert_on_disk,
                    quantization=self.colbert_quantization,
                )
            )
        return CollectionInfo(self.name, tuple(sorted(vectors, key=lambda v: v.name)))


def check_shape(expected: CollectionInfo, actual: CollectionInfo) -> None:
    """Raise a schema-mismatch error naming every difference between two collections' vectors."""
    diffs = []
    for name in sorted({v.name for v in expected.vectors} | {v.name for v in actual.vectors}):
        want, have = expected.vector(name), actual.vector(name)
        if want is None or have is None or (want.kind, want.size) != (have.kind, have.size):
            diffs.append(
                f"{name or '<unnamed>'}: expected {want.describe() if want else 'nothing'}, "
                f"found {have.describe() if have else 'nothing'}"
            )
        else:
            diffs += [f"{name}: {d}" for d in want.differences(have)]
    if not diffs:
        return
    raise SchemaMismatchError(
        f"collection {actual.name!r} exists with other vectors than this configuration needs ({'; '.join(diffs)}). "
        "Use another collection name, the model and settings that built it, or --recreate to rebuild it"
    )
