"""The encoder's runtime: lazy loading, its tokenizer, batch planning, devices, OOM halving, several replicas."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from indexer.config import ModelSettings, Settings
from indexer.encoder import BGEM3Encoder, M3Tokenizer, plan_batches, resolve_devices
from indexer.encoder.folder import head_shapes
from indexer.encoder.vectors import padded_tokens
from indexer.errors import ConfigError, EncodingError, ModelLoadError
from tests.helpers import REPO, sample_texts

WORDS = " ".join(sample_texts()).split()
TEXTS = [" ".join(WORDS[i * 29 : i * 29 + n]) for i, n in enumerate([45, 2, 30, 9, 50, 17, 1, 38, 5, 24] * 3)]


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_constructing_imports_no_model_stack(tiny_model_dir: Path) -> None:
    """Sizes, fingerprint and token counts without torch; the first encode loads torch, never FlagEmbedding."""
    script = f"""
import sys
from indexer.config import ModelSettings
from indexer.encoder import BGEM3Encoder
enc = BGEM3Encoder(ModelSettings(name={str(tiny_model_dir)!r}, device="cpu"), max_length=128)
n = len(enc.tokenizer("Договор поставки", add_special_tokens=True)["input_ids"])
heavy = sorted(m for m in ("torch", "transformers", "FlagEmbedding", "sklearn") if m in sys.modules)
print(enc.dense_dim, enc.colbert_dim, enc.fingerprint, n, enc.loaded, heavy)
enc.encode_queries(["revenue"])
print(enc.loaded, sorted(m for m in ("torch", "transformers", "FlagEmbedding", "sklearn") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    dense, colbert, fingerprint, n, loaded, heavy = out[0].split(" ", 5)
    assert (dense, colbert, loaded, heavy) == ("64", "64", "False", "[]")
    assert len(fingerprint) == 16 and int(n) > 2
    assert out[1] == "True ['torch', 'transformers']"


def test_head_shapes_read_without_torch_equal_torch_load(tiny_model_dir: Path, wide_colbert_model_dir: Path) -> None:
    import torch

    for d in (tiny_model_dir, wide_colbert_model_dir):
        for name in ("colbert_linear.pt", "sparse_linear.pt"):
            state = torch.load(d / name, weights_only=True)
            assert head_shapes(d / name) == {k: tuple(v.shape) for k, v in state.items()}


def test_head_reader_refuses_code_in_the_pickle(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "colbert_linear.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"weight": Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"unexpected object .*print"):
        head_shapes(path)


@pytest.mark.parametrize("model", ["tiny", "standin"])
def test_tokenizer_equals_the_hugging_face_one(model: str, tiny_model_dir: Path, tmp_path_factory) -> None:
    from transformers import AutoTokenizer

    if model == "tiny":
        d = tiny_model_dir
    else:
        from indexer.standin import build_standin_model

        d = build_standin_model(tmp_path_factory.mktemp("standin") / "m")
    hf, ours = AutoTokenizer.from_pretrained(str(d)), M3Tokenizer(d)
    assert not ours.loaded
    texts = [*sample_texts(), "a <mask> b <s> c </s> <pad> <unk> [SEP] [CLS]", "  x  ", "", "Ёжик\u3000tab\t ①"]
    for text in texts:
        for special in (True, False):
            a = hf(text, add_special_tokens=special, truncation=False, return_offsets_mapping=True, verbose=False)
            b = ours(text, add_special_tokens=special, truncation=False, return_offsets_mapping=True, verbose=False)
            assert b["input_ids"] == a["input_ids"]
            assert [tuple(o) for o in b["offset_mapping"]] == [tuple(o) for o in a["offset_mapping"]]
    assert ours(texts[:3])["input_ids"] == hf(texts[:3])["input_ids"] == ours.encode_ids(texts[:3])
    assert ours.num_special_tokens_to_add() == hf.num_special_tokens_to_add()
    unused = {hf.convert_tokens_to_ids(hf.special_tokens_map[t]) for t in ("cls_token", "eos_token", "pad_token")}
    assert set(ours.unused_ids()) == unused | {hf.unk_token_id}
    twin = copy.deepcopy(ours)
    assert not twin.loaded and twin("x y")["input_ids"] == ours("x y")["input_ids"]


def test_batches_respect_the_token_budget() -> None:
    rng = np.random.default_rng(1)
    lengths = [int(n) for n in rng.integers(3, 3000, size=300)] + [9000]
    plan = plan_batches(lengths, 8192)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))  # each input exactly once
    assert plan[0] == [300]  # longer than the budget: alone, and first
    for b in plan[1:]:
        assert padded_tokens([lengths[i] for i in b]) <= 8192
    order = [lengths[i] for b in plan for i in b]
    assert order == sorted(order, reverse=True)  # length-sorted across the whole input
    assert len(plan) <= sum(lengths) / 8192 * 1.25 + 2  # batches are filled, not capped by a count


def test_device_names_are_checked(tmp_path: Path) -> None:
    assert resolve_devices("cpu") == ["cpu"] and resolve_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    import torch

    if not torch.cuda.is_available():
        assert resolve_devices("auto") in (["cpu"], ["mps"])
        for name in ("cuda", "cuda:0", "cuda:all", ["cpu", "cuda:1"]):
            with pytest.raises(ModelLoadError, match="no CUDA GPU"):
                resolve_devices(name)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\ndevice = ["cuda:0", "cuda:1"]\n')
    from indexer.config import load_settings

    assert load_settings(cfg, env={}).model.device == ("cuda:0", "cuda:1")
    for bad in ("gpu", "cuda:x", ["auto", "cpu"], []):
        with pytest.raises(ConfigError, match="device"):
            Settings().replace(model={"device": bad})


@pytest.fixture(scope="module")
def reference(encoder: BGEM3Encoder) -> list:
    return encoder.encode_passages(TEXTS)


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.dense, y.dense, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(x.colbert, y.colbert, rtol=1e-5, atol=2e-6)
        assert x.sparse.indices == y.sparse.indices
        np.testing.assert_allclose(x.sparse.values, y.sparse.values, rtol=1e-5, atol=2e-6)


def small_batches(model_dir: Path, device: str | list[str] = "cpu", tokens: int = 400) -> BGEM3Encoder:
    return BGEM3Encoder(ModelSettings(name=str(model_dir), device=device, max_batch_tokens=tokens), max_length=128)


def test_out_of_memory_halves_the_batch_and_drops_nothing(
    tiny_model_dir: Path, reference: list, caplog: pytest.LogCaptureFixture
) -> None:
    """A real torch.cuda.OutOfMemoryError from the device on a batch's first try: its halves are encoded."""
    import torch

    enc = small_batches(tiny_model_dir)
    enc.load()
    [replica] = enc._replicas
    forward, calls = replica.forward, []

    def device_that_fills_up(ids, colbert):
        calls.append(padded_tokens([len(x) for x in ids]))
        if len(calls) in (1, 4):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(ids, colbert)

    replica.forward = device_that_fills_up
    with caplog.at_level(logging.WARNING, logger="indexer.encoder.pool"):
        out = enc.encode_passages(TEXTS)
    assert_same(out, reference)
    assert calls[0] > 200 and calls[1] <= calls[0] // 2 and calls[2] <= calls[0] // 2
    assert sum("out of memory on cpu" in r.getMessage() for r in caplog.records) == 2

    def always_full(ids, colbert):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    replica.forward = always_full
    with pytest.raises(EncodingError, match="out of memory on cpu for a single input of"):
        enc.encode_passages(TEXTS[:3])


def test_several_replicas_share_one_queue(tiny_model_dir: Path, reference: list) -> None:
    enc = small_batches(tiny_model_dir, ["cpu", "cpu"])
    assert enc.devices == ["cpu", "cpu"] and not enc.loaded
    enc.load()
    served = [0, 0]

    def counted(n: int, forward):
        def run(ids, colbert):
            served[n] += 1
            return forward(ids, colbert)

        return run

    for n, replica in enumerate(enc._replicas):
        replica.forward = counted(n, replica.forward)
    assert_same(enc.encode_passages(TEXTS), reference)
    batches = plan_batches([len(x) for x in enc.tokenize(TEXTS)], 400)
    assert served[0] > 0 and served[1] > 0 and sum(served) == len(batches)
    # A failure on one device stops the run with the error, and no thread is left behind.
    enc._replicas[1].forward = lambda ids, colbert: 1 / 0
    with pytest.raises(EncodingError, match="ZeroDivisionError"):
        enc.encode_passages(TEXTS)
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("encoder-")]


