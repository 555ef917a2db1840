"""A process killed while the callback writes an epoch leaves earlier epochs readable; resuming completes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lrp_lightning import LRPCallback
from lrp_lightning.store import RunStore

HERE = Path(__file__).resolve().parent
BOX = {"low": 0.0, "high": 1.5}


@pytest.mark.slow  # a training subprocess killed mid-write, then resumed
@pytest.mark.parametrize(("mode", "returncode"), [("part", -signal.SIGKILL), ("manifest", 3)])
def test_crash_while_writing_leaves_earlier_epochs_and_resume_completes(tmp_path, mode, returncode):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(HERE / "crash_run.py"), str(tmp_path), mode],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == returncode, result.stderr[-3000:]
    store_dir = tmp_path / "run" / "plugins" / "lrp"
    manifest = json.loads((store_dir / "manifest.json").read_text())  # complete, valid JSON
    assert [e["epoch"] for e in manifest["epochs"]] == [0, 1]
    store = RunStore(tmp_path / "run")
    assert [(e.epoch, e.global_step, e.rows) for e in store.epochs()] == [(0, 3, 12), (1, 6, 12)]
    probe_ids = store.probe_table().column("sample_id").to_numpy()
    for epoch in (0, 1):
        ids, maps = store.heatmaps(epoch)
        assert np.array_equal(ids, probe_ids) and np.isfinite(maps).all()
    crashed = store.store_dir / "attributions" / "epoch_000002"
    if mode == "part":
        assert not crashed.exists() and list(store.store_dir.glob("attributions/.staging-epoch_000002-*"))
    else:  # complete on disk but not published
        assert (crashed / "_commit.json").is_file()
        crashed_commit = json.loads((crashed / "_commit.json").read_text())["commit"]

    callback = LRPCallback(num_samples=12, composite_kwargs=BOX, dirpath=tmp_path / "run")
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    resumed = trainer(tmp_path, callbacks=[callback, checkpoints], enable_checkpointing=True, max_epochs=3)
    resumed.fit(
        TinyNet(),
        loader(ImageData(48, seed=1), shuffle=True),
        loader(ImageData(30)),
        ckpt_path=tmp_path / "ckpt" / "epoch=1-step=6.ckpt",
    )
    assert [(e.epoch, e.global_step, e.rows) for e in store.epochs()] == [(0, 3, 12), (1, 6, 12), (2, 9, 12)]
    assert store.attributions(2).column("sample_id").to_pylist() == probe_ids.tolist()
    if mode == "manifest":
        assert store.epoch_info(2).commit != crashed_commit
    # the staging and moved-aside directories of the crashed attempt are gone
    assert sorted(p.name for p in (store.store_dir / "attributions").iterdir()) == [
        "epoch_000000",
        "epoch_000001",
        "epoch_000002",
    ]
