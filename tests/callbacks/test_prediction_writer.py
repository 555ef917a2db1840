"""LRPPredictionWriter: a whole data set explained with Trainer.predict into the store layout."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from PIL import Image
from token_testing import TinyTokenNet, TokenData, pad_collate
from torch import nn
from torch.utils.data import DataLoader

import lrp_lightning
from lrp_lightning import LRPPredictionWriter
from lrp_lightning.attribution import Gradient, IntegratedGradients, explain
from lrp_lightning.composites import get_composite
from lrp_lightning.store import (
    MANIFEST_FILE,
    METHODS_KEY,
    WRITER_LOCK_FILE,
    RunStore,
    StoreLockedError,
    StoreNotFoundError,
    WriterLock,
)

BOX = {"low": 0.0, "high": 1.5}


def writer(tmp_path, **kwargs) -> LRPPredictionWriter:
    return LRPPredictionWriter(dirpath=tmp_path / "wide", composite_kwargs=BOX, **kwargs)


def predict(tmp_path, callback, model, data, **loader_kwargs):
    run = trainer(tmp_path, callbacks=[callback], logger=False)
    run.predict(model, DataLoader(data, batch_size=8, **loader_kwargs), return_predictions=False)
    return RunStore(tmp_path / "wide")


def test_is_a_batch_prediction_writer_exported_lazily():
    import importlib

    assert importlib.import_module("lrp_lightning.callbacks").LRPPredictionWriter is LRPPredictionWriter
    assert lrp_lightning.__getattr__("LRPPredictionWriter") is LRPPredictionWriter
    instance = LRPPredictionWriter()
    assert isinstance(instance, BasePredictionWriter) and instance.interval.on_batch


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epoch": -1}, "epoch must be an int >= 0"),
        ({"thumbnail_size": 1.5}, "0 stores no thumbnails"),
        ({"target": "best"}, "target must be 'label'"),
        ({"composite": "nope"}, "unknown composite 'nope'"),
        ({"heatmap_size": 0}, "heatmap_size must be None"),
        ({"composite": ["epsilon_gamma_box", "nope"]}, "composite[1] must be the name of a composite of ["),
        ({"composite": ["gradient", "nope"]}, "or a built-in method of ['gradient', 'input_x_gradient'"),
        ({"composite": {"lrp": "epsilon_plus", "ig": 3}}, "composite['ig'] must be a composite of"),
        ({"composite": {"ig": None}}, "in a dict a callable model -> Attributor"),
        ({"composite": ["gradient", "gradient"]}, "methods with distinct names"),
        ({"composite": {"bad name": "gradient"}}, "method name 'bad name' must start with a letter"),
        ({"composite": [IntegratedGradients]}, "pass a dict {name: attributor}"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match="LRPPredictionWriter") as info:
        LRPPredictionWriter(**kwargs)
    assert message in str(info.value)


def test_every_sample_of_the_data_set_is_stored_once(tmp_path):
    model = TinyNet()
    data = ImageData(37, seed=4)
    store = predict(tmp_path, writer(tmp_path, class_names=["x", "y", "z"]), model, data)
    (info,) = store.epochs()
    assert (info.epoch, info.global_step, info.rows) == (0, 0, 37)
    table = store.attributions(0)
    assert table.column("sample_id").to_pylist() == list(range(37))
    assert table.column("label").to_pylist() == data.y.tolist()
    _, relevance = explain(nn.Sequential(model.features, model.classifier), data.x, target=data.y, **BOX)
    np.testing.assert_allclose(store.heatmaps(0)[1], relevance.sum(1).numpy(), rtol=2e-3, atol=1e-6)
    probe = store.probe_table()
    assert probe.column("sample_id").to_pylist() == list(range(37))
    assert probe.column("dataset_index").to_pylist() == list(range(37))
    assert Image.open(io.BytesIO(probe.column("thumbnail")[5].as_py())).size == (8, 8)
    manifest = store.manifest
    assert manifest["metadata"] == {"writer": "LRPPredictionWriter"}
    assert manifest["probe"] == {"selection": "dataset-wide"} and manifest["class_names"] == ["x", "y", "z"]
    assert [p.name for p in store.store_dir.rglob("*") if p.name.startswith(".")] == []


def test_repeated_indices_are_explained_once_and_epoch_comes_from_the_checkpoint(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    fit = trainer(tmp_path / "fit", callbacks=[checkpoints], enable_checkpointing=True)
    model = TinyNet()
    fit.fit(model, loader(ImageData(48), shuffle=True), loader(ImageData(30)))
    data = ImageData(20, seed=2)
    order = [5, 0, 1, 5, 2, 3, 0, 4, 19, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 2]  # repeats 5, 0, 2
    callback = writer(tmp_path, heatmap_size=(2, 4), thumbnail_size=0)
    run = trainer(tmp_path, callbacks=[callback], logger=False)
    run.predict(TinyNet(), DataLoader(data, batch_size=4, sampler=order), ckpt_path=checkpoints.best_model_path)
    store = RunStore(tmp_path / "wide")
    (info,) = store.epochs()
    assert (info.epoch, info.global_step, info.rows) == (1, 6, 20)
    table = store.attributions(1)
    assert sorted(table.column("sample_id").to_pylist()) == list(range(20))
    assert store.heatmap_shape == (2, 4)
    _, relevance = explain(nn.Sequential(model.features, model.classifier), data.x, target=data.y, **BOX)
    pooled = relevance.sum(1).reshape(20, 2, 4, 4, 2).sum((2, 4)).numpy()
    np.testing.assert_allclose(store.heatmaps(1, list(range(20)))[1], pooled, rtol=2e-3, atol=1e-5)
    assert store.probe_table().column("thumbnail").null_count == 20

    # predicting again into the same directory replaces the epoch; an explicit epoch is used as given
    before = info.commit
    run = trainer(tmp_path, callbacks=[callback], logger=False)
    run.predict(TinyNet(), DataLoader(data, batch_size=4, sampler=order), ckpt_path=checkpoints.best_model_path)
    assert store.epoch_info(1).commit != before and store.epoch_info(1).rows == 20
    other = writer(tmp_path / "explicit", epoch=7)
    store = predict(tmp_path / "explicit", other, model, data)
    assert [(e.epoch, e.global_step) for e in store.epochs()] == [(7, 0)]


class Unlabelled(TinyNet):
    def predict_step(self, batch, batch_idx):
        return self(batch)


class SeveralLoaders(TinyNet):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])


def test_clear_errors(tmp_path):
    run = trainer(tmp_path, callbacks=[writer(tmp_path)], logger=False)
    with pytest.raises(ValueError, match="predict got 2 dataloaders"):
        run.predict(SeveralLoaders(), [loader(ImageData(8)), loader(ImageData(8))], return_predictions=False)
    run = trainer(tmp_path, callbacks=[writer(tmp_path)], logger=False)
    with pytest.raises(ValueError, match="target='label' needs labels"):
        run.predict(Unlabelled(), loader(ImageData(8, labels=False)), return_predictions=False)
    run = trainer(tmp_path, callbacks=[writer(tmp_path)], logger=False)
    with pytest.raises(ValueError, match="the label 2 of sample 2 is out of range for a model with 2 class scores"):
        run.predict(TinyNet(classes=2), loader(ImageData(8)), return_predictions=False)
    assert not (tmp_path / "wide").exists()


def test_prediction_target_without_labels(tmp_path):
    model = Unlabelled()
    data = ImageData(10, labels=False)
    store = predict(tmp_path, writer(tmp_path, target="prediction"), model, data)
    table = store.attributions(0)
    assert table.column("label").to_pylist() == [-1] * 10
    model.eval()
    assert table.column("target").to_pylist() == model(torch.stack([data[i] for i in range(10)])).argmax(1).tolist()


class _Watched(LRPPredictionWriter):
    """Records the most rows held in memory and whether the epoch was visible to readers during predict."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.most_held, self.visible, self.batches = 0, [], 0

    def write_on_batch_end(self, trainer, pl_module, *args, **kwargs):
        super().write_on_batch_end(trainer, pl_module, *args, **kwargs)
        self.most_held = max(self.most_held, sum(len(rows) for _, rows in self._rows))
        self.batches += 1
        try:
            self.visible.append([info.epoch for info in RunStore(self._run_dir).epochs()])
        except StoreNotFoundError:  # no manifest yet: nothing is visible
            self.visible.append([])