def test_replicas_wait_for_a_slow_caller_instead_of_piling_up_passes(tiny_model_dir: Path) -> None:
    enc = small_batches(tiny_model_dir, ["cpu", "cpu"], tokens=64)
    enc.load()
    started = [0]

    def counted(forward):
        def run(ids, colbert):
            started[0] += 1
            return forward(ids, colbert)

        return run

    for replica in enc._replicas:
        replica.forward = counted(replica.forward)
    ids = enc.tokenize(TEXTS)
    ahead, taken, keys = [], 0, []
    for batch in enc.iter_encode_batches(enumerate(ids), window_tokens=None):
        taken += 1
        keys += [key for key, _ in batch]
        ahead.append(started[0] - taken)  # passes run (or running) that the caller has not taken
        time.sleep(0.05)  # a writer slower than the devices
    assert taken == len(plan_batches([len(x) for x in ids], 64)) > 12
    assert max(ahead) <= 4  # 2 per device, whatever the number of batches
    assert sorted(keys) == list(range(len(ids)))


def test_streaming_pre_tokenized_input(encoder: BGEM3Encoder, reference: list) -> None:
    ids = encoder.tokenize(TEXTS)
    pulled = []

    def chunks():  # what a pipeline stage reading a bounded queue would hand over
        for i, x in enumerate(ids):
            pulled.append(i)
            yield f"chunk-{i}", x

    stream = encoder.iter_encode(chunks(), window_tokens=300)
    assert pulled == []  # lazy: nothing is read before the first result is asked for
    got = dict(stream)
    assert sorted(got) == sorted(f"chunk-{i}" for i in range(len(ids)))
    assert_same([got[f"chunk-{i}"] for i in range(len(ids))], reference)
    assert_same(encoder.encode_ids(ids), reference)
    with pytest.raises(EncodingError, match="outside 2..128"):
        list(encoder.iter_encode([("long", list(range(3, 300)))]))


def test_model_folder_sizes_are_checked(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    copy_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy_dir)
    config = json.loads((copy_dir / "config.json").read_text())
    (copy_dir / "config.json").write_text(json.dumps({**config, "hidden_size": 32}))
    with pytest.raises(ModelLoadError, match="do not fit the 32-d backbone"):
        BGEM3Encoder(ModelSettings(name=str(copy_dir)), max_length=128)
