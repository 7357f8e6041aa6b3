"""Test helper: build a tiny, randomly initialised BGE-M3-shaped model fully offline.

The directory produced by :func:`build_tiny_m3` looks like ``BAAI/bge-m3`` to FlagEmbedding:

* an ``XLMRobertaModel`` (random weights, ``max_position_embeddings=8194`` so 8192-token
  inputs work, saved as safetensors);
* an ``XLMRobertaTokenizerFast`` whose BPE vocabulary (Metaspace pre-tokenizer, like XLM-R's
  SentencePiece) is trained at call time on the English + Russian corpus embedded below;
  special tokens ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 and ``<mask>`` last;
* ``colbert_linear.pt`` / ``sparse_linear.pt`` heads (random, seeded; the sparse bias is
  positive so lexical weights are never empty);
* ``1_Pooling/config.json`` declaring CLS pooling, as in the real BGE-M3 repository.

It loads with ``BGEM3FlagModel(str(path), use_fp16=False, devices="cpu")`` (add
``colbert_dim=N`` when the model was built with a ``colbert_dim`` different from
``hidden_size``). The vectors are meaningless but deterministic: the same arguments always
give the same files and the same embeddings. Building takes well under a second once torch
and transformers are imported.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"
MODEL_MAX_LENGTH = 8192
DEFAULT_VOCAB_SIZE = 4000
SPARSE_BIAS = 1.0
SPARSE_WEIGHT_SCALE = 0.5

# Training text for the tokenizer: one "sentence" per line, English and Russian (legal, technical,
# everyday), so both scripts get real subwords.
CORPUS_FILE = Path(__file__).resolve().parent / "data" / "tokenizer_corpus.txt"


def _initial_alphabet() -> list[str]:
    cyrillic = [chr(c) for c in range(0x410, 0x450)] + ["ё", "Ё"]
    extra = ["«", "»", "—", "–", "№", "€", "₽", "…", "’", "“", "”", "°", "%"]
    return sorted(set(string.ascii_letters + string.digits + string.punctuation) | set(cyrillic) | set(extra))


def _corpus_lines(vocab_corpus: list[str] | None) -> list[str]:
    lines = [ln for ln in CORPUS_FILE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if vocab_corpus:
        lines.extend(str(t) for t in vocab_corpus)
    return lines


def _train_tokenizer(vocab_corpus: list[str] | None, vocab_size: int):  # -> XLMRobertaTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    # BPE rather than Unigram: the tokenizers Unigram trainer is not deterministic run to run.
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=_initial_alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus_lines(vocab_corpus), trainer=trainer)
    backend.add_special_tokens([MASK_TOKEN])  # last id, as in XLM-R
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert backend.token_to_id(tok) == i, (tok, backend.token_to_id(tok))
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=MASK_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
    )


def build_tiny_m3(
    target_dir: Path,
    *,
    colbert_dim: int | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_corpus: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random BGE-M3-shaped model into ``target_dir`` and return its path.

    Args:
        target_dir: Output directory (created if missing; existing files are overwritten).
        colbert_dim: Output size of ``colbert_linear``; ``None`` means ``hidden_size``. When it
            differs from ``hidden_size`` the model must be loaded with
            ``BGEM3FlagModel(..., colbert_dim=colbert_dim)``.
        hidden_size: Transformer width (must be divisible by the head count, 4 or 2).
        num_layers: Number of transformer layers.
        vocab_corpus: Extra lines to train the tokenizer on (in addition to the built-in
            English/Russian corpus); changes the vocabulary and therefore the weights.
        seed: Seed for all random weights. The caller's global torch RNG state is restored.

    Returns:
        ``target_dir`` (absolute). Load with
        ``BGEM3FlagModel(str(path), use_fp16=False, devices="cpu")``.
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    if hidden_size % 4 == 0:
        num_heads = 4
    elif hidden_size % 2 == 0:
        num_heads = 2
    else:
        raise ValueError(f"hidden_size must be even, got {hidden_size}")
    out_dim = hidden_size if colbert_dim is None or colbert_dim <= 0 else colbert_dim

    target = Path(target_dir).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(vocab_corpus, DEFAULT_VOCAB_SIZE)
    tokenizer.save_pretrained(str(target))

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size,
        # XLM-R position ids start at padding_idx + 1 = 2, so 8192 tokens need 8194 slots.
        max_position_embeddings=MODEL_MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        layer_norm_eps=1e-5,
        # With HF's default 0.02 every CLS vector of a tiny random model is (nearly) the same.
        initializer_range=0.5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaModel(config).eval()
        colbert = torch.nn.Linear(hidden_size, out_dim)
        sparse = torch.nn.Linear(hidden_size, 1)
        with torch.no_grad():
            sparse.weight.mul_(SPARSE_WEIGHT_SCALE)
            sparse.bias.fill_(SPARSE_BIAS)
    model.save_pretrained(str(target), safe_serialization=True)
    torch.save(colbert.state_dict(), target / "colbert_linear.pt")
    torch.save(sparse.state_dict(), target / "sparse_linear.pt")

    pooling_dir = target / "1_Pooling"
    pooling_dir.mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (pooling_dir / "config.json").write_text(json.dumps(pooling, indent=2) + "\n", encoding="utf-8")
    logger.debug(
        "built tiny BGE-M3 at %s (vocab=%d, hidden=%d, layers=%d, colbert_dim=%d)",
        target,
        len(tokenizer),
        hidden_size,
        num_layers,
        out_dim,
    )
    return target
