"""Fast paths of the rules (lrp_lightning.rules) against their declarative definition."""

import pytest
import torch
import torch.nn as nn

from lrp_lightning.core import Stabilizer, non_negative_input
from lrp_lightning.rules import AlphaBeta, Epsilon, Gamma, Norm, ZPlus

FAST_LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (3, 6)),
    "conv2d": (lambda: nn.Conv2d(2, 4, 3, padding=1), (2, 2, 5, 5)),
    "conv2d-groups": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2), (2, 4, 5, 5)),
    "conv1d-stride": (lambda: nn.Conv1d(2, 3, 3, stride=2), (2, 2, 9)),
    "convtranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), (2, 2, 4, 4)),
}


def _fast_layer(layer_name: str, bias: bool) -> tuple[nn.Module, tuple[int, ...]]:
    """A float64 layer of FAST_LAYERS with biases of both signs (or none), and its input shape."""
    factory, shape = FAST_LAYERS[layer_name]
    layer = factory().double()
    if not bias:
        layer.bias = None
    elif layer.bias is not None:
        with torch.no_grad():
            layer.bias.copy_(torch.linspace(-0.5, 0.5, layer.bias.numel()))
    return layer, shape


@pytest.mark.parametrize("layer_name", list(FAST_LAYERS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "rule",
    [Gamma(0.25), Gamma(1.0, zero_params="bias"), ZPlus(), ZPlus(zero_params="bias"), AlphaBeta(2, 1), AlphaBeta(1, 0)],
    ids=["gamma", "gamma-nobias", "zplus", "zplus-nobias", "alpha2beta1", "alpha1beta0"],
)
def test_fast_paths_for_non_negative_inputs_equal_the_rule_definition(layer_name, bias, rule):
    from lrp_lightning.core import BasicHook

    torch.manual_seed(3)
    layer, shape = _fast_layer(layer_name, bias)
    x = torch.randn(*shape, dtype=torch.float64).clamp(min=0)  # after a ReLU: the fast path applies
    grad_output = torch.randn_like(layer(x))
    with torch.no_grad(), non_negative_input():  # as the engine says for a layer after a ReLU
        fast = rule.backward(layer, x, grad_output)
    reference = BasicHook.backward(rule, layer, x, grad_output)  # the declarative terms, one by one
    assert torch.allclose(fast, reference, rtol=1e-10, atol=1e-12 * reference.abs().max().item())
    assert reference.abs().max() > 0
    with torch.no_grad(), non_negative_input():  # the fast path ran: on inputs of both signs it would drop the x- terms
        mixed = torch.randn_like(x)
        assert not torch.allclose(
            rule.backward(layer, mixed, grad_output), BasicHook.backward(rule, layer, mixed, grad_output)
        )
    if rule.needs_output:  # the path that reuses the layer's output z
        with torch.no_grad(), non_negative_input():
            with_output = rule.backward(layer, x, grad_output, output=layer(x).detach())
        assert torch.allclose(with_output, reference, rtol=1e-9, atol=1e-11 * reference.abs().max().item())


@pytest.mark.parametrize("layer_name", list(FAST_LAYERS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "rule",
    [ZPlus(), ZPlus(zero_params="bias"), AlphaBeta(2, 1), AlphaBeta(1, 0), AlphaBeta(2, 1, zero_params="bias")],
    ids=["zplus", "zplus-nobias", "alpha2beta1", "alpha1beta0", "alpha2beta1-nobias"],
)
def test_stacked_path_for_mixed_sign_inputs_equals_the_rule_definition(layer_name, bias, rule):
    from lrp_lightning.core import BasicHook

    torch.manual_seed(9)
    layer, shape = _fast_layer(layer_name, bias)
    x = torch.randn(*shape, dtype=torch.float64)  # pixels: both signs
    x[0, 0] = 0.0  # exact zeros in the input
    grad_output = torch.randn_like(layer(x))
    fast = rule.backward(layer, x, grad_output)
    reference = BasicHook.backward(rule, layer, x, grad_output)  # the four declarative terms, one by one
    assert torch.allclose(fast, reference, rtol=1e-10, atol=1e-12 * reference.abs().max().item())
    assert reference.abs().max() > 0


@pytest.mark.parametrize("layer_name", list(FAST_LAYERS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "rule",
    [
        Gamma(0.25, stabilizer=Stabilizer(1e-3, clip=True)),
        ZPlus(stabilizer=lambda z: z + 1e-3),
        AlphaBeta(2, 1, stabilizer=Stabilizer(1e-2, norm_scale=True)),
        Epsilon(0.1),
        Epsilon(lambda z: z + 0.1 * z.sign()),
        Epsilon(0.1, zero_params="bias"),
    ],
    ids=["gamma-clip", "zplus-callable", "alpha2beta1-normscale", "epsilon", "epsilon-callable", "epsilon-nobias"],
)
def test_fast_paths_with_other_stabilizers_and_output_reuse(layer_name, bias, rule):
    from lrp_lightning.core import BasicHook

    torch.manual_seed(5)
    factory, shape = FAST_LAYERS[layer_name]
    layer = factory().double()
    if not bias:
        layer.bias = None
    x = torch.randn(*shape, dtype=torch.float64)
    if not isinstance(rule, Epsilon):
        x = x.clamp(min=0)
    output = layer(x).detach()
    kept = output.clone()
    grad_output = torch.randn_like(output)
    reference = BasicHook.backward(rule, layer, x, grad_output)
    with torch.no_grad(), non_negative_input(not isinstance(rule, Epsilon)):
        if rule.needs_output:
            fast = rule.backward(layer, x, grad_output, output=output)
        else:
            fast = rule.backward(layer, x, grad_output)
    assert torch.allclose(fast, reference, rtol=1e-9, atol=1e-11 * reference.abs().max().item())
    assert reference.abs().max() > 0
    assert torch.equal(output, kept)  # the layer's output (the next layer's input) is never written into


@pytest.mark.parametrize("with_output", [True, False])
def test_norm_on_a_residual_sum_splits_relevance_by_contribution(with_output):
    from lrp_lightning.core import BasicHook
    from lrp_lightning.layer import Sum

    torch.manual_seed(6)
    stacked = torch.randn(2, 3, 4, 4, 2, dtype=torch.float64)
    total = Sum()(stacked)
    assert torch.equal(total, stacked.sum(-1))
    kept = total.clone()
    relevance = torch.randn_like(total)
    rule = Norm(stabilizer=1e-6)
    fast = rule.backward(Sum(), stacked, relevance, output=total if with_output else None)
    expected = stacked * (relevance / (total + 1e-6 * total.sign())).unsqueeze(-1)
    assert torch.allclose(fast, expected, rtol=1e-12)
    assert torch.allclose(fast, BasicHook.backward(rule, Sum(), stacked, relevance), rtol=1e-12)
    away = total.abs() > 1e-2  # conserved, except where epsilon absorbs relevance of a near-zero sum
    assert torch.allclose(fast.sum(-1)[away], relevance[away], rtol=1e-4)
    assert torch.equal(total, kept)
    three = torch.randn(2, 5, 3, dtype=torch.float64)  # more than two summands: the reduction
    assert torch.allclose(Sum()(three), three.sum(-1))
