"""The hook engine: how a rule is attached to a module and evaluated in the backward pass.

A *rule* (Zennit calls it a hook) says how relevance flows through one module. While a composite is
registered, each module with a rule gets a forward hook that replaces the module's output ``z`` by an
autograd node whose backward computes the rule's relevance for the module's input from the relevance
(gradient) arriving at ``z``. The module's own backward is never evaluated, and nothing is stored on the
rule or the module: every call of a module gets its own autograd node, so a module used several times in
one forward pass (shared weights, a ReLU reused inside a residual block) is handled correctly.

Rules never modify a model. Parameters are read, modified copies are computed in the backward pass, and
canonizers that change parameters (batch-norm merging) register *overrides* here instead of writing into
the model; the model's ``Parameter`` objects, their values and ``.grad`` are left untouched.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import types as ltypes
from ._hook_protocol import HookProtocol
from ._primitives import (
    Identity,
    RemovableHandle,
    RemovableHandleList,
    Stabilizer,
    _evaluating,
    _Finalizer,
    _local,
    _no_hooks,
    collect_leaves,
    compile_kernels,
    expand,
    set_compile_kernels,
    stabilize,
)
from ._validation import argument_error
from ._weight_cache import _DERIVED, _forget_derived, derived_bytes, derived_param, set_weight_cache, weight_cache

Tensor = torch.Tensor

__all__ = [
    "BasicHook",
    "Composite",
    "CompositeContext",
    "Hook",
    "Identity",
    "MissingRuleError",
    "ParamMod",
    "RemovableHandle",
    "RemovableHandleList",
    "Stabilizer",
    "collect_leaves",
    "compile_kernels",
    "derived_bytes",
    "derived_param",
    "expand",
    "input_known_non_negative",
    "known_non_negative",
    "module_params",
    "non_negative_input",
    "override_params",
    "set_compile_kernels",
    "set_weight_cache",
    "stabilize",
    "weight_cache",
]


class MissingRuleError(RuntimeError):
    """A layer that needs an LRP rule was given none by the composite."""


# --------------------------------------------------------------------------------------------------------
# Parameters: overrides (from canonizers) and modifiers (from rules)
# --------------------------------------------------------------------------------------------------------

_PARAM_OVERRIDES: weakref.WeakKeyDictionary[nn.Module, dict[str, Tensor | None]] = weakref.WeakKeyDictionary()


def module_params(module: nn.Module) -> dict[str, Tensor | None]:
    """The parameters a rule sees for ``module``: its own (detached), with canonizer overrides applied."""
    params: dict[str, Tensor | None] = {name: param.detach() for name, param in module.named_parameters(recurse=False)}
    override = _PARAM_OVERRIDES.get(module)
    if override:
        for key, value in override.items():
            params[key] = value() if callable(value) else value
    return params


@contextmanager
def override_params(module: nn.Module, params: dict[str, Tensor | None]):
    """Let rules see ``params`` instead of ``module``'s own parameters inside the context."""
    previous = _PARAM_OVERRIDES.get(module)
    _PARAM_OVERRIDES[module] = {**(previous or {}), **params}
    try:
        yield
    finally:
        if previous is None:
            _PARAM_OVERRIDES.pop(module, None)
        else:
            _PARAM_OVERRIDES[module] = previous


