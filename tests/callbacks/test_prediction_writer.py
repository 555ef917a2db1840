"""LRPPredictionWriter: a whole data set explained with Trainer.predict into the store layout."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

import lrp_lightning
from lrp_lightning import LRPPredictionWriter
from lrp_lightning.attribution import explain
from lrp_lightning.store import WRITER_LOCK_FILE, RunStore, StoreLockedError, StoreNotFoundError, WriterLock

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
        self.most_held = max(self.most_held, sum(len(rows) for rows in self._rows))
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
