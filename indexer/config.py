"""Typed configuration: defaults < TOML file < environment < CLI flags.

This is the only module that reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from indexer.errors import ConfigError
from indexer.modes import DEFAULT_M3_WEIGHTS, Limit, M3Weights, SearchMode

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MAX_MODEL_TOKENS = 8192  # BGE-M3's context length

# Environment variables honoured, and the setting each overrides.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "QDRANT_URL": ("qdrant", "url"),
    "QDRANT_API_KEY": ("qdrant", "api_key"),
    "INDEXER_MODEL": ("model", "name"),
    "RETRIEVER_API_KEY": ("service", "api_key"),
    "RETRIEVER_TENANT_KEYS": ("tenants", "keys"),
}
ENV_CONFIG_PATH = "INDEXER_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEVICE_NAMES = re.compile(r"auto|cpu|mps|cuda|cuda:\d+|cuda:all")


class ModelSettings(_Section):
    name: str = "BAAI/bge-m3"  # a Hugging Face id or a local directory
    # auto | cpu | cuda | cuda:N | cuda:all | mps, or a list (one model replica per device, fed from one queue)
    device: str | tuple[str, ...] = "auto"
    fp16: bool = True  # half precision on a GPU (float16); the CPU always runs float32
    bf16: bool = False  # bfloat16 instead of float16 on a GPU
    max_batch_tokens: int = Field(16384, ge=16, le=1 << 24)  # padded tokens per forward pass
    batch_size: int = Field(16, ge=1, le=4096)  # chunks per encoder call: x8 (the pipeline's group)
    pooling: Literal["auto", "cls", "mean"] = "auto"  # auto: read the model's own pooling config
    query_max_length: int = Field(512, ge=8, le=MAX_MODEL_TOKENS)

    @field_validator("device")
    @classmethod
    def _known_devices(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        names = [value] if isinstance(value, str) else list(value)
        bad = [n for n in names if not DEVICE_NAMES.fullmatch(n)]
        if bad or not names:
            raise ValueError(f"unknown device {bad or names}: use auto, cpu, cuda, cuda:N, cuda:all, mps or a list")
        if not isinstance(value, str) and "auto" in names:
            raise ValueError("'auto' cannot be part of a device list")
        return value


class ChunkingSettings(_Section):
    chunk_size: int = Field(512, ge=16, le=MAX_MODEL_TOKENS)  # tokens, special tokens included
    chunk_overlap: int = Field(64, ge=0)
    headings: bool = True  # split at headings first (sections kept whole when they fit); False: plain splitting

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})")
        return self


WriteOrdering = Literal["weak", "medium", "strong"]


class QdrantSettings(_Section):
    url: str | None = None  # a server; when unset, the embedded engine is used
    api_key: str | None = Field(None, repr=False)  # from QDRANT_API_KEY or a flag, never from a file
    prefer_grpc: bool = True  # gRPC has no 32 MB request limit; REST has
    grpc_port: int = 6334
    timeout: float = Field(60.0, gt=0)  # seconds per request; qdrant-client takes whole seconds, so rounded up
    # Server writes: every batch waits for the server's answer; ordering says which peer orders concurrent writes
    # on a replicated collection (weak: any, medium: the shard's current leader, strong: its permanent leader).
    write_ordering: WriteOrdering = "medium"
    # The server's REST body limit (its service.max_request_size_mb, 32 by default): batched searches over REST
    # are split to stay under it. gRPC has no such limit.
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024)
    engine: Literal["edge", "local"] = "edge"  # embedded engine: Qdrant Edge, or qdrant-client local mode
    path: str = ".qdrant"  # embedded storage folder; ":memory:" with engine "local" keeps nothing


Datatype = Literal["float32", "float16", "uint8"]
Quantization = Literal["none", "int8"]


class CollectionSettings(_Section):
    name: str = Field("documents", min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    colbert: bool = True  # store ColBERT multivectors (needed by the colbert modes)
    # Storage (README, "Storage options"). uint8: unit-vector components mapped to 0..255 codes and scored by
    # Euclidean distance, which keeps the cosine ranking (see indexer.storage).
    dense_datatype: Datatype = "float32"
    colbert_datatype: Datatype = "float16"
    dense_on_disk: bool = False  # serve the original dense vectors from disk (with int8 quantization in RAM)
    colbert_on_disk: bool = True
    # Scalar quantization: an int8 copy of the vectors next to the originals, searched first.
    dense_quantization: Quantization = "none"
    colbert_quantization: Quantization = "none"
    quantization_quantile: float = Field(0.99, ge=0.5, le=1.0)  # the share of values the int8 range covers
    quantization_always_ram: bool = True  # keep the int8 copy in RAM (the originals follow *_on_disk)
    # Mean-pool every chunk's ColBERT vectors in windows of this many neighbouring tokens (1: keep every token).
    colbert_pool_factor: int = Field(1, ge=1, le=64)
    # A server collection, at creation (None: the server's default). Ignored by the embedded engines.
    shard_number: int | None = Field(None, ge=1)  # default: 1 on a single node, the number of peers in a cluster
    replication_factor: int | None = Field(None, ge=1)  # copies of each shard (default 1)
    write_consistency_factor: int | None = Field(None, ge=1)  # replicas that must apply a write (default 1)
    # Segment sizing (KB of the largest vector storage, which with ColBERT is ColBERT's), servers and Qdrant Edge.
    # None: derived from the ColBERT size of a chunk (see indexer.schema.optimizer_sizes); without ColBERT, the
    # engine's defaults. A segment is indexed (HNSW graph, int8 copies) once it holds indexing_threshold_kb.
    max_segment_size_kb: int | None = Field(None, ge=1)
    indexing_threshold_kb: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_compression_per_vector(self) -> CollectionSettings:
        for vector in ("dense", "colbert"):
            if getattr(self, f"{vector}_datatype") == "uint8" and getattr(self, f"{vector}_quantization") != "none":
                raise ValueError(
                    f"{vector}_quantization = int8 on {vector}_datatype = uint8: the vectors already take one byte "
                    "per dimension; choose one of the two"
                )
        return self

    @model_validator(mode="after")
    def _consistency_within_replicas(self) -> CollectionSettings:
        replicas = self.replication_factor or 1
        if self.write_consistency_factor is not None and self.write_consistency_factor > replicas:
            raise ValueError(
                f"write_consistency_factor ({self.write_consistency_factor}) cannot exceed replication_factor "
                f"({replicas}): a write cannot be applied by more replicas than exist"
            )
        return self


class RetrievalSettings(_Section):
    mode: SearchMode = SearchMode.HYBRID
    prefetch_limit: int = Field(100, ge=1, le=10_000)
    rrf_k: int = Field(60, ge=1)
    rrf_weights: tuple[float, float] | None = None  # (dense, sparse); None: equal
    limit: Limit = 10
    # BGE-M3's weighted sum (mode m3): dense, sparse, ColBERT, as in BGE-M3's README.
    m3_weights: M3Weights = DEFAULT_M3_WEIGHTS
    min_dense_score: float | None = None  # candidates below this cosine are dropped inside the prefetch
    min_sparse_score: float | None = None  # candidates below this lexical score are dropped inside the prefetch
    min_score: float | None = None  # threshold on the final score; similarity modes only (not RRF/DBSF)
    # Results per document: group hits by this payload field (e.g. "doc_id"; None: no grouping); limit then
    # counts groups, each of up to group_size hits.
    group_by: str | None = Field(None, min_length=1, max_length=256)
    group_size: int = Field(1, ge=1, le=100)
    # MMR after the mode, over the dense vector: 0 relevance only .. 1 difference only (None: no MMR), among
    # the mode's best mmr_candidates points.
    diversity: float | None = Field(None, ge=0.0, le=1.0)
    mmr_candidates: int = Field(100, ge=1, le=16384)
    # Searching int8-quantized vectors (collection.*_quantization): rescore the best candidates with the original
    # vectors (dense: after the HNSW search; ColBERT: the reranked top `limit`, read from where the originals are).
    rescore_dense: bool = True
    rescore_colbert: bool = True
    oversampling: float | None = Field(None, ge=1.0)  # quantized candidates fetched per hit before rescoring

    @model_validator(mode="after")
    def _check(self) -> RetrievalSettings:
        if self.min_score is not None and not self.mode.score_is_similarity:
            raise ValueError(
                f"min_score cannot apply to mode {self.mode.value!r}: its score is a fusion artefact, not a "
                "similarity; use min_dense_score / min_sparse_score"
            )
        return self


class IngestSettings(_Section):
    include: tuple[str, ...] = ("**/*",)  # files of other types are listed as skipped
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1)  # larger files are reported, not read
    pdf_password: str | None = Field(None, repr=False)  # tried on encrypted PDFs (after the empty password)
    max_unpacked_bytes: int = Field(512 * 1024 * 1024, ge=1)  # an Office file (a zip) may unpack to at most this
    write_batch_points: int = Field(64, ge=1)
    write_batch_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)
    write_retries: int = Field(5, ge=0)
    # Writers sharing a collection (see indexer.leases): a document being changed carries its writer's lease.
    lease_seconds: float = Field(600.0, ge=1.0)  # a lease lasts this long past its last renewal (every 1/5 of it)
    claim_margin_seconds: float = Field(0.0, ge=0.0)  # wait between writing a claim and reading it back
    busy_wait_seconds: float = Field(60.0, ge=0.0)  # wait this long for documents another live writer holds
    # Overlapped stages (README: "Ingest: overlapped stages"); None picks per device (a GPU, or the CPU).
    prepare_workers: int | None = Field(None, ge=0, le=256)  # processes parsing and chunking; 0: one thread
    write_behind: bool | None = None  # writes run while the model encodes the next batch, not between batches
    # glibc: blocks of at least this many KiB get their own mapping, given back when freed (indexer.heap);
    # 0 leaves glibc's sliding threshold, under which the heap of a long run grows with the corpus.
    malloc_mmap_threshold_kb: int = Field(128, ge=0, le=32 * 1024)


class ServiceSettings(_Section):
    """``retriever serve``: the HTTP retrieval service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port
    api_key: str | None = Field(None, repr=False)  # from RETRIEVER_API_KEY, never from a file; None: no auth
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_json_bytes: int = Field(2 * 1024 * 1024, ge=1024)  # any other request body (searches, batches)
    max_batch_queries: int = Field(64, ge=1, le=1024)  # per POST /search/batch
    encode_batch: int = Field(32, ge=1, le=1024)  # concurrent queries encoded in one model call
    # Uploads encode in slices of at most this many tokens (a longer chunk is a slice alone), one model call
    # at a time with the queries, queries first: a slice pauses between layers while a search waits, and
    # while searches keep coming, uploads get at most upload_share of the model's time (retriever.scheduler).
    upload_slice_tokens: int = Field(512, ge=1, le=1 << 20)
    upload_share: float = Field(0.25, gt=0, le=1)
    # Embedded store: uploads are durable against a crash of the service at once (the engine's WAL) and
    # flushed to its segments at most this often, not on each upload (the flush blocks searches); 0: on each.
    flush_seconds: float = Field(5.0, ge=0, le=3600)
    log_format: Literal["text", "json"] = "text"  # json: one object per line (time, level, logger, request_id)
    open_metrics: bool = False  # True: GET /metrics answers without the API key (a scraper on a private network)
    mcp: bool = True  # serve the MCP tools (search, context) at /mcp, behind the same API key