class ParamMod:
    """How a rule modifies a module's parameters for one of its terms.

    Parameters
    ----------
    modifier : callable
        ``(param: Tensor, name: str) -> Tensor``, applied to each selected parameter.
    param_keys : list of str, optional
        Names of the parameters to modify; all of the module's own parameters by default, none for ``[]``.
    zero_params : str or list of str, optional
        Names of parameters replaced by zeros (e.g. ``"bias"`` to leave out the bias).
    require_params : bool, default True
        Raise when the module lacks one of ``param_keys``; otherwise skip it.
    """

    def __init__(
        self,
        modifier: Callable[[Tensor, str], Tensor],
        param_keys: Sequence[str] | None = None,
        zero_params: str | Sequence[str] | None = None,
        require_params: bool = True,
    ) -> None:
        self.modifier = modifier
        self.param_keys = None if param_keys is None else list(param_keys)
        if isinstance(zero_params, str):
            zero_params = [zero_params]
        self.zero_params = list(zero_params or [])
        self.require_params = require_params

    @classmethod
    def ensure(cls, modifier: ParamMod | Callable[[Tensor, str], Tensor]) -> ParamMod:
        """Return ``modifier`` if it is a ParamMod, else wrap the callable in one."""
        if isinstance(modifier, cls):
            return modifier
        if callable(modifier):
            return cls(modifier)
        raise argument_error(None, "param_modifier", "a ParamMod or a callable (param, name) -> param", modifier)

    def __call__(self, module: nn.Module, params: dict[str, Tensor | None] | None = None) -> Any:
        """Return the modified parameters (a new dict; ``params`` is not changed).

        Called with the module alone (Zennit's form, ``with param_mod(module) as modified:``), it returns a
        context manager that yields a shallow copy of ``module`` holding the modified parameters; the module
        itself is not touched.
        """
        if params is None:
            return self._modified_copy(module)
        keys = list(params) if self.param_keys is None else self.param_keys
        missing = [key for key in keys if key not in params and not hasattr(module, key)]
        if missing and self.require_params:
            raise RuntimeError(
                f"rule needs parameters {missing} that {type(module).__name__} does not have; "
                "map this layer to another rule"
            )
        result = dict(params)
        for key in keys:
            value = params.get(key, getattr(module, key, None))
            if value is None:
                continue
            if isinstance(value, nn.Parameter):
                value = value.detach()
            if key in self.zero_params:
                result[key] = torch.zeros_like(value)
            else:
                result[key] = self.modifier(value, key)
        return result

    @contextmanager
    def _modified_copy(self, module: nn.Module):
        modified = self(module, module_params(module))
        clone = copy.copy(module)
        clone._parameters = dict(module._parameters)
        clone._buffers = dict(module._buffers)
        for key, value in modified.items():
            if key in clone._parameters:
                clone._parameters[key] = None if value is None else nn.Parameter(value, requires_grad=False)
            elif key in clone._buffers:
                clone._buffers[key] = value
            else:
                object.__setattr__(clone, key, value)
        yield clone


def _identity(obj: Any, name: str | None = None) -> Any:
    return obj


# --------------------------------------------------------------------------------------------------------
# Functional forms of affine layers: output and input-gradient (transposed map) with given parameters
# --------------------------------------------------------------------------------------------------------


def _numeric_padding(module: nn.Module) -> bool:
    return not isinstance(module.padding, str) and getattr(module, "padding_mode", "zeros") == "zeros"