def test_rows_are_flushed_in_bounded_chunks_into_the_same_table(tmp_path):
    model = TinyNet()
    data = ImageData(41, seed=7)
    small = _Watched(dirpath=tmp_path / "small", composite_kwargs=BOX, flush_every=5, thumbnail_size=8)
    huge = LRPPredictionWriter(dirpath=tmp_path / "huge", composite_kwargs=BOX, flush_every=10**6, thumbnail_size=8)
    for callback in (small, huge):
        run = trainer(tmp_path, callbacks=[callback], logger=False)
        run.predict(model, DataLoader(data, batch_size=8), return_predictions=False)
    flushed, whole = RunStore(tmp_path / "small"), RunStore(tmp_path / "huge")
    assert flushed.epochs()[0].rows == whole.epochs()[0].rows == 41
    assert flushed.attributions(0).equals(whole.attributions(0))  # same ids, labels, maps (bitwise), columns
    assert flushed.attributions(0).schema.equals(whole.attributions(0).schema, check_metadata=True)
    assert flushed.probe_table().equals(whole.probe_table())
    # the part is one file of several row groups: 41 rows flushed at most 5 at a time
    import pyarrow.parquet as pq

    assert pq.ParquetFile(flushed.store_dir / flushed.epochs()[0].files[0]).metadata.num_row_groups >= 9
    assert 0 < small.most_held <= 5
    assert small.batches == 6 and small.visible == [[]] * 6  # nothing of the epoch before the commit
    assert [p.name for p in flushed.store_dir.rglob("*") if p.name.startswith(".")] == []


