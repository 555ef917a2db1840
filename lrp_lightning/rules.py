"""LRP rules: how relevance flows through one layer.

Most rules are :class:`~lrp_lightning.core.BasicHook` instances given as data — input modifiers, parameter
modifiers, a gradient mapper and a reducer — and the engine does the work. Names, keywords and semantics
follow Zennit 0.5.1, so a Zennit user's rules move over with an import change.

Writing a new rule takes a few lines. The LRP-0 rule, for example, is::

    class Zero(BasicHook):
        def __init__(self):
            super().__init__(
                gradient_mapper=lambda relevance, outputs: [relevance / stabilize(outputs[0], 1e-12)],
                reducer=lambda inputs, gradients: inputs[0] * gradients[0],
            )

and it works on every layer type: affine layers are evaluated directly, others through autograd.
Element-wise rules (like :class:`Pass`) subclass :class:`~lrp_lightning.core.Hook` and implement
``backward(module, input, grad_output)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from . import types as ltypes
from ._primitives import rule_kernel
from ._validation import argument_error, check_float
from .core import (
    BasicHook,
    Hook,
    ParamMod,
    Stabilizer,
    affine_forward,
    affine_input_gradient,
    derived_param,
    expand,
    input_known_non_negative,
    module_params,
)
from .layer import Sum

Tensor = torch.Tensor

__all__ = [
    "AlphaBeta",
    "ClampMod",
    "Epsilon",
    "Flat",
    "Gamma",
    "GammaMod",
    "NoMod",
    "Norm",
    "Pass",
    "ReLUBetaSmooth",
    "ReLUDeconvNet",
    "ReLUGuidedBackprop",
    "WSquare",
    "ZBox",
    "ZPlus",
    "zero_bias",
]

StabilizerLike = float | Callable[[Tensor], Tensor]


def zero_bias(zero_params: str | Sequence[str] | None = None) -> list[str]:
    """Return ``zero_params`` with ``"bias"`` added."""
    if zero_params is None:
        return ["bias"]
    if isinstance(zero_params, str):
        zero_params = [zero_params]
    return list(zero_params) if "bias" in zero_params else [*zero_params, "bias"]


class NoMod(ParamMod):
    """Leave parameters unchanged (except those in ``zero_params``)."""

    def __init__(self, **kwargs) -> None:
        from .core import _identity

        super().__init__(_identity, **kwargs)


class ClampMod(ParamMod):
    """Clamp parameters to ``[min, max]``."""

    def __init__(self, min: float | None = None, max: float | None = None, **kwargs) -> None:
        self.min, self.max = min, max
        super().__init__(lambda param, name: param.clamp(min=min, max=max), **kwargs)


class GammaMod(ParamMod):
    """Add ``gamma`` times the clamped parameters to the parameters: ``w + gamma * w.clamp(min, max)``."""

    def __init__(self, gamma: float = 0.25, min: float | None = None, max: float | None = None, **kwargs):
        self.gamma, self.min, self.max = gamma, min, max
        super().__init__(lambda param, name: param + gamma * param.clamp(min=min, max=max), **kwargs)


def _positive(input: Tensor) -> Tensor:
    return input.clamp(min=0)


def _negative(input: Tensor) -> Tensor:
    return input.clamp(max=0)


def _sum(tensors: Sequence[Tensor]) -> Tensor:
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


def _zero_params(rule: BasicHook) -> list[str]:
    """The names of the parameters ``rule`` sets to zero, as a list."""
    zero = rule.zero_params
    return [zero] if isinstance(zero, str) else list(zero or [])


def _fast_affine_inputs(rule: BasicHook, module: nn.Module, input: Tensor):
    """Weight, bias seen by the rule terms, and the real bias, when the fast path applies; else None.

    For non-negative inputs (the input of every layer after a ReLU) the terms of the negative input part
    vanish, and the remaining outputs are sums of ``x w+`` and ``x w-``: one or two forwards and at most two
    transposed maps, instead of a forward and a transposed map per term (5 and 4 for Gamma). No rewrite
    subtracts large terms (gamma's rewrite of its transposed maps in terms of w and w+ grows a term at most
    by a factor 1 + 2 gamma), so the results keep Zennit's rounding behaviour. Fast paths work in place on
    their own temporaries, so they are skipped while the backward pass is itself differentiated
    (``create_graph=True``), where the declarative terms run instead.
    """
    if type(rule) not in _FAST_RULES or not isinstance(module, ltypes.Linear) or torch.is_grad_enabled():
        return None
    zero = _zero_params(rule)
    if any(name != "bias" for name in zero) or not _non_negative(input):
        return None
    params = module_params(module)
    weight, bias = params["weight"], params.get("bias")
    rule_bias = None if "bias" in zero else bias
    return weight, bias, rule_bias


def _mixed_sign_affine_inputs(rule: BasicHook, module: nn.Module, input: Tensor):
    """Weight and rule bias for inputs of both signs (the first layer on pixels), when the stacked path applies.

    The terms ``x+ w+ + x- w-`` (and ``x+ w- + x- w+``) are one affine map of the stacked input ``[x+, x-]``
    with the weights ``[w+, w-]`` (``[w-, w+]``) side by side: one evaluation and one transposed map per
    denominator instead of two each, a quarter of the calls and half the output traffic.
    """
    if type(rule) not in _MIXED_SIGN_RULES or torch.is_grad_enabled():
        return None
    if not (isinstance(module, nn.Linear) or (isinstance(module, ltypes.ConvolutionStandard) and module.groups == 1)):
        return None
    zero = _zero_params(rule)
    if any(name != "bias" for name in zero):
        return None
    params = module_params(module)
    return params["weight"], None if "bias" in zero else params.get("bias")


def _positive_weight(rule: BasicHook, module: nn.Module, weight: Tensor) -> Tensor:
    """``w+``, computed once per registration until the weight changes (see :func:`derived_param`)."""
    return derived_param(module, (rule, "w+"), (weight,), lambda: weight.clamp(min=0))


def _negative_weight(rule: BasicHook, module: nn.Module, weight: Tensor) -> Tensor:
    """``w-``, cached like :func:`_positive_weight` (only rules that need it keep it: one weight copy each)."""
    return derived_param(module, (rule, "w-"), (weight,), lambda: weight.clamp(max=0))


def _clamped(rule: BasicHook, module: nn.Module, bias: Tensor | None, which: str) -> Tensor | None:
    """``b+`` (``which="+"``) or ``b-`` of ``bias``, cached like :func:`_positive_weight`."""
    if bias is None:
        return None
    return derived_param(
        module, (rule, "bias" + which), (bias,), lambda: bias.clamp(min=0) if which == "+" else bias.clamp(max=0)
    )


def _mixed_sign_relevance(
    rule: BasicHook, module: nn.Module, input: Tensor, grad_output: Tensor, weight: Tensor, rule_bias, alpha, beta
) -> Tensor:
    """``alpha`` times the positive and ``beta`` times the negative contributions' shares, for mixed-sign inputs."""
    dim = -1 if isinstance(module, nn.Linear) else 1
    stacked = torch.cat([input.clamp(min=0), input.clamp(max=0)], dim=dim)
    # x+ w+ + x- w- + b+ >= 0 (and x+ w- + x- w+ + b- <= 0): weights side by side, cached per registration
    favoured, opposed = derived_param(
        module,
        (rule, "stacked"),
        (weight,),
        lambda: (
            torch.cat([weight.clamp(min=0), weight.clamp(max=0)], dim=1),
            torch.cat([weight.clamp(max=0), weight.clamp(min=0)], dim=1),
        ),
    )
    bias = _clamped(rule, module, rule_bias, "+")
    share = _share(grad_output, affine_forward(module, stacked, favoured, bias), rule._stabilize, 1)
    gradient = affine_input_gradient(module, share, stacked, favoured)
    if alpha != 1:
        gradient.mul_(alpha)
    if beta:
        bias = _clamped(rule, module, rule_bias, "-")
        share = _share(grad_output, affine_forward(module, stacked, opposed, bias), rule._stabilize, -1)
        gradient.sub_(affine_input_gradient(module, share, stacked, opposed), alpha=beta)
    return gradient.mul_(stacked).unflatten(dim, (2, -1)).sum(dim if dim > 0 else dim - 1)


