"""The weight cache of registered rules: how much it holds, and switching it off.

Rules keep what they derive from a layer's parameters alone (w+, w- for alpha-beta, batch-norm-merged
weights) while a composite is registered (:func:`lrp_lightning.core.derived_param`). Its size is bounded
here relative to the parameters, so that a rule caching more copies than it needs (the gamma rule once kept
w+, w-, w + g w+ and w + g w-: five copies of a ResNet's convolutions with the merged weights) fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from lrp_lightning import core
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite

#: most bytes the cache may hold per byte of convolution weights, per composite, for a network with batch
#: norm after each convolution: the merged weights (one copy) plus w+ (gamma, z+) or w+ and w- (alpha-beta)
CACHE_PER_CONV_BYTE = {"epsilon_gamma_box": 2.0, "epsilon_plus_flat": 2.0, "epsilon_alpha2_beta1": 3.0}


def _kwargs(name: str) -> dict:
    return {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}


def _conv_weight_bytes(model: nn.Module) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Conv2d))


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("name", list(CACHE_PER_CONV_BYTE))
def test_the_cache_holds_at_most_the_copies_a_rule_needs(name):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with Gradient(model, get_composite(name, canonizers="auto", **_kwargs(name))) as attributor:
        attributor(x, 3)
        cached = core.derived_bytes(model)
    conv = _conv_weight_bytes(model)
    # biases and the first layer's stacked weights (3 x 9408 values) are the small remainder
    slack = 4 * 3 * 64 * 3 * 7 * 7 + 4 * sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert cached <= CACHE_PER_CONV_BYTE[name] * conv + 2 * slack
    # the merged batch-norm weights are cached: at least one copy of the convolutions
    assert cached >= conv
    # relative to all parameters (the dense layer holds no derived copy with these composites)
    assert cached / _param_bytes(model) <= CACHE_PER_CONV_BYTE[name]
    assert core.derived_bytes(model) == 0  # released with the registration


def test_a_network_without_batch_norm_caches_only_w_plus_for_gamma():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 4),
    ).eval()
    with Gradient(model, get_composite("epsilon_gamma_box", low=-3.0, high=3.0)) as attributor:
        attributor(torch.randn(2, 3, 8, 8), 1)
        cached = core.derived_bytes(model)
    gamma_layers = [model[2], model[4]]  # the first layer has ZBox, the dense layer epsilon
    weights = sum(m.weight.numel() * 4 for m in gamma_layers)
    biases = sum(m.bias.numel() * 4 for m in gamma_layers)
    zbox_stacked = 3 * model[0].weight.numel() * 4
    assert cached == weights + biases + zbox_stacked  # w+ and b+ per gamma layer, [w, -w+, -w-] for ZBox


@pytest.mark.parametrize("name", list(CACHE_PER_CONV_BYTE))
def test_without_the_cache_nothing_is_kept_and_the_relevance_is_the_same(name):
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    ).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics that change the merged weights
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 8, 8)
    with Gradient(model, get_composite(name, canonizers="auto", **_kwargs(name))) as attributor:
        cached = attributor(x, [1, 4]).relevance
        with core.weight_cache(False):
            uncached = attributor(x, [1, 4]).relevance
            assert core.derived_bytes(model) == 0
        assert core.derived_bytes(model) == 0  # switching it off dropped what was kept
        again = attributor(x, [1, 4]).relevance
        assert core.derived_bytes(model) > 0
    assert cached.abs().sum() > 0
    assert torch.equal(uncached, cached)  # the same operations, only computed again
    assert torch.equal(again, cached)


def test_set_weight_cache_returns_the_previous_state_and_wants_a_bool():
    assert core.set_weight_cache(False) is True
    try:
        assert core.set_weight_cache(False) is False
    finally:
        core.set_weight_cache(True)
    with pytest.raises(ValueError, match=r"set_weight_cache: enabled must be True or False, got 'no'"):
        core.set_weight_cache("no")
    with pytest.raises(ValueError, match=r"set_compile_kernels: enabled must be True or False, got 1"):
        core.set_compile_kernels(1)
