"""Issue 18: LRPCallback finishes each epoch (rows, metrics, write, commit, pictures) in a worker thread.

The work is the same as in the hook (``background_writes=False``): same store, same scalars at the same
steps, same weights; epochs commit in order; a failure in the worker is raised on the training thread;
training goes on while an epoch is written; other callbacks reading the store see the epoch committed.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lrp_lightning import LRPCallback
from lrp_lightning.attribution import explain
from lrp_lightning.callbacks._explainer import Attributed
from lrp_lightning.callbacks._worker import EpochWorker
from lrp_lightning.store import RunStore

BOX = {"low": 0.0, "high": 1.5}
RELEASE_TIMEOUT = 120.0  # seconds a gated write waits at most (a bug must fail the test, not hang it)


def fit(root, background: bool, max_epochs: int = 3, extra=(), **kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    callback = LRPCallback(num_samples=12, composite_kwargs=BOX, batch_size=5, background_writes=background, **kwargs)
    run = trainer(root, callbacks=[callback, *extra], max_epochs=max_epochs)
    run.fit(model, loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))
    return run, model, callback


def lrp_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir)).Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith("lrp/")
    }


def test_the_worker_writes_what_the_hook_writes_with_the_same_steps_and_weights(tmp_path):
    run_bg, model_bg, callback_bg = fit(tmp_path / "bg", background=True, max_epochs=2)
    run_fg, model_fg, _ = fit(tmp_path / "fg", background=False, max_epochs=2)
    assert not callback_bg._worker.busy  # drained at the end of fit
    # training is the same, bitwise
    weights_bg, weights_fg = model_bg.state_dict(), model_fg.state_dict()
    assert [name for name in weights_fg if not torch.equal(weights_bg[name], weights_fg[name])] == []
    # the same store
    store_bg, store_fg = RunStore(run_bg.log_dir), RunStore(run_fg.log_dir)
    assert [(e.epoch, e.global_step, e.rows) for e in store_bg.epochs()] == [(0, 3, 12), (1, 6, 12)]
    assert [(e.epoch, e.global_step) for e in store_fg.epochs()] == [(0, 3), (1, 6)]
    assert store_bg.probe_table().equals(store_fg.probe_table())  # thumbnails from the worker, identical
    for epoch in range(2):
        table_bg, table_fg = store_bg.attributions(epoch), store_fg.attributions(epoch)
        assert table_bg.schema.equals(table_fg.schema, check_metadata=True)
        for name in table_fg.column_names:  # equal, NaN (stability in the first epoch) included
            if pa.types.is_floating(table_fg.schema.field(name).type):
                np.testing.assert_array_equal(table_bg.column(name).to_numpy(), table_fg.column(name).to_numpy())
            else:
                assert table_bg.column(name).equals(table_fg.column(name)), (epoch, name)
    stability = store_bg.attributions(1).column("metric_stability").to_numpy()
    assert np.isfinite(stability).all()  # the worker kept the previous epoch's maps
    # the same scalars at the same steps (the hook logs them through self.log, the worker with the epoch's step)
    logged_bg, logged_fg = lrp_scalars(tmp_path / "bg" / "version_0"), lrp_scalars(tmp_path / "fg" / "version_0")
    assert set(logged_bg) == set(logged_fg) and "lrp/probe_accuracy" in logged_bg
    for tag, values in logged_fg.items():
        assert [step for step, _ in logged_bg[tag]] == [step for step, _ in values], tag
        np.testing.assert_allclose([v for _, v in logged_bg[tag]], [v for _, v in values], rtol=1e-6, err_msg=tag)
    assert [step for step, _ in logged_bg["lrp/relevance_abs_mean"]] == [2, 5]  # as val_acc: self.log's steps
    images_bg = EventAccumulator(str(tmp_path / "bg" / "version_0")).Reload().Images("lrp/heatmaps")
    images_fg = EventAccumulator(str(tmp_path / "fg" / "version_0")).Reload().Images("lrp/heatmaps")
    assert [e.step for e in images_bg] == [3, 6]
    assert [e.encoded_image_string for e in images_bg] == [e.encoded_image_string for e in images_fg]


class StoreReader(Callback):
    """Placed after LRPCallback: reads its store at the same hook, as ClArCCallback does."""

    def __init__(self, lrp: LRPCallback) -> None:
        self.lrp = lrp
        self.seen: list[list[int]] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seen.append([info.epoch for info in self.lrp._store.epochs()])


def test_a_callback_reading_the_store_at_the_same_hook_sees_the_epoch_committed(tmp_path):
    lrp = LRPCallback(num_samples=12, composite_kwargs=BOX, batch_size=5)
    reader = StoreReader(lrp)
    run = trainer(tmp_path, callbacks=[lrp, reader], max_epochs=3)
    run.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))
    assert reader.seen == [[0], [0, 1], [0, 1, 2]]


class BatchCounter(Callback):
    def __init__(self) -> None:
        self.batches = 0
        self.next_epoch_trained = threading.Event()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.batches > 3:  # a batch of epoch 1 has been trained
            self.next_epoch_trained.set()


def test_training_goes_on_while_an_epoch_is_written(tmp_path, monkeypatch):
    counter = BatchCounter()
    write_part = RunStore.write_part
    trained_meanwhile: dict[int, int] = {}

    def gated(self, epoch, global_step, table, **kwargs):
        if epoch == 0:  # blocks until training has run a batch of the next epoch: a deadlock if done in the hook
            if not counter.next_epoch_trained.wait(RELEASE_TIMEOUT):
                raise AssertionError("training waited for the write of epoch 0")
        trained_meanwhile[epoch] = counter.batches
        return write_part(self, epoch, global_step, table, **kwargs)

    monkeypatch.setattr(RunStore, "write_part", gated)
    run, _, _ = fit(tmp_path, background=True, max_epochs=2, extra=[counter])
    assert trained_meanwhile[0] > 3  # epoch 0 was written while epoch 1 trained
    assert [(e.epoch, e.rows) for e in RunStore(run.log_dir).epochs()] == [(0, 12), (1, 12)]


@pytest.mark.parametrize("failing_epoch", [0, 2])
def test_a_failure_in_the_worker_is_raised_on_the_training_thread_and_earlier_epochs_stay(
    tmp_path, monkeypatch, failing_epoch
):
    commit = RunStore.commit_epoch
    failed_in: list[str] = []

    def failing(self, epoch, global_step, **kwargs):
        if epoch == failing_epoch:
            failed_in.append(threading.current_thread().name)
            raise OSError(f"disk full at epoch {epoch}")
        return commit(self, epoch, global_step, **kwargs)

    monkeypatch.setattr(RunStore, "commit_epoch", failing)
    with pytest.raises(OSError, match=f"disk full at epoch {failing_epoch}") as raised:
        fit(tmp_path, background=True, max_epochs=3)
    assert failed_in and failed_in[0].startswith("LRPCallback-epochs")  # it did fail in the worker
    assert f"raised while writing epoch {failing_epoch} in the background" in "\n".join(raised.value.__notes__)
    store = RunStore(tmp_path / "version_0")
    # epoch 0 failing stops training at the next batch; epoch 2 failing is raised at the end of fit
    assert [e.epoch for e in store.epochs()] == list(range(failing_epoch))


def test_the_analysis_of_an_epoch_starts_after_its_commit(tmp_path, monkeypatch):
    import types

    import lrp_lightning.analysis

    committed_at_start: dict[int, list[int]] = {}

    def analyze_epoch(store, epoch, spray=None, **options):
        committed_at_start[epoch] = [info.epoch for info in store.epochs()]
        return types.SimpleNamespace(scalars={"lrp/eigengap": float(epoch)}, messages=[])

    class FakeSpRAy:
        pass

    monkeypatch.setattr(lrp_lightning.analysis, "analyze_epoch", analyze_epoch)
    monkeypatch.setattr(lrp_lightning.analysis, "SpRAy", FakeSpRAy)
    fit(tmp_path, background=True, max_epochs=3, analyze=True)
    assert all(epoch in epochs for epoch, epochs in committed_at_start.items()) and 2 in committed_at_start
    assert [step for step, _ in lrp_scalars(tmp_path / "version_0")["lrp/eigengap"]][-1] == 9


def test_attributed_batches_handed_to_the_worker_own_their_inputs():
    x = torch.rand(2, 1, 4, 4)
    labels = torch.tensor([0, 1])
    batch = Attributed(np.arange(2), x, labels, torch.rand(2, 1, 4, 4), torch.rand(2, 3), labels.clone(), "image")
    owned = batch.owned()
    x.add_(1.0)  # e.g. training changing a tensor that the probe batch shared
    labels.zero_()
    assert float(owned.inputs.max()) <= 1.0 and owned.labels.tolist() == [0, 1]
    tokens = Attributed(np.arange(1), {"input_ids": torch.tensor([[5, 6]])}, None, x, x, labels, "tokens").owned()
    assert tokens.inputs["input_ids"].tolist() == [[5, 6]]


def test_the_epoch_worker_runs_in_order_posts_back_and_raises_once():
    worker = EpochWorker("Owner")
    ran: list[int] = []
    logged: list[tuple[int, str]] = []
    for epoch in range(3):
        worker.submit(epoch, lambda epoch=epoch: (ran.append(epoch), worker.post(lambda: logged.append((epoch, "x")))))
    assert logged == []  # posted calls run on the caller's thread only
    worker.wait()
    assert ran == [0, 1, 2] and logged == [(0, "x"), (1, "x"), (2, "x")] and not worker.busy

    def fail():
        worker.post(lambda: logged.append((3, "before the failure")))
        raise ValueError("bad rows")

    worker.submit(3, fail)
    with pytest.raises(ValueError, match="bad rows") as raised:
        worker.wait()
    assert raised.value.__notes__ == ["Owner: raised while writing epoch 3 in the background (its worker thread)"]
    assert logged[-1] == (3, "before the failure")
    worker.wait()  # raised once
    worker.drain()


@pytest.mark.slow  # a failed fit with checkpoints, then a resumed one
def test_a_resume_explains_again_the_epoch_whose_commit_the_checkpoint_did_not_see(tmp_path, monkeypatch):
    commit = RunStore.commit_epoch

    def dying(self, epoch, global_step, **kwargs):
        if epoch == 1:  # the process "dies" after the checkpoint of epoch 1, before the worker committed it
            raise OSError("the process died")
        return commit(self, epoch, global_step, **kwargs)

    monkeypatch.setattr(RunStore, "commit_epoch", dying)
    options = dict(num_samples=12, composite_kwargs=BOX, batch_size=5, dirpath=tmp_path / "run")
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    first = trainer(tmp_path, callbacks=[LRPCallback(**options), checkpoints], enable_checkpointing=True, max_epochs=3)
    with pytest.raises(OSError, match="the process died"):
        first.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))
    store = RunStore(tmp_path / "run")
    assert [e.epoch for e in store.epochs()] == [0]
    path = tmp_path / "ckpt" / "epoch=1-step=6.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("LRPCallback")]
    assert state["uncommitted_epoch"][:2] == [1, 6]

    monkeypatch.setattr(RunStore, "commit_epoch", commit)
    resumed = trainer(tmp_path, callbacks=[LRPCallback(**options)], max_epochs=3)
    resumed.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)), ckpt_path=path)
    assert [(e.epoch, e.global_step, e.rows) for e in store.epochs()] == [(0, 3, 12), (1, 6, 12), (2, 9, 12)]
    # epoch 1 explained again with the checkpoint's weights: the ones it was first explained with
    model = TinyNet()
    model.load_state_dict(checkpoint["state_dict"])
    ids, maps = store.heatmaps(1)
    data = ImageData(30)
    x, y = torch.stack([data[i][0] for i in ids]), torch.stack([data[i][1] for i in ids])
    _, relevance = explain(nn.Sequential(model.features, model.classifier).eval(), x, target=y, **BOX)
    np.testing.assert_allclose(maps, relevance.sum(1).numpy(), rtol=2e-3, atol=1e-6)
