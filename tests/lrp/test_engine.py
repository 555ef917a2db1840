"""Behaviour of the hook engine, composites, canonizers and attributors."""

import copy

import pytest
import torch
import torch.nn as nn
import torchvision

from lrp_lightning import canonizers as canon
from lrp_lightning.attribution import Gradient, IntegratedGradients, Occlusion, SmoothGrad, explain, output_weights
from lrp_lightning.composites import EpsilonGammaBox, LayerMapComposite, NameLayerMapComposite, get_composite
from lrp_lightning.core import MissingRuleError, Stabilizer
from lrp_lightning.rules import AlphaBeta, Epsilon, Gamma, Norm, Pass, ZPlus


def tiny_net():
    net = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[1].weight.fill_(3.0)
    return net


def lrp(net, rule, x):
    with Gradient(net, LayerMapComposite([(nn.Linear, rule)])) as attributor:
        return attributor(x).relevance  # initial relevance = the output


X = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)


def test_closed_form_epsilon():
    assert torch.allclose(lrp(tiny_net(), Epsilon(), X), torch.tensor([[18.0, 36.0, 54.0]], dtype=torch.float64))


def test_closed_form_zplus_and_alphabeta_with_a_negative_weight():
    net = tiny_net()
    with torch.no_grad():
        net[0].weight[0, 0] = -2.0
    expected_zplus = torch.tensor([[12.0, 33.6, 50.4]], dtype=torch.float64)
    expected_alphabeta = torch.tensor([[0.0, 134.4, 201.6]], dtype=torch.float64)
    assert torch.allclose(lrp(net, ZPlus(), X), expected_zplus, atol=1e-9)
    assert torch.allclose(lrp(net, AlphaBeta(2, 1, stabilizer=1e-12), X), expected_alphabeta, atol=1e-9)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    )


def snapshot(model):
    return {
        "params": [id(p) for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, type(m)) for name, m in model.named_modules()],
        "dicts": [sorted(m.__dict__) for m in model.modules()],
        "training": [m.training for m in model.modules()],
    }


def assert_restored(model, before):
    after = snapshot(model)
    assert after["params"] == before["params"]
    assert after["modules"] == before["modules"]
    assert after["dicts"] == before["dicts"]
    assert after["training"] == before["training"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks


@pytest.mark.parametrize("composite_name", ["epsilon_gamma_box", "epsilon_plus_flat", "guided_backprop"])
def test_model_exactly_restored_and_grads_untouched(composite_name):
    model = small_cnn().eval()
    model[1].running_mean.uniform_(-1, 1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = snapshot(model)
    grads = [p.grad.clone() for p in model.parameters()]
    explain(model, torch.randn(3, 1, 8, 8), target=[0, 1, 2], composite=composite_name)
    assert_restored(model, before)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_resnet_restored_also_after_an_exception_inside_the_context():
    model = torchvision.models.resnet18(num_classes=4).eval()
    before = snapshot(model)
    with pytest.raises(ZeroDivisionError):
        with Gradient(model, get_composite("epsilon_plus", canonizers="auto")):
            assert any("canonizer_sum" in m._modules for m in model.modules())
            raise ZeroDivisionError
    assert_restored(model, before)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_optimizer_created_before_still_trains_the_model():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    explain(model, torch.randn(2, 1, 8, 8), composite="epsilon_gamma_box")
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = model(torch.randn(4, 1, 8, 8)).pow(2).sum()
    loss.backward()
    optimizer.step()
    changed = [not torch.equal(p, b) for p, b in zip(model.parameters(), before) if p.grad.abs().max() > 1e-4]
    assert changed and all(changed)


def test_training_mode_of_submodules_is_restored_by_explain():
    model = small_cnn().train()
    model[1].eval()  # a frozen batch norm in a training model
    explain(model, torch.randn(2, 1, 8, 8))
    assert model.training and model[0].training and not model[1].training


class Twice(nn.Module):
    def __init__(self, shared):
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 2)
        if not shared:
            self.layer2 = copy.deepcopy(self.layer)
            self.relu2 = nn.ReLU()
        self.shared = shared

    def forward(self, x):
        x = self.relu(self.layer(x))
        x = self.relu(self.layer(x)) if self.shared else self.relu2(self.layer2(x))
        return self.head(x)


def test_module_used_twice_gives_the_relevance_of_two_copies():
    torch.manual_seed(0)
    shared = Twice(shared=True).double()
    separate = Twice(shared=False).double()
    copies = {f"layer2.{k}": v for k, v in shared.layer.state_dict().items()}
    separate.load_state_dict({**shared.state_dict(), **copies})
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = LayerMapComposite([(nn.ReLU, Pass()), (nn.Linear, AlphaBeta(2, 1))])
    with Gradient(shared, composite) as attributor:
        out_shared, rel_shared = attributor(x, [0, 1, 0])
    with Gradient(separate, composite) as attributor:
        out_separate, rel_separate = attributor(x, [0, 1, 0])
    assert torch.allclose(out_shared, out_separate)
    assert torch.allclose(rel_shared, rel_separate, rtol=1e-10, atol=1e-12)
    assert rel_shared.abs().sum() > 0


def test_layer_without_rule_is_named_with_the_fix():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(2 * 12 * 12, 3))
    with pytest.raises(MissingRuleError) as error:
        explain(model, torch.randn(1, 1, 8, 8), composite="epsilon_gamma_box")
    message = str(error.value)
    assert "layer 1 (Upsample) has no rule in composite epsilon_gamma_box" in message
    assert "layer_map=[(torch.nn.Upsample, Norm())]" in message
    # the suggested fix works, and the model is left clean after the error
    assert not model[1]._forward_hooks
    fixed = EpsilonGammaBox(layer_map=[(nn.Upsample, Norm())])
    output, relevance = explain(model, torch.randn(1, 1, 8, 8), composite=fixed)
    assert relevance.shape == (1, 1, 8, 8) and relevance.abs().sum() > 0


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_attribution_inside_no_grad_and_inference_mode(context):
    model = small_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    expected = explain(model, x, target=[1, 2]).relevance
    with context():
        x_in_context = x.clone()
        relevance = explain(model, x_in_context, target=[1, 2]).relevance
    assert torch.equal(relevance, expected)