def affine_forward(module: nn.Module, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``module``'s forward with ``weight`` and ``bias`` in place of its own (Linear and convolutions)."""
    if isinstance(module, nn.Linear):
        return F.linear(input, weight, bias)
    if isinstance(module, ltypes.ConvolutionStandard):
        return module._conv_forward(input, weight, bias)
    if isinstance(module, ltypes.ConvolutionTranspose):
        return torch.ops.aten.convolution(
            input,
            weight,
            bias,
            list(module.stride),
            list(module.padding),
            list(module.dilation),
            True,
            list(module.output_padding),
            module.groups,
        )
    raise TypeError(f"{type(module).__name__} is not an affine layer")


def affine_input_gradient(module: nn.Module, grad_output: Tensor, input: Tensor, weight: Tensor) -> Tensor:
    """Gradient of ``affine_forward(module, input, weight, ·)`` w.r.t. its input for ``grad_output``.

    Affine layers are linear in the input, so this is the transposed map with ``weight``; it is computed
    directly (no autograd graph, no forward pass).
    """
    if isinstance(module, nn.Linear):
        return grad_output @ weight
    if isinstance(module, ltypes.Convolution) and _numeric_padding(module):
        transposed = isinstance(module, ltypes.ConvolutionTranspose)
        return torch.ops.aten.convolution_backward(
            grad_output,
            input,
            weight,
            None,
            list(module.stride),
            list(module.padding),
            list(module.dilation),
            transposed,
            list(module.output_padding) if transposed else [0] * (weight.ndim - 2),
            module.groups,
            [True, False, False],
        )[0]
    with torch.enable_grad():
        leaf = input.detach().requires_grad_(True)
        output = affine_forward(module, leaf, weight, None)
        (gradient,) = torch.autograd.grad(output, leaf, grad_output)
    return gradient


# --------------------------------------------------------------------------------------------------------
# Rules and their attachment to modules
# --------------------------------------------------------------------------------------------------------


def input_known_non_negative() -> bool:
    """Whether the input of the rule now evaluated is known to be ``>= 0`` from the forward graph.

    Rules read this instead of checking the values (a reduction and a host-device synchronisation per
    layer): the engine decides it in the forward pass from what produced the input, see
    :func:`known_non_negative`. False outside a rule's backward unless :func:`non_negative_input` says so.
    """
    return getattr(_local, "non_negative", False)


@contextmanager
def non_negative_input(known: bool = True):
    """Tell rules evaluated inside the context that their input is (or is not) known to be ``>= 0``."""
    previous = getattr(_local, "non_negative", False)
    _local.non_negative = known
    try:
        yield
    finally:
        _local.non_negative = previous


#: modules whose output is never negative, whatever the input
NON_NEGATIVE_MODULES: tuple[type, ...] = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Softplus, nn.Softmax, nn.Hardsigmoid)
#: modules whose output is non-negative when their input is (pooling, reshapes, dropout)
_SIGN_KEEPING_MODULES: tuple[type, ...] = ltypes.AvgPool + ltypes.MaxPool + ltypes.Structural
#: autograd nodes of operations whose output is never negative
_NON_NEGATIVE_NODES = frozenset(
    {"ReluBackward0", "ReluBackward1", "SigmoidBackward0", "SoftmaxBackward0", "SoftplusBackward0", "ExpBackward0"}
)
#: autograd nodes of operations whose output is non-negative when their (first) input is
_SIGN_KEEPING_NODES = frozenset(
    {
        "MaxPool1DWithIndicesBackward0",
        "MaxPool2DWithIndicesBackward0",
        "MaxPool3DWithIndicesBackward0",
        "AvgPool2DBackward0",
        "AvgPool3DBackward0",
        "AdaptiveAvgPool2DBackward0",
        "AdaptiveAvgPool3DBackward0",
        "AdaptiveMaxPool2DBackward0",
        "MeanBackward1",
        "ViewBackward0",
        "ReshapeAliasBackward0",
        "UnsafeViewBackward0",
        "CloneBackward0",
        "NativeDropoutBackward0",
        "PermuteBackward0",
        "TransposeBackward0",
        "SqueezeBackward1",
        "UnsqueezeBackward0",
        "ExpandBackward0",
        "SliceBackward0",
        "SelectBackward0",
    }
)


def known_non_negative(tensor: Tensor, depth: int = 16) -> bool:
    """Whether ``tensor`` is ``>= 0`` by construction, read from its autograd graph (no values are read).

    True for the output of a ReLU (module or function), sigmoid, softmax, ... and of pooling, reshapes and
    dropout applied to such an output; False when unknown (a leaf, an addition, an in-place change).
    """
    node = tensor.grad_fn
    while node is not None and depth > 0:
        if isinstance(node, _RuleFunction._backward_cls):
            return bool(getattr(node, "non_negative_output", False))
        name = type(node).__name__
        if name in _NON_NEGATIVE_NODES:
            return True
        if name not in _SIGN_KEEPING_NODES or not node.next_functions:
            return False
        node = node.next_functions[0][0]
        depth -= 1
    return False


