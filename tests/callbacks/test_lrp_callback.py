"""LRPCallback in single-process runs: what it writes and logs, that training is untouched, errors."""

from __future__ import annotations

import copy
import io
import random
import sys
import textwrap
import threading
import types
import warnings

import numpy as np
import pytest
import torch
from callback_testing import CLASSES, SIZE, DictData, ImageData, TinyNet, images, loader, trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import lrp_lightning
from lrp_lightning import LRPCallback
from lrp_lightning.attribution import explain
from lrp_lightning.callbacks._training_state import untouched_training_state
from lrp_lightning.core import MissingRuleError
from lrp_lightning.store import RunStore

BOX = {"low": 0.0, "high": 1.5}  # ImageData inputs lie in [0, 1.03]


def callback(**kwargs) -> LRPCallback:
    options = dict(num_samples=12, composite_kwargs=BOX, batch_size=5)
    options.update(kwargs)
    return LRPCallback(**options)


def fit(tmp_path, cb, model=None, train=None, val=None, **trainer_kwargs):
    model = model or TinyNet()
    run = trainer(tmp_path, callbacks=[cb], **trainer_kwargs)
    run.fit(model, loader(train or ImageData(48, seed=1), shuffle=True), loader(val or ImageData(30)))
    return run, model


def expected_rows(model, ids, dataset=None, target="label"):
    """Maps, scores and predictions computed directly with the engine, as the callback should store them."""
    dataset = dataset or ImageData(30)
    x = torch.stack([dataset[i][0] for i in ids])
    y = torch.stack([dataset[i][1] for i in ids])
    output, relevance = explain(plain(model), x, target=y if target == "label" else target, **BOX)
    return output, relevance.sum(dim=1), y


def plain(model: TinyNet) -> nn.Module:
    """The model's layers without its loss and metric modules (which the engine would ask rules for)."""
    return nn.Sequential(model.features, model.classifier)


class NoLabelNet(TinyNet):
    def validation_step(self, batch, batch_idx):
        self(batch)


# ------------------------------------------------------------------------------------ public API


def test_exported_lazily_from_the_package():
    import importlib

    assert importlib.import_module("lrp_lightning.callbacks").LRPCallback is LRPCallback
    assert lrp_lightning.__getattr__("LRPCallback") is LRPCallback
    assert "LRPCallback" in dir(lrp_lightning) and "LRPPredictionWriter" in dir(lrp_lightning)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"num_samples": 0},
            ValueError,
            "LRPCallback: num_samples must be an int >= 1 (the number of validation samples to explain, e.g. 256), "
            "got 0",
        ),
        ({"num_samples": 2.5}, ValueError, "num_samples must be an int >= 1 (the number of"),
        ({"num_samples": True}, ValueError, "samples to explain, e.g. 256), got True"),
        ({"every_n_epochs": 0}, ValueError, "every_n_epochs must be an int >= 1 (1 explains every epoch), got 0"),
        ({"log_images": -1}, ValueError, "log_images must be an int >= 0 (0 logs no images), got -1"),
        ({"target": "labels"}, ValueError, "target must be 'label' (explain the true class), 'prediction'"),
        ({"target": "labels"}, ValueError, "(output, labels) -> class indices, got 'labels'"),
        (
            {"heatmap_size": (4, 0)},
            ValueError,
            "heatmap_size must be None (the input's size), an int >= 1 (square maps) or (height, width), "
            "got tuple (4, 0)",
        ),
        ({"heatmap_size": "big"}, ValueError, "(height, width), got 'big'"),
        ({"heatmap_size": (4.0, 4.0)}, ValueError, "(height, width), got tuple (4.0, 4.0)"),
        ({"composite": "epsilon_gama_box"}, ValueError, "unknown composite 'epsilon_gama_box'"),
        ({"composite": 3}, TypeError, "or a Composite object, got 3"),
        ({"composite_kwargs": {"lowest": 0}}, TypeError, "do not fit composite 'epsilon_gamma_box'"),
        (
            {"composite_kwargs": {"low": 0.0, "high": 1.0, "epsilon": "x"}},
            ValueError,
            "LRPCallback: composite_kwargs: stabilizer must be a number",
        ),
        (
            {"composite_kwargs": [("low", 0)]},
            TypeError,
            "composite_kwargs must be a dict of composite arguments or None (e.g. {'low': 0.0, 'high': 1.0}), "
            "got list [('low', 0)]",
        ),
        ({"probe": []}, ValueError, "non-empty list of validation dataset indices"),
        ({"probe": [1, 2, 2]}, ValueError, "repeated: [2]"),
        ({"probe": [-1, 2]}, ValueError, "must be >= 0"),
        ({"probe": [0.5, 1.0]}, ValueError, "dataset indices (ints)"),
        ({"probe": object()}, TypeError, "map-style Dataset"),
        ({"dirpath": 5}, TypeError, "dirpath must be a path (str or os.PathLike) or None, got 5"),
        ({"analyze": "yes"}, TypeError, "analyze must be False, True"),
        ({"analyze": "yes"}, TypeError, "like an `lrp-analyze --config` file, got 'yes'"),
        ({"class_names": "cat"}, TypeError, "class_names must be a list of str, one per class, or None, got 'cat'"),
        ({"unpack_batch": "x"}, TypeError, "must be a callable batch -> (inputs, labels) or None, got 'x'"),
        ({"verbose": 1}, TypeError, "LRPCallback: verbose must be True or False, got 1"),
    ],
)
def test_constructor_rejects_bad_arguments_and_says_what_to_pass(kwargs, error, message):
    options = {"composite_kwargs": BOX, **kwargs} if "composite" not in kwargs else dict(kwargs)
    with pytest.raises(error, match="LRPCallback") as info:
        LRPCallback(**options)
    assert message in str(info.value)


