"""Synthetic token, tabular and signal runs whose analysis finds a planted shortcut (NumPy only, deterministic).

* Tokens: :func:`lrp_lightning.analysis.synthetic.planted_tokens`: half of class 1 holds the token ``[X]``,
  which carries half of their relevance.
* Tabular: each class's relevance on its own feature; half of class 1 also puts most of it on
  :data:`SHORTCUT_FEATURE` (``customer_id``: a leak).
* Signal: each class's relevance on a bump; half of class 1 also on the first :data:`SHORTCUT_STEPS` time
  steps (a recording artefact at the start).

Each run is analysed (PCA embedding only) in every epoch, so its findings span the epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrp_lightning.analysis import Embeddings, SpRAy, analyze_run
from lrp_lightning.analysis.synthetic import planted_tokens
from lrp_lightning.store import RunStore, make_attribution_table, make_probe_table, token_maps

MAX_TOKENS = 32
SHORTCUT_TOKEN = "[X]"
FEATURES = ("age", "income", "customer_id", "tenure", "visits")
CLASS_FEATURES = ("income", "visits")
SHORTCUT_FEATURE = "customer_id"
LENGTH = 64
SHORTCUT_STEPS = 8


def _write(store: RunStore, labels: np.ndarray, epochs: int, maps, per_token=None) -> None:
    ids = np.arange(len(labels), dtype=np.int64)
    for epoch in range(epochs):
        store.write_epoch(
            epoch,
            epoch * 10,
            make_attribution_table(
                epoch=epoch,
                global_step=epoch * 10,
                sample_id=ids,
                label=labels,
                prediction=labels,
                target=labels,
                score=np.ones(len(ids)),
                probability=np.full(len(ids), 0.9),
                relevance=maps,
                token_relevance=per_token,
            ),
        )
    analyze_run(store, SpRAy(embeddings=Embeddings(methods=("pca",)), random_state=0), log_scalars=False)


def _planted(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    members = np.flatnonzero(labels == 1)
    return np.sort(rng.permutation(members)[: members.size // 2])


def build_token_findings_run(
    run_dir: str | Path, *, samples: int = 200, epochs: int = 2
) -> tuple[RunStore, np.ndarray]:
    """A token run whose finding is the token ``[X]``; returns the store and the planted samples."""
    data = planted_tokens(n_samples=samples, length=(12, 40), random_state=3)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, MAX_TOKENS),
        input_shape=(MAX_TOKENS,),
        modality="tokens",
        max_tokens=MAX_TOKENS,
        class_names=["negative", "positive"],
        target_mode="label",
    )
    ids = np.arange(samples)
    texts = [[data.names[int(t)] for t in row] for row in data.token_ids]
    store.write_probe(
        make_probe_table(sample_id=ids, dataset_index=ids, label=data.labels, token_ids=data.token_ids, tokens=texts)
    )
    _write(store, data.labels, epochs, token_maps(data.relevance, MAX_TOKENS), data.relevance)
    return store, data.planted


def build_tabular_findings_run(
    run_dir: str | Path, *, samples: int = 200, epochs: int = 2
) -> tuple[RunStore, np.ndarray]:
    """A tabular run whose finding is the feature ``customer_id``; returns the store and the planted samples."""
    rng = np.random.default_rng(4)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, len(FEATURES)),
        input_shape=(len(FEATURES),),
        modality="tabular",
        feature_names=list(FEATURES),
        class_names=["stays", "leaves"],
        target_mode="label",
    )
    labels = np.arange(samples) % 2
    store.write_probe(make_probe_table(sample_id=np.arange(samples), dataset_index=np.arange(samples), label=labels))
    maps = np.abs(rng.normal(0.0, 0.05, (samples, 1, len(FEATURES)))).astype(np.float32)
    for i, label in enumerate(labels):
        maps[i, 0, FEATURES.index(CLASS_FEATURES[label])] += rng.uniform(0.6, 1.0)
    planted = _planted(labels, rng)
    maps[planted, 0, FEATURES.index(SHORTCUT_FEATURE)] += 2.0
    _write(store, labels, epochs, maps)
    return store, planted


def build_signal_findings_run(
    run_dir: str | Path, *, samples: int = 200, epochs: int = 2
) -> tuple[RunStore, np.ndarray]:
    """A signal run whose finding is the first time steps; returns the store and the planted samples."""
    rng = np.random.default_rng(5)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, LENGTH),
        input_shape=(1, LENGTH),
        modality="signal",
        class_names=["low", "high"],
        target_mode="label",
    )
    labels = np.arange(samples) % 2
    store.write_probe(make_probe_table(sample_id=np.arange(samples), dataset_index=np.arange(samples), label=labels))
    maps = np.abs(rng.normal(0.0, 0.02, (samples, 1, LENGTH))).astype(np.float32)
    for i, label in enumerate(labels):
        start = 24 + 20 * label
        maps[i, 0, start : start + 10] += rng.uniform(0.3, 0.5)
    planted = _planted(labels, rng)
    maps[planted, 0, :SHORTCUT_STEPS] += 1.0
    _write(store, labels, epochs, maps)
    return store, planted