class _RuleFunction(torch.autograd.Function):
    """Replaces a module's output; its backward is the rule's relevance for the module's input."""

    @staticmethod
    def forward(ctx, rule: Hook, module: nn.Module, input: Tensor, output: list, non_negative: bool) -> Tensor:  # type: ignore[override]
        ctx.rule = rule
        ctx.module = module
        # decided here from the graph, so that no rule needs to read the input's values to know its sign
        ctx.input_non_negative = non_negative
        ctx.non_negative_output = isinstance(module, NON_NEGATIVE_MODULES) or (
            non_negative and isinstance(module, _SIGN_KEEPING_MODULES)
        )
        ctx.input_shape = input.shape
        ctx.save_for_backward(input if rule.needs_input else None)
        # the output arrives in a list, not as a tensor argument: a tensor argument returned as is would
        # become a view that in-place operations after the module (ReLU(inplace=True)) may not modify
        result = output.pop()
        if rule.needs_output:
            # kept by reference; the version counter tells whether an in-place op changed it since
            ctx.output, ctx.output_version = result, result._version
        return result

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (input,) = ctx.saved_tensors
        with _no_hooks(), non_negative_input(ctx.input_non_negative):
            if ctx.rule.needs_output:
                # used once and released (a repeated backward with retain_graph=True recomputes it)
                output, ctx.output = ctx.output, None
                if output is not None and output._version != ctx.output_version:
                    output = None
                relevance = ctx.rule.backward(ctx.module, input, grad_output, output=output)
            else:
                relevance = ctx.rule.backward(ctx.module, input, grad_output)
        if relevance is not None and relevance.shape != ctx.input_shape:
            raise RuntimeError(
                f"rule {type(ctx.rule).__name__} on {type(ctx.module).__name__} returned relevance of shape "
                f"{tuple(relevance.shape)} for an input of shape {tuple(ctx.input_shape)}; "
                "map this layer to a rule that fits it (e.g. Norm())"
            )
        return None, None, relevance, None, None


def _attributed_call(args: tuple) -> bool:
    """Whether a module call with these arguments is part of an attribution (its output gets a rule's node)."""
    if not args or not isinstance(args[0], Tensor):
        return False
    return not _evaluating() and args[0].requires_grad and torch.is_grad_enabled()


def _apply_rule(rule: Hook, mod: nn.Module, args: tuple, output: Any) -> Tensor | None:
    """Forward hook of a rule: replace the module's output by a node whose backward is the rule."""
    if not _attributed_call(args) or not rule.active:
        return None
    rule = rule.rule_for_call()  # type: ignore[assignment]
    if rule is None:
        return None
    if not isinstance(output, Tensor):
        raise TypeError(
            f"rule {type(rule).__name__} is attached to {type(mod).__name__}, which returns "
            f"{type(output).__name__}; rules apply to modules with a single tensor output. "
            "Map this layer to no rule (e.g. a name map) or wrap it in a module returning one tensor."
        )
    return _RuleFunction.apply(rule, mod, args[0], [output.detach()], known_non_negative(args[0]))


def sole_rule(module: nn.Module) -> Hook | None:
    """The rule attached to ``module`` (our protocol) when it is the module's only hook, else None.

    Fused paths (:mod:`lrp_lightning._fused`) compute what a module's rule would, without calling the
    module; they apply only where nothing else observes the call (no other forward or pre-forward hook).
    """
    hooks = list(module._forward_hooks.values())
    if len(hooks) != 1 or module._forward_pre_hooks:
        return None
    hook = hooks[0]
    if not (isinstance(hook, functools.partial) and hook.func is _apply_rule):
        return None
    rule = hook.args[0]
    return rule if rule.active else None


