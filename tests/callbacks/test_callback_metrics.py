"""LRPCallback's explanation-quality metrics: stored per sample, logged per epoch, errors, untouched training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from callback_testing import SIZE, ImageData, TinyNet, loader, trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lrp_lightning import LRPCallback
from lrp_lightning.attribution import explain
from lrp_lightning.metrics import (
    Conservation,
    Entropy,
    RegionPerturbation,
    RelevanceMass,
    Sparseness,
    Stability,
)
from lrp_lightning.store import RunStore

BOX = {"low": 0.0, "high": 1.5}  # ImageData inputs lie in [0, 1.03]


def callback(**kwargs) -> LRPCallback:
    options = dict(num_samples=12, composite_kwargs=BOX, batch_size=5, log_images=0)
    options.update(kwargs)
    return LRPCallback(**options)


def fit(tmp_path, cb, val=None, **trainer_kwargs):
    model = TinyNet()
    run = trainer(tmp_path, callbacks=[cb], **trainer_kwargs)
    run.fit(model, loader(ImageData(48, seed=1), shuffle=True), loader(val or ImageData(30)))
    return run, model


def plain(model: TinyNet) -> nn.Module:
    return nn.Sequential(model.features, model.classifier).eval()


class MaskData(ImageData):
    """Dict samples with the bright quadrant of the sample's class as its ground-truth mask."""

    def __getitem__(self, index: int):
        x, y = super().__getitem__(index)
        row, column = divmod(int(y), 2)
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        mask[row * 4 : row * 4 + 4, column * 4 : column * 4 + 4] = True
        return {"image": x, "label": y, "mask": mask}


def test_metric_columns_equal_per_sample_values_and_scalars_are_logged(tmp_path):
    faithfulness = RegionPerturbation(patch_size=2, steps=4)
    cb = callback(metrics=["sparseness", Entropy, "conservation", "stability", faithfulness])
    assert cb.metrics == ["sparseness", "entropy", "conservation", "stability", "region_perturbation"]
    run, model = fit(tmp_path, cb)
    store = RunStore(run.log_dir)
    columns = ["metric_sparseness", "metric_entropy", "metric_conservation", "metric_stability"]
    columns.append("metric_region_perturbation")

    first, last = store.attributions(0), store.attributions(1)
    for table in (first, last):
        assert all(table.schema.field(name).type == "float" for name in columns)  # float32
    assert np.isnan(first.column("metric_stability").to_numpy()).all()  # no previous epoch yet
    assert np.isfinite(first.column("metric_sparseness").to_numpy()).all()

    # the last epoch, recomputed from the engine called directly with the final weights
    ids = last.column("sample_id").to_numpy()
    dataset = ImageData(30)
    x = torch.stack([dataset[i][0] for i in ids])
    y = torch.stack([dataset[i][1] for i in ids])
    output, relevance = explain(plain(model), x, target=y, **BOX)
    expected = {
        "metric_sparseness": Sparseness().per_sample(relevance),
        "metric_entropy": Entropy().per_sample(relevance),
        "metric_conservation": Conservation().per_sample(relevance, outputs=output, targets=y),
        # the callback passes the dataset indices: random patch orders from (seed, sample id), whatever the batches
        "metric_region_perturbation": RegionPerturbation(patch_size=2, steps=4).per_sample(
            relevance, model=plain(model), inputs=x, targets=y, sample_ids=ids
        ),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(last.column(name).to_numpy(), values.numpy(), rtol=2e-4, atol=2e-5, err_msg=name)
    # conservation with a one-hot target is the relevance sum
    np.testing.assert_allclose(
        last.column("metric_conservation").to_numpy(), last.column("relevance_sum").to_numpy(), rtol=1e-5
    )

    # hand-check: the Gini index of sample 0's absolute channel-summed map
    a = np.sort(np.abs(relevance[0].double().sum(0).numpy()).ravel())
    d = a.size
    gini = np.sum((2 * np.arange(1, d + 1) - d - 1) * a) / (d * a.sum())
    assert last.column("metric_sparseness")[0].as_py() == pytest.approx(gini, rel=2e-4)

    # stability: exactly Spearman's rho of the stored maps of the two epochs, as read back from the store
    _, now = store.heatmaps(1, ids)
    _, before = store.heatmaps(0, ids)
    stability = Stability().per_sample(torch.from_numpy(now), previous=torch.from_numpy(before))
    np.testing.assert_array_equal(last.column("metric_stability").to_numpy(), stability.float().numpy())
    assert np.isfinite(stability).all()

    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"lrp/{name}" for name in columns} <= tags
    steps = [e.step for e in events.Scalars("lrp/metric_sparseness")]
    assert len(steps) == 2  # one value per explained epoch
    assert [e.step for e in events.Scalars("lrp/metric_stability")] == steps[1:]  # none in the first epoch
    for name in columns:
        logged = events.Scalars(f"lrp/{name}")[-1].value
        assert logged == pytest.approx(float(np.mean(last.column(name).to_numpy(), dtype=np.float64)), rel=1e-5)


def test_faithfulness_columns_do_not_depend_on_the_callback_batch_size(tmp_path):
    columns = {}
    for batch_size in (4, 8):
        cb = callback(metrics=[RegionPerturbation(patch_size=2, steps=4)], batch_size=batch_size)
        torch.manual_seed(0)  # the same initial weights and shuffling in both runs
        run, _ = fit(tmp_path / str(batch_size), cb, max_epochs=1)
        table = RunStore(run.log_dir).attributions(0)
        order = np.argsort(table.column("sample_id").to_numpy())
        columns[batch_size] = table.column("metric_region_perturbation").to_numpy()[order]
    assert np.isfinite(columns[4]).all() and len(columns[4]) == 12
    # same weights, same samples: only the batching differs
    np.testing.assert_allclose(columns[4], columns[8], rtol=1e-5, atol=1e-6)