class TenantSettings(_Section):
    """Tenants sharing one collection (``indexer.tenants``; README, "Tenants")."""

    # The payload field naming a point's tenant (indexed as the tenant); not a field the indexer writes itself.
    field: str = Field("tenant", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    keys_file: str | None = None  # service: lines "<sha256 hex of a key> <tenant>" ("*": an admin key)
    keys: str | None = Field(None, repr=False)  # the same lines (newline- or ";"-separated), from RETRIEVER_TENANT_KEYS

    @field_validator("field")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        from indexer.points import RESERVED_FIELDS

        if v in RESERVED_FIELDS:
            raise ValueError(f"{v!r} is a payload field the indexer writes itself; choose another name")
        return v


class Settings(_Section):
    model: ModelSettings = ModelSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    qdrant: QdrantSettings = QdrantSettings()
    collection: CollectionSettings = CollectionSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    ingest: IngestSettings = IngestSettings()
    service: ServiceSettings = ServiceSettings()
    tenants: TenantSettings = TenantSettings()

    def replace(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields of some sections replaced, validated again."""
        return _validate(_merge(self.model_dump(), sections), "overrides")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: dict[str, Any], origin: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid configuration ({origin}): {problems}") from e


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    if "api_key" in data.get("qdrant", {}):
        raise ConfigError(f"{path}: do not keep the Qdrant API key in a file; set QDRANT_API_KEY instead")
    if "api_key" in data.get("service", {}):
        raise ConfigError(f"{path}: do not keep the service API key in a file; set RETRIEVER_API_KEY instead")
    return data


def load_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and explicit overrides.

    ``overrides`` (usually CLI flags) is ``{section: {field: value}}``; ``None`` values are ignored.
    ``path`` falls back to ``$INDEXER_CONFIG``; with neither, built-in defaults (``configs/default.toml``).
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = Settings().model_dump()
    origin = "defaults"
    path = path or env.get(ENV_CONFIG_PATH) or None
    if path is not None:
        data = _merge(data, read_config_file(Path(path)))
        origin = str(path)
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            data[section][key] = env[var]
    for section, values in (overrides or {}).items():
        data[section] = _merge(data.get(section, {}), {k: v for k, v in values.items() if v is not None})
    return _validate(data, origin)
