"""Two CPU processes (DDP, gloo): each rank explains its share, one manifest, duplicates stored once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from callback_testing import ImageData, TinyNet
from torch import nn

from lrp_lightning.attribution import explain
from lrp_lightning.store import RunStore

HERE = Path(__file__).resolve().parent
BOX = {"low": 0.0, "high": 1.5}

pytestmark = pytest.mark.ddp


def expected_maps(model: TinyNet, dataset: ImageData, ids) -> np.ndarray:
    x = torch.stack([dataset[i][0] for i in ids])
    y = torch.stack([dataset[i][1] for i in ids])
    _, relevance = explain(nn.Sequential(model.features, model.classifier), x, target=y, **BOX)
    return relevance.sum(1).numpy()


def test_ddp_two_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_run.py"), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = TinyNet()
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))

    # LRPCallback: the 13 probe samples are split 7 / 6 over the ranks, each explained once
    store = RunStore(tmp_path / "fit")
    assert [(e.epoch, e.rows) for e in store.epochs()] == [(0, 13), (1, 13)]
    probe_ids = store.probe_table().column("sample_id").to_numpy()
    assert probe_ids.size == 13
    parts = [pq.read_table(store.store_dir / name).column("sample_id").to_numpy() for name in store.epoch_info(1).files]
    assert [part.size for part in parts] == [7, 6]
    assert np.array_equal(np.sort(np.concatenate(parts)), probe_ids)
    assert np.array_equal(parts[0], probe_ids[0::2]) and np.array_equal(parts[1], probe_ids[1::2])
    ids, maps = store.heatmaps(1, probe_ids)
    np.testing.assert_allclose(maps, expected_maps(model, ImageData(30), probe_ids), rtol=2e-3, atol=1e-6)
    assert [p.name for p in store.store_dir.rglob("*") if p.name.startswith(".")] == []
    scalars = eval((tmp_path / "rank0-scalars.txt").read_text())
    full = expected_maps(model, ImageData(30), probe_ids).astype(np.float64)
    # the scalars are reduced over both ranks, not computed from rank 0's share alone
    assert np.isclose(scalars["lrp/relevance_abs_mean"], np.abs(full).mean(), rtol=1e-4)
    assert not np.isclose(scalars["lrp/relevance_abs_mean"], np.abs(full[0::2]).mean(), rtol=1e-4)
    # so are the metrics' epoch means: the mean of the stored per-sample values of both ranks' rows
    sparseness = store.attributions(1).column("metric_sparseness").to_numpy().astype(np.float64)
    assert np.isclose(scalars["lrp/metric_sparseness"], sparseness.mean(), rtol=1e-5)
    assert np.isfinite(store.attributions(1).column("metric_stability").to_numpy()).all()

    # more ranks than probe samples: rank 1 writes an empty part, the epoch holds the one sample
    store = RunStore(tmp_path / "single")
    (info,) = store.epochs()
    assert info.rows == 1 and [pq.read_table(store.store_dir / name).num_rows for name in info.files] == [1, 0]
    np.testing.assert_allclose(
        store.heatmaps(info.epoch)[1], expected_maps(model, ImageData(30), [4]), rtol=2e-3, atol=1e-6
    )

    # LRPPredictionWriter: every index of the 37-sample data set once, although rank 1 got sample 0 twice
    store = RunStore(tmp_path / "predict")
    (info,) = store.epochs()
    assert (info.epoch, info.rows) == (4, 37)
    raw = [pq.read_table(store.store_dir / name).column("sample_id").to_pylist() for name in info.files]
    assert [len(part) for part in raw] == [19, 19] and raw[1][-1] == 0
    table = store.attributions(4)
    assert sorted(table.column("sample_id").to_pylist()) == list(range(37))
    probe = store.probe_table()
    assert probe.column("sample_id").to_pylist() == list(range(37))
    assert probe.column("label").to_pylist() == ImageData(37, seed=3).y.tolist()
    ids, maps = store.heatmaps(4, list(range(37)))
    np.testing.assert_allclose(maps, expected_maps(model, ImageData(37, seed=3), range(37)), rtol=2e-3, atol=1e-6)
