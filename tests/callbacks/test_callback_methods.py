"""LRPCallback with several attribution methods: each method's maps, metrics and scalars per epoch."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lrp_lightning import LRPCallback
from lrp_lightning.attribution import IntegratedGradients, explain
from lrp_lightning.metrics import Stability
from lrp_lightning.store import MANIFEST_FILE, METHOD, METHODS_KEY, RunStore

BOX = {"low": 0.0, "high": 1.5}
METHODS = ["epsilon_gamma_box", "epsilon_plus_flat", "gradient", "input_x_gradient"]


def fit(tmp_path, composite, **kwargs):
    options = dict(num_samples=12, composite_kwargs=BOX, batch_size=5, log_images=0, metrics=["sparseness"])
    options.update(kwargs)
    cb = LRPCallback(composite=composite, **options)
    torch.manual_seed(0)
    model = TinyNet()
    run = trainer(tmp_path, callbacks=[cb])
    run.fit(model, loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))
    return run, model, cb


def plain(model: TinyNet) -> nn.Module:
    return nn.Sequential(model.features, model.classifier).eval()


def probe(store: RunStore, epoch: int, method: str):
    ids, maps = store.heatmaps(epoch, method=method)
    dataset = ImageData(30)
    x = torch.stack([dataset[i][0] for i in ids])
    y = torch.stack([dataset[i][1] for i in ids])
    return ids, maps, x, y


def gradient_of(model: TinyNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    out = plain(model)(x)
    out[torch.arange(len(y)), y].sum().backward()
    return x.grad


@pytest.mark.slow
def test_every_method_is_stored_and_equals_its_own_computation(tmp_path):
    run, model, cb = fit(tmp_path, METHODS)
    assert cb.methods == METHODS
    store = RunStore(run.log_dir)
    assert store.methods == METHODS
    manifest = json.loads((store.store_dir / MANIFEST_FILE).read_text())
    assert [m["kind"] for m in manifest[METHODS_KEY]] == ["lrp", "lrp", "gradient", "input_x_gradient"]
    assert manifest["composite"] == {"name": "epsilon_gamma_box", "kwargs": BOX}  # the first, as before
    for epoch in (0, 1):
        assert sorted(set(store.attributions(epoch, [METHOD]).column(0).to_pylist())) == ["epsilon_gamma_box"]
        assert store.epoch_info(epoch).rows == 12  # samples, not rows
    ids, maps, x, y = probe(store, 1, "gradient")
    grad = gradient_of(model, x, y)
    np.testing.assert_allclose(maps, grad.sum(1).numpy(), rtol=2e-3, atol=1e-4)
    _, maps, _, _ = probe(store, 1, "input_x_gradient")
    np.testing.assert_allclose(maps, (grad * x).sum(1).numpy(), rtol=2e-3, atol=1e-4)
    _, maps, _, _ = probe(store, 1, "epsilon_gamma_box")
    _, relevance = explain(plain(model), x, target=y, **BOX)
    np.testing.assert_allclose(maps, relevance.sum(1).numpy(), rtol=2e-3, atol=1e-4)
    default_ids, default_maps = store.heatmaps(1)  # the default is the first method
    assert np.array_equal(default_ids, ids) and np.array_equal(default_maps, maps)
    _, flat, _, _ = probe(store, 1, "epsilon_plus_flat")
    _, expected = explain(plain(model), x, target=y, composite="epsilon_plus_flat")
    np.testing.assert_allclose(flat, expected.sum(1).numpy(), rtol=2e-3, atol=1e-4)
    assert not np.allclose(flat, maps, atol=1e-3)  # another method, other maps

    # the metric per method, logged under a tag of each method (and the first also as before)
    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for method in METHODS:
        assert f"lrp/metric_sparseness/{method}" in tags and f"lrp/relevance_abs_mean/{method}" in tags
        stored = store.attributions(1, ["metric_sparseness"], method=method).column(0).to_numpy()
        logged = events.Scalars(f"lrp/metric_sparseness/{method}")[-1].value
        assert logged == pytest.approx(float(np.mean(stored)), rel=1e-5)
    first = events.Scalars("lrp/metric_sparseness")[-1].value
    assert first == events.Scalars("lrp/metric_sparseness/epsilon_gamma_box")[-1].value


@pytest.mark.slow
def test_training_is_untouched_by_the_number_of_methods(tmp_path):
    _, one, _ = fit(tmp_path / "one", "epsilon_gamma_box")
    _, many, _ = fit(tmp_path / "many", METHODS)
    for a, b in zip(one.state_dict().values(), many.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_dict_of_methods_with_an_attributor_and_stability_per_method(tmp_path):
    composite = {"lrp": "epsilon_gamma_box", "ig": functools.partial(IntegratedGradients, n_iter=8)}
    run, model, _ = fit(tmp_path, composite, metrics=["stability"])
    store = RunStore(run.log_dir)
    assert store.methods == ["lrp", "ig"]
    ids, maps, x, y = probe(store, 1, "ig")
    net = plain(model)
    _, expected = IntegratedGradients(net, n_iter=8)(x, torch.nn.functional.one_hot(y, 3).float())
    np.testing.assert_allclose(maps, expected.sum(1).numpy(), rtol=2e-3, atol=1e-4)
    # stability compares each method with its own previous epoch
    for method in ("lrp", "ig"):
        _, before = store.heatmaps(0, ids, method=method)
        _, now = store.heatmaps(1, ids, method=method)
        stability = store.attributions(1, ["sample_id", "metric_stability"], method=method).to_pandas()
        stability = stability.set_index("sample_id").loc[ids, "metric_stability"].to_numpy()
        expected = Stability().per_sample(torch.from_numpy(now), previous=torch.from_numpy(before)).numpy()
        np.testing.assert_allclose(stability, expected, rtol=1e-4, atol=1e-5)
        assert np.all(np.isfinite(stability))


def test_method_arguments_are_checked():
    with pytest.raises(ValueError, match=r"repeat; name them in a dict"):
        LRPCallback(composite=["gradient", "gradient"])
    with pytest.raises(ValueError, match=r"composite_kwargs must be arguments that a composite given by name takes"):
        LRPCallback(composite=["epsilon_plus_flat", "gradient"], composite_kwargs={"low": 0.0})
    with pytest.raises(ValueError, match=r"method name 'a/b' must start"):
        LRPCallback(composite={"a/b": "gradient"})
    with pytest.raises(ValueError, match=r"names for attributors"):
        LRPCallback(composite=[IntegratedGradients])
    with pytest.raises(ValueError, match=r"unknown composite 'nope'"):
        LRPCallback(composite=["gradient", "nope"])
    cb = LRPCallback(composite=["epsilon_gamma_box", "epsilon_plus_flat"], composite_kwargs=BOX)
    assert [m.composite.__class__.__name__ for m in cb._methods] == ["EpsilonGammaBox", "EpsilonPlusFlat"]


@pytest.mark.slow
def test_every_method_is_checked_before_the_first_training_step(tmp_path):
    def broken(model):
        raise ValueError("this attributor cannot be built")

    steps = []

    class Counting(TinyNet):
        def training_step(self, batch, batch_idx):
            steps.append(batch_idx)
            return super().training_step(batch, batch_idx)

    cb = LRPCallback(composite={"lrp": "epsilon_gamma_box", "broken": broken}, num_samples=6, log_images=0)
    run = trainer(tmp_path, callbacks=[cb])
    with pytest.raises(Exception, match="this attributor cannot be built"):
        run.fit(Counting(), loader(ImageData(24, seed=1)), loader(ImageData(12)))
    assert steps == []
