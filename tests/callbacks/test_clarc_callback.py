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
        ({"layer": "features.2", "refit_cav": "yes"}, "refit_cav must be"),
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


@pytest.mark.parametrize("scale", [None, 8.0])
def test_rrclarc_penalty_joins_the_loss_once_and_is_scaled_with_it(scale):
    """The loss's one backward pass carries exactly the penalty's gradient (times the loss scale under AMP)."""
    from types import SimpleNamespace

    from callback_testing import images

    from lrp_lightning.revise import fit_cav

    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = images(12)
    # in the dropout's output the head is linear, so the directional derivative of every logit along v is W v
    cav = fit_cav(torch.randn(20, 4 * 8 * 8), np.arange(20) % 2 == 0, layer="features.3", shape=(4, 8, 8))
    callback = ClArCCallback("rrclarc", layer="features.3", strength=3.0)
    callback.cav, callback.record = cav, {S.REVISION_ARTIFACT_CLASS: 1}
    callback._attach(model)
    scaler = None if scale is None else torch.amp.GradScaler("cpu", init_scale=scale)
    trainer = SimpleNamespace(accumulate_grad_batches=1, precision_plugin=SimpleNamespace(scaler=scaler))
    torch.manual_seed(1)  # the dropout mask
    loss = model.criterion(model(x), y)
    callback._labels = y
    scaled = loss if scaler is None else scaler.scale(loss)
    callback.on_before_backward(trainer, model, scaled)
    scaled.backward()
    got = {name: p.grad.clone() / (scale or 1.0) for name, p in model.named_parameters()}
    callback.teardown(None, model, "fit")

    # oracle: cross-entropy + strength * ||W v||^2 (the same for every sample and summed over classes)
    model.zero_grad()
    torch.manual_seed(1)
    v = cav.direction
    expected = model.criterion(model(x), y) + 3.0 * (model.classifier.weight @ v).pow(2).sum()
    expected.backward()
    assert callback._penalties == [
        pytest.approx(3.0 * float((model.classifier.weight @ v).detach().pow(2).sum()), rel=1e-5)
    ]
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-5, atol=1e-7)
    torch.manual_seed(1)
    (without,) = torch.autograd.grad(model.criterion(model(x), y), model.classifier.weight)
    assert not torch.allclose(model.classifier.weight.grad, without)  # the penalty did change W's gradient