class Hook(HookProtocol):
    """Base class of all rules.

    A rule implements :meth:`backward`: given the module, its input (when :attr:`needs_input`) and the
    relevance arriving at its output (``grad_output``), return the relevance of its input. Rules are
    stateless templates; one instance may be attached to many modules.

    A subclass written for Zennit's ``zennit.core.Hook`` works unchanged: when its ``backward`` takes
    ``(module, grad_input, grad_output)`` or it defines Zennit's ``forward``, ``pre_forward``,
    ``post_forward`` or ``pre_backward``, it is run by Zennit's protocol (tuples of gradients,
    :attr:`stored_tensors`, :attr:`active`; see :class:`lrp_lightning._hook_protocol.HookProtocol`), one
    autograd hook pair per call. Set :attr:`zennit_protocol` to choose explicitly.
    """

    #: whether :meth:`backward` needs the module's input (kept alive until the backward pass)
    needs_input: bool = True
    #: whether :meth:`backward` takes ``output=`` (the module's output, or ``None`` when an in-place
    #: operation changed it after the module)
    needs_output: bool = False
    #: True: Zennit's hook protocol; False: ours; None: decided from the methods the subclass defines
    zennit_protocol: bool | None = None
    #: False switches the rule off: forward passes compute the plain gradient (a Zennit-protocol hook also
    #: stops modifying backward passes of graphs built while it was on)
    active: bool = True

    def copy(self) -> Hook:
        """Return an independent copy: the same settings, its own :attr:`stored_tensors` and :attr:`active`."""
        duplicate = copy.copy(self)
        duplicate.__dict__.pop("_stored_tensors", None)
        duplicate.__dict__.pop("active", None)
        return duplicate

    def rule_for_call(self) -> Hook | None:
        """The rule for this attributed call of the module: this rule (a rule that depends on which call
        it is, e.g. the first layer's, returns another rule or None for no rule)."""
        return self

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Attach this rule to ``module`` until the returned handle is removed."""
        if self.uses_zennit_protocol():
            return self.register_zennit_protocol(module)
        handles = RemovableHandleList([module.register_forward_hook(functools.partial(_apply_rule, self))])
        _DERIVED.setdefault(module, {})
        handles.append(_Finalizer(lambda: _forget_derived(module)))
        if getattr(module, "inplace", False) is True:
            # an in-place module (ReLU(inplace=True)) would overwrite its input, which the rule needs and which
            # must stay the node that relevance flows to: run it out of place while the rule is attached (one
            # pass over the activation, where copying the input first took two)
            module.inplace = False
            handles.append(_Finalizer(lambda: setattr(module, "inplace", True)))
        return handles

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BasicHook(Hook):
    """A rule of Zennit's general form, given as data: input, parameter and output modifiers.

    For ``K`` terms, term ``k`` evaluates the module on ``x_k = input_modifiers[k](x)`` with parameters
    ``param_modifiers[k]``, giving ``z_k = output_modifiers[k](f_k(x_k))``. ``gradient_mapper(R, [z_k])``
    turns the relevance ``R`` at the output into one tensor per term (e.g. ``R / z``), each is propagated
    back through the transposed ``f_k`` to ``g_k``, and ``reducer([x_k], [g_k])`` combines them into the
    input relevance (e.g. ``x * g``). For affine layers (Linear, convolutions) ``f_k`` and its transpose
    are evaluated directly; other modules go through autograd.

    Parameters
    ----------
    input_modifiers : list of callable, optional
        ``(input) -> input`` per term; identity by default.
    param_modifiers : list of ParamMod or callable, optional
        Per term; unmodified parameters by default.
    output_modifiers : list of callable, optional
        ``(output) -> output`` per term; identity by default.
    gradient_mapper : callable, optional
        ``(relevance, outputs) -> list of tensors or None``; ``R / stabilize(z_k)`` for each term by default.
        A ``None`` entry means the term is not propagated (its gradient is ``None`` in the reducer).
    reducer : callable, optional
        ``(inputs, gradients) -> relevance``; ``sum_k x_k * g_k`` by default.
    """

    def __init__(
        self,
        input_modifiers: Sequence[Callable[[Tensor], Tensor]] | None = None,
        param_modifiers: Sequence[ParamMod | Callable[[Tensor, str], Tensor]] | None = None,
        output_modifiers: Sequence[Callable[[Tensor], Tensor]] | None = None,
        gradient_mapper: Callable[[Tensor, list[Tensor]], Any] | None = None,
        reducer: Callable[[list[Tensor], list[Tensor | None]], Tensor] | None = None,
    ) -> None:
        modifiers = (input_modifiers, param_modifiers, output_modifiers)
        lengths = {len(m) for m in modifiers if m is not None}
        if len(lengths) > 1:
            raise argument_error(
                type(self).__name__,
                "the lengths of input_modifiers, param_modifiers and output_modifiers",
                "equal",
                [None if m is None else len(m) for m in modifiers],
            )
        count = lengths.pop() if lengths else 1
        self.input_modifiers = list(input_modifiers) if input_modifiers is not None else [_identity] * count
        self.param_modifiers = [
            ParamMod.ensure(mod)
            for mod in (param_modifiers if param_modifiers is not None else [ParamMod(_identity)] * count)
        ]
        self._identity_outputs = output_modifiers is None
        self.output_modifiers = list(output_modifiers) if output_modifiers is not None else [_identity] * count
        self.gradient_mapper = gradient_mapper or _default_gradient_mapper
        self.reducer = reducer or _default_reducer

    def forward(self, module: nn.Module, input: tuple, output: Any) -> None:
        """Zennit's protocol (for subclasses that run by it): keep the input for :meth:`backward`."""
        self.stored_tensors["input"] = input

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        if isinstance(input, tuple):  # Zennit's protocol: (module, grad_input, grad_output), tuples
            relevance = self.backward(module, self.stored_tensors["input"][0], grad_output[0])
            return tuple(relevance if grad.shape == relevance.shape else None for grad in input)
        params = module_params(module)
        inputs = [modifier(input) for modifier in self.input_modifiers]
        if self._identity_outputs and isinstance(module, ltypes.Linear):
            # parameter modifiers are functions of the parameters: computed once until a parameter changes
            param_sets = derived_param(
                module,
                (self, "param_sets"),
                list(params.values()),
                lambda: [modifier(module, params) for modifier in self.param_modifiers],
            )
            outputs = [affine_forward(module, x, p["weight"], p.get("bias")) for x, p in zip(inputs, param_sets)]
            grad_outputs = _as_list(self.gradient_mapper(grad_output, outputs), len(outputs))
            gradients = [
                None if g is None else affine_input_gradient(module, g, x, p["weight"])
                for g, x, p in zip(grad_outputs, inputs, param_sets)
            ]
            return self.reducer(inputs, gradients)
        param_sets = [modifier(module, params) for modifier in self.param_modifiers]
        return self._autograd_backward(module, params, inputs, param_sets, grad_output)

    def _autograd_backward(self, module, params, inputs, param_sets, grad_output):
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        with torch.enable_grad():
            outputs = [
                out_mod(_call_with_params(module, x, p, params))
                for out_mod, x, p in zip(self.output_modifiers, leaves, param_sets)
            ]
        grad_outputs = _as_list(self.gradient_mapper(grad_output, [out.detach() for out in outputs]), len(outputs))
        used = [i for i, g in enumerate(grad_outputs) if g is not None]
        gradients: list[Tensor | None] = [None] * len(outputs)
        if used:
            computed = torch.autograd.grad(
                [outputs[i] for i in used],
                [leaves[i] for i in used],
                grad_outputs=[grad_outputs[i] for i in used],
                allow_unused=True,
            )
            for i, gradient in zip(used, computed):
                gradients[i] = torch.zeros_like(inputs[i]) if gradient is None else gradient
        return self.reducer(inputs, gradients)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(terms={len(self.input_modifiers)})"


