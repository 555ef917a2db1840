"""One training per store: a second writer is refused, a dead one's lock is taken over, a new training
into a used store is an error, and a resume with a new logger version keeps writing the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from lrp_lightning import LRPCallback
from lrp_lightning.store import (
    RUN_ID_KEY,
    WRITER_LOCK_FILE,
    IncompatibleRunError,
    RunStore,
    StoreLockedError,
    lock_holder,
)

HERE = Path(__file__).resolve().parent
BOX = {"low": 0.0, "high": 1.5}


def callback(**kwargs) -> LRPCallback:
    return LRPCallback(**{"num_samples": 12, "composite_kwargs": BOX, **kwargs})


def start_writer(out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(HERE / "writer_run.py"), str(out), mode],
        env=env,
        cwd=out,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


class RecordLockHolder(Callback):
    def __init__(self, run: Path) -> None:
        self.run, self.holders = run, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.holders.append(lock_holder(self.run))


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.slow  # a training subprocess
def test_a_second_training_into_a_live_store_gets_a_clear_error_and_the_first_is_unaffected(tmp_path):
    first = start_writer(tmp_path, "pause")
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "paused").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-3000:]
            time.sleep(0.1)
        store = RunStore(tmp_path / "run")
        before = store.manifest
        second = trainer(tmp_path / "second", callbacks=[callback(dirpath=tmp_path / "run")])
        model = TinyNet()
        initial = weights(model)
        with pytest.raises(StoreLockedError) as info:
            second.fit(model, loader(ImageData(48), shuffle=True), loader(ImageData(30)))
        for fragment in (f"pid {first.pid}", before[RUN_ID_KEY], str(store.store_dir), "another dirpath"):
            assert fragment in str(info.value)
        assert second.global_step == 0 and all(v.equal(initial[k]) for k, v in weights(model).items())
        assert store.manifest == before and lock_holder(tmp_path / "run")["pid"] == first.pid
        (tmp_path / "go").touch()
        assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert [(e.epoch, e.rows) for e in store.epochs()] == [(0, 12), (1, 12), (2, 12)]
    assert store.manifest[RUN_ID_KEY] == before[RUN_ID_KEY]
    assert not (store.store_dir / WRITER_LOCK_FILE).exists()  # released at the end of fit


@pytest.mark.slow  # a training subprocess killed mid-training, then resumed
def test_the_lock_of_a_killed_training_is_taken_over_by_its_resume(tmp_path):
    dead = start_writer(tmp_path, "kill")
    assert dead.wait(timeout=240) == -signal.SIGKILL, dead.stderr.read()[-3000:]
    store = RunStore(tmp_path / "run")
    run_id = store.manifest[RUN_ID_KEY]
    assert lock_holder(tmp_path / "run")["pid"] == dead.pid  # stale: its holder is gone
    record = RecordLockHolder(tmp_path / "run")
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    resumed = trainer(
        tmp_path, callbacks=[callback(dirpath=tmp_path / "run"), checkpoints, record], enable_checkpointing=True
    )
    resumed.fit_loop.max_epochs = 3
    resumed.fit(
        TinyNet(),
        loader(ImageData(48, seed=1), shuffle=True),
        loader(ImageData(30)),
        ckpt_path=tmp_path / "ckpt" / "epoch=1-step=6.ckpt",
    )
    assert [(h["pid"], h["run_id"]) for h in record.holders] == [(os.getpid(), run_id)]
    assert [(e.epoch, e.global_step) for e in store.epochs()] == [(0, 3), (1, 6), (2, 9)]
    assert store.manifest[RUN_ID_KEY] == run_id
    assert lock_holder(tmp_path / "run") is None


def test_a_new_training_into_a_used_store_is_an_error_that_names_the_options(tmp_path):
    run = trainer(tmp_path, callbacks=[callback(dirpath=tmp_path / "run")], max_epochs=2)
    run.fit(TinyNet(), loader(ImageData(48), shuffle=True), loader(ImageData(30)))
    store = RunStore(tmp_path / "run")
    before = store.manifest
    assert len(before[RUN_ID_KEY]) == 32 and [e.epoch for e in store.epochs()] == [0, 1]

    # the same settings, a new training (no checkpoint): today's "resume" that mixed two runs
    again = trainer(tmp_path / "again", callbacks=[callback(dirpath=tmp_path / "run")], max_epochs=4)
    model = TinyNet()
    with pytest.raises(IncompatibleRunError) as info:
        again.fit(model, loader(ImageData(48), shuffle=True), loader(ImageData(30)))
    for fragment in (str(store.store_dir), before[RUN_ID_KEY], "ckpt_path", "another dirpath", "new logger version"):
        assert fragment in str(info.value)
    assert again.global_step == 0  # refused before training
    assert store.manifest == before
    assert not (store.store_dir / WRITER_LOCK_FILE).exists()  # the refused writer released its lock
    # the refused callback can go elsewhere, and the same instance validates its own store again
    elsewhere = callback(dirpath=tmp_path / "other")
    trainer(tmp_path / "o", callbacks=[elsewhere], max_epochs=1).fit(
        model, loader(ImageData(48)), loader(ImageData(30))
    )
    trainer(tmp_path / "o", callbacks=[elsewhere]).validate(model, loader(ImageData(30)))
    assert [e.epoch for e in RunStore(tmp_path / "other").epochs()] == [0]


def test_a_resume_with_a_new_logger_version_keeps_writing_the_same_store(tmp_path):
    def fit(max_epochs: int, ckpt_path=None) -> tuple:
        logger = TensorBoardLogger(tmp_path, name="", version=None)  # Lightning's default: a new version
        checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
        run = trainer(tmp_path, callbacks=[callback(), checkpoints], enable_checkpointing=True, logger=logger)
        run.fit_loop.max_epochs = max_epochs
        run.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)), ckpt_path=ckpt_path)
        return run

    first = fit(2)
    assert Path(first.log_dir).name == "version_0"
    resumed = fit(4, ckpt_path=tmp_path / "ckpt" / "epoch=1-step=6.ckpt")
    assert Path(resumed.log_dir).name == "version_1"  # the logger went on in a new version ...
    store = RunStore(first.log_dir)  # ... but the attributions stay in one store
    assert [e.epoch for e in store.epochs()] == [0, 1, 2, 3]
    assert not (Path(resumed.log_dir) / "plugins" / "lrp" / "manifest.json").exists()
    # epoch 2 compares with epoch 1 of the same store, so its stability is a number, not NaN
    assert np.isfinite(store.attributions(2).column("metric_stability").to_numpy()).all()
    # the resumed run's checkpoints record the same store and run id
    saved = torch.load(tmp_path / "ckpt" / "epoch=3-step=12.ckpt", weights_only=True)["callbacks"]
    (lrp_state,) = [v for k, v in saved.items() if k.startswith("LRPCallback")]
    assert lrp_state["store_dir"] == str(store.store_dir) and lrp_state["run_id"] == store.manifest[RUN_ID_KEY]


def test_a_resume_from_a_checkpoint_without_run_id_adopts_its_store(tmp_path):
    def fit(cb, max_epochs, ckpt_path=None, root="fit"):
        checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
        run = trainer(tmp_path / root, callbacks=[cb, checkpoints], enable_checkpointing=True, max_epochs=max_epochs)
        run.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)), ckpt_path=ckpt_path)

    first = callback(dirpath=tmp_path / "run")
    fit(first, 2)
    # as lrp-lightning 0.1 left them: a manifest without run id, a callback state of version 1
    manifest_path = tmp_path / "run" / "plugins" / "lrp" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest[RUN_ID_KEY]
    manifest_path.write_text(json.dumps(manifest))
    checkpoint_path = tmp_path / "ckpt" / "epoch=1-step=6.ckpt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    state = checkpoint["callbacks"][first.state_key]
    del state["run_id"], state["store_dir"]
    state["version"] = 1
    torch.save(checkpoint, checkpoint_path)

    with pytest.raises(IncompatibleRunError, match="without a run id"):  # a new training: refused
        fit(callback(dirpath=tmp_path / "run"), 3, root="new")
    resumed = callback(dirpath=tmp_path / "run")
    fit(resumed, 3, ckpt_path=checkpoint_path, root="resumed")  # the old training's resume: adopts it
    store = RunStore(tmp_path / "run")
    assert [e.epoch for e in store.epochs()] == [0, 1, 2]
    assert store.manifest[RUN_ID_KEY] == resumed.state_dict()["run_id"]
