"""Synthetic signal, tabular and token runs for the plugin's tests and screenshots (NumPy only, deterministic).

* Signals ``(2, LENGTH)``: each class has a bump in its own window of time steps; the relevance
  follows the bump (and sharpens over the epochs). The probe thumbnail is what ``LRPCallback``
  stores for a signal: the channel mean, min-max scaled, one pixel high.
* Tabular ``(F,)``: named features; each class's relevance sits on its own feature
  (:data:`CLASS_FEATURES`), with a small negative share on ``noise``.
* Tokens: short sentences of a small vocabulary; the class word carries the relevance, and in a
  quarter of class 0 a spurious token ``[X]`` carries more (a Clever-Hans feature).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from lrp_lightning.store import RunStore, make_attribution_table, make_probe_table, token_maps

LENGTH = 96
WINDOWS = ((10, 22), (56, 70))
"""The bump of each class of the signal runs: time steps [start, stop)."""
FEATURES = ("age", "income", "tenure", "visits", "noise")
CLASS_FEATURES = ("income", "visits")
"""The feature that carries each class's relevance in the tabular runs."""
VOCABULARY = ("the", "film", "was", "good", "bad", "plot", "acting", "[X]", "really", "quite")
CLASS_WORDS = ("good", "bad")
SPURIOUS = "[X]"
MAX_TOKENS = 12
THUMBNAIL_SIDE = 128
"""Longest side of the probe thumbnails (LRPCallback's): a longer signal's input line has this many points."""


def _gray_png(row: np.ndarray) -> bytes:
    low, high = float(row.min()), float(row.max())
    scaled = (row - low) / (high - low) if high > low else np.zeros_like(row)
    buffer = io.BytesIO()
    picture = Image.fromarray(np.round(scaled * 255).astype(np.uint8)[None, :])
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)  # as LRPCallback stores it
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_epochs(store: RunStore, ids: np.ndarray, labels: np.ndarray, maps_of, epochs: int, rng) -> None:
    """``maps_of(progress)``: the maps ``(N, 1, W)``, or a token run's relevance per token (a list of arrays)."""
    for epoch in range(epochs):
        progress = (epoch + 1) / epochs
        maps = maps_of(progress)
        per_token = None
        if isinstance(maps, list):
            per_token, maps = maps, token_maps(maps, store.max_tokens)
        correct = rng.random(len(ids)) < 0.5 + 0.45 * progress
        predictions = np.where(correct, labels, 1 - labels)
        scores = rng.normal(2.0 * progress, 0.4, len(ids)).astype(np.float32)
        store.write_epoch(
            epoch,
            (epoch + 1) * 10,
            make_attribution_table(
                epoch=epoch,
                global_step=(epoch + 1) * 10,
                sample_id=ids,
                label=labels,
                prediction=predictions,
                target=labels,
                score=scores,
                probability=1.0 / (1.0 + np.exp(-scores)),
                relevance=maps,
                token_relevance=per_token,
            ),
        )