def _as_list(value: Any, count: int) -> list[Tensor | None]:
    if isinstance(value, Tensor):
        return [value] * count if count > 1 else [value]
    value = list(value)
    if len(value) != count:
        raise ValueError(f"gradient_mapper returned {len(value)} tensors for {count} terms")
    return value


def _default_gradient_mapper(grad_output: Tensor, outputs: list[Tensor]) -> list[Tensor]:
    return [grad_output / stabilize(output) for output in outputs]


def _default_reducer(inputs: list[Tensor], gradients: list[Tensor | None]) -> Tensor:
    terms = [x * g for x, g in zip(inputs, gradients) if g is not None]
    if not terms:
        return torch.zeros_like(inputs[0])
    return functools.reduce(torch.add, terms)


def _call_with_params(module: nn.Module, input: Tensor, params: dict, original: dict) -> Tensor:
    if all(params.get(k) is original.get(k) for k in set(params) | set(original)) and (module not in _PARAM_OVERRIDES):
        return module.forward(input)
    if isinstance(module, ltypes.Linear):
        return affine_forward(module, input, params["weight"], params.get("bias"))
    return torch.func.functional_call(module, params, (input,))


# --------------------------------------------------------------------------------------------------------
# Handles and composites
# --------------------------------------------------------------------------------------------------------


