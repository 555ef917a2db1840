"""Float64 oracles for every rule of :mod:`lrp_lightning.rules`.

Each oracle is the rule's formula from the LRP papers (with Zennit 0.5.1's conventions) written out on an
explicit dense matrix: a layer ``z = W x + b`` is turned into its matrix ``W`` (out_features x
in_features, spatial dimensions flattened) and bias vector ``b`` by probing it with unit basis vectors,
and relevance is redistributed through an explicit ``(batch, out, in)`` tensor of contributions::

    R_i = sum_j contribution_ji * R_j / stab(denominator_j)

The oracles never call the engine (nor Zennit); the engine's result must match them to a relative
tolerance of 1e-8.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lrp_lightning import rules
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import LayerMapComposite
from lrp_lightning.core import Stabilizer

Tensor = torch.Tensor

RTOL = 1e-8
BATCH = 2
DEFAULT_EPSILON = 1e-6


# --------------------------------------------------------------------------------------------------------
# helpers: the engine, the dense matrix of a layer, the stabilizer
# --------------------------------------------------------------------------------------------------------


def engine_relevance(
    model: nn.Module, rule, x: Tensor, relevance_out: Tensor, types: type | tuple = nn.Module
) -> tuple[Tensor, Tensor]:
    """Output and input relevance of ``model`` with ``rule`` on every module of ``types``."""
    composite = LayerMapComposite([(types, rule)])
    with Gradient(model=model, composite=composite) as attributor:
        output, relevance = attributor(x, relevance_out)
    return output, relevance


def assert_close(ours: Tensor, oracle: Tensor) -> None:
    """``max|ours - oracle| <= RTOL * max|oracle|``, for a non-trivial oracle."""
    assert ours.shape == oracle.shape
    assert ours.dtype == torch.float64
    scale = oracle.abs().max().item()
    assert scale > 0.0, "degenerate oracle: the test would not see a wrong result"
    error = (ours - oracle).abs().max().item()
    assert error <= RTOL * scale, f"max abs error {error:.3e} > {RTOL:.0e} * max|oracle| = {RTOL * scale:.3e}"


@dataclass
class DenseLayer:
    """A layer written as ``z = x @ weight.T + bias`` on flattened samples."""

    weight: Tensor  # (out_features, in_features)
    bias: Tensor  # (out_features,), zeros without bias
    connected: Tensor  # (out_features, in_features), 1 where input i feeds output j
    out_shape: tuple[int, ...]  # per sample


def _probe(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
    """Dense matrix of a bias-free linear ``layer``: column i is the response to the i-th unit vector."""
    in_features = int(torch.Size(in_shape).numel())
    basis = torch.eye(in_features, dtype=torch.float64).reshape(in_features, *in_shape)
    with torch.no_grad():
        response = layer(basis)
    return response.reshape(in_features, -1).T.clone(), tuple(response.shape[1:])


def dense(layer: nn.Module, in_shape: tuple[int, ...]) -> DenseLayer:
    """Probe ``layer`` (affine or linear) in float64 for its matrix, bias and connectivity."""
    without_bias = copy.deepcopy(layer)
    if getattr(without_bias, "bias", None) is not None:
        without_bias.bias = None
    weight, out_shape = _probe(without_bias, in_shape)
    with torch.no_grad():
        bias = layer(torch.zeros(1, *in_shape, dtype=torch.float64)).reshape(-1).clone()
    if getattr(without_bias, "weight", None) is not None:
        with torch.no_grad():
            without_bias.weight.fill_(1.0)
        connected, _ = _probe(without_bias, in_shape)
        # each (output, input) pair meets at most one kernel element in these layers
        assert set(connected.unique().tolist()) <= {0.0, 1.0}
    else:
        connected = (weight != 0).to(weight)
    return DenseLayer(weight, bias, connected, out_shape)


def stab(d: Tensor, epsilon: float = DEFAULT_EPSILON, clip: bool = False, norm_scale: bool = False) -> Tensor:
    """Stabilized denominator of shape (batch, out_features): shift (or clip) away from 0, sign(0) = +1."""
    sign = torch.where(d >= 0, 1.0, -1.0).to(d)
    if norm_scale:
        epsilon = epsilon * d.pow(2).mean(dim=1, keepdim=True).sqrt()
    if clip:
        return sign * torch.maximum(d.abs(), torch.as_tensor(epsilon, dtype=d.dtype))
    return d + sign * epsilon


def redistribute(contribution: Tensor, denominator: Tensor, relevance: Tensor, **stab_kwargs) -> Tensor:
    """``R_i = sum_j contribution[n, j, i] * R[n, j] / stab(denominator[n, j])``."""
    return torch.einsum("nji,nj->ni", contribution, relevance / stab(denominator, **stab_kwargs))


def pos(t: Tensor) -> Tensor:
    return t.clamp(min=0.0)


def neg(t: Tensor) -> Tensor:
    return t.clamp(max=0.0)


def outer(x: Tensor, w: Tensor) -> Tensor:
    """Contributions ``x_i * w_ji`` of shape (batch, out, in)."""
    return x[:, None, :] * w[None, :, :]


# --------------------------------------------------------------------------------------------------------
# the oracles: (x, R_out, dense layer) -> R_in, all flattened per sample
# --------------------------------------------------------------------------------------------------------

Oracle = Callable[[Tensor, Tensor, DenseLayer], Tensor]


def oracle_epsilon(epsilon: float = DEFAULT_EPSILON, zero_bias: bool = False, **stab_kwargs) -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        bias = torch.zeros_like(layer.bias) if zero_bias else layer.bias
        contribution = outer(x, layer.weight)
        z = contribution.sum(-1) + bias
        return redistribute(contribution, z, relevance, epsilon=epsilon, **stab_kwargs)

    return oracle


def oracle_zplus() -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        w, b = layer.weight, layer.bias
        contribution = outer(pos(x), pos(w)) + outer(neg(x), neg(w))
        return redistribute(contribution, contribution.sum(-1) + pos(b), relevance)

    return oracle


def oracle_alpha_beta(alpha: float, beta: float) -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        w, b = layer.weight, layer.bias
        positive = outer(pos(x), pos(w)) + outer(neg(x), neg(w))
        negative = outer(pos(x), neg(w)) + outer(neg(x), pos(w))
        return alpha * redistribute(positive, positive.sum(-1) + pos(b), relevance) - beta * redistribute(
            negative, negative.sum(-1) + neg(b), relevance
        )

    return oracle


def oracle_gamma(gamma: float) -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        w, b = layer.weight, layer.bias
        w_up, w_down = w + gamma * pos(w), w + gamma * neg(w)
        b_up, b_down = b + gamma * pos(b), b + gamma * neg(b)
        z = outer(x, w).sum(-1) + b
        positive = outer(pos(x), w_up) + outer(neg(x), w_down)
        negative = outer(pos(x), w_down) + outer(neg(x), w_up)
        return redistribute(positive, positive.sum(-1) + b_up, relevance * (z > 0)) + redistribute(
            negative, negative.sum(-1) + b_down, relevance * (z < 0)
        )

    return oracle


def oracle_zbox(low: Tensor | float | None, high: Tensor | float | None) -> Oracle:
    """``low``/``high`` broadcast to one sample's shape (or ``None``: the sample's own min / max)."""

    def bound(value, x: Tensor, extreme: Callable) -> Tensor:
        if value is None:
            return extreme(x, dim=1, keepdim=True).expand_as(x)
        return torch.as_tensor(value, dtype=x.dtype).expand_as(x)

    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        w, b = layer.weight, layer.bias
        lo, hi = bound(low, x, torch.amin), bound(high, x, torch.amax)
        contribution = outer(x, w) - outer(lo, pos(w)) - outer(hi, neg(w))
        z = outer(x, w).sum(-1) + b
        denominator = z - (outer(lo, pos(w)).sum(-1) + pos(b)) - (outer(hi, neg(w)).sum(-1) + neg(b))
        return redistribute(contribution, denominator, relevance)

    return oracle


def oracle_wsquare() -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        contribution = (layer.weight**2).expand(x.shape[0], -1, -1)
        return redistribute(contribution, contribution.sum(-1) + layer.bias**2, relevance)

    return oracle


def oracle_flat() -> Oracle:
    def oracle(x: Tensor, relevance: Tensor, layer: DenseLayer) -> Tensor:
        contribution = layer.connected.expand(x.shape[0], -1, -1)
        return redistribute(contribution, contribution.sum(-1), relevance)

    return oracle


# --------------------------------------------------------------------------------------------------------
# layers x bias x rules
# --------------------------------------------------------------------------------------------------------

# name -> (factory(bias) -> layer, per-sample input shape)
LAYERS: dict[str, tuple[Callable[[bool], nn.Module], tuple[int, ...]]] = {
    "linear": (lambda bias: nn.Linear(6, 4, bias=bias), (6,)),
    "conv1d-stride2-pad1": (lambda bias: nn.Conv1d(2, 3, 3, stride=2, padding=1, bias=bias), (2, 7)),
    "conv2d-pad1": (lambda bias: nn.Conv2d(2, 3, 3, padding=1, bias=bias), (2, 5, 5)),
    "conv2d-stride-pad-rect": (
        lambda bias: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), bias=bias),
        (2, 5, 4),
    ),
    "conv2d-groups-dilation": (lambda bias: nn.Conv2d(4, 4, 2, dilation=2, groups=2, bias=bias), (4, 4, 4)),
    "conv3d-pad1": (lambda bias: nn.Conv3d(2, 2, 2, padding=1, bias=bias), (2, 3, 3, 3)),
    "convtranspose1d-stride2": (
        lambda bias: nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, bias=bias),
        (2, 4),
    ),
    "convtranspose2d-stride2": (
        lambda bias: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, bias=bias),
        (2, 3, 3),
    ),
    "convtranspose2d": (lambda bias: nn.ConvTranspose2d(2, 2, 2, bias=bias), (2, 3, 3)),
}


def channel_bounds(in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Per-channel (per-feature for a flat input) ``low < 0 < high`` of shape (1, C, 1, ...)."""
    channels = in_shape[0]
    generator = torch.Generator().manual_seed(7)
    low = -0.5 - torch.rand(channels, generator=generator, dtype=torch.float64)
    high = 0.5 + torch.rand(channels, generator=generator, dtype=torch.float64)
    shape = (1, channels) + (1,) * (len(in_shape) - 1)
    return low.reshape(shape), high.reshape(shape)


