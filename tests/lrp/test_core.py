"""The hook engine (lrp_lightning.core): rules attached to modules, the model left untouched."""

import copy

import pytest
import torch
import torch.nn as nn
from lrp_testing import assert_restored, small_cnn, snapshot

from lrp_lightning.attribution import Gradient, explain
from lrp_lightning.composites import EpsilonGammaBox, LayerMapComposite, get_composite
from lrp_lightning.core import MissingRuleError
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


@pytest.mark.slow  # 100 attributions and a garbage-collector walk
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


def test_engine_argument_checks_share_the_message_style():
    """Rules, hooks and composites check arguments through lrp_lightning._validation: one message shape."""
    from lrp_lightning._validation import InvalidArgumentError
    from lrp_lightning.composites import MixedComposite
    from lrp_lightning.core import BasicHook, ParamMod, Stabilizer

    cases = [
        (lambda: AlphaBeta(alpha=-1.0, beta=-2.0), "AlphaBeta: alpha must be a number >= 0.0, got -1.0"),
        (lambda: AlphaBeta(alpha=3.0, beta=1.0), "AlphaBeta: alpha - beta must be 1 (so that relevance is conserved"),
        (lambda: Stabilizer.ensure(True), "stabilizer must be a number (e.g. 1e-6) or a callable tensor -> tensor"),
        (lambda: Epsilon(epsilon="big"), "stabilizer must be a number (e.g. 1e-6) or a callable tensor -> tensor"),
        (lambda: ParamMod.ensure(3), "param_modifier must be a ParamMod or a callable (param, name) -> param, got 3"),
        (
            lambda: BasicHook(input_modifiers=[abs], param_modifiers=[abs, abs]),
            "BasicHook: the lengths of input_modifiers, param_modifiers and output_modifiers must be equal, "
            "got list [1, 2, None]",
        ),
        (
            lambda: MixedComposite([EpsilonGammaBox(low=0.0, high=1.0, canonizers="auto")]),
            "MixedComposite: composites must be composites without canonizers given by name",
        ),
    ]
    for call, message in cases:
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert message in str(info.value), str(info.value)
    # a wrong argument is both a ValueError and a TypeError, as Zennit's callers may catch either
    with pytest.raises(ValueError):
        AlphaBeta(alpha=3.0, beta=1.0)
    with pytest.raises(TypeError):
        Stabilizer.ensure("1e-6")
