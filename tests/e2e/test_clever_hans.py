"""End to end: the Clever-Hans demo (reduced) finds the planted watermark, and its runs work with the tools."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrp_lightning import store as S
from lrp_lightning.analysis import load_analysis

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "clever_hans_digits.py"


def _load_demo():
    name = "clever_hans_digits"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the script is executed
        spec.loader.exec_module(module)
    return sys.modules[name]


def _lrp_analyze() -> list[str]:
    script = Path(sys.executable).parent / "lrp-analyze"
    if script.exists():
        return [str(script)]
    found = shutil.which("lrp-analyze")
    return [found] if found else [sys.executable, "-m", "lrp_lightning.cli"]


def _flagged_members(run_dir: Path, epoch: int) -> list[tuple[str, str, int, set[int]]]:
    """Every flagged cluster of an epoch, read back from the store: (category, clustering, cluster, sample ids)."""
    tables = load_analysis(S.RunStore(run_dir), epoch)
    points = tables[S.POINTS_TABLE]
    categories = np.asarray(points.column(S.CATEGORY).to_pylist())
    ids = points.column(S.SAMPLE_ID).to_numpy()
    out = []
    for row in tables[S.CLUSTERS_TABLE].to_pylist():
        if not row[S.FLAGGED]:
            continue
        rows = categories == row[S.CATEGORY]
        labels = points.column(S.cluster_column(row[S.CLUSTERING])).to_numpy(zero_copy_only=False)[rows]
        members = {int(i) for i in ids[rows][labels == row[S.CLUSTER]]}
        out.append((row[S.CATEGORY], row[S.CLUSTERING], int(row[S.CLUSTER]), members))
    return out


@pytest.mark.slow  # the demo trains and analyses in full
def test_clever_hans_demo_finds_the_watermark(tmp_path, capsys):
    demo = _load_demo()
    out = tmp_path / "runs"
    status = demo.main(["--fast", "--out", str(out), "--json", str(tmp_path / "result.json")])
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())

    assert status == 0, printed
    assert result["found"], printed
    assert result["recall"] >= demo.MIN_RECALL and result["purity"] >= demo.MIN_PURITY, printed
    assert result["first_epoch"] is not None and result["first_epoch"] in result["epochs"]
    assert "FOUND the Clever-Hans shortcut of class 3: class 3: top-left corner" in printed
    assert f"tensorboard --logdir {out}" in printed

    # check the claim against the store itself, not the script's arithmetic
    run_dir = Path(result["run_dir"])
    watermarked = set(result["watermarked_probe_ids"])
    assert len(watermarked) >= 10
    probe = S.RunStore(run_dir).probe_table([S.SAMPLE_ID, S.LABEL]).to_pydict()
    label_of = dict(zip(probe[S.SAMPLE_ID], probe[S.LABEL]))
    assert {label_of[i] for i in watermarked} == {3}
    last = result["epochs"][-1]
    best = max(
        (len(members & watermarked) / len(watermarked), len(members & watermarked) / len(members))
        for _, _, _, members in _flagged_members(run_dir, last)
    )
    assert best[0] >= 0.9 and best[1] >= 0.9, best
    # the flags of every clustering, category and epoch are one finding, stored in the findings table
    findings = load_analysis(S.RunStore(run_dir), last)["findings"].to_pylist()
    assert len(findings) == 1, findings
    members = set(findings[0]["member_ids"])
    assert len(members & watermarked) >= 0.9 * len(watermarked) and len(members & watermarked) >= 0.9 * len(members)
    assert findings[0]["category"] == "class_3" and findings[0]["region"] == "top-left corner"
    assert findings[0]["first_epoch"] == result["epochs"][0] == result["first_epoch"]

    # the run is one TensorBoard's LRP tab lists, and lrp-analyze re-reads it (cached: same config)
    assert S.find_runs(out) == [run_dir]
    from lrp_lightning.tb_plugin.discovery import RunIndex

    index = RunIndex(out, start=False)
    index.scan_now()
    assert index.names() == [run_dir.relative_to(out).as_posix()]
    assert [e.epoch for e in index.get(index.names()[0]).epochs()] == result["epochs"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    analyzed = subprocess.run(
        [*_lrp_analyze(), str(out), "--config", str(out / "analysis.json"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    name = run_dir.relative_to(out).as_posix()
    lines = [line for line in analyzed.stdout.splitlines() if line.startswith("lrp-analyze:")]
    assert lines == [f"lrp-analyze: finding: {name}: class 3: top-left corner, {len(members)} samples, since epoch 0"]


@pytest.mark.slow  # the demo trains and analyses in full
def test_clever_hans_control_flags_nothing(tmp_path, capsys):
    """The same watermark on half of every class predicts nothing: no shortcut, so nothing is found."""
    demo = _load_demo()
    status = demo.main(["--fast", "--control", "--out", str(tmp_path / "runs")])
    printed = capsys.readouterr().out
    assert status == 1, printed
    assert "NOT FOUND" in printed


@pytest.mark.parametrize("argv", [["--epochs", "0"]])
def test_clever_hans_rejects_bad_arguments(argv, tmp_path):
    with pytest.raises(SystemExit) as raised:
        _load_demo().main([*argv, "--out", str(tmp_path)])
    assert raised.value.code == 2


@pytest.mark.slow  # trains with the analysis after every epoch and a revision from the epoch after the finding
def test_clever_hans_demo_revises_the_watermark_away(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    demo = _load_demo()
    settings = demo.Settings(epochs=3, samples_per_class=120, revise="rrclarc")
    result = demo.run(tmp_path / "runs", settings, verbose=False)
    (record,) = S.RunStore(result.run_dir).revisions()
    assert record[S.REVISION_STATUS] == S.REVISION_STATUS_ACTIVE and record[S.REVISION_METHOD] == "rrclarc"
    assert record[S.REVISION_FINDING_ID].startswith("class_3/top-left-corner@")
    assert record[S.REVISION_START_EPOCH] == record[S.REVISION_FOUND_EPOCH] + 1 <= 2
    assert record[S.REVISION_CAV]["heldout_auc"] >= 0.9  # the watermark's direction separates held-out samples
    epochs = record[S.REVISION_EPOCHS]
    assert [e["epoch"] for e in epochs] == list(range(record[S.REVISION_FOUND_EPOCH], 3))
    before, after = epochs[0], epochs[-1]
    assert before["revising"] == 0.0 and after["revising"] == 1.0 and after["penalty"] is not None
    # the shortcut: pasting the finding's corner flips other digits to 3 before, hardly after
    assert before["artifact_sensitivity"] >= 0.05
    assert after["artifact_sensitivity"] <= before["artifact_sensitivity"] / 3
    # the demo's own check, with its watermark function (about 20% and more without revision)
    assert result.shortcut_rate <= 0.1
    # the same numbers are TensorBoard scalars
    events = EventAccumulator(result.run_dir, size_guidance={"scalars": 0}).Reload()
    logged = [e.value for e in events.Scalars(S.revision_tag("artifact_sensitivity"))]
    assert logged == pytest.approx([e["artifact_sensitivity"] for e in epochs], abs=1e-6)
    assert len(events.Scalars(S.revision_tag("finding_share"))) == len(epochs)