def test_composite_object_rejects_name_only_arguments():
    from lrp_lightning.composites import EpsilonPlus

    assert LRPCallback(composite=EpsilonPlus()).composite.name == "epsilon_plus"
    with pytest.raises(ValueError, match="only apply to a composite given by name"):
        LRPCallback(composite=EpsilonPlus(), composite_kwargs={"epsilon": 1.0})
    with pytest.raises(ValueError, match="canonizers only apply to a composite given by name"):
        LRPCallback(composite=EpsilonPlus(), canonizers=None)


def test_state_keys_tell_instances_apart():
    first = LRPCallback(composite_kwargs=BOX, dirpath="a")
    second = LRPCallback(composite_kwargs=BOX, dirpath="b")
    third = LRPCallback(composite="epsilon_plus", dirpath="a")
    assert len({first.state_key, second.state_key, third.state_key}) == 3
    assert first.state_key.startswith("LRPCallback{")


def test_docstring_example_runs(tmp_path, monkeypatch):
    code = textwrap.dedent(LRPCallback.__doc__.split("trained for 2 epochs::\n", 1)[1])
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    monkeypatch.setattr(sys, "stdout", printed)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "LRPCallback example", "exec"), namespace)
    assert printed.getvalue().strip().splitlines()[-1] == "[0, 1]"
    assert namespace["maps"].shape == (12, 8, 8)
    assert (tmp_path / "runs/example/lightning_logs/version_0/plugins/lrp/manifest.json").is_file()


# ------------------------------------------------------------------------------------ what it writes