def flat_bound(bound: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """A (1, C, 1, ...) bound as one flattened sample of shape (1, in_features)."""
    return bound.expand(1, *in_shape).reshape(1, -1)


# name -> factory(in_shape) -> (rule, oracle, input range or None); with a range, x is drawn inside it
RULES: dict[str, Callable] = {
    "epsilon": lambda s: (rules.Epsilon(), oracle_epsilon(), None),
    "epsilon-0": lambda s: (rules.Epsilon(epsilon=0.0), oracle_epsilon(0.0), None),
    "epsilon-0.25": lambda s: (rules.Epsilon(epsilon=0.25), oracle_epsilon(0.25), None),
    "epsilon-zero-bias": lambda s: (rules.Epsilon(zero_params="bias"), oracle_epsilon(zero_bias=True), None),
    "zplus": lambda s: (rules.ZPlus(), oracle_zplus(), None),
    "alphabeta-2-1": lambda s: (rules.AlphaBeta(2.0, 1.0), oracle_alpha_beta(2.0, 1.0), None),
    "alphabeta-1-0": lambda s: (rules.AlphaBeta(1.0, 0.0), oracle_alpha_beta(1.0, 0.0), None),
    "gamma-0.25": lambda s: (rules.Gamma(0.25), oracle_gamma(0.25), None),
    "gamma-1": lambda s: (rules.Gamma(gamma=1.0), oracle_gamma(1.0), None),
    "zbox-scalar": lambda s: (rules.ZBox(-1.5, 2.0), oracle_zbox(-1.5, 2.0), (-1.5, 2.0)),
    "zbox-channel": lambda s: _zbox_channel(s),
    "zbox-sample-range": lambda s: (rules.ZBox(None, None), oracle_zbox(None, None), None),
    "wsquare": lambda s: (rules.WSquare(), oracle_wsquare(), None),
    "flat": lambda s: (rules.Flat(), oracle_flat(), None),
}


def _zbox_channel(in_shape: tuple[int, ...]):
    low, high = channel_bounds(in_shape)
    oracle = oracle_zbox(flat_bound(low, in_shape), flat_bound(high, in_shape))
    return rules.ZBox(low, high), oracle, (low, high)


def make_case(layer_name: str, bias: bool, seed: int = 0):
    """A float64 layer with random parameters, an input batch and an output relevance."""
    factory, in_shape = LAYERS[layer_name]
    torch.manual_seed(seed)
    layer = factory(bias).double()
    if bias:  # PyTorch's default bias is small next to the weights; make it matter, with both signs
        with torch.no_grad():
            signs = torch.ones_like(layer.bias)
            signs[1::2] = -1.0
            layer.bias.copy_(signs * (0.2 + torch.rand_like(layer.bias)))
    x = torch.randn(BATCH, *in_shape, dtype=torch.float64)
    return layer, x, in_shape


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
def test_rule_matches_matrix_oracle(layer_name: str, bias: bool, rule_name: str) -> None:
    layer, x, in_shape = make_case(layer_name, bias)
    rule, oracle, input_range = RULES[rule_name](in_shape)
    if input_range is not None:
        low, high = input_range
        x = low + (high - low) * torch.rand_like(x)
    matrix = dense(layer, in_shape)
    relevance_out = torch.randn(BATCH, *matrix.out_shape, dtype=torch.float64)

    output, relevance = engine_relevance(layer, rule, x, relevance_out)

    with torch.no_grad():
        assert torch.equal(output, layer(x))
    expected = oracle(x.reshape(BATCH, -1), relevance_out.reshape(BATCH, -1), matrix)
    assert_close(relevance, expected.reshape(x.shape))


def test_dense_probe_reproduces_layer() -> None:
    """The oracles' matrix view of a layer is the layer (guards every other test in this file)."""
    for name in LAYERS:
        for bias in (True, False):
            layer, x, in_shape = make_case(name, bias)
            matrix = dense(layer, in_shape)
            with torch.no_grad():
                expected = layer(x).reshape(BATCH, -1)
            assert_close(x.reshape(BATCH, -1) @ matrix.weight.T + matrix.bias, expected)
            # every output sees at least one input, and the pattern covers every non-zero weight
            assert matrix.connected.sum(-1).min() >= 1
            assert torch.all(matrix.connected[matrix.weight != 0] == 1)


def test_flat_receptive_field_counts_padding_out() -> None:
    """Flat divides by the number of real (not padded) inputs: 4 at a corner of a 3x3/pad-1 conv."""
    layer = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    relevance_out = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    relevance_out[0, 0, 0, 0] = 1.0
    _, relevance = engine_relevance(layer, rules.Flat(), x, relevance_out)
    expected = torch.zeros_like(x)
    expected[0, 0, :2, :2] = 1.0 / (4.0 + DEFAULT_EPSILON)
    assert_close(relevance, expected)


def test_gamma_gives_nothing_to_zero_outputs() -> None:
    """Output 0 has z = 0 exactly but a non-zero gamma-modified share: it must pass no relevance."""
    layer = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5]], dtype=torch.float64))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    relevance_out = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    output, relevance = engine_relevance(layer, rules.Gamma(0.5), x, relevance_out)
    assert output[0, 0].item() == 0.0
    expected = oracle_gamma(0.5)(x, relevance_out, dense(layer, (2,)))
    assert_close(relevance, expected)
    # only output 1 (z = 2.5 > 0) counts: shares 1 * 3 and 1 * 0.75 of 3.75
    torch.testing.assert_close(relevance, torch.tensor([[0.8, 0.2]], dtype=torch.float64) * 3.75 / (3.75 + 1e-6))


