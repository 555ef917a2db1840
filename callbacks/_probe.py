"""Choosing the probe set: a fixed, seeded sample of the validation data, stratified by class.

Selection draws only from its own ``numpy.random.Generator(seed)``, so it neither depends on nor
changes the global RNG streams, and the same data and seed give the same probe set in every process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

MAX_LABEL_SCAN = 10_000
"""Without a ``targets``/``labels`` attribute, labels are read from at most ``max(this, 10 * num_samples)``
randomly chosen samples, and the probe set is stratified within them."""


def dataset_labels(dataset: Any) -> np.ndarray | None:
    """Labels of every sample without loading the samples, when the dataset exposes them; else None.

    Understands torchvision-style ``targets``/``labels`` attributes, ``TensorDataset`` (second tensor)
    and ``Subset`` of those.
    """
    length = len(dataset)
    if isinstance(dataset, torch.utils.data.Subset):
        parent = dataset_labels(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    candidates: list[Any] = [getattr(dataset, name, None) for name in ("targets", "labels")]
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) > 1:
        candidates.insert(0, dataset.tensors[1])
    for values in candidates:
        if values is None or isinstance(values, (str, bytes)):
            continue
        try:
            array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        except (TypeError, ValueError):
            continue
        if array.shape == (length,) and array.dtype.kind in "iu":
            return array.astype(np.int64)
    return None


def balanced_quotas(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Samples per class: as equal as the class sizes allow, summing to ``total``.

    Classes smaller than their share give all they have; the rest is shared among the others, and a
    remainder that does not divide goes to randomly chosen classes.
    """
    quotas = np.zeros_like(counts)
    remaining = total
    while remaining > 0:
        open_classes = np.flatnonzero(quotas < counts)
        share = remaining // open_classes.size
        if share == 0:
            quotas[rng.choice(open_classes, size=remaining, replace=False)] += 1
            break
        added = np.minimum(share, counts[open_classes] - quotas[open_classes])
        quotas[open_classes] += added
        remaining -= int(added.sum())
    return quotas


def stratified_sample(candidates: np.ndarray, labels: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """``num_samples`` of ``candidates`` (dataset indices with their ``labels``), balanced over classes.

    Returns the chosen indices in ascending order.
    """
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    quotas = balanced_quotas(np.bincount(inverse, minlength=classes.size), num_samples, rng)
    chosen = [rng.permutation(candidates[inverse == k])[: quotas[k]] for k in range(classes.size)]
    return np.sort(np.concatenate(chosen))


def select_probe(
    length: int,
    num_samples: int,
    seed: int,
    known_labels: np.ndarray | None,
    read_labels: Callable[[Sequence[int]], Iterable[np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """Choose probe indices and return ``(indices, labels)``; labels are -1 where the data has none.

    Parameters
    ----------
    length : int
        Number of samples in the dataset.
    num_samples : int
        Size of the probe set (``<= length``).
    seed : int
        Seed of the selection.
    known_labels : numpy.ndarray, optional
        All labels, when the dataset exposes them (see :func:`dataset_labels`).
    read_labels : callable
        ``indices -> iterable of label arrays (or None)`` in batches, used when ``known_labels`` is None.
    """
    rng = np.random.default_rng(seed)
    if known_labels is not None:
        candidates = np.arange(length, dtype=np.int64)
        labels = known_labels
    else:
        pool_size = min(length, max(MAX_LABEL_SCAN, 10 * num_samples))
        candidates = np.sort(rng.permutation(length)[:pool_size]).astype(np.int64)
        parts = list(read_labels(candidates.tolist()))
        if any(part is None for part in parts):
            chosen = np.sort(rng.choice(length, size=num_samples, replace=False)).astype(np.int64)
            return chosen, np.full(num_samples, -1, dtype=np.int64)
        labels = np.concatenate(parts).astype(np.int64)
    chosen = stratified_sample(candidates, labels, num_samples, seed)
    return chosen, labels[np.searchsorted(candidates, chosen)]


def as_probe(probe: Any, owner: str) -> np.ndarray | Any | None:
    """Validate ``probe``: None, dataset indices (returned as a sorted int64 array) or a map-style dataset."""
    if probe is None:
        return None
    if isinstance(probe, (torch.Tensor, np.ndarray, list, tuple, range)):
        values = probe.detach().cpu().numpy() if isinstance(probe, torch.Tensor) else np.asarray(probe)
        if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
            raise ValueError(
                f"{owner}: probe must be a non-empty list of validation dataset indices (ints) or a Dataset, got "
                f"{type(probe).__name__} of shape {values.shape} and dtype {values.dtype}"
            )
        if values.min() < 0:
            raise ValueError(f"{owner}: probe indices must be >= 0, got {int(values.min())}")
        unique, counts = np.unique(values, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"{owner}: probe indices must be unique; repeated: {unique[counts > 1][:10].tolist()}")
        return unique.astype(np.int64)
    if isinstance(probe, IterableDataset) or not (hasattr(probe, "__getitem__") and hasattr(probe, "__len__")):
        raise TypeError(
            f"{owner}: probe must be None (choose from the validation data), a list of dataset indices or a "
            f"map-style Dataset (with __len__ and __getitem__), not {type(probe).__name__}"
        )
    if len(probe) == 0:
        raise ValueError(f"{owner}: the probe dataset is empty; pass a dataset with at least one sample")
    return probe
