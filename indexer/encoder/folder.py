"""A BGE-M3 model folder read without torch: sizes, limits, pooling, fingerprint.

Everything here opens files only (JSON, and the pickle inside ``colbert_linear.pt`` read for tensor
shapes), so a run that has nothing to encode never imports torch or transformers.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.config import MAX_MODEL_TOKENS
from indexer.errors import ModelLoadError

HEADS = ("colbert_linear.pt", "sparse_linear.pt")


def model_error(name: str, reason: str) -> ModelLoadError:
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
        raise model_error(name, "no such directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(repo_id=name, ignore_patterns=["flax_model.msgpack", "rust_model.ot", "tf_model.h5"])
        )
    except Exception as e:  # the hub raises many types: offline, 404, auth, disk
        raise model_error(name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}") from e


def model_fingerprint(model_dir: Path) -> str:
    """Identifies the weights, wherever the folder lies: its config and both BGE-M3 heads."""
    h = hashlib.sha256()
    for name in ("config.json", "sparse_linear.pt", "colbert_linear.pt"):  # order fixed: recorded in collections
        f = model_dir / name
        h.update(name.encode() + (f.read_bytes() if f.is_file() else b""))
    return h.hexdigest()[:16]


def detect_pooling(model_dir: Path) -> str:
    """``mean`` when the model ships a sentence-transformers mean-pooling config, else BGE-M3's ``cls``."""
    cfg = model_dir / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("pooling_mode_mean_tokens") and not data.get("pooling_mode_cls_token"):
            return "mean"
    return "cls"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the rest of the code needs to know about a model before (or without) loading it."""

    model_dir: Path
    dense_dim: int  # hidden size of the backbone
    colbert_dim: int  # output size of colbert_linear
    max_tokens: int  # longest input the backbone accepts, special tokens included
    model_type: str


def read_model_info(name: str, model_dir: Path) -> ModelInfo:
    """Sizes and limits from config.json and the heads' tensor shapes; refuses a folder without BGE-M3 heads."""
    for head in HEADS:
        if not (model_dir / head).is_file():
            # FlagEmbedding would silently start from random heads: refuse instead.
            raise model_error(name, f"{model_dir} has no {head}; it is not a BGE-M3 model folder")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        hidden = int(config["hidden_size"])
        colbert = head_shapes(model_dir / "colbert_linear.pt")["weight"]
        sparse = head_shapes(model_dir / "sparse_linear.pt")["weight"]
    except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise model_error(name, f"{model_dir} is not a readable BGE-M3 folder: {type(e).__name__}: {e}") from e
    if colbert[1] != hidden or tuple(sparse) != (1, hidden):
        raise model_error(
            name, f"heads do not fit the {hidden}-d backbone (colbert_linear {colbert}, sparse_linear {sparse})"
        )
    model_type = str(config.get("model_type", ""))
    positions = int(config.get("max_position_embeddings", MAX_MODEL_TOKENS))
    if model_type in ("xlm-roberta", "roberta", "camembert"):
        positions -= int(config.get("pad_token_id") or 0) + 1  # RoBERTa offsets positions past the padding id
    return ModelInfo(
        model_dir=model_dir,
        dense_dim=hidden,
        colbert_dim=int(colbert[0]),
        max_tokens=min(positions, MAX_MODEL_TOKENS),
        model_type=model_type,
    )


# ---------------------------------------------------------------------------------------- head shapes


def _tensor_shape(storage: Any, offset: int, size: tuple[int, ...], *rest: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in size)


class _ShapeUnpickler(pickle.Unpickler):
    """Reads a torch ``state_dict`` pickle into ``{name: shape}``; refuses anything else it would run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _tensor_shape
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, pid: Any) -> Any:
        return None  # a storage: its bytes are not needed for a shape


def head_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a ``torch.save``-d state dict, read from its zip without importing torch.

    Files in torch's legacy (pre-1.6, non-zip) format are read with ``torch.load`` instead.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if member is not None:
                with zf.open(member) as f:
                    state = _ShapeUnpickler(f).load()
                return {str(k): tuple(v) for k, v in state.items()}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {str(k): tuple(v.shape) for k, v in state.items()}