@pytest.mark.parametrize("batch", [3, 2], ids=["batch-3", "batch-equals-channels"])
def test_zbox_per_channel_vector_bounds(batch: int) -> None:
    """Bounds of shape (C,) are per channel, like (1, C, 1, 1), whatever the batch size."""
    layer, _, in_shape = make_case("conv2d-pad1", True)
    low, high = channel_bounds(in_shape)
    x = low + (high - low) * torch.rand(batch, *in_shape, dtype=torch.float64)
    matrix = dense(layer, in_shape)
    relevance_out = torch.randn(batch, *matrix.out_shape, dtype=torch.float64)
    _, relevance = engine_relevance(layer, rules.ZBox(low.reshape(-1), high.reshape(-1)), x, relevance_out)
    oracle = oracle_zbox(flat_bound(low, in_shape), flat_bound(high, in_shape))
    expected = oracle(x.reshape(batch, -1), relevance_out.reshape(batch, -1), matrix)
    assert_close(relevance, expected.reshape(x.shape))


# --------------------------------------------------------------------------------------------------------
# stabilizers
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clip, norm_scale", [(True, False), (False, True), (True, True)], ids=["clip", "norm-scale", "both"]
)
@pytest.mark.parametrize("layer_name", ["linear", "conv2d-pad1", "convtranspose2d-stride2"])
def test_epsilon_with_custom_stabilizer(layer_name: str, clip: bool, norm_scale: bool) -> None:
    layer, x, in_shape = make_case(layer_name, True, seed=3)
    matrix = dense(layer, in_shape)
    relevance_out = torch.randn(BATCH, *matrix.out_shape, dtype=torch.float64)
    stabilizer = Stabilizer(epsilon=0.1, clip=clip, norm_scale=norm_scale)

    _, relevance = engine_relevance(layer, rules.Epsilon(epsilon=stabilizer), x, relevance_out)

    oracle = oracle_epsilon(0.1, clip=clip, norm_scale=norm_scale)
    expected = oracle(x.reshape(BATCH, -1), relevance_out.reshape(BATCH, -1), matrix)
    assert_close(relevance, expected.reshape(x.shape))
    # the stabilizer must make a difference the test can see
    plain = oracle_epsilon(0.1)(x.reshape(BATCH, -1), relevance_out.reshape(BATCH, -1), matrix)
    assert (plain - expected).abs().max() > 1e-4 * expected.abs().max()