def test_fit_writes_each_epoch_probe_set_scalars_and_images(tmp_path):
    run, model = fit(tmp_path, callback(class_names=["a", "b", "c"]))
    store = RunStore(run.log_dir)
    assert store.store_dir == tmp_path / "version_0" / "plugins" / "lrp"

    epochs = store.epochs()
    # 3 steps per epoch (48 samples / 16); the sanity check wrote nothing (it would be epoch 0 at step 0)
    assert [(e.epoch, e.global_step, e.rows) for e in epochs] == [(0, 3, 12), (1, 6, 12)]

    probe = store.probe_table()
    ids = probe.column("sample_id").to_numpy()
    labels = probe.column("label").to_numpy()
    assert np.array_equal(np.sort(ids), ids) and ids.max() < 30
    assert np.array_equal(np.bincount(labels, minlength=CLASSES), [4, 4, 4])  # stratified
    assert np.array_equal(labels, ImageData(30).y[ids].numpy())
    assert np.array_equal(probe.column("dataset_index").to_numpy(), ids)
    thumbnail = Image.open(io.BytesIO(probe.column("thumbnail")[0].as_py()))
    assert thumbnail.size == (SIZE, SIZE) and thumbnail.mode == "L"

    manifest = store.manifest
    assert manifest["composite"] == {"name": "epsilon_gamma_box", "kwargs": BOX}
    assert manifest["input_shape"] == [1, SIZE, SIZE] and manifest["heatmap_shape"] == [SIZE, SIZE]
    assert manifest["class_names"] == ["a", "b", "c"] and manifest["target_mode"] == "label"
    assert manifest["probe"] == {"selection": "stratified", "num_samples": 12, "seed": 0, "dataloader_idx": 0}
    assert manifest["model_class"].endswith("callback_testing.TinyNet")

    # the last explained epoch used the final weights: compare with the engine called directly
    table = store.attributions(1)
    assert np.array_equal(table.column("sample_id").to_numpy(), ids)
    output, maps, y = expected_rows(model, ids)
    _, stored = store.heatmaps(1, ids)
    np.testing.assert_allclose(stored, maps.numpy().astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(table.column("score").to_numpy(), output[torch.arange(12), y].numpy(), rtol=1e-5)
    assert np.array_equal(table.column("prediction").to_numpy(), output.argmax(1).numpy())
    assert np.array_equal(table.column("target").to_numpy(), y.numpy())
    np.testing.assert_allclose(
        table.column("probability").to_numpy(), output.softmax(1)[torch.arange(12), y].numpy(), rtol=1e-5
    )
    np.testing.assert_allclose(table.column("relevance_sum").to_numpy(), maps.sum((1, 2)).numpy(), rtol=1e-4)

    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"] if tag.startswith("lrp/")}
    metric_scalars = {tag: scalars.pop(tag) for tag in list(scalars) if tag.startswith("lrp/metric_")}
    assert set(scalars) == {
        "lrp/relevance_abs_mean",
        "lrp/positive_share",
        "lrp/relevance_sum_mean",
        "lrp/probe_accuracy",
    }
    assert [len(values) for values in scalars.values()] == [2, 2, 2, 2]
    # the default metrics; stability needs a previous epoch, so it is logged from the second one on
    assert {tag: len(values) for tag, values in metric_scalars.items()} == {
        "lrp/metric_sparseness": 2,
        "lrp/metric_entropy": 2,
        "lrp/metric_conservation": 2,
        "lrp/metric_stability": 1,
    }
    final = {tag: values[-1].value for tag, values in scalars.items()}
    full_maps = maps.double()
    assert final["lrp/relevance_abs_mean"] == pytest.approx(float(full_maps.abs().mean()), rel=1e-4)
    assert final["lrp/positive_share"] == pytest.approx(
        float(full_maps.clamp(min=0).sum() / full_maps.abs().sum()), rel=1e-4
    )
    assert final["lrp/relevance_sum_mean"] == pytest.approx(float(maps.double().sum((1, 2)).mean()), rel=1e-4)
    assert final["lrp/probe_accuracy"] == pytest.approx(float((output.argmax(1) == y).double().mean()))

    grid_events = events.Images("lrp/heatmaps")
    assert [event.step for event in grid_events] == [3, 6]
    grid = Image.open(io.BytesIO(grid_events[-1].encoded_image_string))
    # 12 pairs (input | heatmap) of 64x64 cells, 2 per row with 3 pixels between them: 2*129+3 by 6*64+5*3
    assert grid.size == (261, 399)


def test_every_n_epochs_heatmap_size_and_explicit_probe(tmp_path):
    ids = [0, 3, 7, 11, 29]
    run, model = fit(tmp_path, callback(every_n_epochs=2, heatmap_size=4, probe=ids, log_images=0), max_epochs=4)
    store = RunStore(run.log_dir)
    assert [(e.epoch, e.global_step) for e in store.epochs()] == [(1, 6), (3, 12)]
    assert store.heatmap_shape == (4, 4)
    assert store.manifest["probe"] == {"selection": "indices", "num_samples": 5, "dataloader_idx": 0}
    sample_ids, pooled = store.heatmaps(3)
    assert sample_ids.tolist() == ids
    _, maps, _ = expected_rows(model, ids)
    summed = maps.reshape(5, 4, 2, 4, 2).sum((2, 4))  # 2x2 sum-pooling
    np.testing.assert_allclose(pooled, summed.numpy(), rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(
        store.attributions(3).column("relevance_sum").to_numpy(), maps.sum((1, 2)).numpy(), rtol=1e-4
    )
    assert not EventAccumulator(str(tmp_path / "version_0")).Reload().Tags()["images"]


def test_companion_api_gives_the_store_and_the_probe_set(tmp_path):
    cb = callback(probe=[2, 5, 9, 17], log_images=0, analyze=None)
    assert cb.run_store is None
    with pytest.raises(RuntimeError, match="first explained validation epoch"):
        cb.probe_tensors(None)
    run, _ = fit(tmp_path, cb, max_epochs=1)
    assert cb.run_store is not None and [e.epoch for e in cb.run_store.epochs()] == [0]
    ids, x, y = cb.probe_tensors(run)
    val = ImageData(30)
    assert ids.tolist() == [2, 5, 9, 17]
    assert torch.equal(x, torch.stack([val[i][0] for i in ids])) and y.tolist() == [val[i][1].item() for i in ids]
    cb.finish_analysis(run)  # no analysis: nothing to wait for


def test_probe_dataset_dict_batches_and_callable_target(tmp_path):
    probe = DictData(7, seed=5)

    def second_best(output, labels):
        assert labels is not None and labels.shape == (output.shape[0],)
        return output.topk(2, dim=1).indices[:, 1]

    cb = callback(probe=probe, target=second_best, dirpath=tmp_path / "lrp")
    run, model = fit(tmp_path, cb, val=DictData(30))
    store = RunStore(tmp_path / "lrp")
    assert store.manifest["target_mode"].endswith("second_best")
    assert store.manifest["probe"]["selection"] == "dataset"
    table = store.attributions(1)
    assert table.column("sample_id").to_pylist() == list(range(7))
    x = torch.stack([probe[i]["image"] for i in range(7)])
    output, relevance = explain(
        plain(model), x, target=lambda out: torch.eye(CLASSES)[out.topk(2, 1).indices[:, 1]], **BOX
    )
    assert table.column("target").to_pylist() == output.topk(2, 1).indices[:, 1].tolist()
    assert table.column("label").to_pylist() == probe.y.tolist()
    np.testing.assert_allclose(store.heatmaps(1)[1], relevance.sum(1).numpy(), rtol=2e-3, atol=1e-6)
    assert run.log_dir != str(tmp_path / "lrp")


def test_prediction_target_works_without_labels(tmp_path):
    cb = callback(target="prediction", log_images=4)
    model = NoLabelNet()
    run = trainer(tmp_path, callbacks=[cb], max_epochs=1)
    run.fit(model, loader(ImageData(32), shuffle=True), loader(ImageData(30, labels=False)))
    table = RunStore(run.log_dir).attributions(0)
    assert table.num_rows == 12
    assert set(table.column("label").to_pylist()) == {-1}
    assert table.column("target").to_pylist() == table.column("prediction").to_pylist()
    assert RunStore(run.log_dir).probe_table().column("label").to_pylist() == [-1] * 12


# ------------------------------------------------------------------------------------ untouched training


def _fit_weights(tmp_path, with_callback: bool) -> dict[str, torch.Tensor]:
    from lightning.pytorch import seed_everything

    seed_everything(7, workers=True)
    model = TinyNet()
    callbacks = [callback(num_samples=9)] if with_callback else []
    run = trainer(tmp_path, callbacks=callbacks, max_epochs=3, deterministic=True)
    run.fit(model, loader(ImageData(48, seed=1, augment=True), shuffle=True), loader(ImageData(30, augment=True)))
    # the streams must be where they would be without the callback, too
    draws = (torch.rand(1).item(), float(np.random.rand()), random.random())  # noqa: NPY002
    return {**copy.deepcopy(model.state_dict()), "draws": torch.tensor(draws, dtype=torch.float64)}


def test_training_is_bitwise_identical_with_and_without_the_callback(tmp_path):
    without = _fit_weights(tmp_path / "without", with_callback=False)
    with_callback = _fit_weights(tmp_path / "with", with_callback=True)
    assert RunStore(tmp_path / "with" / "version_0").epochs()[-1].epoch == 2
    assert without.keys() == with_callback.keys()
    assert "features.1.running_mean" in without and "features.1.num_batches_tracked" in without
    differing = [name for name in without if not torch.equal(without[name], with_callback[name])]
    assert differing == []


def test_untouched_training_state_restores_modes_grads_and_rng_streams():
    model = TinyNet()
    model.train()
    model.features[3].eval()  # a submodule deliberately in another mode than its parent
    for param in model.parameters():
        param.grad = torch.full_like(param, 0.5)
    grads = {name: param.grad for name, param in model.named_parameters()}
    stats = model.features[1].running_mean.clone()
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    modes = [m.training for m in model.modules()]
    with untouched_training_state(model):
        assert not any(m.training for m in model.modules())
        torch.rand(5), np.random.rand(5), random.random()  # noqa: NPY002
        model(torch.rand(4, 1, SIZE, SIZE))
    assert [m.training for m in model.modules()] == modes
    assert all(param.grad is grads[name] for name, param in model.named_parameters())
    assert torch.equal(model.features[1].running_mean, stats)
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    expected = (torch.rand(1), np.random.rand(), random.random())  # noqa: NPY002
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    with untouched_training_state(model):
        torch.rand(5), np.random.rand(5), random.random()  # noqa: NPY002
    assert (torch.rand(1), np.random.rand(), random.random()) == expected  # noqa: NPY002


# ------------------------------------------------------------------------------------ other loops


@pytest.mark.parametrize("inference_mode", [True, False])
def test_trainer_validate_explains_in_inference_mode_and_without(tmp_path, inference_mode):
    model = TinyNet()
    run = trainer(tmp_path, callbacks=[callback()], inference_mode=inference_mode)
    results = run.validate(model, loader(ImageData(30)))
    store = RunStore(run.log_dir)
    assert [(e.epoch, e.global_step, e.rows) for e in store.epochs()] == [(0, 0, 12)]
    assert 0.0 <= results[0]["lrp/positive_share"] <= 1.0
    ids = store.probe_table().column("sample_id").to_numpy()
    _, maps, _ = expected_rows(model, ids)
    np.testing.assert_allclose(store.heatmaps(0, ids)[1], maps.numpy(), rtol=2e-3, atol=1e-6)


def test_validate_from_a_checkpoint_stores_the_checkpoint_epoch(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    run = trainer(tmp_path / "fit", callbacks=[checkpoints], max_epochs=2, enable_checkpointing=True)
    run.fit(TinyNet(), loader(ImageData(48), shuffle=True), loader(ImageData(30)))
    validator = trainer(tmp_path / "validate", callbacks=[callback()])
    validator.validate(TinyNet(), loader(ImageData(30)), ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=3.ckpt"))
    assert [(e.epoch, e.global_step) for e in RunStore(validator.log_dir).epochs()] == [(0, 0)]
    validator = trainer(tmp_path / "validate2", callbacks=[callback()])
    validator.validate(TinyNet(), loader(ImageData(30)), ckpt_path=checkpoints.best_model_path)
    assert [e.epoch for e in RunStore(validator.log_dir).epochs()] == [1]


def test_fast_dev_run_warns_once_and_writes_nothing(tmp_path):
    cb = callback()
    with pytest.warns(UserWarning, match="LRPCallback does nothing under Trainer\\(fast_dev_run") as record:
        run = trainer(tmp_path, callbacks=[cb], fast_dev_run=True)
        run.fit(TinyNet(), loader(ImageData(48)), loader(ImageData(30)))
        run.validate(TinyNet(), loader(ImageData(30)))
    assert len([w for w in record if "fast_dev_run" in str(w.message)]) == 1
    assert not list(tmp_path.rglob("manifest.json"))


# ------------------------------------------------------------------------------------ resume


def test_resume_keeps_the_probe_set_and_replaces_a_rerun_epoch(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    first = callback(dirpath=tmp_path / "run")
    run = trainer(tmp_path, callbacks=[first, checkpoints], enable_checkpointing=True)
    run.fit(TinyNet(), loader(ImageData(48), shuffle=True), loader(ImageData(30)))
    store = RunStore(tmp_path / "run")
    before = {e.epoch: e for e in store.epochs()}
    probe_ids = store.probe_table().column("sample_id").to_pylist()

    checkpoint_path = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)  # the callback's state is plain Python
    state = checkpoint["callbacks"][first.state_key]
    assert state["probe_ids"] == probe_ids and state["version"] == 2
    assert state["run_id"] == store.manifest["run_id"] and state["store_dir"] == str(store.store_dir)
    assert all(type(v) is int for v in state["probe_ids"] + state["probe_labels"])

    resumed = callback(dirpath=tmp_path / "run", seed=99)  # another seed: the checkpoint's probe set wins
    run = trainer(tmp_path, callbacks=[resumed, checkpoints], enable_checkpointing=True, max_epochs=3)
    with pytest.warns(UserWarning, match="probe set is restored from the checkpoint"):
        run.fit(TinyNet(), loader(ImageData(48), shuffle=True), loader(ImageData(30)), ckpt_path=checkpoint_path)
    after = {e.epoch: e for e in store.epochs()}
    assert sorted(after) == [0, 1, 2]
    assert after[0] == before[0]  # not re-run
    assert after[1].commit != before[1].commit and after[1].global_step == 6  # re-run: replaced
    for epoch in (1, 2):
        ids = store.attributions(epoch).column("sample_id").to_pylist()
        assert ids == probe_ids  # same samples, no duplicate rows
    assert resumed.state_dict()["probe_ids"] == probe_ids
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".")]  # no leftovers


# ------------------------------------------------------------------------------------ errors


class Upsampling(TinyNet):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 2, stride=2), nn.Flatten())
        self.classifier = nn.Linear(SIZE * SIZE, CLASSES)


