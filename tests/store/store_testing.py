"""Shared helpers of the store tests: a small run's metadata and rows whose values say who wrote them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lrp_lightning import store as S
from lrp_lightning.store import RunStore, make_attribution_table

SHAPE = (4, 5)
RUN_META = {"heatmap_shape": SHAPE, "class_names": ["zero", "one", "two"], "composite": "epsilon_gamma_box"}


def maps_for(ids, version: float, shape=SHAPE) -> np.ndarray:
    """Maps whose values encode (sample id, version), exactly representable in float16."""
    ids = np.asarray(ids)
    grid = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape) / 8
    return ((ids[:, None, None] % 8) * 8 + version % 16 + grid).astype(np.float32)  # all below 128


def table_for(epoch: int, step: int, ids, version: float, **extra_columns) -> pa.Table:
    """Attribution rows in which every value says which version wrote them."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    return make_attribution_table(
        epoch=epoch,
        global_step=step,
        sample_id=ids,
        label=ids % 3,
        prediction=(ids + 1) % 3,
        target=ids % 3,
        score=np.full(n, version),
        probability=np.full(n, 0.25),
        relevance=maps_for(ids, version),
        extra=extra_columns or None,
    )


def new_store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path / "run", **RUN_META)


def write_ranks(store: RunStore, epoch: int, step: int, parts: list, version: float) -> S.EpochInfo:
    for rank, ids in enumerate(parts):
        store.write_part(epoch, step, table_for(epoch, step, ids, version), rank=rank)
    return store.commit_epoch(epoch, step, world_size=len(parts))


def assert_consistent(store: RunStore, skip: set[int] = frozenset()) -> dict[int, int]:
    """Every listed epoch (but ``skip``) reads completely as one version; returns epoch -> global step seen."""
    seen = {}
    for info in store.epochs():
        if info.epoch in skip:
            continue
        table = store.attributions(info.epoch)
        assert table.num_rows == info.rows
        steps = set(table.column("global_step").to_pylist())
        assert steps == {info.global_step}, f"epoch {info.epoch} mixes versions {steps}"
        scores = set(table.column("score").to_pylist())
        assert scores == {float(info.global_step)}, f"epoch {info.epoch} mixes versions {scores}"
        ids, maps = store.heatmaps(info.epoch)
        np.testing.assert_array_equal(maps, maps_for(ids, info.global_step))
        seen[info.epoch] = info.global_step
    return seen


def hidden_entries(store: RunStore) -> list[str]:
    return sorted(p.name for p in (store.store_dir / S.ATTRIBUTIONS_DIR).iterdir() if p.name.startswith("."))
