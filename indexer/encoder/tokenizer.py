"""The model's tokenizer, straight from ``tokenizer.json`` with the ``tokenizers`` library.

Loaded on first use (about 0.1 s of import against several seconds for transformers), thread-safe
(nothing mutates it after loading, so there is no "Already borrowed"), and called like a Hugging Face
fast tokenizer for the few things chunking, context building and the encoder need.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The ids FlagEmbedding drops from lexical weights (``M3Embedder.encode_single_device``).
UNUSED_SPECIAL_TOKENS = ("cls_token", "eos_token", "pad_token", "unk_token")


def _special_tokens(model_dir: Path) -> dict[str, str]:
    """``{"cls_token": "<s>", ...}`` as transformers reads them: special_tokens_map.json over tokenizer_config.json."""
    out: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = model_dir / name
        if not f.is_file():
            continue
        for key, value in json.loads(f.read_text(encoding="utf-8")).items():
            if key.endswith("_token") and value:
                out[key] = value["content"] if isinstance(value, dict) else str(value)
    return out


class M3Tokenizer:
    """Lazy, thread-safe tokenizer with the Hugging Face call signature used in this project."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._backend: Any = None
        self._lock = threading.Lock()
        self.special_tokens_map = _special_tokens(model_dir)

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer``, loaded on first use."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = self._load()
        return self._backend

    def _load(self) -> Any:
        path = self.model_dir / "tokenizer.json"
        if path.is_file():
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(path))
        else:  # only a slow (sentencepiece) tokenizer: transformers converts it once
            from transformers import AutoTokenizer

            backend = AutoTokenizer.from_pretrained(str(self.model_dir)).backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        return backend

    def __deepcopy__(self, memo: dict[int, Any]) -> M3Tokenizer:
        return M3Tokenizer(self.model_dir)  # loaded again on use; kept for callers that copy HF tokenizers

    # ------------------------------------------------------------------------------ HF-style interface

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        truncation: bool = False,
        return_offsets_mapping: bool = False,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """``{"input_ids": [...], "offset_mapping": [...]}`` for one text, lists of them for a list."""
        if truncation:
            raise ValueError("this tokenizer never truncates: the caller checks lengths instead")
        single = isinstance(text, str)
        encodings = self.backend.encode_batch([text] if single else list(text), add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        return {k: v[0] for k, v in out.items()} if single else out

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        processor = self.backend.post_processor
        return 0 if processor is None else int(processor.num_special_tokens_to_add(pair))

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    # ------------------------------------------------------------------------------ for the encoder

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, special tokens included: what the model sees."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=True)]

    def token_id(self, name: str) -> int | None:
        """The id of a special token by its role (``pad_token``, ``cls_token``, ...), if the model has one."""
        token = self.special_tokens_map.get(name)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def pad_token_id(self) -> int:
        pad = self.token_id("pad_token")
        return 0 if pad is None else pad

    def unused_ids(self) -> list[int]:
        """Special ids that carry no lexical weight (FlagEmbedding: cls, eos, pad and unk)."""
        ids = (self.token_id(name) for name in UNUSED_SPECIAL_TOKENS)
        return sorted({i for i in ids if i is not None})