def test_clip_stabilizer_keeps_sign_and_clips_zero_up() -> None:
    """Clipping: z = 0 -> +eps, z = -0.01 -> -eps, |z| >= eps unchanged."""
    layer = nn.Linear(1, 4).double()
    with torch.no_grad():
        layer.weight.copy_(torch.ones(4, 1, dtype=torch.float64))
        layer.bias.copy_(torch.tensor([-1.0, -0.99, -1.01, 0.0], dtype=torch.float64))
    x = torch.ones(1, 1, dtype=torch.float64)
    relevance_out = torch.ones(1, 4, dtype=torch.float64)
    stabilizer = Stabilizer(epsilon=0.1, clip=True)
    output, relevance = engine_relevance(layer, rules.Epsilon(epsilon=stabilizer), x, relevance_out)
    z = output[0]
    assert z[0].item() == 0.0
    expected = 1.0 / 0.1 + 1.0 / 0.1 + 1.0 / -0.1 + 1.0 / 1.0
    assert_close(relevance, torch.tensor([[expected]], dtype=torch.float64))


# --------------------------------------------------------------------------------------------------------
# Norm on pooling layers (no parameters)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pool, in_shape",
    [
        (nn.AvgPool2d(2), (2, 4, 4)),
        (nn.AvgPool2d(3, stride=2, padding=1), (2, 5, 5)),
        (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 5, 5)),
        (nn.AdaptiveAvgPool2d((3, 2)), (2, 5, 4)),
        (nn.AdaptiveAvgPool2d(1), (2, 3, 3)),
    ],
    ids=["avg2", "avg3-stride2-pad1", "avg3-no-count-pad", "adaptive-3x2", "adaptive-1"],
)
@pytest.mark.parametrize("positive", [True, False], ids=["x>0", "x-mixed"])
def test_norm_on_pooling(pool: nn.Module, in_shape: tuple[int, ...], positive: bool) -> None:
    torch.manual_seed(1)
    x = torch.randn(BATCH, *in_shape, dtype=torch.float64)
    if positive:
        x = x.abs()
    matrix = dense(pool, in_shape)
    relevance_out = torch.randn(BATCH, *matrix.out_shape, dtype=torch.float64)

    _, relevance = engine_relevance(pool, rules.Norm(), x, relevance_out)

    # R_i = x_i * sum_j dz_j/dx_i * R_j / stab(z_j), with dz_j/dx_i the pooling matrix
    expected = oracle_epsilon()(x.reshape(BATCH, -1), relevance_out.reshape(BATCH, -1), matrix)
    assert_close(relevance, expected.reshape(x.shape))
    if positive:  # conservation for positive inputs, up to the stabilizer
        torch.testing.assert_close(relevance.sum((1, 2, 3)), relevance_out.sum((1, 2, 3)), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------------
# element-wise rules
# --------------------------------------------------------------------------------------------------------


def batch_norm_eval() -> nn.Module:
    torch.manual_seed(2)
    layer = nn.BatchNorm2d(3).double().eval()
    with torch.no_grad():
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.2, 2.0)
        layer.weight.normal_()
        layer.bias.normal_()
    return layer


