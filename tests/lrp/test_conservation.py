"""The conservation guard: one warning when relevance is lost or created where every rule conserves it."""

import warnings

import pytest
import torch
import torch.nn as nn

from lrp_lightning._conservation import composite_conserves, rule_conserves
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.rules import AlphaBeta, Epsilon, Gamma, ReLUGuidedBackprop

D = torch.float64


class _FunctionalSum(nn.Module):
    """Pools tokens with a functional sum: each token receives the whole relevance."""

    def __init__(self, bias=False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 4, bias=bias)
        self.head = nn.Linear(4, 3, bias=bias)

    def forward(self, x):
        return self.head(self.embed(x).sum(1))


class _FunctionalResidual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.head(x + self.inner(x))


@pytest.mark.parametrize("model_type", [_FunctionalSum, _FunctionalResidual])
def test_guard_warns_once_naming_the_likely_cause(model_type):
    model = model_type().double()
    x = torch.randn(2, 5, 4, dtype=D) if model_type is _FunctionalSum else torch.randn(2, 4, dtype=D)
    attributor = Gradient(model, get_composite("epsilon_plus", epsilon=1e-9))
    with pytest.warns(UserWarning, match=r"differs from the target's by .*x\.sum\(1\).*F\.softmax.*Sum module"):
        _, relevance = attributor(x, 0)
    assert abs(relevance.sum().item() - 2.0) > 0.1  # the relevance that set it off
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attributor(x, 1)  # once per model


def test_guard_is_silent_where_relevance_is_conserved_or_rules_do_not_conserve():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # biases absorb relevance: the rules do not conserve, the guard says nothing
        Gradient(_FunctionalSum(bias=True).double(), get_composite("epsilon_plus"))(torch.randn(2, 5, 4, dtype=D), 0)
        # a canonized, bias-free transformer conserves
        layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True, bias=False)
        model = nn.Sequential(layer, nn.Flatten(), nn.Linear(12, 2, bias=False)).double().eval()
        _, relevance = Gradient(model, get_composite("cp_lrp", epsilon=1e-12, stabilizer=1e-12))(
            torch.randn(2, 3, 4, dtype=D), 1
        )
    torch.testing.assert_close(relevance.sum((1, 2)), torch.ones(2, dtype=D), rtol=1e-6, atol=1e-6)


def test_rule_conservation_table():
    biased, unbiased = nn.Linear(2, 2), nn.Linear(2, 2, bias=False)
    assert rule_conserves(Epsilon(), unbiased) and not rule_conserves(Epsilon(), biased)
    assert rule_conserves(Epsilon(zero_params="bias"), biased)
    assert not rule_conserves(Epsilon(epsilon=0.25), unbiased)  # a large epsilon absorbs relevance
    assert not rule_conserves(Gamma(), unbiased) and not rule_conserves(AlphaBeta(alpha=2, beta=1), unbiased)
    assert not rule_conserves(ReLUGuidedBackprop(), nn.ReLU())
    composite = get_composite("epsilon_plus")  # ZPlus on convolutions: a dense model conserves
    model = nn.Sequential(unbiased, nn.ReLU(), nn.Linear(2, 1, bias=False))
    with composite.context(model):
        assert composite_conserves(composite, model)
    other = nn.Sequential(biased)
    with composite.context(other):  # a new registration: not the cached answer of the first model
        assert not composite_conserves(composite, other)
