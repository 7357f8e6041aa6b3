"""The BGE-M3 boundary: FlagEmbedding in, plain numpy records out.

torch and FlagEmbedding are imported only when a model is loaded, so ``--help`` and config checks
stay instant.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.config import MAX_MODEL_TOKENS, ModelSettings
from indexer.errors import EncodingError, ModelLoadError, QueryError
from indexer.models import Embedding, SparseVec

logger = logging.getLogger(__name__)

# Qdrant refuses a multivector whose flattened length reaches 1024*1024 floats
# (MAX_MULTIVECTOR_FLATTENED_LEN in lib/common/common/src/validation.rs).
MAX_MULTIVECTOR_FLOATS = 1024 * 1024
# FlagEmbedding probes the first batch of every encode() call twice: hand it several batches per call.
BATCHES_PER_CALL = 8


class Encoder(Protocol):
    """What the pipeline and the retriever need from an embedding model."""

    tokenizer: Any
    dense_dim: int
    colbert_dim: int
    max_length: int  # tokens per passage, special tokens included
    name: str
    fingerprint: str  # identifies the weights (see model_fingerprint)

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]: ...


# ---------------------------------------------------------------------------------------- pure helpers


def sparse_from_lexical(weights: Mapping[Any, Any]) -> SparseVec:
    """FlagEmbedding's ``{"4865": np.float32(0.21), ...}`` to sorted int ids and Python floats.

    Non-positive weights are dropped (Qdrant stores them, but they can only lower a dot product that
    BGE-M3 was trained to score with ReLU weights).
    """
    pairs = sorted((int(k), float(v)) for k, v in weights.items() if float(v) > 0.0)
    return SparseVec(indices=tuple(i for i, _ in pairs), values=tuple(v for _, v in pairs))


def max_multivector_rows(dim: int, max_floats: int = MAX_MULTIVECTOR_FLOATS) -> int:
    """How many ``dim``-d vectors one point may hold: strictly fewer than ``max_floats`` floats."""
    return (max_floats - 1) // dim


def fit_multivector(vectors: np.ndarray, max_floats: int = MAX_MULTIVECTOR_FLOATS) -> np.ndarray:
    """Return ColBERT vectors that fit Qdrant's multivector cap, unchanged when they already do.

    Policy: when a chunk has more token vectors than fit (more than 1023 for 1024-d BGE-M3, i.e. a
    chunk over 1024 tokens), neighbouring token vectors are mean-pooled in equal consecutive windows of
    ``w = ceil(n / max_rows)`` and re-normalised. Every token still contributes, in order, and MAX_SIM
    stays a sum of cosine maxima; the late-interaction resolution of such chunks drops by the factor w.
    """
    n, dim = vectors.shape
    max_rows = max_multivector_rows(dim, max_floats)
    if max_rows < 1:
        raise EncodingError(f"ColBERT dimension {dim} exceeds Qdrant's multivector limit")
    if n <= max_rows:
        return vectors
    window = math.ceil(n / max_rows)
    rows = math.ceil(n / window)
    pad = rows * window - n
    sums = np.concatenate([vectors, np.zeros((pad, dim), vectors.dtype)]).reshape(rows, window, dim).sum(1)
    counts = np.full((rows, 1), window, dtype=np.float32)
    counts[-1] -= pad
    pooled = sums / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms == 0, 1, norms)).astype(np.float32)


def detect_pooling(model_dir: Path) -> str:
    """``mean`` when the model ships a sentence-transformers mean-pooling config, else BGE-M3's ``cls``."""
    cfg = model_dir / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("pooling_mode_mean_tokens") and not data.get("pooling_mode_cls_token"):
            return "mean"
    return "cls"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda:0"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _model_error(name: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load model {name!r}: {reason.rstrip('.')}. If this machine has no access to the Hugging Face Hub, "
        f"download the model elsewhere (huggingface-cli download BAAI/bge-m3 --local-dir ./models/bge-m3), "
        f"copy the folder here and pass it with --model ./models/bge-m3 or INDEXER_MODEL=./models/bge-m3"
    )


