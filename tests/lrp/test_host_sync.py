"""No host-device synchronisation in an attribution: rules never read a tensor's values on the host.

On a GPU every ``.item()``, ``bool(tensor)``, ``float(tensor)`` or ``.tolist()`` waits for the device. Here
(on the CPU) those methods are replaced by ones that fail while an attribution runs, so a rule that decides
something from the values (e.g. the sign of its input) fails the test. ``tests/gpu/test_gpu_sync.py`` checks
the same with ``torch.cuda.set_sync_debug_mode("error")`` on a CUDA device.

The sign of a layer's input is decided in the forward pass from the graph (a ReLU, pooling after a ReLU,
...), see :func:`lrp_lightning.core.known_non_negative`; the fast paths it enables give the same relevance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from lrp_testing import no_host_reads

from lrp_lightning import core
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.core import known_non_negative


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval().double()


@pytest.mark.parametrize("name", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_an_attribution_reads_no_values_on_the_host(name):
    model = _resnet()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
    target = torch.eye(10, dtype=torch.float64)[[1, 7]]
    with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
        expected = attributor(x, target).relevance
        with no_host_reads() as calls:
            relevance = attributor(x, target).relevance
            predicted = attributor(x, "prediction").relevance
    assert calls == []
    assert torch.equal(relevance, expected)
    assert relevance.abs().sum() > 0 and predicted.abs().sum() > 0


def test_the_patch_catches_a_sign_check_on_the_values():
    x = torch.randn(4)
    with no_host_reads() as calls, pytest.raises(AssertionError, match="__bool__"):
        bool(x.amin() >= 0)
    assert calls == ["__bool__"]


def test_the_sign_is_read_from_the_graph():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert not known_non_negative(x)  # a leaf: unknown
    assert known_non_negative(F.relu(x))
    assert known_non_negative(torch.flatten(F.max_pool2d(F.relu(x), 2), 1))
    assert known_non_negative(F.adaptive_avg_pool2d(torch.sigmoid(x), 1).view(2, -1))
    assert not known_non_negative(F.relu(x) - 1.0)
    assert not known_non_negative(F.relu(x) + x)
    changed = F.relu(x)
    changed.sub_(1.0)  # an in-place change after the ReLU is in the graph
    assert not known_non_negative(changed)
    assert not known_non_negative(F.max_pool2d(x, 2))


def test_fast_paths_run_exactly_where_the_input_is_known_non_negative(monkeypatch):
    # a ReLU module (with its rule), then max pooling and a flatten: the linear layer's input is known >= 0
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    seen: list[tuple[str, bool]] = []
    original = core._RuleFunction.backward

    def recording(ctx, grad_output):
        seen.append((type(ctx.module).__name__, ctx.input_non_negative))
        return original(ctx, grad_output)

    monkeypatch.setattr(core._RuleFunction, "backward", staticmethod(recording))
    composite = get_composite("epsilon_alpha2_beta1")
    with Gradient(model, composite) as attributor:
        relevance = attributor(x, torch.eye(3, dtype=torch.float64)[[0, 2]]).relevance
    linear = [known for kind, known in seen if kind in ("Linear", "Conv2d")]
    assert linear == [True, True, False]  # last layer first: both dense layers follow a ReLU, the conv the pixels
    # the same relevance as the declarative rules everywhere (the fast paths are rewrites, not approximations)
    monkeypatch.setattr(core._RuleFunction, "backward", staticmethod(original))
    monkeypatch.setattr(core, "known_non_negative", lambda tensor: False)
    with Gradient(model, composite) as attributor:
        reference = attributor(x, torch.eye(3, dtype=torch.float64)[[0, 2]]).relevance
    assert torch.allclose(relevance, reference, rtol=1e-10, atol=1e-12)
    assert reference.abs().sum() > 0
