"""ClArCCallback resumed from a checkpoint goes on revising exactly as an uninterrupted run does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clarc_digits import fit, weights

from lrp_lightning import store as S
from lrp_lightning.revise import CAV, ArtifactPaste


def test_state_round_trips_the_cav_and_the_paste_exactly():
    generator = torch.Generator().manual_seed(3)
    cav = CAV("net.3", torch.randn(24, generator=generator), (2, 3, 4), "pattern", 0.1, 2.5, 0.9, 0.8, 5, 7)
    again = CAV.from_state(cav.state())
    assert torch.equal(again.direction, cav.direction) and again.shape == (2, 3, 4)
    assert again.summary() == cav.summary()
    with pytest.raises(ValueError, match=r"the state misses \['direction'\]"):
        CAV.from_state({k: v for k, v in cav.state().items() if k != "direction"})
    paste = ArtifactPaste(torch.rand(1, 4, 4, generator=generator) > 0.5, torch.rand(1, 4, 4, generator=generator))
    restored = ArtifactPaste.from_state(paste.state())
    x = torch.rand(3, 1, 4, 4, generator=generator)
    assert torch.equal(restored(x), paste(x))


@pytest.mark.slow  # three short trainings of the digits CNN with the analysis after every epoch
def test_a_resumed_run_continues_the_revision_bitwise(tmp_path):
    # uninterrupted: found at epoch 0, RR-ClArC (random targets, CAV fitted again each epoch) in epochs 1 and 2
    trainer, model, clarc = fit(tmp_path / "whole", 3)
    whole = S.RunStore(trainer.log_dir).revisions()
    # interrupted after epoch 1 (one revised epoch), resumed from the checkpoint to epoch 2 in a fresh trainer
    fit(tmp_path / "part", 2, checkpoints=tmp_path / "ckpt")
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("ClArCCallback")]
    assert state["record"][S.REVISION_START_EPOCH] == 1 and len(state["record"][S.REVISION_EPOCHS]) == 2
    assert state["random_state"] is not None  # RR-ClArC drew random targets in epoch 1
    _, resumed_model, resumed = fit(tmp_path / "resumed", 3, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # LRPCallback resumes into the store recorded in the checkpoint: the first part's
    assert S.find_runs(tmp_path / "resumed") == []
    (store_dir,) = S.find_runs(tmp_path / "part")
    again = S.RunStore(store_dir).revisions()
    assert [e.epoch for e in S.RunStore(store_dir).epochs()] == [0, 1, 2]

    (record,) = whole
    assert record[S.REVISION_STATUS] == S.REVISION_STATUS_ACTIVE and record[S.REVISION_METHOD] == "rrclarc"
    assert [e["epoch"] for e in record[S.REVISION_EPOCHS]] == [0, 1, 2]
    assert record[S.REVISION_EPOCHS][2]["penalty"] is not None  # the resumed epoch was revised
    # the record (every epoch's measures, the CAV's summary), compared as JSON values: equal
    assert again == whole
    # the CAV (fitted again after epoch 1 in the first part, restored from the checkpoint): bitwise
    assert torch.equal(resumed.cav.direction, clarc.cav.direction)
    assert resumed.cav.state() == clarc.cav.state()
    assert resumed.state_dict() == clarc.state_dict()  # RR-ClArC's generator state too
    assert resumed.state_dict()["random_state"] is not None  # (kept after fit, when the hook is gone)
    # the weights after epoch 2: bitwise
    first, second = weights(model), weights(resumed_model)
    assert sorted(first) == sorted(second)
    assert [name for name in first if not np.array_equal(first[name], second[name])] == []
