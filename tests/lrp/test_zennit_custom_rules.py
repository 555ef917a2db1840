"""Custom rules from Zennit's documentation ("Writing Custom Rules", zennit 0.5.1) run unchanged.

Each rule is written exactly as the documentation writes it against ``zennit.core``, once with our
``Hook``/``BasicHook`` and once with Zennit's (zennit is a test oracle here), and both must give the same
relevance. The first ones run by Zennit's hook protocol (forward/backward with tuples, stored_tensors,
copy), the BasicHook ones by our engine with the user's mappers and reducer.
"""

from __future__ import annotations

import pytest
import torch

zennit_core = pytest.importorskip("zennit.core")

from lrp_lightning import core as our_core  # noqa: E402


def make_rules(core):
    """The documentation's rules, written against ``core`` (ours or Zennit's)."""

    class GradTimesScaledNegativeInput(core.Hook):
        """Gradient times input, where the negative part of the input is scaled."""

        def __init__(self, scale=0.2):
            super().__init__()
            self.scale = scale

        def forward(self, module, input, output):
            self.stored_tensors["input"] = input

        def backward(self, module, grad_input, grad_output):
            return (
                grad_input[0]
                * (
                    self.stored_tensors["input"][0].clip(min=0.0)
                    + self.stored_tensors["input"][0].clip(max=0.0) * self.scale
                ),
            )

        def copy(self):
            return self.__class__(scale=self.scale)

    class Ignore(core.Hook):
        def backward(self, module, grad_input, grad_output):
            return grad_output

    class ZPlusReLU(core.BasicHook):
        def __init__(self, names=None):
            self.names = [] if names is None else names
            super().__init__(param_modifiers=[self._param_modifier])

        def _param_modifier(self, param, name):
            if name in self.names:
                return param.clip(min=0.0)
            return torch.zeros_like(param)

    lrp_zero = core.BasicHook(
        input_modifiers=[lambda input: input],
        param_modifiers=[lambda param, _: param],
        output_modifiers=[lambda output: output],
        gradient_mapper=(lambda out_grad, outputs: [out_grad / outputs[0]]),
        reducer=(lambda inputs, gradients: inputs[0] * gradients[0]),
    )
    zplus = core.BasicHook(param_modifiers=[core.ParamMod(lambda x, _: x.clip(min=0.0), zero_params="bias")])
    return {
        "grad_times_scaled_negative_input": (GradTimesScaledNegativeInput(scale=0.23).copy(), torch.nn.Linear),
        "ignore": (Ignore(), torch.nn.ReLU),
        "zplus_relu": (ZPlusReLU(["weight"]), torch.nn.Linear),
        "lrp_zero": (lrp_zero, torch.nn.Linear),
        "zplus_param_mod": (zplus, torch.nn.Linear),
    }


def relevance(core, name, module, data):
    rule, _ = make_rules(core)[name]
    input = data.clone().requires_grad_()
    handles = rule.register(module)
    try:
        output = module(input)
        (grad,) = torch.autograd.grad(output, input, torch.ones_like(output))
    finally:
        handles.remove()
    return grad


@pytest.mark.parametrize("name", list(make_rules(our_core)))
def test_documented_custom_rule_gives_zennits_numbers(name):
    torch.manual_seed(0)
    _, module_type = make_rules(our_core)[name]
    module = torch.nn.Linear(4, 4).double() if module_type is torch.nn.Linear else torch.nn.ReLU()
    data = torch.randn(3, 4, dtype=torch.float64)
    ours = relevance(our_core, name, module, data)
    theirs = relevance(zennit_core, name, module, data)
    assert not torch.equal(ours, torch.zeros_like(ours))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_a_zennit_protocol_hook_gets_each_calls_own_output_gradient():
    """A layer called twice: the hook's backward sees the output gradient of the call it belongs to."""
    seen = []

    class Record(our_core.Hook):
        def backward(self, module, grad_input, grad_output):
            seen.append(grad_output[0].clone())
            return grad_input

    linear = torch.nn.Linear(2, 2).double()
    handles = Record().register(linear)
    try:
        x = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
        out = linear(linear(x))
        torch.autograd.grad(out, x, torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    finally:
        handles.remove()
    # the outer call gets [1, 2]; the inner call gets [1, 2] @ W, which differs from it
    assert torch.equal(seen[0], torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(seen[1], seen[0] @ linear.weight.detach())