class TwoClasses(TinyNet):
    """A model with fewer outputs than the data has classes (it trains on labels clipped to 0..1)."""

    def __init__(self):
        super().__init__(classes=2)

    def training_step(self, batch, batch_idx):
        return self.criterion(self(batch[0]), batch[1].clamp(max=1))

    def validation_step(self, batch, batch_idx):
        pass


class SpatialOutput(TinyNet):
    def forward(self, x):
        return self.classifier(self.features(x)).unsqueeze(-1).expand(-1, -1, 4)

    def training_step(self, batch, batch_idx):
        return self.criterion(self(batch[0])[:, :, 0], batch[1])

    def validation_step(self, batch, batch_idx):
        pass


@pytest.mark.parametrize(
    ("model", "kwargs", "error", "fragments"),
    [
        (SpatialOutput(), {}, ValueError, ["class scores of shape (batch, classes)", "(5, 3, 4)"]),
        (TwoClasses(), {}, ValueError, ["label 2 of sample", "model with 2 class scores", "number of classes"]),
        (TinyNet(), {"num_samples": 31}, ValueError, ["num_samples=31", "(30 samples)", "num_samples=30"]),
        (TinyNet(), {"probe": [3, 30]}, ValueError, ["probe index 30 is out of range", "30 samples"]),
        (Upsampling(), {}, MissingRuleError, ["LRPCallback cannot explain Upsampling", "layer features.0 (Upsample)"]),
        (TinyNet(), {"heatmap_size": 16}, ValueError, ["heatmap_size (16, 16) is larger", "heatmap_size=None"]),
    ],
    ids=["3-D output", "target out of range", "probe too large", "probe index", "missing rule", "heatmap size"],
)
def test_clear_errors(tmp_path, model, kwargs, error, fragments):
    run = trainer(tmp_path, callbacks=[callback(**kwargs)], num_sanity_val_steps=0, max_epochs=1)
    with pytest.raises(error) as info:
        run.fit(model, loader(ImageData(16)), loader(ImageData(30)))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not list(tmp_path.rglob("part-*.parquet"))