def _ids(samples: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(samples, dtype=np.int64) * 5 + 3  # not 0..N-1
    return ids, np.arange(samples) % 2


def build_signal_run(
    run_dir: str | Path, *, epochs: int = 3, samples: int = 16, seed: int = 0, length: int = LENGTH
) -> RunStore:
    """A signal run: inputs ``(2, length)``, maps ``(1, length)``, the :data:`WINDOWS` scaled to the length."""
    rng = np.random.default_rng(seed)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, length),
        input_shape=(2, length),
        class_names=["low", "high"],
        target_mode="label",
        modality="signal",
    )
    ids, labels = _ids(samples)
    windows = [(start * length // LENGTH, stop * length // LENGTH) for start, stop in WINDOWS]
    steps = np.arange(length)
    inputs = rng.normal(0.0, 0.2, (samples, 2, length)) + np.sin(steps * LENGTH / (6.0 * length))
    for i, label in enumerate(labels):
        start, stop = windows[label]
        inputs[i, :, start:stop] += 2.5
    thumbnails = [_gray_png(x.mean(axis=0)) for x in inputs]
    store.write_probe(make_probe_table(sample_id=ids, dataset_index=ids // 5, label=labels, thumbnail=thumbnails))

    def maps_of(progress: float) -> np.ndarray:
        maps = rng.normal(0.0, 0.05 * (1.2 - progress), (samples, 1, length))
        for i, label in enumerate(labels):
            start, stop = windows[label]
            maps[i, 0, start:stop] += progress
        return maps

    _write_epochs(store, ids, labels, maps_of, epochs, rng)
    return store


def build_tabular_run(run_dir: str | Path, *, epochs: int = 3, samples: int = 16, seed: int = 1) -> RunStore:
    """A tabular run of the named :data:`FEATURES`; see the module docstring."""
    rng = np.random.default_rng(seed)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, len(FEATURES)),
        input_shape=(len(FEATURES),),
        class_names=["stays", "leaves"],
        target_mode="label",
        modality="tabular",
        feature_names=list(FEATURES),
    )
    ids, labels = _ids(samples)
    inputs = rng.random((samples, len(FEATURES)))
    store.write_probe(
        make_probe_table(sample_id=ids, dataset_index=ids // 5, label=labels, thumbnail=[_gray_png(x) for x in inputs])
    )

    def maps_of(progress: float) -> np.ndarray:
        maps = rng.normal(0.0, 0.05, (samples, 1, len(FEATURES)))
        for i, label in enumerate(labels):
            maps[i, 0, FEATURES.index(CLASS_FEATURES[label])] += progress
            maps[i, 0, FEATURES.index("noise")] -= 0.3 * progress
        return maps

    _write_epochs(store, ids, labels, maps_of, epochs, rng)
    return store


def token_sentences(samples: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Ids, labels and sentences of the token runs: the class word, and ``[X]`` in every other sample of class 0."""
    rng = np.random.default_rng(seed)
    ids, labels = _ids(samples)
    fillers = [w for w in VOCABULARY if w not in (*CLASS_WORDS, SPURIOUS)]
    sentences = []
    for i, label in enumerate(labels):
        words = ["the", "film", "was", "really" if i % 3 else "quite", CLASS_WORDS[label]]
        words += [fillers[k] for k in rng.integers(0, len(fillers), 1 + i % 4)]
        if label == 0 and i % 4 == 0:
            words.insert(1 + i % 3, SPURIOUS)
        sentences.append(words[:MAX_TOKENS])
    return ids, labels, sentences


def build_token_run(
    run_dir: str | Path, *, epochs: int = 3, samples: int = 16, seed: int = 2, strings: bool = True
) -> RunStore:
    """A token run (:func:`token_sentences`); ``strings=False`` stores token ids only (no tokenizer)."""
    rng = np.random.default_rng(seed)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(1, MAX_TOKENS),
        input_shape=(MAX_TOKENS,),
        class_names=["positive", "negative"],
        target_mode="label",
        modality="tokens",
        max_tokens=MAX_TOKENS,
    )
    ids, labels, sentences = token_sentences(samples, seed)
    token_ids = [[VOCABULARY.index(w) + 100 for w in words] for words in sentences]
    store.write_probe(
        make_probe_table(
            sample_id=ids,
            dataset_index=ids // 5,
            label=labels,
            token_ids=token_ids,
            tokens=sentences if strings else None,
        )
    )

    def relevance_of(progress: float) -> list[np.ndarray]:
        result = []
        for words, label in zip(sentences, labels):
            values = rng.normal(0.0, 0.04, len(words)).astype(np.float32)
            for k, word in enumerate(words):
                if word == CLASS_WORDS[label]:
                    values[k] += progress
                elif word == SPURIOUS:
                    values[k] += 1.5 * progress
                elif word in CLASS_WORDS:
                    values[k] -= 0.5 * progress
            result.append(values)
        return result

    _write_epochs(store, ids, labels, relevance_of, epochs, rng)
    return store