def test_a_rerun_replaces_the_epoch_and_an_interrupted_one_leaves_it_readable(tmp_path):
    model = TinyNet()
    first = predict(tmp_path, writer(tmp_path, flush_every=8), model, ImageData(20, seed=1))
    assert first.epochs()[0].rows == 20
    before, commit = first.attributions(0), first.epochs()[0].commit

    class Crash(_Watched):
        def write_on_batch_end(self, trainer, pl_module, *args, **kwargs):
            super().write_on_batch_end(trainer, pl_module, *args, **kwargs)
            if self.batches == 3:
                raise RuntimeError("crash mid-prediction")

    crash = Crash(dirpath=tmp_path / "wide", composite_kwargs=BOX, flush_every=8)
    with pytest.raises(RuntimeError, match="crash mid-prediction"):
        predict(tmp_path, crash, model, ImageData(40, seed=1))
    assert crash.visible == [[0]] * 3 and crash.most_held <= 8
    store = RunStore(tmp_path / "wide")
    assert store.attributions(0).equals(before)  # the earlier version, untouched by the staged rows
    torch.manual_seed(3)
    again = predict(tmp_path, writer(tmp_path, flush_every=8), TinyNet(), ImageData(20, seed=1))  # the same probe set
    (info,) = again.epochs()
    assert info.rows == 20 and info.commit != commit
    table = again.attributions(0)
    assert table.column("sample_id").to_pylist() == list(range(20)) and not table.equals(before)
    assert [p.name for p in again.store_dir.rglob("*") if p.name.startswith(".")] == []