def test_labels_needed_for_target_label(tmp_path):
    run = trainer(tmp_path, callbacks=[callback()], num_sanity_val_steps=0, max_epochs=1)
    with pytest.raises(ValueError, match="target='label' needs labels") as info:
        run.fit(NoLabelNet(), loader(ImageData(16)), loader(ImageData(30, labels=False)))
    assert "pass target='prediction'" in str(info.value)


def test_model_without_forward_is_named(tmp_path):
    class NoForward(TinyNet):
        forward = nn.Module.forward

        def training_step(self, batch, batch_idx):
            return self.criterion(self.classifier(self.features(batch[0])), batch[1])

        def validation_step(self, batch, batch_idx):
            pass

    run = trainer(tmp_path, callbacks=[callback()], num_sanity_val_steps=0, max_epochs=1)
    with pytest.raises(NotImplementedError, match="NoForward defines no forward"):
        run.fit(NoForward(), loader(ImageData(16)), loader(ImageData(30)))


# ------------------------------------------------------------------------------------ analysis hook


def test_analyze_takes_a_bool_a_pipeline_or_a_dict_of_settings():
    from lrp_lightning.analysis import SpRAy, analyze_epoch

    with pytest.raises(TypeError, match="analyze must be False, True"):
        LRPCallback(analyze="yes")
    assert LRPCallback(analyze=False)._analysis is None
    default = LRPCallback(analyze=True)._analysis.run
    assert default.func is analyze_epoch and default.keywords == {"spray": SpRAy()}
    pipeline = SpRAy(random_state=4)
    assert LRPCallback(analyze=pipeline)._analysis.run.keywords["spray"] is pipeline
    configured = LRPCallback(analyze={"random_state": 2, "category_by": "label", "nonfinite": "drop"})._analysis.run
    assert configured.keywords == {"spray": SpRAy(random_state=2), "category_by": "label", "nonfinite": "drop"}


