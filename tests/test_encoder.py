from pathlib import Path

import numpy as np
import pytest

from indexer.config import ModelSettings
from indexer.encoder import (
    MAX_MULTIVECTOR_FLOATS,
    BGEM3Encoder,
    fit_multivector,
    max_multivector_rows,
    plan_batches,
    sparse_from_lexical,
)
from indexer.errors import EncodingError, ModelLoadError
from tests.helpers import sample_texts


def test_sparse_conversion_from_flagembedding_output() -> None:
    raw = {"4865": np.float32(0.25), "17": np.float16(0.5), "99": np.float32(0.0), "3": 0.125}
    sv = sparse_from_lexical(raw)
    assert sv.indices == (3, 17, 4865)
    assert sv.values == (0.125, 0.5, 0.25)
    assert all(type(i) is int for i in sv.indices), [type(i) for i in sv.indices]
    assert all(type(v) is float for v in sv.values), [type(v) for v in sv.values]


def test_multivector_cap_arithmetic() -> None:
    assert max_multivector_rows(1024) == 1023  # 1023 * 1024 < 1048576 <= 1024 * 1024
    assert max_multivector_rows(1024) * 1024 < MAX_MULTIVECTOR_FLOATS


def test_fit_multivector_pools_neighbours() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2500, 1024)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = fit_multivector(v)
    assert out.shape[1] == 1024
    assert out.size < MAX_MULTIVECTOR_FLOATS
    assert out.shape[0] == 834  # windows of 3: ceil(2500 / 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    first = v[:3].mean(0)
    np.testing.assert_allclose(out[0], first / np.linalg.norm(first), rtol=1e-5)
    last = v[2499]  # the last window holds one vector only
    np.testing.assert_allclose(out[-1], last, rtol=1e-5)
    small = v[:100]
    assert fit_multivector(small) is small


def test_encoder_outputs_follow_the_model(encoder: BGEM3Encoder) -> None:
    texts = ["Договор поставки товара", "Revenue grew by 18 percent", "Revenue grew by 18 percent"]
    out = encoder.encode_passages(texts)
    assert len(out) == 3
    assert encoder.dense_dim == 64
    assert encoder.colbert_dim == 64
    for e, text in zip(out, texts, strict=True):
        assert e.dense.shape == (64,)
        assert e.dense.dtype == np.float32
        assert abs(np.linalg.norm(e.dense) - 1) < 1e-4
        n_tokens = len(encoder.tokenizer(text)["input_ids"])
        assert e.colbert is not None
        assert e.colbert.shape == (n_tokens - 1, 64)  # CLS dropped
        assert e.sparse.indices, text
        assert list(e.sparse.indices) == sorted(set(e.sparse.indices))
    np.testing.assert_allclose(out[1].dense, out[2].dense, rtol=1e-5)
    assert float(out[0].dense @ out[1].dense) < 0.99


@pytest.fixture(scope="module")
def flag_model(tiny_model_dir: Path):
    """FlagEmbedding's own BGEM3FlagModel on the same folder: the reference."""
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(tiny_model_dir), use_fp16=False, devices=["cpu"], pooling_method="cls")


def assert_same_as_flagembedding(ours: list, ref: dict) -> None:
    assert len(ours) == len(ref["dense_vecs"])
    for i, e in enumerate(ours):
        np.testing.assert_allclose(e.dense, ref["dense_vecs"][i], rtol=1e-5, atol=2e-6)
        expected = {int(k): float(v) for k, v in ref["lexical_weights"][i].items()}
        assert e.sparse.indices == tuple(sorted(expected))
        np.testing.assert_allclose(e.sparse.values, [expected[k] for k in e.sparse.indices], rtol=1e-5, atol=2e-6)
        assert e.colbert.shape == ref["colbert_vecs"][i].shape
        np.testing.assert_allclose(e.colbert, ref["colbert_vecs"][i], rtol=1e-5, atol=2e-6)