ELEMENTWISE: dict[str, tuple[Callable[[], object], Callable[[Tensor, Tensor], Tensor]]] = {
    "pass": (rules.Pass, lambda x, r: r),
    "deconvnet": (rules.ReLUDeconvNet, lambda x, r: torch.maximum(r, torch.zeros_like(r))),
    "guided-backprop": (rules.ReLUGuidedBackprop, lambda x, r: r * (x > 0) * (r > 0)),
    "beta-smooth-10": (rules.ReLUBetaSmooth, lambda x, r: torch.sigmoid(10.0 * x) * r),
    "beta-smooth-2": (lambda: rules.ReLUBetaSmooth(beta_smooth=2.0), lambda x, r: torch.sigmoid(2.0 * x) * r),
}


@pytest.mark.parametrize(
    "layer_factory, rule_name",
    [(nn.ReLU, name) for name in ELEMENTWISE] + [(batch_norm_eval, "pass")],
    ids=[f"relu-{name}" for name in ELEMENTWISE] + ["batchnorm2d-eval-pass"],
)
def test_elementwise_rules(layer_factory: Callable[[], nn.Module], rule_name: str) -> None:
    make_rule, oracle = ELEMENTWISE[rule_name]
    layer = layer_factory()
    torch.manual_seed(4)
    x = torch.randn(BATCH, 3, 4, 4, dtype=torch.float64)
    relevance_out = torch.randn(BATCH, 3, 4, 4, dtype=torch.float64)
    _, relevance = engine_relevance(layer, make_rule(), x, relevance_out)
    expected = oracle(x, relevance_out)
    assert_close(relevance, expected)
    # the plain gradient differs, so the rule is what made the result
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(layer(leaf), leaf, relevance_out)
    assert (gradient - expected).abs().max() > 1e-3