class FakeSpRAy:
    def __init__(self, config=None):
        self.config = config

    @classmethod
    def from_config(cls, config):
        if "bogus" in config:
            raise ValueError("unknown analysis config key(s) ['bogus']")
        return cls(dict(config))


def test_analyze_runs_each_epoch_off_the_training_thread(tmp_path, monkeypatch):
    calls = []

    def analyze_epoch(store, epoch, spray=None, **options):
        calls.append((epoch, spray.config, options, threading.current_thread().name, store.epoch_info(epoch).rows))
        if epoch == 1:
            raise RuntimeError("no clusters")
        return types.SimpleNamespace(scalars={"lrp/eigengap": 0.5 + epoch}, messages=["k clamped"])

    from lrp_lightning import analysis

    monkeypatch.setattr(analysis, "analyze_epoch", analyze_epoch)
    monkeypatch.setattr(analysis, "SpRAy", FakeSpRAy)
    with pytest.raises(ValueError, match="LRPCallback: analyze: unknown analysis config key"):
        LRPCallback(analyze={"bogus": 1})
    config = {"random_state": 3, "clusterings": {"k_range": [2, 4]}, "category_by": "label"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(tmp_path, callback(analyze=config), max_epochs=3)
    assert [c[0] for c in calls] == [0, 1, 2]
    pipeline = {"random_state": 3, "clusterings": {"k_range": [2, 4]}}
    assert all(c[1] == pipeline and c[2] == {"category_by": "label"} for c in calls)
    assert all(c[3].startswith("lrp-analysis") and c[4] == 12 for c in calls)
    assert any("analysis of epoch 1 failed (RuntimeError: no clusters)" in str(w.message) for w in record)
    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("lrp/eigengap")] == [(3, 0.5), (9, 2.5)]