@pytest.mark.slow  # imports FlagEmbedding (about 11 s)
def test_encoder_matches_flagembedding_directly(encoder: BGEM3Encoder, flag_model) -> None:
    text = "Поставщик уплачивает неустойку за каждый день просрочки."
    ref = flag_model.encode([text], return_dense=True, return_sparse=True, return_colbert_vecs=True)
    assert_same_as_flagembedding(encoder.encode_passages([text]), ref)


@pytest.mark.slow
def test_many_mixed_length_batches_match_flagembedding(tiny_model_dir: Path, flag_model) -> None:
    """Inputs of 3 to 1200 tokens, in an order unlike their lengths, over many small token-budget batches."""
    words = " ".join(sample_texts()).split()
    texts = [" ".join(words[i * 37 : i * 37 + n]) for i, n in enumerate([700, 3, 40, 1, 250, 12, 90, 500, 7, 160] * 3)]
    enc = BGEM3Encoder(ModelSettings(name=str(tiny_model_dir), device="cpu", max_batch_tokens=1500), max_length=2048)
    lengths = [len(x) for x in enc.tokenize(texts)]
    assert min(lengths) < 8
    assert max(lengths) > 1024
    plan = plan_batches(lengths, 1500)
    assert len(plan) > 5
    assert any(len(b) > 2 for b in plan), [len(b) for b in plan]
    ours = enc.encode_passages(texts)
    ref = flag_model.encode(
        texts, batch_size=4, max_length=2048, return_dense=True, return_sparse=True, return_colbert_vecs=True
    )
    assert_same_as_flagembedding(ours, ref)
    short = [texts[i] for i in (1, 2, 3, 5, 8)]
    ref = flag_model.encode(short, max_length=512, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    assert_same_as_flagembedding(enc.encode_queries(short), ref)


def test_too_long_passage_is_refused_not_truncated(encoder: BGEM3Encoder) -> None:
    with pytest.raises(EncodingError, match="truncate"):
        encoder.encode_passages(["word " * 1000])


def test_long_chunk_colbert_fits_the_cap(wide_colbert_model_dir: Path) -> None:
    enc = BGEM3Encoder(ModelSettings(name=str(wide_colbert_model_dir), device="cpu"), max_length=2048)
    assert enc.colbert_dim == 1024
    text = " ".join(f"слово{i} word{i}" for i in range(160))
    n_tokens = len(enc.tokenizer(text)["input_ids"])
    assert 1100 < n_tokens <= 2048
    [e] = enc.encode_passages([text])
    assert e.colbert is not None
    assert e.colbert.shape[0] <= 1023
    assert e.colbert.size < MAX_MULTIVECTOR_FLOATS


def test_missing_model_gives_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"cannot load model .*--model"):
        BGEM3Encoder(ModelSettings(name=str(tmp_path / "no-such-model")), max_length=128)


def test_unreachable_hub_model_gives_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"cannot load model 'BAAI/bge-m3'.*local-dir"):
        BGEM3Encoder(ModelSettings(name="BAAI/bge-m3"), max_length=128)


def test_folder_without_m3_heads_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "sparse_linear.pt").unlink()
    with pytest.raises(ModelLoadError, match="sparse_linear.pt"):
        BGEM3Encoder(ModelSettings(name=str(copy)), max_length=128)


def test_chunk_size_above_model_limit_is_refused(tmp_path: Path) -> None:
    from indexer.standin import build_standin_model

    standin = build_standin_model(tmp_path / "standin")
    with pytest.raises(ModelLoadError, match="512"):
        BGEM3Encoder(ModelSettings(name=str(standin), device="cpu"), max_length=1024)
    enc = BGEM3Encoder(ModelSettings(name=str(standin), device="cpu"), max_length=512)
    assert (enc.dense_dim, enc.colbert_dim, enc.pooling) == (384, 384, "mean")
    [e] = enc.encode_passages(["a short english text"])
    sep = enc.tokenizer.convert_tokens_to_ids("[SEP]")
    assert sep not in e.sparse.indices