@pytest.mark.parametrize("beta_smooth", [1.0, 10.0])
def test_beta_smooth_uses_input_before_inplace_relu(beta_smooth: float) -> None:
    """With ``ReLU(inplace=True)`` the rule must see the ReLU's input, not its overwritten output."""
    torch.manual_seed(5)
    linear = nn.Linear(5, 6).double()
    model = nn.Sequential(linear, nn.ReLU(inplace=True))
    x = torch.randn(BATCH, 5, dtype=torch.float64)
    relevance_out = torch.randn(BATCH, 6, dtype=torch.float64)
    with torch.no_grad():
        pre_activation = linear(x)
    assert (pre_activation < 0).any()

    output, relevance = engine_relevance(
        model, rules.ReLUBetaSmooth(beta_smooth=beta_smooth), x, relevance_out, types=nn.ReLU
    )

    assert torch.equal(output, pre_activation.clamp(min=0))
    # the linear layer has no rule: its gradient (W^T) carries the ReLU's relevance to the input
    expected = (torch.sigmoid(beta_smooth * pre_activation) * relevance_out) @ linear.weight.detach()
    assert_close(relevance, expected)
    wrong = (torch.sigmoid(beta_smooth * pre_activation.clamp(min=0)) * relevance_out) @ linear.weight.detach()
    assert (wrong - expected).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------------
# property test: Epsilon on random linear and conv layers
# --------------------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    in_features=st.integers(1, 8),
    out_features=st.integers(1, 6),
    bias=st.booleans(),
    epsilon=st.sampled_from([1e-6, 0.1, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_epsilon_linear_random_shapes(
    batch: int, in_features: int, out_features: int, bias: bool, epsilon: float, seed: int
) -> None:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias).double()
    x = torch.randn(batch, in_features, dtype=torch.float64)
    relevance_out = torch.randn(batch, out_features, dtype=torch.float64)
    _, relevance = engine_relevance(layer, rules.Epsilon(epsilon=epsilon), x, relevance_out)
    expected = oracle_epsilon(epsilon)(x, relevance_out, dense(layer, (in_features,)))
    assert_close(relevance, expected)


@settings(max_examples=20, deadline=None)
@given(
    in_channels=st.integers(1, 3),
    out_channels=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    size=st.integers(3, 5),
    transpose=st.booleans(),
    rule_name=st.sampled_from(["epsilon", "zplus", "alphabeta-2-1", "gamma-0.25", "wsquare", "flat"]),
    seed=st.integers(0, 2**16),
)
def test_rules_conv2d_random_geometry(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    padding: int,
    size: int,
    transpose: bool,
    rule_name: str,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    if transpose and padding >= kernel:
        padding = 0
    layer = conv(in_channels, out_channels, kernel, stride=stride, padding=padding).double()
    in_shape = (in_channels, size, size)
    x = torch.randn(BATCH, *in_shape, dtype=torch.float64)
    rule, oracle, _ = RULES[rule_name](in_shape)
    matrix = dense(layer, in_shape)
    relevance_out = torch.randn(BATCH, *matrix.out_shape, dtype=torch.float64)
    _, relevance = engine_relevance(layer, rule, x, relevance_out)
    expected = oracle(x.reshape(BATCH, -1), relevance_out.reshape(BATCH, -1), matrix)
    assert_close(relevance, expected.reshape(x.shape))
