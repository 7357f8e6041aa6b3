"""The torch side: devices, weights, and BGE-M3's three heads applied exactly as FlagEmbedding 1.4.2 does.

Reference: ``FlagEmbedding/finetune/embedder/encoder_only/m3/modeling.py`` (``_dense_embedding``,
``_sparse_embedding``, ``_colbert_embedding``, ``EncoderOnlyEmbedderM3ModelForInference.forward``) and
``inference/embedder/encoder_only/m3.py`` (``encode_single_device``: lexical weights per token id, the
CLS/EOS/PAD/UNK ids removed, ColBERT rows of padding removed). Imported only when a model loads.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from indexer.encoder.pauses import install as install_pause_points
from indexer.errors import ModelLoadError
from indexer.models import Embedding, SparseVec

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- devices


def _auto_device() -> str:
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _cuda_count(spec: str) -> int:
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise ModelLoadError(f"model.device {spec!r}: no CUDA GPU is visible to torch (set model.device = 'cpu')")
    return n


def resolve_devices(spec: str | Sequence[str]) -> list[str]:
    """Torch device names for ``model.device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``cuda:all``, ``mps``,
    or a list of them. ``auto`` is one device (the first GPU, else Apple's MPS, else the CPU)."""
    out: list[str] = []
    for s in [spec] if isinstance(spec, str) else list(spec):
        if s == "auto":
            out.append(_auto_device())
        elif s == "cpu":
            out.append("cpu")
        elif s == "mps":
            if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
                raise ModelLoadError("model.device 'mps': Apple's MPS backend is not available here")
            out.append("mps")
        elif s == "cuda:all":
            out.extend(f"cuda:{i}" for i in range(_cuda_count(s)))
        elif s == "cuda":
            _cuda_count(s)
            out.append(f"cuda:{torch.cuda.current_device()}")
        elif s.startswith("cuda:") and s[5:].isdigit():
            n = _cuda_count(s)
            if int(s[5:]) >= n:
                raise ModelLoadError(f"model.device {s!r}: only {n} CUDA GPU(s) are visible (cuda:0..cuda:{n - 1})")
            out.append(f"cuda:{int(s[5:])}")
        else:
            raise ModelLoadError(f"model.device {s!r} is not one of auto, cpu, cuda, cuda:N, cuda:all, mps")
    return out


def torch_dtype(device: str, fp16: bool, bf16: bool) -> torch.dtype:
    """float32 on the CPU (as FlagEmbedding); on a GPU bfloat16 or float16 when asked."""
    if device == "cpu":
        return torch.float32
    if bf16:
        return torch.bfloat16
    return torch.float16 if fp16 else torch.float32


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError other backends (MPS, ROCm) raise for the same."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


# ---------------------------------------------------------------------------------------- loading


def _import_backbone_class() -> Any:
    """transformers' AutoModel, without the 3 s of scikit-learn that its generation utilities import.

    ``transformers.generation.candidate_generator`` imports sklearn at import time when it is installed
    (for assisted decoding, which an encoder never uses); the flag is hidden during that import only.
    """
    import sys

    import transformers.utils.import_utils as iu

    hide = "sklearn" not in sys.modules and getattr(iu, "_sklearn_available", False)
    if hide:
        iu._sklearn_available = False
    try:
        from transformers import AutoModel
        from transformers.generation import candidate_generator  # noqa: F401  (imported while the flag is down)
    finally:
        if hide:
            iu._sklearn_available = True
    return AutoModel


def _linear(state: dict[str, torch.Tensor]) -> torch.nn.Linear:
    out_features, in_features = state["weight"].shape
    layer = torch.nn.Linear(in_features, out_features)
    layer.load_state_dict(state)
    return layer


def load_replicas(
    model_dir: Any, devices: Sequence[str], fp16: bool, bf16: bool, pooling: str, unused_ids: list[int], pad_id: int
) -> list[Replica]:
    """One model (backbone and both heads) per device, from one read of the weights."""
    auto_model = _import_backbone_class()
    backbone = auto_model.from_pretrained(str(model_dir), dtype=torch.float32)
    heads = [
        _linear(torch.load(model_dir / name, map_location="cpu", weights_only=True))
        for name in ("colbert_linear.pt", "sparse_linear.pt")
    ]
    replicas = []
    for n, device in enumerate(devices):
        parts = [backbone, *heads] if n == len(devices) - 1 else copy.deepcopy([backbone, *heads])
        dtype = torch_dtype(device, fp16, bf16)
        parts = [p.to(device=device, dtype=dtype).eval() for p in parts]
        install_pause_points(parts[0])
        replicas.append(Replica(parts[0], parts[1], parts[2], device, pooling, unused_ids, pad_id))
    return replicas


# ---------------------------------------------------------------------------------------- one model


class Replica:
    """The model on one device: a padded batch of token ids in, one ``Embedding`` per input out."""

    def __init__(
        self,
        backbone: Any,  # a transformers PreTrainedModel
        colbert_linear: torch.nn.Linear,
        sparse_linear: torch.nn.Linear,
        device: str,
        pooling: str,
        unused_ids: list[int],
        pad_id: int,
    ) -> None:
        self.backbone, self.colbert_linear, self.sparse_linear = backbone, colbert_linear, sparse_linear
        self.device = device
        self.pooling = pooling
        self.pad_id = pad_id
        self.unused = torch.tensor(unused_ids, dtype=torch.long, device=device)
        self.vocab = int(backbone.get_input_embeddings().num_embeddings)
        self.dense_dim = int(backbone.config.hidden_size)
        self.colbert_dim = int(colbert_linear.out_features)

    def release_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    def forward(self, ids: Sequence[Sequence[int]], colbert: bool) -> list[Embedding]:
        """Encode one batch (its padded size is the caller's business); out-of-memory errors propagate."""
        lengths = [len(x) for x in ids]
        width = max(lengths)
        host = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        for row, x in enumerate(ids):
            host[row, : len(x)] = x
        with torch.inference_mode():
            input_ids = torch.from_numpy(host).to(self.device)
            mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).to(self.device)
            hidden = self.backbone(input_ids=input_ids, attention_mask=mask.long(), return_dict=True).last_hidden_state
            packed = self._heads(hidden, input_ids, mask, colbert).cpu().numpy()  # the batch's one device->host copy
        return self._unpack(packed, lengths, colbert)

    def _heads(self, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, colbert: bool) -> torch.Tensor:
        """Dense, ColBERT and sparse outputs of a batch packed into one float32 vector (ids bit-cast)."""
        batch = hidden.shape[0]
        if self.pooling == "cls":
            dense = hidden[:, 0].float()
        else:  # mean over real tokens
            m = mask.unsqueeze(-1).float()
            dense = (hidden.float() * m).sum(1) / m.sum(1)
        parts = [F.normalize(dense, dim=-1).flatten()]
        if colbert:  # CLS and padding dropped before the head (right padding: each input's rows stay in order)
            vecs = self.colbert_linear(hidden[:, 1:][mask[:, 1:]])
            parts.append(F.normalize(vecs.float(), dim=-1).flatten())
        # Lexical weights: relu(sparse_linear(h)) per token, max per token id, unused ids and w <= 0 dropped.
        weights = torch.relu(self.sparse_linear(hidden)).squeeze(-1).float()
        keep = mask & (weights > 0) & ~torch.isin(input_ids, self.unused)
        rows, cols = keep.nonzero(as_tuple=True)
        keys = rows * self.vocab + input_ids[rows, cols]
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        values = torch.zeros(unique.numel(), dtype=torch.float32, device=hidden.device)
        values.scatter_reduce_(0, inverse, weights[rows, cols], reduce="amax", include_self=False)
        counts = torch.bincount(unique // self.vocab, minlength=batch).to(torch.int32)
        token_ids = (unique % self.vocab).to(torch.int32)
        parts += [values, token_ids.view(torch.float32), counts.view(torch.float32)]
        return torch.cat(parts)

    def _unpack(self, packed: np.ndarray, lengths: list[int], colbert: bool) -> list[Embedding]:
        batch = len(lengths)
        at = batch * self.dense_dim
        dense = packed[:at].reshape(batch, self.dense_dim)
        colberts: list[np.ndarray | None] = [None] * batch
        if colbert:
            rows = sum(lengths) - batch
            flat = packed[at : at + rows * self.colbert_dim].reshape(rows, self.colbert_dim)
            at += rows * self.colbert_dim
            colberts = list(np.split(flat, np.cumsum([n - 1 for n in lengths])[:-1]))
        n_sparse = (packed.size - at - batch) // 2
        values = packed[at : at + n_sparse]
        token_ids = packed[at + n_sparse : at + 2 * n_sparse].view(np.int32)
        counts = packed[at + 2 * n_sparse :].view(np.int32)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            Embedding(
                dense=dense[i].copy(),
                sparse=SparseVec(
                    indices=tuple(token_ids[bounds[i] : bounds[i + 1]].tolist()),
                    values=tuple(values[bounds[i] : bounds[i + 1]].tolist()),
                ),
                colbert=None if (c := colberts[i]) is None else c.copy(),
            )
            for i in range(batch)
        ]