class CompositeContext:
    """Registers a composite on entering and removes it on exiting (also on exceptions)."""

    def __init__(self, module: nn.Module, composite: Composite) -> None:
        self.module = module
        self.composite = composite

    def __enter__(self) -> nn.Module:
        self.composite.register(self.module)
        return self.module

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self.composite.remove()
        return False


_UNSET = object()

#: layer types that may go without a rule: relevance flows through them as the gradient does
PASS_THROUGH_TYPES: tuple[type, ...] = ltypes.MaxPool + ltypes.Structural + (nn.Sequential, nn.ModuleList)


class Composite:
    """Maps modules to rules, applies canonizers, and registers both on a model.

    Parameters
    ----------
    module_map : callable, optional
        ``(ctx: dict, name: str, module: nn.Module) -> Hook or None``; ``ctx`` is one dict per registration.
    canonizers : list of Canonizer, optional
        Objects with ``apply(model)``, applied before the rules are attached and reverted on :meth:`remove`.
        Canonizer names and ``"auto"`` are resolved by the composites of :mod:`lrp_lightning.composites`
        (through the registry of :mod:`lrp_lightning.canonizers`); the engine itself knows no canonizer.
    strict : bool, default False
        Raise :class:`MissingRuleError` when the attributed forward pass runs a leaf layer that mixes
        values (anything but pooling by max, reshapes, dropout, activations and batch norm) and has no
        rule. Layers a model holds but does not call (a loss, a metric) are not checked. LRP composites
        set this.
    """

    name: str | None = None

    def __init__(
        self,
        module_map: Callable[[dict, str, nn.Module], Hook | None] | None = None,
        canonizers: Sequence[Any] | str | None = None,
        strict: bool = False,
    ) -> None:
        self.module_map = module_map or (lambda ctx, name, module: None)
        self.canonizers = canonizers if isinstance(canonizers, str) else list(canonizers or [])
        self.strict = strict
        self.handles = RemovableHandleList()
        self.rule_map: dict[str, Hook] = {}
        #: the rules registered now (copies of the module map's templates), as Zennit's ``hook_refs``
        self.hook_refs: weakref.WeakSet = weakref.WeakSet()

    def register(self, module: nn.Module) -> None:
        """Apply the canonizers and attach the rules to ``module`` and all its children."""
        self.remove()
        try:
            for canonizer in self.resolved_canonizers(module):
                self.handles.extend(canonizer.apply(module))
            ctx: dict = {}
            for name, child in module.named_modules():
                template = self.module_map(ctx, name, child)
                if template is not None:
                    # a copy per layer, as in Zennit: its own `active` flag (and, for a hook of Zennit's
                    # protocol, its own stored tensors); our rules keep no other state
                    rule = template.copy()
                    self.rule_map[name] = rule
                    self.hook_refs.add(rule)
                    self.handles.append(rule.register(child))
                elif self.strict and _needs_rule(child):
                    # only a layer that the attributed forward pass runs needs a rule (a loss or a metric
                    # held by a LightningModule does not): check when it is called
                    self.handles.append(child.register_forward_pre_hook(self._missing_rule_hook(name)))
        except BaseException:
            self.remove()
            raise

    def _missing_rule_hook(self, name: str) -> Callable[[nn.Module, tuple], None]:
        def check(module: nn.Module, args: tuple) -> None:
            if _evaluating() or not torch.is_grad_enabled():
                return
            if any(isinstance(arg, Tensor) and arg.requires_grad for arg in args):
                raise MissingRuleError(_missing_rule_message(self, [(name, module)]))

        return check

    def resolved_canonizers(self, module: nn.Module) -> list[Any]:
        """The canonizers this composite applies to ``module``.

        Here the canonizer objects as given; the composites of :mod:`lrp_lightning.composites` also resolve
        registered names and ``"auto"``.
        """
        spec = self.canonizers
        names = [spec] if isinstance(spec, str) else [item for item in spec if isinstance(item, str)]
        if names:
            raise TypeError(
                f"composite {self.name or type(self).__name__}: canonizers {names!r} are given by name, which only "
                "the composites of lrp_lightning.composites resolve (e.g. LayerMapComposite); pass canonizer "
                "objects here, e.g. canonizers=lrp_lightning.canonizers.resolve_canonizers('auto', model)"
            )
        return list(spec)

    def remove(self) -> None:
        """Detach all rules and revert all canonizers."""
        self.rule_map = {}
        self.handles.remove()
        self.hook_refs.clear()

    def context(self, module: nn.Module) -> CompositeContext:
        """A context manager registering this composite on ``module``."""
        return CompositeContext(module, self)

    @contextmanager
    def inactive(self):
        """Temporarily compute plain gradients (rules switched off), e.g. for a second-order gradient.

        Sets ``active = False`` on every registered rule: forward passes inside the context build the plain
        gradient, and rules of Zennit's protocol also stop modifying graphs built before.
        """
        rules = list(self.hook_refs)
        states = [rule.__dict__.get("active", _UNSET) for rule in rules]
        try:
            for rule in rules:
                rule.active = False
            with _no_hooks():
                yield self
        finally:
            for rule, state in zip(rules, states):
                if state is _UNSET:
                    rule.__dict__.pop("active", None)
                else:
                    rule.active = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(canonizers={self.canonizers!r})"


