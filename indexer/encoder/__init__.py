"""The BGE-M3 boundary: token ids in, plain numpy records out.

Importing this package, and constructing a ``BGEM3Encoder``, reads files only; torch and transformers
are imported when the first text is encoded (``forward``), never FlagEmbedding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .folder import ModelInfo, detect_pooling, model_fingerprint, read_model_info, resolve_model_dir
from .m3 import BGEM3Encoder, Encoder
from .tokenizer import M3Tokenizer
from .vectors import (
    MAX_MULTIVECTOR_FLOATS,
    fit_multivector,
    max_multivector_rows,
    plan_batches,
    pool_multivector,
    sparse_from_lexical,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# Chunks the pipeline hands to one encode_passages() call, in units of model.batch_size: more per call
# means longer runs of similar lengths to batch together.
BATCHES_PER_CALL = 8


def resolve_device(device: str) -> str:
    """The first torch device ``model.device`` names (imports torch)."""
    return resolve_devices(device)[0]


def resolve_devices(device: str | Sequence[str]) -> list[str]:
    """Every torch device ``model.device`` names: ``cuda:all`` and lists give several (imports torch)."""
    from .forward import resolve_devices as resolve

    return resolve(device)


__all__ = [
    "BATCHES_PER_CALL",
    "MAX_MULTIVECTOR_FLOATS",
    "BGEM3Encoder",
    "Encoder",
    "M3Tokenizer",
    "ModelInfo",
    "detect_pooling",
    "fit_multivector",
    "max_multivector_rows",
    "model_fingerprint",
    "plan_batches",
    "pool_multivector",
    "read_model_info",
    "resolve_device",
    "resolve_devices",
    "resolve_model_dir",
    "sparse_from_lexical",
]