def resolve_model_dir(name: str) -> Path:
    """A local directory holding the model: ``name`` itself, or its Hub snapshot (download if needed)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name.startswith((".", "/", "~")):
        raise _model_error(name, "no such directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(repo_id=name, ignore_patterns=["flax_model.msgpack", "rust_model.ot", "tf_model.h5"])
        )
    except Exception as e:  # the hub raises many types: offline, 404, auth, disk
        raise _model_error(name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}") from e


def model_fingerprint(model_dir: Path) -> str:
    """Identifies the weights, wherever the folder lies: its config and both BGE-M3 heads."""
    import hashlib

    h = hashlib.sha256()
    for name in ("config.json", "sparse_linear.pt", "colbert_linear.pt"):
        f = model_dir / name
        h.update(name.encode() + (f.read_bytes() if f.is_file() else b""))
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- the model


class BGEM3Encoder:
    """FlagEmbedding's ``BGEM3FlagModel``: one forward pass gives dense, sparse and ColBERT vectors."""

    def __init__(self, settings: ModelSettings, max_length: int, colbert: bool = True) -> None:
        self.settings = settings
        self.name = settings.name
        self.colbert = colbert
        model_dir = resolve_model_dir(settings.name)
        for head in ("colbert_linear.pt", "sparse_linear.pt"):
            if not (model_dir / head).is_file():
                # FlagEmbedding would silently start from random heads: refuse instead.
                raise _model_error(settings.name, f"{model_dir} has no {head}; it is not a BGE-M3 model folder")
        try:
            import torch
            from FlagEmbedding import BGEM3FlagModel
            from FlagEmbedding.inference.embedder.encoder_only import m3 as _m3

            # FlagEmbedding draws its own tqdm bars inside encode(); the pipeline reports progress itself.
            _m3.tqdm, _m3.trange = _quiet_tqdm, _quiet_trange
            colbert_state = torch.load(model_dir / "colbert_linear.pt", map_location="cpu", weights_only=True)
            self.colbert_dim = int(colbert_state["weight"].shape[0])
            self.device = resolve_device(settings.device)
            pooling = detect_pooling(model_dir) if settings.pooling == "auto" else settings.pooling
            self.model = BGEM3FlagModel(
                str(model_dir),
                use_fp16=settings.fp16 and self.device.startswith("cuda"),
                devices=[self.device],  # one device: no multiprocess pool (FlagEmbedding#1361, #1187)
                pooling_method=pooling,
                colbert_dim=self.colbert_dim,
                batch_size=settings.batch_size,
                passage_max_length=max_length,
                query_max_length=settings.query_max_length,
            )
        except ModelLoadError:
            raise
        except Exception as e:
            raise _model_error(settings.name, f"{type(e).__name__}: {e}") from e
        self.tokenizer = self.model.tokenizer
        config = self.model.model.model.config
        self.dense_dim = int(config.hidden_size)
        positions = int(getattr(config, "max_position_embeddings", MAX_MODEL_TOKENS))
        if config.model_type in ("xlm-roberta", "roberta", "camembert"):
            positions -= int(config.pad_token_id or 0) + 1  # RoBERTa offsets positions past the padding id
        self.model_max_length = min(positions, MAX_MODEL_TOKENS)
        if max_length > self.model_max_length:
            raise ModelLoadError(
                f"chunk size {max_length} tokens exceeds what {settings.name!r} accepts "
                f"({self.model_max_length} tokens); lower chunking.chunk_size"
            )
        self.max_length = max_length
        self.pooling = pooling
        self.fingerprint = model_fingerprint(model_dir)
        logger.info(
            "loaded %s on %s (dense %d-d, ColBERT %d-d, pooling %s)",
            settings.name,
            self.device,
            self.dense_dim,
            self.colbert_dim,
            pooling,
        )

    def load(self) -> None:
        """Load the model now (it is loaded on construction)."""

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def _encode(
        self, texts: Sequence[str], max_length: int, colbert: bool, kind: str, too_long_error: type[Exception]
    ) -> list[Embedding]:
        if not texts:
            return []
        too_long = [(i, n) for i, n in enumerate(self._lengths(texts)) if n > max_length]
        if too_long:
            i, n = too_long[0]
            raise too_long_error(
                f"{len(too_long)} {kind}(s) exceed {max_length} tokens (e.g. #{i}: {n} tokens); "
                "the model would truncate them silently"
            )
        size = self.settings.batch_size
        try:
            out = self.model.encode(
                list(texts),
                batch_size=size,
                max_length=max_length,
                return_dense=True,
                return_sparse=True,
                return_colbert_vecs=colbert,
            )
        except Exception as e:
            raise EncodingError(f"the model failed to encode {len(texts)} {kind}(s): {type(e).__name__}: {e}") from e
        dense = np.asarray(out["dense_vecs"], dtype=np.float32).reshape(len(texts), -1)
        colberts = out["colbert_vecs"] if colbert else [None] * len(texts)
        return [
            Embedding(
                dense=dense[i],
                sparse=sparse_from_lexical(out["lexical_weights"][i]),
                colbert=None if colberts[i] is None else fit_multivector(np.asarray(colberts[i], np.float32)),
            )
            for i in range(len(texts))
        ]

    def encode_passages(self, texts: Sequence[str]) -> list[Embedding]:
        """Encode chunks; pass many (several batches) per call, FlagEmbedding sorts them by length."""
        return self._encode(texts, self.max_length, self.colbert, "passage", EncodingError)

    def encode_queries(self, texts: Sequence[str]) -> list[Embedding]:
        """Encode queries (BGE-M3 needs no query instruction); a query over the limit is refused."""
        return self._encode(texts, self.settings.query_max_length, True, "query", QueryError)


def _quiet_tqdm(*args: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    kwargs["disable"] = True
    return tqdm(*args, **kwargs)


def _quiet_trange(*args: Any, **kwargs: Any) -> Any:
    return _quiet_tqdm(range(*args), **kwargs)