def _non_negative(input: Tensor) -> bool:
    # known from the forward graph (a ReLU before the layer), never by reading the values: checking them
    # would cost a reduction and a host-device synchronisation per layer
    return input.numel() > 0 and input_known_non_negative()


def _shift_of(stabilizer: Callable[[Tensor], Tensor]) -> float | None:
    return stabilizer.shift if type(stabilizer) is Stabilizer else None


def _share(grad_output: Tensor, denominator: Tensor, stabilizer: Callable[[Tensor], Tensor], sign: int) -> Tensor:
    """``grad_output / stabilizer(denominator)`` for a fresh ``denominator`` of known sign (``sign`` = 1 for
    >= 0, -1 for <= 0): a shifting stabilizer becomes one in-place shift, and the division reuses its buffer.
    (At exact zeros the shift may take the other sign than :func:`stabilize`; every contribution to such a
    denominator is zero, so the relevance is the same.)"""
    shift = _shift_of(stabilizer)
    if shift is None:
        return grad_output / stabilizer(denominator)
    return _shifted_share(grad_output, denominator, sign * shift)


@rule_kernel
def _shifted_share(grad_output: Tensor, denominator: Tensor, shift: float) -> Tensor:
    return torch.div(grad_output, denominator.add_(shift), out=denominator)