def test_targets():
    output = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, -1.0]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.equal(output_weights(output, "prediction"), one_hot)
    assert torch.equal(output_weights(output, [1, 0]), one_hot)
    assert torch.equal(output_weights(output, torch.tensor([1, 0])), one_hot)
    assert torch.equal(output_weights(output, 2), torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert torch.equal(output_weights(output, one_hot), one_hot)
    assert torch.equal(output_weights(output, None), output)
    assert torch.equal(output_weights(output, lambda out: out * 2), output * 2)
    with pytest.raises(ValueError, match="target class 3 is out of range for an output with 3 classes"):
        output_weights(output, [3, 0])
    with pytest.raises(ValueError, match="class scores of shape"):
        output_weights(torch.zeros(2, 3, 4), [0, 1])
    with pytest.raises(ValueError, match="unknown target 'label'"):
        output_weights(output, "label")


def test_canonized_relevance_equals_explicitly_merged_model():
    model = small_cnn().double().eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model[1].weight.data.uniform_(0.5, 2)
    merged = copy.deepcopy(model)
    bn, conv = merged[1], merged[0]
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    with torch.no_grad():
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
    merged[1] = nn.Identity()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ours = explain(model, x, target=[0, 3], composite="epsilon_plus", canonizers="auto").relevance
    reference = explain(merged, x, target=[0, 3], composite="epsilon_plus", canonizers=None).relevance
    named = explain(
        model, x, target=[0, 3], composite="epsilon_plus", canonizers=[canon.NamedMergeBatchNorm([(["0"], "1")])]
    ).relevance
    without = explain(model, x, target=[0, 3], composite="epsilon_plus", canonizers=None).relevance
    assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)
    assert torch.allclose(named, reference, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(without, reference, rtol=1e-3)


def test_auto_canonizers_choice_and_errors():
    assert isinstance(canon.auto_canonizers(torchvision.models.resnet18())[0], canon.ResNetCanonizer)
    assert isinstance(canon.auto_canonizers(torchvision.models.vgg11_bn())[0], canon.SequentialMergeBatchNorm)
    bn_first = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"batch norm layer 0 \(BatchNorm2d\) does not follow an affine layer"):
        canon.auto_canonizers(bn_first)
    with pytest.raises(ValueError, match="cannot pick canonizers for torchvision MobileNetV2"):
        canon.auto_canonizers(torchvision.models.mobilenet_v2())


def test_name_layer_map_user_rules_come_first():
    model = small_cnn().eval()
    composite = NameLayerMapComposite(name_map=[(["8"], Epsilon(epsilon=0.5))], layer_map=[(nn.Linear, ZPlus())])
    composite.register(model)
    try:
        assert isinstance(composite.rule_map["8"], Epsilon)
    finally:
        composite.remove()
    first = EpsilonGammaBox(first_map=[(nn.Conv2d, Epsilon())])
    first.register(model)
    try:
        assert isinstance(first.rule_map["0"], Epsilon)
        assert type(first.rule_map["4"]).__name__ == "Gamma"
    finally:
        first.remove()


