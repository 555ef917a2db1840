"""No host-device synchronisation in an attribution on a CUDA device.

``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call (``.item()``, ``bool(tensor)``,
a blocking copy to the host, ``nonzero``...) into an error; an attribution with each LRP composite on a
registered ResNet and VGG runs under it. Skipped without CUDA; ``LRP_GPU_TESTS_ON_CPU=1`` runs the same
attributions on the CPU with host reads made to fail instead (as ``tests/lrp/test_host_sync.py`` does).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
import torchvision

from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lrp"))
from lrp_testing import no_host_reads  # noqa: E402

ON_CPU = os.environ.get("LRP_GPU_TESTS_ON_CPU") == "1"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (ON_CPU or torch.cuda.is_available()),
        reason="needs a CUDA device (LRP_GPU_TESTS_ON_CPU=1 runs the same checks on the CPU)",
    ),
]

DEVICE = torch.device("cpu" if ON_CPU else "cuda")


@contextmanager
def no_synchronisation():
    if DEVICE.type == "cpu":
        with no_host_reads() as calls:
            yield
        assert calls == []
        return
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.parametrize("model_name", ["resnet18", "vgg11"])
@pytest.mark.parametrize("name", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_an_attribution_on_the_device_never_waits_for_it(model_name, name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(num_classes=10).eval().to(DEVICE)
    x = torch.randn(2, 3, 64, 64, device=DEVICE)
    kwargs = {"low": torch.tensor([-3.0, -2.0, -2.5]), "high": 3.0} if name == "epsilon_gamma_box" else {}
    one_hot = torch.eye(10, device=DEVICE)[[3, 5]]
    with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
        expected = attributor(x, one_hot).relevance  # first call: bounds move to the device once
        with no_synchronisation():
            relevance = attributor(x, one_hot).relevance
            predicted = attributor(x, "prediction").relevance
        # class indices on the host are checked there, without waiting for the device (on the CPU that
        # check reads values on the host, which the CPU stand-in cannot tell from a device read)
        with no_synchronisation() if DEVICE.type == "cuda" else nullcontext():
            by_index = attributor(x, [3, 5]).relevance
    torch.testing.assert_close(relevance, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(by_index, expected, rtol=1e-4, atol=1e-6)
    assert predicted.shape == x.shape
    assert relevance.abs().sum().cpu() > 0
