"""Smoke tests of the other examples, in reduced sizes: each runs end to end and writes a readable store."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lrp_lightning.store import RunStore, find_runs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_resnet_synthetic(tmp_path, capsys):
    status = _load("resnet_synthetic").main(
        ["--out", str(tmp_path), "--epochs", "1", "--train", "128", "--probe", "16"]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    (run,) = find_runs(tmp_path)
    store = RunStore(run)
    assert [info.epoch for info in store.epochs()] == [0]
    ids, maps = store.heatmaps(0)
    assert maps.shape == (16, 32, 32)
    assert "positive relevance inside the square" in printed


def test_dataset_wide(tmp_path, capsys):
    status = _load("dataset_wide").main(["--out", str(tmp_path), "--epochs", "2", "--samples-per-class", "60"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert find_runs(tmp_path) == [tmp_path / "train_set"]
    (info,) = RunStore(tmp_path / "train_set").epochs()
    assert info.rows == 420  # every training sample: 70% of 10 x 60
    assert "FOUND" in printed


@pytest.mark.ddp
def test_ddp_example_two_cpu_processes(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "ddp.py"), "--out", str(tmp_path), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 0: 100 rows from ['part-00000.parquet', 'part-00001.parquet']" in result.stdout
    (run,) = find_runs(tmp_path)
    ids, _ = RunStore(run).heatmaps(0)
    assert len(ids) == len(set(ids.tolist())) == 100


def test_explain_image_montage_of_every_composite(tmp_path, capsys):
    from PIL import Image

    from lrp_lightning import COMPOSITES

    status = _load("explain_image").main(
        ["--out", str(tmp_path / "h.png"), "--montage", str(tmp_path / "c.png"), "--epochs", "1", "--samples", "3"]
    )
    assert status == 0
    heat, montage = Image.open(tmp_path / "h.png"), Image.open(tmp_path / "c.png")
    # 32-pixel tiles, 2 pixels between rows, scaled 3x: input/heatmap/overlay vs input + one row per composite
    rows = 1 + len(COMPOSITES)
    assert heat.height == 3 * (3 * 32 + 2 * 2)
    assert montage.height == 3 * (rows * 32 + (rows - 1) * 2)
    assert ", ".join(sorted(COMPOSITES)) in capsys.readouterr().out
