"""Qdrant Edge's own policy: it optimizes (blocking, whole shard) once enough points were written, and at close."""

from __future__ import annotations

from pathlib import Path

import pytest

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
