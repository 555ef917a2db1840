"""Helpers of the analysis tests: small synthetic runs written through the store, fast pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrp_lightning.analysis import Clusterings, Embeddings, SpRAy, add_corner_artifact, planted_maps
from lrp_lightning.store import RunStore, make_attribution_table

SHAPE = (16, 16)
CLASS_NAMES = ["zero", "one"]


def fast_spray(**overrides) -> SpRAy:
    """A pipeline that is quick on ~100 samples: k up to 6, PCA layout only."""
    params = {
        "clusterings": Clusterings(k_range=(2, 6)),
        "embeddings": Embeddings(methods=("pca",)),
    }
    params.update(overrides)
    return SpRAy(**params)


def epoch_table(
    epoch: int,
    *,
    n_per_class: int = 60,
    n_groups: int = 3,
    artifact: int = 0,
    seed: int = 0,
    noise: float = 1.0,
    nan_ids: tuple[int, ...] = (),
    extra_class_samples: int = 0,
):
    """Attribution rows of one epoch: two classes of planted maps, ``artifact`` class-1 samples with a
    top-left corner artifact, optionally NaN maps and a third class with ``extra_class_samples``."""
    maps, labels, groups = [], [], []
    for label in (0, 1):
        class_maps, class_groups = planted_maps(
            n_per_class, n_groups, SHAPE, noise=noise, random_state=10 * label + seed
        )
        if label == 1 and artifact:
            class_maps = add_corner_artifact(class_maps, np.arange(artifact), "top-left", share=0.5)
            class_groups = np.where(np.arange(n_per_class) < artifact, n_groups, class_groups)
        maps.append(class_maps)
        labels.append(np.full(n_per_class, label))
        groups.append(class_groups)
    if extra_class_samples:
        extra, _ = planted_maps(extra_class_samples, 1, SHAPE, random_state=99)
        maps.append(extra)
        labels.append(np.full(extra_class_samples, 2))
        groups.append(np.zeros(extra_class_samples, dtype=np.int64))
    maps = np.concatenate(maps)
    labels = np.concatenate(labels)
    ids = np.arange(len(maps), dtype=np.int64)
    for sample in nan_ids:
        maps[sample, 0, 0] = np.nan
    n = len(ids)
    table = make_attribution_table(
        epoch=epoch,
        global_step=100 * (epoch + 1),
        sample_id=ids,
        label=labels,
        prediction=labels,
        target=labels,
        score=np.ones(n),
        probability=np.full(n, 0.9),
        relevance=maps,
    )
    return table, np.concatenate(groups)


def make_run(path: Path, epochs=(0,), **kwargs) -> RunStore:
    store = RunStore.create(path, heatmap_shape=SHAPE, class_names=CLASS_NAMES)
    for epoch in epochs:
        table, _ = epoch_table(epoch, **kwargs)
        store.write_epoch(epoch, 100 * (epoch + 1), table)
    return store