def _divide(grad_output: Tensor, denominator: Tensor, stabilizer: Callable[[Tensor], Tensor]) -> Tensor:
    """``grad_output / stabilizer(denominator)``, in the stabilized buffer when the stabilizer made a new one."""
    if _shift_of(stabilizer) is None:  # a custom stabilizer may return its input: do not write into it
        return grad_output / stabilizer(denominator)
    stabilized = stabilizer(denominator)
    return torch.div(grad_output, stabilized, out=stabilized)


def _reuses_output(rule: BasicHook, module: nn.Module, grad_output: Tensor, output: Tensor | None) -> bool:
    """Whether the layer's output ``z`` can stand in for the rule's single term ``x w + b`` of an affine layer."""
    if output is None or output.shape != grad_output.shape or torch.is_grad_enabled():
        return False
    if not isinstance(module, ltypes.Linear):
        return False
    zero = _zero_params(rule)
    # without its bias the term is z - b, which loses digits where z is near b: compute it instead
    return not zero or (zero == ["bias"] and module_params(module).get("bias") is None)


def _like(value: float | Tensor, input: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(input, non_blocking=True)
    return torch.full((), float(value), dtype=input.dtype, device=input.device)


def _channel_bias(module: nn.Module, bias: Tensor | None, like: Tensor) -> Tensor | float:
    if bias is None:
        return 0.0
    if isinstance(module, nn.Linear):
        return bias
    return bias[(slice(None),) + (None,) * (like.ndim - 2)]


class Epsilon(BasicHook):
    """LRP-epsilon: ``R_i = x_i * sum_j w_ji R_j / (z_j + epsilon * sign(z_j))``.

    Parameters
    ----------
    epsilon : float or callable, default 1e-6
        Stabilizer of the denominator (a number, or a callable such as :class:`~lrp_lightning.core.Stabilizer`).
        ``epsilon=0`` gives LRP-0.
    zero_params : str or list of str, optional
        Parameters set to zero, e.g. ``"bias"``.
    """

    def __init__(self, epsilon: StabilizerLike = 1e-6, zero_params: str | Sequence[str] | None = None):
        self.epsilon, self.zero_params = epsilon, zero_params
        stabilizer = Stabilizer.ensure(epsilon)
        super().__init__(
            param_modifiers=[NoMod(zero_params=zero_params)],
            gradient_mapper=lambda relevance, outputs: [relevance / stabilizer(outputs[0])],
            reducer=lambda inputs, gradients: inputs[0] * gradients[0],
        )
        self._stabilize = stabilizer

    needs_output = True

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor, output: Tensor | None = None) -> Tensor:
        if type(self) is not Epsilon or not _reuses_output(self, module, grad_output, output):
            return super().backward(module, input, grad_output)
        # the layer's output is the term z = x w + b: no second forward pass (for VGG's first dense layer that
        # is a second pass over 400 MB of weights)
        share = _divide(grad_output, output, self._stabilize)
        return affine_input_gradient(module, share, input, module_params(module)["weight"]).mul_(input)


