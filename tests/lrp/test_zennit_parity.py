"""Equality with Zennit 0.5.1 (used here only as an oracle) on torchvision models with random weights.

Batch norms get eps=0 in the parity tests: Zennit leaves a merged batch norm's eps in place, so its
"identity" divides by sqrt(1 + eps) after every merged layer, which shifts its activations by about
5e-6 per layer. With eps=0 both libraries describe exactly the same canonized network.
"""

import pytest
import torch
import torchvision

zennit = pytest.importorskip("zennit")
from zennit import composites as zennit_composites  # noqa: E402
from zennit import torchvision as zennit_torchvision  # noqa: E402
from zennit.attribution import Gradient as ZennitGradient  # noqa: E402

from lrp_lightning.attribution import Gradient  # noqa: E402
from lrp_lightning.composites import COMPOSITES, get_composite  # noqa: E402

MODELS = {
    "vgg16": torchvision.models.vgg16,
    "vgg16_bn": torchvision.models.vgg16_bn,
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
}
NAMES = [
    "epsilon_gamma_box",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "excitation_backprop",
    "guided_backprop",
    "deconvnet",
    "beta_smooth",
]


def make_model(name, dtype=torch.float32, bn_eps=0.0):
    torch.manual_seed(sum(map(ord, name)))
    model = MODELS[name](num_classes=10).eval().to(dtype)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_((torch.rand(size, generator=generator) - 0.5) * 0.4)
            module.eps = bn_eps
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def model_and_input(request):
    models = {dtype: make_model(request.param, dtype=dtype) for dtype in (torch.float32, torch.float64)}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return request.param, models, x


def zennit_canonizers(name):
    return [zennit_torchvision.ResNetCanonizer()] if name.startswith("resnet") else [zennit_torchvision.VGGCanonizer()]


def test_every_registered_composite_is_compared():
    # the transformer composites have no Zennit counterpart: LXT is their oracle (test_attention_canonizers.py)
    assert set(NAMES) == set(COMPOSITES) - {"attn_lrp", "cp_lrp"}


@pytest.mark.slow  # float64 and float32 on full VGG16, VGG16-BN, ResNet-18 and ResNet-50
@pytest.mark.parametrize("composite_name", NAMES)
def test_equal_to_zennit(model_and_input, composite_name):
    """In float64 both libraries compute the same numbers (to 1e-10); in float32 ours is about as close to the
    float64 result as Zennit's float32 is (the fast paths round differently, e.g. AlphaBeta sums x w+ and x w-)."""
    model_name, models, x = model_and_input
    if composite_name == "beta_smooth" and model_name.startswith("resnet"):
        pytest.skip("Zennit's ReLUBetaSmooth keeps one input per hook: wrong for ResNet's shared ReLU (see below)")
    kwargs = {"low": -3.0, "high": 3.0} if composite_name == "epsilon_gamma_box" else {}
    results = {}
    for dtype, model in models.items():
        relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        if composite_name == "beta_smooth":
            # Zennit's BetaSmooth reads the ReLU input after an in-place ReLU overwrote it; compare without
            for relu in relus:
                relu.inplace = False
        target = torch.eye(10, dtype=dtype)[[3, 7]]
        try:
            zennit_composite = zennit_composites.COMPOSITES[composite_name](
                canonizers=zennit_canonizers(model_name), **kwargs
            )
            with ZennitGradient(model, zennit_composite) as attributor:
                results["zennit", dtype] = attributor(x.to(dtype), target)[1].double()
            ours = get_composite(composite_name, canonizers="auto", **kwargs)
            with Gradient(model, ours) as attributor:
                results["ours", dtype] = attributor(x.to(dtype), target)[1].double()
        finally:
            for relu in relus:
                relu.inplace = True
    expected = results["zennit", torch.float64]
    scale = expected.abs().max()
    assert scale > 0
    assert (results["ours", torch.float64] - expected).abs().max() <= 1e-10 * scale
    zennit_error = (results["zennit", torch.float32] - expected).abs().max()
    ours_error = (results["ours", torch.float32] - expected).abs().max()
    # float32 rounding over a deep network: Zennit's own error reaches 1.2e-5 of the scale on VGG16
    assert ours_error <= max(2 * zennit_error, 5e-6 * scale)


class SoftplusGradientReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_for_backward(x)
        ctx.beta = beta
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(ctx.beta * x), None


def test_beta_smooth_on_shared_relus_matches_oracle(monkeypatch):
    """ResNet calls one ReLU module several times per block; each call must use its own input."""
    model = make_model("resnet18", dtype=torch.float64)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.eye(10, dtype=torch.float64)[[1, 4]]
    with Gradient(model, get_composite("beta_smooth", beta_smooth=5.0)) as attributor:
        _, relevance = attributor(x, target)

    monkeypatch.setattr(torch.nn.ReLU, "forward", lambda self, input: SoftplusGradientReLU.apply(input, 5.0))
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(leaf), leaf, target)
    assert torch.allclose(relevance, expected, rtol=1e-10, atol=1e-12 * expected.abs().max().item())


@pytest.mark.slow  # full VGG16 in float64
@pytest.mark.parametrize(
    ("model_name", "composite_name", "kwargs"),
    [
        ("vgg16", "epsilon_gamma_box", {"low": -3.0, "high": 3.0}),
        ("resnet18", "epsilon_plus_flat", {"zero_params": "bias"}),
    ],
)
def test_conservation_ratio_equals_zennit(model_name, composite_name, kwargs):
    model = make_model(model_name, dtype=torch.float64)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    target = torch.eye(10, dtype=torch.float64)[[5]]
    zennit_composite = zennit_composites.COMPOSITES[composite_name](canonizers=zennit_canonizers(model_name), **kwargs)
    with ZennitGradient(model, zennit_composite) as attributor:
        zennit_output, zennit_relevance = attributor(x, target)
    with Gradient(model, get_composite(composite_name, canonizers="auto", **kwargs)) as attributor:
        output, relevance = attributor(x, target)
    zennit_ratio = (zennit_relevance.sum() / zennit_output[0, 5]).item()
    ratio = (relevance.sum() / output[0, 5]).item()
    assert abs(ratio - zennit_ratio) <= 1e-4 * abs(zennit_ratio)
    # not a tautology: the ratio is far from zero and from the plain-gradient ratio
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(leaf), leaf, target)
    assert abs(ratio) > 1e-3
    assert abs((gradient * x).sum().item() / output[0, 5].item() - ratio) > 1e-3
