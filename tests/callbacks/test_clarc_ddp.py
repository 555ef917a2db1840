"""ClArCCallback under 2-process DDP on CPU (gloo): one CAV for every rank, every rank revised, one record."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrp_lightning import store as S

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clarc_ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(HERE / "clarc_ddp_run.py"), str(out)],
        env=env,
        cwd=out,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _ranks(out: Path, method: str) -> list[dict]:
    return [json.loads((out / f"{method}-rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("method", ["rrclarc", "pclarc"])
def test_every_rank_revises_along_the_identical_cav_and_one_record_is_written(ddp_run, method):
    zero, one = _ranks(ddp_run, method)
    # the CAV that rank 0 fitted (from the analysis it ran) is the one rank 1 uses: bitwise
    assert zero["cav"] == one["cav"] and zero["cav"]["layer"] == "net.3"
    assert zero["record"] == one["record"]
    assert zero["weights_sum"] == one["weights_sum"]  # (DDP's all-reduce; a check that the ranks trained together)
    # one record in one manifest, written by rank 0; the epochs once each
    (record,) = S.RunStore(zero["log_dir"]).revisions()
    assert record == zero["record"]
    assert record[S.REVISION_STATUS] == S.REVISION_STATUS_ACTIVE and record[S.REVISION_METHOD] == method
    assert record[S.REVISION_FINDING_ID].startswith("class_3/top-left-corner@")
    assert [e["epoch"] for e in record[S.REVISION_EPOCHS]] == [0, 1] and record[S.REVISION_START_EPOCH] == 1
    # the scalars: once per epoch (not once per rank)
    events = EventAccumulator(zero["log_dir"], size_guidance={"scalars": 0}).Reload()
    logged = [e.value for e in events.Scalars(S.revision_tag("artifact_sensitivity"))]
    assert logged == pytest.approx([e["artifact_sensitivity"] for e in record[S.REVISION_EPOCHS]], abs=1e-6)


def test_rrclarc_penalises_every_rank_and_records_the_mean_over_both(ddp_run):
    zero, one = _ranks(ddp_run, "rrclarc")
    steps = {rank["rank"]: [value for epoch, value in rank["steps"] if epoch == 1] for rank in (zero, one)}
    # each rank trains on its half of the batches of epoch 1, every one of them with the penalty
    from clarc_digits import SAMPLES_PER_CLASS

    train = round(SAMPLES_PER_CLASS * 10 * 0.7)
    assert len(steps[0]) == len(steps[1]) == math.ceil(math.ceil(train / 2) / 32)
    assert [value for epoch, value in zero["steps"] if epoch == 0] == []  # found at epoch 0: revised from 1
    revised = zero["record"][S.REVISION_EPOCHS][1]
    both = steps[0] + steps[1]
    assert revised["penalty"] == pytest.approx(float(np.mean(both)), rel=1e-9)
    assert revised["penalty"] != pytest.approx(float(np.mean(steps[0])), rel=1e-9)


def test_pclarc_projects_on_every_rank(ddp_run):
    for rank in _ranks(ddp_run, "pclarc"):
        along = np.asarray(rank["projection_along_cav"])
        assert along.size == 64, rank["rank"]
        # with the projection, every sample sits at the clean samples' mean projection along the CAV
        np.testing.assert_allclose(along, rank["cav"]["clean_projection"], atol=1e-3)