def test_masks_from_dict_samples_feed_the_localisation_metrics(tmp_path):
    probe = MaskData(6, seed=4)
    cb = callback(probe=probe, metrics=["relevance_mass", "pointing_game"])
    run, model = fit(tmp_path, cb, val=MaskData(30), max_epochs=1)
    table = RunStore(run.log_dir).attributions(0)
    assert "metric_stability" not in table.column_names
    items = [probe[i] for i in range(6)]
    x = torch.stack([item["image"] for item in items])
    y = torch.stack([item["label"] for item in items])
    masks = torch.stack([item["mask"] for item in items])
    _, relevance = explain(plain(model), x, target=y, **BOX)
    np.testing.assert_allclose(
        table.column("metric_relevance_mass").to_numpy(),
        RelevanceMass().per_sample(relevance, masks=masks).numpy(),
        rtol=2e-4,
        atol=1e-6,
    )
    assert set(table.column("metric_pointing_game").to_pylist()) <= {0.0, 1.0}


def test_unpack_batch_may_return_masks_as_a_third_element(tmp_path):
    probe = MaskData(4, seed=2)
    cb = callback(
        probe=probe,
        metrics=["relevance_rank_accuracy"],
        unpack_batch=lambda batch: (batch["image"], batch["label"], batch["mask"].float()),
    )
    run, _ = fit(tmp_path, cb, val=MaskData(30), max_epochs=1)
    values = RunStore(run.log_dir).attributions(0).column("metric_relevance_rank_accuracy").to_numpy()
    assert values.shape == (4,) and np.all((values >= 0) & (values <= 1))


def test_a_metric_that_needs_masks_without_masks_is_a_clear_error(tmp_path):
    run = trainer(tmp_path, callbacks=[callback(metrics=["pointing_game"])], num_sanity_val_steps=0, max_epochs=1)
    with pytest.raises(ValueError) as info:
        run.fit(TinyNet(), loader(ImageData(16)), loader(ImageData(30)))
    message = str(info.value)
    assert message.startswith("LRPCallback: metric pointing_game needs masks")
    assert "'mask' field or remove it from metrics" in message and "unpack_batch" in message
    assert not list(tmp_path.rglob("part-*.parquet"))


@pytest.mark.parametrize(
    ("metrics", "error", "fragments"),
    [
        (["sparsenes"], ValueError, ["LRPCallback: metrics: unknown metric 'sparsenes'", "'sparseness'?", "entropy"]),
        ([3], TypeError, ["LRPCallback: metrics: a metric must be a name", "not int"]),
        (["entropy", "entropy"], ValueError, ["metrics ['entropy'] are given more than once"]),
        (7, TypeError, ["metrics must be a list of metric names"]),
    ],
    ids=["unknown name", "not a metric", "repeated", "not a list"],
)
def test_metrics_are_validated_at_construction(metrics, error, fragments):
    with pytest.raises(error) as info:
        callback(metrics=metrics)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_no_metrics_adds_no_columns_and_a_single_name_works(tmp_path):
    assert callback(metrics=None).metrics == [] and callback(metrics=[]).metrics == []
    assert callback(metrics="entropy").metrics == ["entropy"]
    assert LRPCallback().metrics == ["sparseness", "entropy", "conservation", "stability"]
    run, _ = fit(tmp_path, callback(metrics=None), max_epochs=1)
    table = RunStore(run.log_dir).attributions(0)
    assert not [name for name in table.column_names if name.startswith("metric_")]


def test_stability_reads_the_previous_epoch_from_the_store_after_a_restart(tmp_path):
    run, _ = fit(tmp_path, callback(), max_epochs=2)
    store = RunStore(run.log_dir)
    ids, maps = store.heatmaps(1)
    fresh = callback()  # a resumed process: nothing in memory
    fresh._run_dir = store.store_dir
    assert fresh._previous_maps(0, ids) is None
    previous = fresh._previous_maps(2, ids)
    np.testing.assert_array_equal(previous(ids[::-1]).numpy(), maps[::-1])
    assert np.isnan(previous(np.array([999])).numpy()).all()  # a sample the epoch does not hold


def test_training_stays_bitwise_identical_with_faithfulness_metrics(tmp_path):
    from lightning.pytorch import seed_everything

    def weights(with_callback: bool) -> dict[str, torch.Tensor]:
        seed_everything(7, workers=True)
        model = TinyNet()
        metrics = ["sparseness", "stability", RegionPerturbation(patch_size=2, steps=3), "pixel_flipping"]
        callbacks = [callback(num_samples=9, metrics=metrics)] if with_callback else []
        root = tmp_path / ("with" if with_callback else "without")
        run = trainer(root, callbacks=callbacks, max_epochs=2, deterministic=True)
        run.fit(model, loader(ImageData(48, seed=1, augment=True), shuffle=True), loader(ImageData(30, augment=True)))
        return {**{k: v.clone() for k, v in model.state_dict().items()}, "draw": torch.rand(1)}

    without, with_callback = weights(False), weights(True)
    assert [name for name in without if not torch.equal(without[name], with_callback[name])] == []