class Gamma(BasicHook):
    """Generalised, sign-aware LRP-gamma (Zennit 0.5): favour contributions of the output's sign.

    Where the output ``z`` is positive, relevance is distributed in proportion to
    ``x+ (w + gamma w+) + x- (w + gamma w-)`` (plus ``b + gamma b+``); where it is negative, in proportion to
    ``x+ (w + gamma w-) + x- (w + gamma w+)`` (plus ``b + gamma b-``). For non-negative inputs this is the
    original gamma rule.

    Parameters
    ----------
    gamma : float, default 0.25
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
    """

    def __init__(
        self,
        gamma: float = 0.25,
        stabilizer: StabilizerLike = 1e-6,
        zero_params: str | Sequence[str] | None = None,
    ):
        self.gamma, self.stabilizer, self.zero_params = gamma, stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)
        with_bias = {"zero_params": zero_params}
        without_bias = {"zero_params": zero_bias(zero_params)}

        def gradient_mapper(relevance: Tensor, outputs: list[Tensor]) -> list[Tensor | None]:
            positive = relevance * (outputs[4] > 0.0) / stabilize_fn(outputs[0] + outputs[1])
            negative = relevance * (outputs[4] < 0.0) / stabilize_fn(outputs[2] + outputs[3])
            return [positive, positive, negative, negative, None]

        super().__init__(
            input_modifiers=[_positive, _negative, _positive, _negative, lambda input: input],
            param_modifiers=[
                GammaMod(gamma, min=0.0, **with_bias),
                GammaMod(gamma, max=0.0, **without_bias),
                GammaMod(gamma, max=0.0, **with_bias),
                GammaMod(gamma, min=0.0, **without_bias),
                NoMod(),
            ],
            gradient_mapper=gradient_mapper,
            reducer=lambda inputs, gradients: _sum([x * g for x, g in zip(inputs[:4], gradients[:4])]),
        )
        self._stabilize = stabilize_fn

    needs_output = True

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor, output: Tensor | None = None) -> Tensor:
        fast = _fast_affine_inputs(self, module, input)
        if fast is None:
            return super().backward(module, input, grad_output)
        weight, bias, rule_bias = fast
        gamma = self.gamma
        # only w+ is derived (one weight copy per layer, cached per registration until the weight changes);
        # the transposed maps with w + g w+ and w + g w- are rewritten below into maps with w and w+
        positive = _positive_weight(self, module, weight)
        full_bias = rule_bias is not None or bias is None
        shift = _shift_of(self._stabilize)
        known_output = full_bias and output is not None and output.shape == grad_output.shape
        if known_output:
            # the layer's output z is known, and one forward gives z+ = x w+ + b+
            with_positive = affine_forward(module, input, positive, _clamped(self, module, bias, "+"))
        if known_output and shift is not None:
            combined, difference = _gamma_shares(output, with_positive, grad_output, gamma, shift)
        else:
            if known_output:
                positive_out = torch.add(output, with_positive, alpha=gamma)
                negative_out = torch.lerp(with_positive, output, 1 + gamma)
            else:
                # x w+ and x w- (bias-free); z = x w+ + x w- + b is the layer's real output
                with_positive, with_negative = _two_forwards(module, input, positive, weight - positive)
                output = with_positive + with_negative
                if bias is not None:
                    output = output + _channel_bias(module, bias, output)
                # x (w + g w+) + b + g b+  and  x (w + g w-) + b + g b-
                positive_out = torch.add(with_negative, with_positive, alpha=1 + gamma)
                negative_out = torch.add(with_positive, with_negative, alpha=1 + gamma)
                if rule_bias is not None:
                    positive_out += _channel_bias(module, rule_bias + gamma * rule_bias.clamp(min=0), output)
                    negative_out += _channel_bias(module, rule_bias + gamma * rule_bias.clamp(max=0), output)
            if full_bias and shift is not None:
                combined, difference = _gamma_shares_of(output, positive_out, negative_out, grad_output, gamma, shift)
            else:
                zero = grad_output.new_zeros(())
                positive_share = torch.where(output > 0.0, grad_output / self._stabilize(positive_out), zero)
                negative_share = torch.where(output < 0.0, grad_output / self._stabilize(negative_out), zero)
                combined = torch.add(positive_share, negative_share, alpha=1 + gamma)
                difference = positive_share.sub_(negative_share)
        # x (T_w (p + (1 + g) n) + g T_{w+} (p - n)), see _gamma_shares_of
        gradient = affine_input_gradient(module, combined, input, weight)
        gradient.add_(affine_input_gradient(module, difference, input, positive), alpha=gamma)
        return gradient.mul_(input)