def test_analyze_with_the_analysis_module_writes_its_tables(tmp_path):
    config = {"random_state": 0, "embeddings": {"methods": ["pca"]}, "clusterings": {"k_range": [2, 3]}}
    run, _ = fit(tmp_path, callback(analyze=config, num_samples=24))
    store = RunStore(run.log_dir)
    for info in store.epochs():
        assert store.analysis_tables(info.epoch), f"no analysis tables for epoch {info.epoch}"
    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    assert [e.step for e in events.Scalars("lrp/all/eigengap")] == [3, 6]  # the indicators, at each epoch's step


def test_labels_of_images_helper():
    x, y = images(6)
    assert y.tolist() == [0, 1, 2, 0, 1, 2] and float(x.max()) <= 1.0


def test_package_import_stays_light():
    import subprocess

    code = "import sys, lrp_lightning; lrp_lightning.__dir__(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_rank_without_probe_samples_writes_an_empty_part(tmp_path):
    from lrp_lightning.callbacks._explainer import Explained

    store = RunStore.create(tmp_path, heatmap_shape=(4, 4))
    table = callback()._tables({"epsilon_gamma_box": Explained.empty((4, 4))}, 0, 3)
    store.write_part(0, 3, table, rank=1)
    store.write_part(0, 3, callback()._tables({"epsilon_gamma_box": Explained.empty((4, 4))}, 0, 3), rank=0)
    info = store.commit_epoch(0, 3, world_size=2)
    assert info.rows == 0 and store.attributions(0).num_rows == 0