def test_flush_every_must_be_positive():
    with pytest.raises(ValueError, match="LRPPredictionWriter: flush_every must be an int >= 1, got 0"):
        LRPPredictionWriter(flush_every=0)
    with pytest.raises(ValueError, match=r"flush_every must be an int >= 1, got 4096\.0"):
        LRPPredictionWriter(flush_every=4096.0)


def test_a_second_writer_of_the_store_is_refused_while_the_first_holds_its_lock(tmp_path):
    data = ImageData(9, seed=4)
    with WriterLock(tmp_path / "wide", run_id="a training"):  # another writer of this directory
        with pytest.raises(StoreLockedError, match="another writer is writing into .*run id a training"):
            predict(tmp_path, writer(tmp_path), TinyNet(), data)
        assert not (tmp_path / "wide" / "plugins" / "lrp" / "manifest.json").exists()
    store = predict(tmp_path, writer(tmp_path), TinyNet(), data)  # released: the writer runs
    assert [e.rows for e in store.epochs()] == [9]
    assert not (store.store_dir / WRITER_LOCK_FILE).exists()  # and releases its own lock at the end


# ---------------------------------------------------------------------------------- several methods


def _plain(model: TinyNet) -> nn.Module:
    return nn.Sequential(model.features, model.classifier).eval()


