"""Pure helpers around the model: batch planning, sparse records and Qdrant's multivector cap."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from indexer.errors import EncodingError
from indexer.models import SparseVec

# Qdrant refuses a multivector whose flattened length reaches 1024*1024 floats
# (MAX_MULTIVECTOR_FLATTENED_LEN in lib/common/common/src/validation.rs).
MAX_MULTIVECTOR_FLOATS = 1024 * 1024


def plan_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into forward passes of at most ``max_tokens`` padded tokens.

    Longest first, so each batch holds inputs of similar length (little padding) and the batch most
    likely to run out of memory comes first. A batch's padded size is its count times its longest
    input; an input longer than ``max_tokens`` gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[current[0]] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: Sequence[int]) -> int:
    """Tokens one forward pass over these inputs computes, padding included."""
    return len(lengths) * max(lengths, default=0)


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


def pool_multivector(vectors: np.ndarray, window: int) -> np.ndarray:
    """Mean-pool consecutive windows of ``window`` vectors and re-normalise them (the last window may be shorter).

    Every token still contributes, in order, and MAX_SIM stays a sum of cosine maxima; the late-interaction
    resolution drops by the factor ``window``. ``window`` 1 returns ``vectors`` unchanged.
    """
    if window < 1:
        raise EncodingError(f"a ColBERT pooling window must be at least 1, got {window}")
    n, dim = vectors.shape
    if window == 1 or n == 0:
        return vectors
    rows = math.ceil(n / window)
    pad = rows * window - n
    sums = np.concatenate([vectors, np.zeros((pad, dim), vectors.dtype)]).reshape(rows, window, dim).sum(1)
    counts = np.full((rows, 1), window, dtype=np.float32)
    counts[-1] -= pad
    pooled = sums / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms == 0, 1, norms)).astype(np.float32)


def fit_multivector(vectors: np.ndarray, max_floats: int = MAX_MULTIVECTOR_FLOATS) -> np.ndarray:
    """Return ColBERT vectors that fit Qdrant's multivector cap, unchanged when they already do.

    Policy: when a chunk has more token vectors than fit (more than 1023 for 1024-d BGE-M3, i.e. a
    chunk over 1024 tokens), neighbouring token vectors are mean-pooled (``pool_multivector``) in equal
    consecutive windows of ``w = ceil(n / max_rows)``. ``collection.colbert_pool_factor`` pools every
    chunk the same way, with its own window, when its points are made (``indexer.points.to_point``).
    """
    n, dim = vectors.shape
    max_rows = max_multivector_rows(dim, max_floats)
    if max_rows < 1:
        raise EncodingError(f"ColBERT dimension {dim} exceeds Qdrant's multivector limit")
    if n <= max_rows:
        return vectors
    return pool_multivector(vectors, math.ceil(n / max_rows))