class ZPlus(BasicHook):
    """LRP-z+ (alpha=1, beta=0): relevance in proportion to the positive contributions ``x+ w+ + x- w-``.

    Parameters
    ----------
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
    """

    def __init__(self, stabilizer: StabilizerLike = 1e-6, zero_params: str | Sequence[str] | None = None):
        self.stabilizer, self.zero_params = stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[_positive, _negative],
            param_modifiers=[
                ClampMod(min=0.0, zero_params=zero_params),
                ClampMod(max=0.0, zero_params=zero_bias(zero_params)),
            ],
            gradient_mapper=lambda relevance, outputs: [relevance / stabilize_fn(outputs[0] + outputs[1])] * 2,
            reducer=lambda inputs, gradients: inputs[0] * gradients[0] + inputs[1] * gradients[1],
        )
        self._stabilize = stabilize_fn

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        fast = _fast_affine_inputs(self, module, input)
        if fast is None:
            mixed = _mixed_sign_affine_inputs(self, module, input)
            if mixed is None:
                return super().backward(module, input, grad_output)
            return _mixed_sign_relevance(self, module, input, grad_output, *mixed, alpha=1.0, beta=0.0)
        weight, _, rule_bias = fast
        positive = _positive_weight(self, module, weight)
        rule_bias = _clamped(self, module, rule_bias, "+")
        # x+ w+ + b+ >= 0
        share = _share(grad_output, affine_forward(module, input, positive, rule_bias), self._stabilize, 1)
        return affine_input_gradient(module, share, input, positive).mul_(input)