@pytest.mark.slow
def test_every_method_is_written_for_every_batch_and_equals_its_attributor(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    data = ImageData(11, seed=5)
    methods = {
        "lrp": "epsilon_gamma_box",
        "grad": "gradient",
        "ixg": "input_x_gradient",
        "ig": functools.partial(IntegratedGradients, n_iter=4),
    }
    callback = writer(tmp_path, composite=methods, flush_every=5, thumbnail_size=0)  # flushes mix methods
    assert callback.methods == list(methods)
    run = trainer(tmp_path, callbacks=[callback], logger=False, precision="64-true")
    run.predict(model, DataLoader(data, batch_size=4), return_predictions=False)
    store = RunStore(tmp_path / "wide")
    assert store.methods == list(methods) and store.epochs()[0].rows == 11  # samples, not rows
    manifest = json.loads((store.store_dir / MANIFEST_FILE).read_text())
    assert [m["kind"] for m in manifest[METHODS_KEY]] == ["lrp", "gradient", "input_x_gradient", "attributor"]
    net = _plain(model.double())
    x, y = data.x.double(), data.y
    x_grad = x.clone().requires_grad_(True)
    net(x_grad)[torch.arange(11), y].sum().backward()
    expected = {
        "lrp": explain(net, x, target=y, **BOX)[1],
        "grad": x_grad.grad,
        "ixg": x_grad.grad * x,
        "ig": IntegratedGradients(net, n_iter=4)(x, nn.functional.one_hot(y, 3).double())[1],
    }
    for name, relevance in expected.items():
        ids, maps = store.heatmaps(0, method=name)
        assert ids.tolist() == list(range(11))
        np.testing.assert_allclose(maps, relevance.sum(1).float().numpy(), rtol=2e-3, atol=1e-5)  # float16
        sums = store.attributions(0, ["relevance_sum"], method=name).column(0).to_numpy()
        np.testing.assert_allclose(sums, relevance.flatten(1).sum(1).numpy(), rtol=1e-6, atol=1e-9)  # float32
    assert not np.allclose(store.heatmaps(0, method="lrp")[1], store.heatmaps(0, method="grad")[1], atol=1e-3)
    assert np.array_equal(store.heatmaps(0)[1], store.heatmaps(0, method="lrp")[1])  # the first is the default
    with pytest.raises(ValueError, match=r"method 'lime' is not one of this run's attribution methods"):
        store.heatmaps(0, method="lime")


# ---------------------------------------------------------------------------------- widths and lengths


def test_token_maps_of_a_wider_later_batch_are_whole_and_equal_attributing_each_sample_alone(tmp_path):
    torch.manual_seed(0)
    model = TinyTokenNet()
    data = TokenData(13, seed=2)
    order = sorted(range(13), key=lambda i: data.samples[i][0].numel())  # batches padded wider and wider
    lengths = [data.samples[i][0].numel() for i in order]
    first_width, widest = max(lengths[:4]), max(lengths)
    assert first_width < widest
    stores = []
    for name, flush_every in (("flushed", 3), ("held", 10**6)):  # rows written before the widest batch, or not
        callback = LRPPredictionWriter(dirpath=tmp_path / name, composite="epsilon_plus", flush_every=flush_every)
        run = trainer(tmp_path, callbacks=[callback], logger=False, precision="64-true")
        run.predict(model, DataLoader(data, batch_size=4, sampler=order, collate_fn=pad_collate))
        stores.append(RunStore(tmp_path / name))
    store, held = stores
    assert store.attributions(0).equals(held.attributions(0))  # widened on disk = written wide at once
    assert store.max_tokens == widest and store.heatmap_shape == (1, widest)
    assert store.manifest["input_shape"] == [widest]
    relevance = store.token_relevance(0)
    ids, maps = store.heatmaps(0)
    composite = get_composite("epsilon_plus")
    checked = 0
    for row, sample_id in enumerate(ids.tolist()):
        batch = pad_collate([data[sample_id]])
        labels = batch.pop("labels")
        with Gradient(model.double().eval(), composite, output="logits") as attributor:
            _, alone = attributor(batch, labels)  # float64, the sample alone, unpadded
        alone = alone[0].numpy().astype(np.float32)
        n = alone.size
        assert relevance[sample_id].size == n and np.abs(alone).sum() > 0
        np.testing.assert_allclose(relevance[sample_id], alone, rtol=0, atol=1e-10)
        np.testing.assert_allclose(maps[row, 0, :n], alone.astype(np.float16), rtol=0, atol=1e-10)
        assert not maps[row, 0, n:].any()
        checked += n > first_width  # its map was cut at the first batch's width before
    assert checked >= 3


class _Signals(torch.utils.data.Dataset):
    """``(x, y)`` signals ``(1, L)``: the first four 8 steps long, the others 12."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.items = [(torch.randn(1, 8 if i < 4 else 12, generator=generator), i % 2) for i in range(8)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class _SignalNet(TinyNet):
    """Conv1d over signals of any length, summed over time: one score per class."""

    def __init__(self) -> None:
        super().__init__(classes=2)
        self.conv = nn.Conv1d(1, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).sum(-1))


def test_signals_of_other_lengths_need_heatmap_size_and_are_pooled_with_it(tmp_path):
    torch.manual_seed(0)
    model, data = _SignalNet(), _Signals()
    run = trainer(tmp_path, callbacks=[writer(tmp_path, composite="gradient")], logger=False)
    with pytest.raises(ValueError, match=r"batch 1 have shape \(1, 12\), but the earlier batches' have shape \(1, 8\)"):
        run.predict(model, DataLoader(data, batch_size=4), return_predictions=False)
    assert not (tmp_path / "wide" / "plugins" / "lrp" / "manifest.json").exists()
    callback = writer(tmp_path, composite="gradient", heatmap_size=(1, 4))
    run = trainer(tmp_path, callbacks=[callback], logger=False, precision="64-true")
    run.predict(model, DataLoader(data, batch_size=4), return_predictions=False)
    ids, maps = RunStore(tmp_path / "wide").heatmaps(0)
    for row, sample_id in enumerate(ids.tolist()):
        x, y = data[sample_id]
        x = x[None].double().requires_grad_(True)
        model.double()(x)[0, y].backward()
        pooled = x.grad[0, 0].reshape(4, -1).sum(1).numpy()  # 2 or 3 steps per stored value
        np.testing.assert_allclose(maps[row, 0], pooled, rtol=2e-3, atol=1e-6)
