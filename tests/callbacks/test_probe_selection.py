"""Probe selection: stratified by class, seeded, independent of the global RNG streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from lrp_lightning.callbacks import _probe
from lrp_lightning.callbacks._probe import balanced_quotas, dataset_labels, select_probe, stratified_sample


def test_quotas_are_equal_where_classes_allow_and_sum_to_the_total():
    rng = np.random.default_rng(0)
    quotas = balanced_quotas(np.array([100, 3, 50]), 30, rng)
    assert quotas.sum() == 30 and quotas[1] == 3  # the small class gives all it has
    assert sorted(quotas[[0, 2]].tolist()) == [13, 14]  # the rest is shared, remainder to one class
    assert balanced_quotas(np.array([4, 4, 4]), 12, rng).tolist() == [4, 4, 4]
    assert balanced_quotas(np.array([2, 9]), 11, rng).tolist() == [2, 9]  # everything
    assert balanced_quotas(np.array([5, 5, 5, 5]), 2, rng).sum() == 2


def test_stratified_sample_is_seeded_and_leaves_global_streams_alone():
    labels = np.repeat([0, 1, 2, 3], [50, 30, 5, 15])
    candidates = np.arange(100)
    np.random.seed(1)  # noqa: NPY002
    random.seed(1)
    torch.manual_seed(1)
    states = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state())  # noqa: NPY002
    first = stratified_sample(candidates, labels, 20, seed=3)
    assert np.array_equal(np.random.get_state()[1], states[0]) and random.getstate() == states[1]  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), states[2])
    np.random.seed(2)  # noqa: NPY002
    assert np.array_equal(stratified_sample(candidates, labels, 20, seed=3), first)
    assert not np.array_equal(stratified_sample(candidates, labels, 20, seed=4), first)
    assert np.array_equal(first, np.sort(first)) and np.unique(first).size == 20
    assert np.bincount(labels[first], minlength=4).tolist() == [5, 5, 5, 5]


def test_select_probe_reads_labels_from_a_bounded_random_pool(monkeypatch):
    monkeypatch.setattr(_probe, "MAX_LABEL_SCAN", 40)
    labels = np.arange(1000) % 4
    requested: list[int] = []

    def read_labels(indices):
        requested.extend(indices)
        for start in range(0, len(indices), 16):
            yield labels[np.asarray(indices[start : start + 16])]

    ids, chosen_labels = select_probe(1000, 8, seed=0, known_labels=None, read_labels=read_labels)
    assert len(requested) == 80 and len(set(requested)) == 80  # max(40, 10 * 8) samples, each once
    assert set(ids.tolist()) <= set(requested)
    assert np.array_equal(chosen_labels, labels[ids])
    assert np.bincount(chosen_labels, minlength=4).tolist() == [2, 2, 2, 2]


def test_select_probe_without_labels_is_uniform_and_marks_labels_unknown():
    ids, labels = select_probe(50, 10, seed=0, known_labels=None, read_labels=lambda indices: [None])
    assert ids.size == 10 and np.unique(ids).size == 10 and labels.tolist() == [-1] * 10


def test_select_probe_with_known_labels_and_all_samples():
    known = np.array([0, 0, 1, 1, 1, 2])
    ids, labels = select_probe(6, 6, seed=5, known_labels=known, read_labels=lambda indices: pytest.fail())
    assert ids.tolist() == list(range(6)) and labels.tolist() == known.tolist()


def test_dataset_labels_understands_common_datasets():
    x = torch.zeros(6, 2)
    y = torch.tensor([2, 0, 1, 2, 0, 1])
    assert dataset_labels(TensorDataset(x, y)).tolist() == y.tolist()
    assert dataset_labels(Subset(TensorDataset(x, y), [5, 0])).tolist() == [1, 2]
    assert dataset_labels(TensorDataset(x)) is None

    class Folder(torch.utils.data.Dataset):
        targets = [3, 1, 2]

        def __len__(self):
            return 3

        def __getitem__(self, index):
            return torch.zeros(1), self.targets[index]

    assert dataset_labels(Folder()).tolist() == [3, 1, 2]

    class FloatTargets(Folder):
        targets = [0.5, 1.0, 2.0]

    assert dataset_labels(FloatTargets()) is None