def test_smoothgrad_is_deterministic_with_a_generator_and_averages_gradients():
    model = small_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    state = torch.random.get_rng_state()
    runs = [
        SmoothGrad(model, noise_level=0.2, n_iter=5, generator=torch.Generator().manual_seed(7))(x, [0, 1]).relevance
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG stream is untouched
    plain = Gradient(model)(x, [0, 1]).relevance
    assert not torch.allclose(runs[0], plain)
    assert torch.equal(SmoothGrad(model, n_iter=1)(x, [0, 1]).relevance, plain)


def test_integrated_gradients_and_occlusion_equal_captum():
    captum = pytest.importorskip("captum.attr")
    model = small_cnn().double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ours = IntegratedGradients(model, n_iter=16)(x, [1, 3]).relevance
    theirs = captum.IntegratedGradients(model).attribute(
        x, target=torch.tensor([1, 3]), n_steps=16, method="riemann_right"
    )
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-10)
    ours = Occlusion(model, window=(1, 3, 3), stride=(1, 2, 2))(x, [1, 3]).relevance
    theirs = captum.Occlusion(model).attribute(
        x, sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2), target=torch.tensor([1, 3])
    )
    # captum returns float32 here even for float64 inputs
    assert torch.allclose(ours, theirs.to(ours), rtol=1e-5, atol=1e-6 * ours.abs().max().item())


def test_a_new_rule_in_a_few_lines_as_documented():
    from lrp_lightning.core import BasicHook, stabilize

    class Zero(BasicHook):  # LRP-0, as in the README and the rules module docstring
        def __init__(self):
            super().__init__(
                gradient_mapper=lambda relevance, outputs: [relevance / stabilize(outputs[0], 1e-12)],
                reducer=lambda inputs, gradients: inputs[0] * gradients[0],
            )

    torch.manual_seed(1)
    layer = nn.Linear(4, 3).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    relevance_out = torch.randn(2, 3, dtype=torch.float64)
    with Gradient(layer, LayerMapComposite([(nn.Linear, Zero())])) as attributor:
        output, relevance = attributor(x, relevance_out)
    z = output
    expected = x * ((relevance_out / z) @ layer.weight)
    assert torch.allclose(relevance, expected, rtol=1e-9)
    # on a module without parameters the same rule goes through autograd
    pool = nn.AvgPool1d(2)
    xp = torch.rand(1, 1, 4, dtype=torch.float64) + 0.1
    with Gradient(pool, LayerMapComposite([(nn.AvgPool1d, Zero())])) as attributor:
        out, rel = attributor(xp, torch.ones(1, 1, 2, dtype=torch.float64))
    assert torch.allclose(rel, xp / torch.repeat_interleave(out * 2, 2, dim=-1), rtol=1e-9)


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
    fast = rule.backward(layer, x, grad_output)
    reference = BasicHook.backward(rule, layer, x, grad_output)  # the declarative terms, one by one
    assert torch.allclose(fast, reference, rtol=1e-10, atol=1e-12 * reference.abs().max().item())
    assert reference.abs().max() > 0
    if rule.needs_output:  # the path that reuses the layer's output z
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


def test_create_graph_runs_the_declarative_terms_and_matches_the_fast_paths():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    for name in ["epsilon_gamma_box", "epsilon_plus", "epsilon_alpha2_beta1"]:
        kwargs = {"low": 0.0, "high": 1.0} if name == "epsilon_gamma_box" else {}
        _, fast = Gradient(model, get_composite(name, **kwargs))(x, [0, 2])
        leaf = x.clone().requires_grad_(True)
        _, graph = Gradient(model, get_composite(name, **kwargs), create_graph=True)(leaf, [0, 2])
        assert graph.requires_grad
        assert torch.allclose(graph, fast, rtol=1e-9, atol=1e-12), name
        assert fast.abs().sum() > 0


