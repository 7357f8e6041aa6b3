"""Qdrant Edge's own policy: it optimizes (blocking, whole shard) once enough points were written, and at close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.models import PointRecord, SparseVec
from indexer.schema import CollectionSpec
from indexer.store import edge
from indexer.store.edge import EdgeStore


def points(n: int, start: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(start)
    return [
        PointRecord(
            id=f"00000000-0000-0000-0000-{i:012d}",
            payload={"kind": "chunk", "doc_id": "d"},
            dense=rng.normal(size=8).astype(np.float32),
            sparse=SparseVec((1, 2), (0.5, 0.25)),
        )
        for i in range(start, start + n)
    ]


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
