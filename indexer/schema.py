"""The index contract, engine-neutral: vector names, sizes, distances, datatypes and payload fields.

Each store backend turns a ``CollectionSpec`` into its engine's own collection parameters and reads an
existing collection back as a ``CollectionInfo``; nothing else in the code knows engine types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from indexer.config import CollectionSettings
from indexer.errors import SchemaMismatchError

DENSE = "dense"
SPARSE = "sparse"
COLBERT = "colbert"

DISTANCE = "cosine"  # dense and ColBERT: BGE-M3's vectors are L2-normalised; sparse is always a dot product

# Payload fields that filters and bookkeeping use, and their index type ("keyword" or "integer").
PayloadType = Literal["keyword", "integer"]
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

VectorKind = Literal["dense", "multivector", "sparse"]


@dataclass(frozen=True, slots=True)
class VectorInfo:
    """One named vector of a collection, as far as stored points depend on it."""

    name: str
    kind: VectorKind
    size: int | None = None  # None for sparse vectors

    def describe(self) -> str:
        if self.kind == "sparse":
            return "a sparse vector"
        return f"{'a multivector' if self.kind == 'multivector' else 'a dense vector'} of size {self.size}"

    def as_dict(self) -> dict[str, Any] | str:
        """The JSON form the service reports (and Edge's collection record stores)."""
        return "sparse" if self.kind == "sparse" else {"size": self.size, "multivector": self.kind == "multivector"}

    @classmethod
    def from_dict(cls, name: str, value: dict[str, Any] | str) -> VectorInfo:
        if value == "sparse":
            return cls(name, "sparse")
        assert isinstance(value, dict)
        return cls(name, "multivector" if value["multivector"] else "dense", int(value["size"]))


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

    def info(self) -> CollectionInfo:
        """The collection this spec makes: names, sizes and kinds of vectors."""
        vectors = [VectorInfo(DENSE, "dense", self.dense_dim), VectorInfo(SPARSE, "sparse")]
        if self.colbert_dim is not None:
            vectors.append(VectorInfo(COLBERT, "multivector", self.colbert_dim))
        return CollectionInfo(self.name, tuple(sorted(vectors, key=lambda v: v.name)))


def check_shape(expected: CollectionInfo, actual: CollectionInfo) -> None:
    """Raise a schema-mismatch error naming every difference between two collections' vectors."""
    if expected.vectors == actual.vectors:
        return
    diffs = []
    for name in sorted({v.name for v in expected.vectors} | {v.name for v in actual.vectors}):
        want, have = expected.vector(name), actual.vector(name)
        if want != have:
            diffs.append(
                f"{name or '<unnamed>'}: expected {want.describe() if want else 'nothing'}, "
                f"found {have.describe() if have else 'nothing'}"
            )
    raise SchemaMismatchError(
        f"collection {actual.name!r} exists with other vectors than this configuration needs ({'; '.join(diffs)}). "
        "Use another collection name, the model that built it, or --recreate to rebuild it"
    )