class AlphaBeta(BasicHook):
    """LRP-alpha-beta: ``alpha`` times the positive minus ``beta`` times the negative contributions' shares.

    Parameters
    ----------
    alpha : float, default 2.0
    beta : float, default 1.0
        ``alpha - beta`` must be 1 (conservation); both non-negative.
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 1.0,
        stabilizer: StabilizerLike = 1e-6,
        zero_params: str | Sequence[str] | None = None,
    ):
        check_float(alpha, "alpha", "AlphaBeta", 0.0)
        check_float(beta, "beta", "AlphaBeta", 0.0)
        if alpha - beta != 1.0:
            raise argument_error(
                "AlphaBeta",
                "alpha - beta",
                "1",
                alpha - beta,
                f"so that relevance is conserved; alpha={alpha}, beta={beta}; e.g. AlphaBeta(alpha=2, beta=1)",
            )
        self.alpha, self.beta, self.stabilizer, self.zero_params = alpha, beta, stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)
        with_bias = {"zero_params": zero_params}
        without_bias = {"zero_params": zero_bias(zero_params)}

        def gradient_mapper(relevance: Tensor, outputs: list[Tensor]) -> list[Tensor]:
            positive = relevance / stabilize_fn(outputs[0] + outputs[1])
            negative = relevance / stabilize_fn(outputs[2] + outputs[3])
            return [positive, positive, negative, negative]

        super().__init__(
            input_modifiers=[_positive, _negative, _positive, _negative],
            param_modifiers=[
                ClampMod(min=0.0, **with_bias),
                ClampMod(max=0.0, **without_bias),
                ClampMod(max=0.0, **with_bias),
                ClampMod(min=0.0, **without_bias),
            ],
            gradient_mapper=gradient_mapper,
            reducer=lambda inputs, gradients: (
                alpha * (inputs[0] * gradients[0] + inputs[1] * gradients[1])
                - beta * (inputs[2] * gradients[2] + inputs[3] * gradients[3])
            ),
        )
        self._stabilize = stabilize_fn

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        fast = _fast_affine_inputs(self, module, input)
        if fast is None:
            mixed = _mixed_sign_affine_inputs(self, module, input)
            if mixed is None:
                return super().backward(module, input, grad_output)
            return _mixed_sign_relevance(self, module, input, grad_output, *mixed, alpha=self.alpha, beta=self.beta)
        weight, _, rule_bias = fast
        positive = _positive_weight(self, module, weight)
        with_positive = affine_forward(module, input, positive, _clamped(self, module, rule_bias, "+"))
        # x+ w+ + b+ >= 0 and x+ w- + b- <= 0
        gradient = affine_input_gradient(
            module, _share(grad_output, with_positive, self._stabilize, 1), input, positive
        )
        if self.alpha != 1:
            gradient.mul_(self.alpha)
        if self.beta:
            negative_bias = _clamped(self, module, rule_bias, "-")
            negative = _negative_weight(self, module, weight)
            with_negative = affine_forward(module, input, negative, negative_bias)
            negative_share = _share(grad_output, with_negative, self._stabilize, -1)
            gradient.sub_(affine_input_gradient(module, negative_share, input, negative), alpha=self.beta)
        return gradient.mul_(input)


class ZBox(BasicHook):
    """LRP-z^B for bounded inputs (the first layer on pixels): ``x w - l w+ - h w-``.

    Parameters
    ----------
    low, high : float or torch.Tensor or None
        Lowest and highest possible input values, broadcast to the input (a tensor of shape ``(1, C, 1, 1)``
        or ``(C,)`` gives per-channel bounds for normalised images). ``None`` uses each sample's own
        minimum / maximum.
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
    """

    def __init__(
        self,
        low: float | Tensor | None,
        high: float | Tensor | None,
        stabilizer: StabilizerLike = 1e-6,
        zero_params: str | Sequence[str] | None = None,
    ):
        self.low, self.high, self.stabilizer, self.zero_params = low, high, stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)

        def bound(value: float | Tensor | None, extreme: Callable) -> Callable[[Tensor], Tensor]:
            if value is None:  # each sample's own range
                return lambda input: extreme(input, dim=tuple(range(1, input.ndim)), keepdim=True).expand_as(input)
            # a number becomes a scalar on the input's device (a CPU tensor expanded first would be copied to
            # the GPU at full size in every backward pass)
            # (a tensor is moved once per device and dtype, without waiting: no synchronisation per backward)
            moved: dict[tuple, Tensor] = {}

            def fixed(input: Tensor) -> Tensor:
                key = (input.device, input.dtype)
                if key not in moved:
                    moved[key] = _like(value, input)
                return expand(moved[key], input.shape, cut_batch_dim=True)

            return fixed

        super().__init__(
            input_modifiers=[lambda input: input, bound(low, torch.amin), bound(high, torch.amax)],
            param_modifiers=[
                NoMod(zero_params=zero_params),
                ClampMod(min=0.0, zero_params=zero_params),
                ClampMod(max=0.0, zero_params=zero_params),
            ],
            gradient_mapper=lambda relevance, outputs: (
                [relevance / stabilize_fn(outputs[0] - outputs[1] - outputs[2])] * 3
            ),
            reducer=lambda inputs, gradients: (
                inputs[0] * gradients[0] - inputs[1] * gradients[1] - inputs[2] * gradients[2]
            ),
        )
        self._stabilize = stabilize_fn

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        zero = _zero_params(self)
        if (
            type(self) is not ZBox
            or not isinstance(module, ltypes.Linear)
            or getattr(module, "groups", 1) != 1
            or any(name != "bias" for name in zero)
        ):
            return super().backward(module, input, grad_output)
        # x w - l w+ - h w- as one affine map of the stacked inputs [x, l, h] with weights [w, -w+, -w-];
        # the biases cancel (b - b+ - b- = 0), and one transposed map gives all three gradients
        weight = module_params(module)["weight"]
        in_dim = 0 if isinstance(module, ltypes.ConvolutionTranspose) else 1
        stacked_weight = derived_param(
            module,
            (self, "stacked"),
            (weight,),
            lambda: torch.cat([weight, -weight.clamp(min=0), -weight.clamp(max=0)], dim=in_dim),
        )
        low, high = self.input_modifiers[1](input), self.input_modifiers[2](input)
        channel = -1 if isinstance(module, nn.Linear) else 1
        stacked_input = torch.cat([input, low, high], dim=channel)
        denominator = affine_forward(module, stacked_input, stacked_weight, None)
        share = grad_output / self._stabilize(denominator)
        gradient = affine_input_gradient(module, share, stacked_input, stacked_weight)
        return (stacked_input * gradient).unflatten(channel, (3, -1)).sum(channel if channel >= 0 else channel - 1)


class WSquare(BasicHook):
    """LRP-w^2: relevance in proportion to the squared weights, independent of the input.

    Parameters
    ----------
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
        Note that, as in Zennit, the bias is squared too unless listed here.
    """

    def __init__(self, stabilizer: StabilizerLike = 1e-6, zero_params: str | Sequence[str] | None = None):
        self.stabilizer, self.zero_params = stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[torch.ones_like],
            param_modifiers=[ParamMod(lambda param, name: param**2, zero_params=zero_params)],
            gradient_mapper=lambda relevance, outputs: [relevance / stabilize_fn(outputs[0])],
            reducer=lambda inputs, gradients: gradients[0],
        )


class Flat(BasicHook):
    """LRP-flat: relevance spread uniformly over each output's receptive field (all weights one, no bias).

    Parameters
    ----------
    stabilizer : float or callable, default 1e-6
    zero_params : str or list of str, optional
    """

    def __init__(self, stabilizer: StabilizerLike = 1e-6, zero_params: str | Sequence[str] | None = None):
        self.stabilizer, self.zero_params = stabilizer, zero_params
        stabilize_fn = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[torch.ones_like],
            param_modifiers=[
                ParamMod(
                    lambda param, name: torch.ones_like(param),
                    zero_params=zero_bias(zero_params),
                    require_params=False,
                )
            ],
            gradient_mapper=lambda relevance, outputs: [relevance / stabilize_fn(outputs[0])],
            reducer=lambda inputs, gradients: gradients[0],
        )


class Norm(BasicHook):
    """Distribute relevance in proportion to each input's contribution ``x_i * dz/dx_i / z``.

    Epsilon with a fixed stabilizer and without parameters: for sums and average pooling (and the
    residual additions that canonizers turn into :class:`~lrp_lightning.layer.Sum` modules).

    Parameters
    ----------
    stabilizer : float or callable, default 1e-6
    """

    def __init__(self, stabilizer: StabilizerLike = 1e-6):
        self.stabilizer = stabilizer
        stabilize_fn = Stabilizer.ensure(stabilizer)
        super().__init__(
            param_modifiers=[NoMod(param_keys=[])],
            gradient_mapper=lambda relevance, outputs: [relevance / stabilize_fn(outputs[0])],
            reducer=lambda inputs, gradients: inputs[0] * gradients[0],
        )
        self._stabilize = stabilize_fn

    needs_output = True

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor, output: Tensor | None = None) -> Tensor:
        if type(self) is not Norm or type(module) is not Sum or torch.is_grad_enabled():
            return super().backward(module, input, grad_output)
        # a sum is linear with unit weights: R_k = x_k R / z, with the layer's output z when it is known
        if output is None or output.shape != grad_output.shape:
            output = module(input)
        return input * _divide(grad_output, output, self._stabilize).unsqueeze(-1)


def _gamma_shares_of(
    output: Tensor, positive_out: Tensor, negative_out: Tensor, grad_output: Tensor, gamma: float, shift: float
) -> tuple[Tensor, Tensor]:
    """The two shares the gamma rule propagates, from its denominators (all fresh buffers of ``output``'s shape).

    With ``p = R / (positive denominator)`` where ``z > 0`` and ``n = R / (negative denominator)`` where
    ``z < 0``, the relevance is ``x (T_{w + g w+} p + T_{w + g w-} n)`` for the transposed map ``T``, which is
    linear in the weight; with ``w- = w - w+`` that is ``x (T_w (p + (1 + g) n) + g T_{w+} (p - n))``, so w+
    is the only derived weight. Each rewritten term is at most ``1 + 2g`` times an original one: no
    cancellation of large terms. Where ``z > 0`` the positive denominator is ``>= z > 0``, where ``z < 0``
    the negative one is ``<= z < 0``: one denominator ``D`` of z's sign, one division ``s = R / (|D| + eps)``,
    then ``p - n = s |sign z|`` and ``p + (1 + g) n = s c`` with ``c = 1, -(1 + g), 0`` for ``z > 0, < 0, = 0``.
    Returns ``(p + (1 + g) n, p - n)``.
    """
    sign = torch.sign(output)
    mask = sign.clamp(min=0)
    # lerp with the weights 0 and 1 selects exactly (torch.where is about three times slower on the CPU). Results
    # go into buffers no longer needed: a fresh output-sized tensor per step cost about half again the time
    # (ResNet50, batch 8, 224 px), most of it in filling new memory
    denominator = torch.lerp(negative_out, positive_out, mask, out=negative_out).abs_().add_(shift)
    share = torch.div(grad_output, denominator, out=denominator)
    nonzero = torch.abs(sign, out=mask)
    # (1 + g/2) sign - (g/2) |sign|
    combined = torch.lerp(nonzero, sign, 1 + gamma / 2, out=positive_out).mul_(share)
    return combined, share.mul_(nonzero)


@rule_kernel
def _gamma_shares(
    output: Tensor, with_positive: Tensor, grad_output: Tensor, gamma: float, shift: float
) -> tuple[Tensor, Tensor]:
    """:func:`_gamma_shares_of` from the layer's output ``z`` and ``z+ = x w+ + b+``:
    ``x (w + g w+) + b + g b+ = z + g z+`` and ``x (w + g w-) + b + g b- = (1 + g) z - g z+``; both contain
    ``g |z+-|`` >= the rounding error of the sum, so they stay accurate."""
    positive_out = torch.add(output, with_positive, alpha=gamma)
    negative_out = torch.lerp(with_positive, output, 1 + gamma, out=with_positive)  # z+ is not needed after
    return _gamma_shares_of(output, positive_out, negative_out, grad_output, gamma, shift)


def _two_forwards(module: nn.Module, input: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """``module``'s bias-free outputs with two weights (two calls: stacking the weights costs a copy)."""
    return affine_forward(module, input, first, None), affine_forward(module, input, second, None)


class Pass(Hook):
    """Pass the relevance through unchanged (element-wise layers: activations, batch norm after merging)."""

    needs_input = False

    def backward(self, module: nn.Module, input: Tensor | None, grad_output: Tensor) -> Tensor:
        return grad_output


class ReLUDeconvNet(Hook):
    """DeconvNet's ReLU: pass only positive relevance, ``max(0, R)``, whatever the input."""

    needs_input = False

    def backward(self, module: nn.Module, input: Tensor | None, grad_output: Tensor) -> Tensor:
        return grad_output.clamp(min=0)


class ReLUGuidedBackprop(Hook):
    """Guided backpropagation: the module's gradient, masked to where the upper gradient is positive.

    On a ReLU this is ``R * 1[x > 0] * 1[R > 0]``; on another element-wise activation (Softplus, Tanh,
    Sigmoid, Softmax) it is the activation's own input gradient, masked the same way, as in Zennit.
    """

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        if type(module) is nn.ReLU:
            return grad_output * (input > 0) * (grad_output > 0)
        with torch.enable_grad():
            leaf = input.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(module.forward(leaf), leaf, grad_output)
        return gradient * (grad_output > 0)


class ReLUBetaSmooth(Hook):
    """Replace the ReLU gradient by the softplus gradient ``sigmoid(beta_smooth * x)``.

    Parameters
    ----------
    beta_smooth : float, default 10.0
    """

    def __init__(self, beta_smooth: float = 10.0) -> None:
        self.beta_smooth = beta_smooth

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        return torch.sigmoid(self.beta_smooth * input) * grad_output

    def __repr__(self) -> str:
        return f"ReLUBetaSmooth(beta_smooth={self.beta_smooth})"


# rules with the fast paths above (looked up when a rule runs, so they may be defined after the functions)
_FAST_RULES: tuple[type, ...] = (ZPlus, AlphaBeta, Gamma)
_MIXED_SIGN_RULES: tuple[type, ...] = (ZPlus, AlphaBeta)