def _needs_rule(module: nn.Module) -> bool:
    if next(module.children(), None) is not None:
        return False
    return not isinstance(module, PASS_THROUGH_TYPES + ltypes.Activation + ltypes.BatchNorm)


#: what the strict composites' error advises for a layer type without a rule (instead of a Norm rule);
#: filled by the modules that know these layers (lrp_lightning.attention for LayerNorm, softmax, ...)
MISSING_RULE_ADVICE: dict[type, str] = {}


def _missing_rule_message(composite: Composite, missing: Iterable[tuple[str, nn.Module]]) -> str:
    label = composite.name or type(composite).__name__
    lines = [f"layer {name or '<root>'} ({type(mod).__name__}) has no rule" for name, mod in missing]
    first = type(next(iter(missing))[1])
    advice = next((text for kind, text in MISSING_RULE_ADVICE.items() if issubclass(first, kind)), None)
    if advice:
        return f"{'; '.join(lines)} in composite {label}; {advice}"
    hint = f"torch.nn.{first.__name__}" if getattr(torch.nn, first.__name__, None) is first else first.__name__
    return (
        f"{'; '.join(lines)} in composite {label}; add one with layer_map=[({hint}, Norm())] "
        "(or another rule), or pass strict=False to let relevance flow through it as the gradient"
    )