def test_repeated_backward_with_retain_graph_gives_the_same_relevance():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(80, 3))
    model = model.double()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    weights = torch.eye(3, dtype=torch.float64)[[0, 2]]
    for name in ["epsilon_gamma_box", "epsilon_alpha2_beta1"]:  # rules that reuse the layer output (Gamma, Epsilon)
        composite = get_composite(name, **({"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}))
        with composite.context(model):
            leaf = x.clone().requires_grad_(True)
            out = model(leaf)
            (first,) = torch.autograd.grad(out, leaf, weights, retain_graph=True)
            (second,) = torch.autograd.grad(out, leaf, weights)  # the kept output is used up: recomputed
        assert torch.allclose(first, second, rtol=1e-12) and first.abs().sum() > 0, name


def test_in_place_activations_run_out_of_place_only_while_a_rule_is_attached():
    torch.manual_seed(10)
    make = lambda inplace: nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 3, 3), nn.ReLU(inplace=inplace), nn.Conv2d(3, 4, 3), nn.ReLU(inplace=inplace), nn.Flatten()
    ).double()
    in_place, out_of_place = make(True), make(False)
    out_of_place.load_state_dict(in_place.state_dict())
    x = torch.randn(2, 1, 7, 7, dtype=torch.float64)
    weights = torch.randn(2, 36, dtype=torch.float64)
    for name in ["epsilon_plus", "guided_backprop", "beta_smooth"]:  # Pass, and rules that read the ReLU input
        composite = get_composite(name)
        with Gradient(in_place, composite) as attributor:
            assert not in_place[1].inplace and not in_place[3].inplace
            _, relevance = attributor(x, weights)
        assert in_place[1].inplace and in_place[3].inplace  # restored
        with Gradient(out_of_place, get_composite(name)) as attributor:
            _, expected = attributor(x, weights)
        assert not out_of_place[1].inplace  # never switched on
        assert torch.allclose(relevance, expected, rtol=1e-12) and expected.abs().sum() > 0, name


def test_an_lrp_composite_warns_about_resnet_blocks_it_does_not_canonize():
    import warnings

    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(UserWarning, match=r"8 torchvision ResNet blocks \(first: layer1.0\).*canonizers='auto'"):
        with Gradient(model, get_composite("epsilon_plus")) as attributor:
            _, doubled = attributor(x, [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # canonized: no warning; a gradient composite needs no canonizer
        with Gradient(model, get_composite("epsilon_plus", canonizers="auto")) as attributor:
            _, relevance = attributor(x, [1])
        with Gradient(model, get_composite("guided_backprop")) as attributor:
            attributor(x, [1])
    assert abs(relevance.sum().item() - 1.0) < 0.2  # about conserved
    assert doubled.sum().item() > 100  # 2**8 for the eight uncanonized additions


def test_output_changed_in_place_after_the_layer_is_not_reused():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    composite = LayerMapComposite([(nn.Conv2d, Gamma(0.5))])  # no rule on the ReLU: it runs in place
    in_place = nn.Sequential(nn.ReLU(), conv, nn.ReLU(inplace=True), nn.Flatten())
    out_of_place = nn.Sequential(nn.ReLU(), conv, nn.ReLU(), nn.Flatten())
    weights = torch.randn(2, 3 * 36, dtype=torch.float64)
    with Gradient(in_place, composite) as attributor:
        _, changed = attributor(x, weights)
    with Gradient(out_of_place, composite) as attributor:
        _, expected = attributor(x, weights)
    assert torch.allclose(changed, expected, rtol=1e-10, atol=1e-12)
    assert expected.abs().sum() > 0


def _live_tensors():
    import gc
    import warnings

    gc.collect()
    with warnings.catch_warnings():  # isinstance on some lazily deprecated torch objects warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_no_growth_over_100_repeated_attributions():
    from lrp_lightning import core

    model = small_cnn().eval()
    x = torch.randn(4, 1, 8, 8)
    composite = get_composite("epsilon_gamma_box", canonizers="auto")
    for _ in range(5):
        with Gradient(model, composite) as attributor:
            attributor(x, [0, 1, 2, 3])
    baseline = _live_tensors()
    with Gradient(model, composite) as attributor:  # one registration, many calls (the callback's pattern)
        for _ in range(50):
            attributor(x, [0, 1, 2, 3])
    for _ in range(50):
        explain(model, x, target=[0, 1, 2, 3])
    assert _live_tensors() <= baseline
    assert len(core._PARAM_OVERRIDES) == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_zennit_import_paths_and_create_graph():
    from lrp_lightning.torchvision import ResNetCanonizer, VGGCanonizer

    assert ResNetCanonizer is canon.ResNetCanonizer and VGGCanonizer is canon.VGGCanonizer
    # create_graph: the attribution can be differentiated again (e.g. to optimise an explanation)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    attributor = Gradient(model, get_composite("beta_smooth", beta_smooth=2.0), create_graph=True)
    _, relevance = attributor(x, [0, 1])
    assert relevance.requires_grad
    (second,) = torch.autograd.grad(relevance.pow(2).sum(), model[0].weight)
    assert second.abs().sum() > 0


def test_layers_the_forward_pass_does_not_run_need_no_rule():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 3)
            self.loss = nn.CrossEntropyLoss()  # held, never called in forward
            self.unused = nn.Upsample(scale_factor=2)  # held, never called

        def forward(self, x):
            return self.net(x)

    output, relevance = explain(WithLoss(), torch.rand(2, 4), composite="epsilon_plus")
    assert relevance.shape == (2, 4) and relevance.abs().sum() > 0
