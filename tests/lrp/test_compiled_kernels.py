"""Optional torch.compile of the rules' element-wise kernels: the same relevance, compiled or not."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lrp_lightning import core, rules
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 5),
    ).eval()


def test_compilation_is_off_unless_asked():
    assert core.set_compile_kernels(False) is False  # the default (LRP_LIGHTNING_COMPILE unset in the tests)
    with core.compile_kernels():
        assert core.set_compile_kernels(True) is True
    assert core.set_compile_kernels(False) is False


@pytest.mark.slow  # compiling takes tens of seconds on the CPU
@pytest.mark.parametrize("name", ["epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_compiled_kernels_give_the_uncompiled_relevance(name):
    model = _model()
    kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
    with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
        for batch in (3, 5):  # a second input shape: dynamic shapes, no failure on a new shape
            x = torch.randn(batch, 3, 8, 8)
            target = torch.eye(5)[torch.arange(batch) % 5]
            plain = attributor(x, target).relevance
            with core.compile_kernels(True):
                compiled = attributor(x, target).relevance
            assert plain.abs().sum() > 0
            torch.testing.assert_close(compiled, plain, rtol=1e-5, atol=1e-6 * plain.abs().max().item())
    kernel = rules._gamma_shares if name == "epsilon_gamma_box" else rules._shifted_share
    assert callable(kernel.compiled)  # compiled, not fallen back to the plain kernel (False) or never run (None)
