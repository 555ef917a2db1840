"""ClArCCallback: argument checks, its place after LRPCallback, and training untouched when nothing is revised."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer

from lrp_lightning import ClArCCallback, LRPCallback
from lrp_lightning import store as S
from lrp_lightning._validation import InvalidArgumentError

ANALYSIS = {"random_state": 0, "embeddings": {"methods": ["pca"]}}


def lrp(**kwargs) -> LRPCallback:
    options = dict(num_samples=12, composite_kwargs={"low": 0.0, "high": 1.5}, batch_size=6, analyze=ANALYSIS)
    options.update(kwargs)
    return LRPCallback(**options)


def test_exported_from_the_package_and_the_callbacks():
    import importlib

    assert importlib.import_module("lrp_lightning.callbacks").ClArCCallback is ClArCCallback


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "clarc", "layer": "features.2"}, "method must be one of 'pclarc', 'aclarc', 'rrclarc'"),
        ({"layer": ""}, "layer must be the name of a layer"),
        ({"layer": "features.2", "finding": 3}, "finding must be a finding id"),
        ({"layer": "features.2", "min_strength": 2}, "min_strength must be a number in"),
        ({"layer": "features.2", "cav_method": "svm"}, "cav_method must be one of"),
        ({"layer": "features.2", "rr_target": "some"}, "rr_target must be one of"),
        ({"layer": "features.2", "strength": -1.0}, "strength must be a number"),
    ],
)
def test_constructor_rejects_bad_arguments_and_says_what_to_pass(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        ClArCCallback(**kwargs)


def test_method_names_are_forgiving_about_case_and_dashes():
    assert ClArCCallback("RR-ClArC", layer="features.2").method == "rrclarc"
    assert ClArCCallback(None, layer="features.2").method is None


def test_needs_an_analysing_lrp_callback_before_it(tmp_path):
    model = TinyNet()
    for callbacks in ([ClArCCallback(layer="features.2")], [ClArCCallback(layer="features.2"), lrp()]):
        run = trainer(tmp_path, callbacks=callbacks, max_epochs=1)
        with pytest.raises(ValueError, match=r"put an LRPCallback\(analyze=...\) before it"):
            run.fit(model, loader(ImageData(24, seed=1)), loader(ImageData(12)))
    run = trainer(tmp_path, callbacks=[lrp(), ClArCCallback(layer="features.9")], max_epochs=1)
    with pytest.raises(InvalidArgumentError, match="layer must be the name of a submodule of TinyNet"):
        run.fit(model, loader(ImageData(24, seed=1)), loader(ImageData(12)))


def _fit_weights(root, with_clarc: bool):
    from lightning.pytorch import seed_everything

    seed_everything(7, workers=True)
    model = TinyNet()
    callbacks = [lrp()]
    if with_clarc:  # no finding is this strong: nothing to revise
        callbacks.append(ClArCCallback("rrclarc", layer="features.2", min_strength=1.0))
    run = trainer(root, callbacks=callbacks, max_epochs=2, deterministic=True)
    run.fit(model, loader(ImageData(48, seed=1, augment=True), shuffle=True), loader(ImageData(30, augment=True)))
    draws = (torch.rand(1).item(), float(np.random.rand()), random.random())  # noqa: NPY002
    return {**copy.deepcopy(model.state_dict()), "draws": torch.tensor(draws, dtype=torch.float64)}


@pytest.mark.slow  # two trainings with the analysis after every epoch
def test_nothing_to_revise_leaves_training_bitwise_identical_and_says_so(tmp_path):
    without = _fit_weights(tmp_path / "without", with_clarc=False)
    with_clarc = _fit_weights(tmp_path / "with", with_clarc=True)
    differing = [name for name in without if not torch.equal(without[name], with_clarc[name])]
    assert differing == []
    records = S.RunStore(tmp_path / "with" / "version_0").revisions()
    assert len(records) == 1
    assert records[0][S.REVISION_STATUS] == S.REVISION_STATUS_NONE
    assert records[0][S.REVISION_METHOD] == "rrclarc" and records[0][S.REVISION_FINDING_ID] is None
    assert S.RunStore(tmp_path / "without" / "version_0").revisions() == []


def test_record_revisions_checks_its_keys(tmp_path):
    store = S.RunStore.create(tmp_path / "run", heatmap_shape=(4, 4))
    with pytest.raises(ValueError, match="unknown revision record keys"):
        store.record_revisions([{"finding": "x"}])
    record = dict.fromkeys(S.REVISION_RECORD_KEYS)
    record[S.REVISION_STATUS] = S.REVISION_STATUS_NONE
    store.record_revisions([record])
    assert S.RunStore(tmp_path / "run").revisions() == [record]
