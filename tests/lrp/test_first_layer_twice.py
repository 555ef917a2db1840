"""A layer used twice, once as the input layer (issue 14, item 9): the first-layer rule (ZBox) belongs to
its first call only; its later calls get the layer map's rule, as a separate layer with the same weights
would. Compared in float64 with that separate-layer model."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from lrp_lightning.attribution import explain
from lrp_lightning.composites import EpsilonGammaBox


class SharedConv(nn.Module):
    """The same convolution on the input and again on its own activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(x))
        hidden = torch.relu(self.conv(hidden))
        return self.head(hidden.flatten(1))


class SeparateConvs(nn.Module):
    """The same network with the second use as its own layer (a copy of the weights)."""

    def __init__(self, shared: SharedConv) -> None:
        super().__init__()
        self.conv = shared.conv
        self.inner = copy.deepcopy(shared.conv)
        self.head = shared.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(x))
        hidden = torch.relu(self.inner(hidden))
        return self.head(hidden.flatten(1))


def relevance(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    composite = EpsilonGammaBox(low=0.0, high=1.0, canonizers=None)
    return explain(model, x, target=[0, 1, 2], composite=composite).relevance


def test_a_layer_used_twice_gets_the_first_layer_rule_at_its_first_call_only():
    torch.manual_seed(0)
    shared = SharedConv().double()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    expected = relevance(SeparateConvs(shared), x)
    found = relevance(shared, x)
    torch.testing.assert_close(found, expected, rtol=1e-10, atol=1e-12)
    # and every forward pass starts anew: a second attribution gives the same relevance
    torch.testing.assert_close(relevance(shared, x), expected, rtol=1e-10, atol=1e-12)