def test_callable_target_must_return_class_indices(tmp_path):
    from lrp_lightning.callbacks._explainer import BatchExplainer

    model = TinyNet()
    x, y = images(4)
    explainer = BatchExplainer(callback().composite, "epsilon_gamma_box", lambda out, labels: out, None, "LRPCallback")
    with pytest.raises(ValueError, match="callable target must return one class index per sample") as info:
        with untouched_training_state(model):
            explainer.run(model, [(np.arange(4), x, y)])
    assert "shape (4,)" in str(info.value) and "(4, 3)" in str(info.value)


def test_probe_metadata_columns_from_a_mapping_or_a_callable(tmp_path):
    marked = [i % 5 == 0 for i in range(30)]  # one value per validation sample, by dataset index
    run, _ = fit(tmp_path / "mapping", callback(probe_metadata={"watermark": marked}))
    probe = RunStore(run.log_dir).probe_table()
    ids = probe.column("sample_id").to_pylist()
    assert probe.column("watermark").to_pylist() == [i % 5 == 0 for i in ids]

    def double_ids(dataset, sample_ids):
        assert len(dataset) == 30
        return {"twice": [2 * i for i in sample_ids]}

    run, _ = fit(tmp_path / "callable", callback(probe_metadata=double_ids))
    probe = RunStore(run.log_dir).probe_table()
    assert probe.column("twice").to_pylist() == [2 * i for i in probe.column("sample_id").to_pylist()]
    with pytest.raises(TypeError, match="probe_metadata must be a mapping"):
        LRPCallback(probe_metadata=3)
