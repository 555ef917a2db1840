"""Token runs on two CPU processes (DDP, gloo) store what a one-process run stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_tokens_run import VOCAB, TokenTransformer, explain_run

from lrp_lightning.store import RunStore

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.ddp


def _run_and_compare(root: Path, kind: str, samples: int) -> None:
    """Run ``kind`` on two ranks, then on one with the same weights; the stores must agree."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_tokens_run.py"), str(root), kind],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = TokenTransformer()
    model.load_state_dict(torch.load(root / "model.pt", weights_only=True))
    explain_run(root / "single", kind, model, devices=1)
    ddp, single = RunStore(root / "ddp"), RunStore(root / "single")
    assert ddp.modality == single.modality == "tokens"
    ((epoch, rows),) = [(info.epoch, info.rows) for info in ddp.epochs()]
    assert [(info.epoch, info.rows) for info in single.epochs()] == [(epoch, rows)] and rows == samples
    assert len(ddp.epoch_info(epoch).files) == 2  # each rank wrote its share
    ids, reference_ids = ddp.token_ids(), single.token_ids()
    assert sorted(ids) == sorted(reference_ids) and len(ids) == samples
    assert all(np.array_equal(ids[i], reference_ids[i]) for i in ids)
    assert 0 not in np.concatenate(list(ids.values()))  # padding removed
    tokens = ddp.tokens()
    assert tokens == single.tokens() and all(tokens[i] == [VOCAB[t] for t in ids[i]] for i in ids)
    relevance, reference = ddp.token_relevance(epoch), single.token_relevance(epoch)
    assert {i: r.size for i, r in relevance.items()} == {i: v.size for i, v in ids.items()}
    for i in ids:  # the ranks padded their batches to other widths: equal up to rounding
        np.testing.assert_allclose(relevance[i], reference[i], rtol=1e-4, atol=1e-6)
        assert np.abs(reference[i]).sum() > 0


def test_lrp_callback_token_run_matches_a_single_process(tmp_path):
    _run_and_compare(tmp_path, "validate", 11)


def test_prediction_writer_token_run_matches_a_single_process(tmp_path):
    _run_and_compare(tmp_path, "predict", 13)
