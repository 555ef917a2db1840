"""NaN in the inputs or outputs of explained samples (issue 14, item 9): the scalars leave such samples
out and count them, with a warning, instead of turning NaN or counting argmax(NaN) as class 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from callback_testing import TinyNet, images

from lrp_lightning import LRPCallback
from lrp_lightning.callbacks._explainer import STAT_FIELDS, BatchExplainer, scalars
from lrp_lightning.callbacks._training_state import untouched_training_state
from lrp_lightning.store import (
    NONFINITE_SAMPLES_TAG,
    POSITIVE_SHARE_TAG,
    PROBE_ACCURACY_TAG,
    RELEVANCE_ABS_MEAN_TAG,
    RELEVANCE_SUM_MEAN_TAG,
)

BOX = {"low": 0.0, "high": 1.5}  # the inputs lie in [0, 1]


def explain(model, x, y):
    composite = LRPCallback(num_samples=4, composite_kwargs=BOX).composite
    explainer = BatchExplainer(composite, "epsilon_gamma_box", "label", None, "LRPCallback")
    with untouched_training_state(model):
        (rows,) = explainer.run(model, [(np.arange(len(x)), x, y)])
    return rows


def test_samples_with_nan_inputs_are_left_out_of_the_scalars_and_counted(recwarn):
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = images(6)
    clean = scalars(explain(model, x[2:], y[2:]).stats)
    poisoned = x.clone()
    poisoned[0, 0, 0, 0] = float("nan")  # sample 0: NaN output (argmax would say class 0)
    poisoned[1, 0, 3, 3] = float("inf")
    y = y.clone()
    y[:2] = 0  # labelled class 0: counting argmax(NaN) == 0 as correct would raise the accuracy
    rows = explain(model, poisoned, y)
    assert dict(zip(STAT_FIELDS, rows.stats))["nonfinite"] == 2
    with pytest.warns(RuntimeWarning, match=r"2 probe sample\(s\) have NaN or infinite"):
        logged = scalars(rows.stats)
    for tag in (RELEVANCE_ABS_MEAN_TAG, POSITIVE_SHARE_TAG, RELEVANCE_SUM_MEAN_TAG, PROBE_ACCURACY_TAG):
        assert np.isfinite(logged[tag]), tag
        assert logged[tag] == pytest.approx(clean[tag], rel=1e-6), tag  # the four finite samples alone
    assert logged[NONFINITE_SAMPLES_TAG] == 2 and NONFINITE_SAMPLES_TAG not in clean
    assert np.isnan(rows.maps[0]).any()  # the maps are stored as computed
