"""Qdrant Edge's own policy: it optimizes (blocking, whole shard) once enough points were written, and at close;
and the vectors it is given (memoryview rows) read back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.models import PointRecord
from indexer.schema import CollectionSpec
from indexer.store import edge
from indexer.store.edge import EdgeStore
from tests.helpers import small_points as points


def test_finish_optimizes_only_past_the_threshold_and_close_does_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge, "OPTIMIZE_AFTER_POINTS", 10)
    optimized: list[int] = []
    real = EdgeStore._optimize

    def counting(self: EdgeStore) -> None:
        optimized.append(self.unoptimized)
        real(self)

    monkeypatch.setattr(EdgeStore, "_optimize", counting)
    store = EdgeStore(tmp_path, "c")
    store.ensure_collection(CollectionSpec(name="c", dense_dim=8, colbert_dim=None))
    store.upsert(points(4))
    store.finish()
    assert optimized == []  # a small upload: no whole-shard optimize
    store.upsert(points(7, start=4))
    store.finish()
    assert optimized == [11]  # past the threshold
    store.upsert(points(2, start=11))
    store.finish()
    store.close()
    assert optimized == [11, 2]  # what was left, at close
    reopened = EdgeStore(tmp_path, "c")
    reopened.open_collection()
    assert reopened.count() == 13
    reopened.close()
    assert optimized == [11, 2]  # nothing written: nothing to optimize


@pytest.mark.parametrize("datatype", ["float32", "uint8"])
def test_points_read_back_exactly_as_written_from_any_array_layout(tmp_path: Path, datatype: str) -> None:
    """Edge is given vectors as memoryview rows (``edge_rows``, 3x faster than arrays or lists): a float64, a
    non-contiguous or a uint8 matrix must land with the values a float32 copy of it holds (float vectors are
    unit rows, which Cosine keeps as they are, to the last bits of float32)."""
    rng = np.random.default_rng(7)
    wide = rng.normal(size=(5, 32))
    wide /= np.linalg.norm(wide[:, ::2], axis=1, keepdims=True)  # the strided view's rows are unit rows
    kinds = {
        "float32": [wide[:, ::2], wide[:, ::2].astype(np.float32)[::-1], _unit(rng.normal(size=(3, 16)))],
        "uint8": [rng.integers(0, 256, size=(n, 16)).astype(np.uint8) for n in (5, 1, 40)],
    }[datatype]
    written = [
        PointRecord(id=p.id, payload=p.payload, dense=_unit(p.dense.astype(np.float64)), sparse=p.sparse, colbert=m)
        for p, m in zip(points(3), kinds, strict=True)
    ]
    store = EdgeStore(tmp_path, "c")
    spec = CollectionSpec(name="c", dense_dim=8, colbert_dim=16, colbert_datatype=datatype, colbert_on_disk=False)
    store.ensure_collection(spec)
    store.upsert(written)
    read = {p.id: p.vectors for p in store.retrieve([p.id for p in written], with_vectors=True)}
    store.close()
    exact = {"rtol": 0, "atol": 0} if datatype == "uint8" else {"rtol": 1e-6, "atol": 1e-7}
    for p in written:
        assert p.colbert is not None and p.dense is not None
        assert np.allclose(np.asarray(read[p.id]["colbert"]), p.colbert.astype(np.float32), **exact)
        assert np.allclose(np.asarray(read[p.id]["dense"]), p.dense.astype(np.float32), rtol=1e-6, atol=1e-7)


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)
