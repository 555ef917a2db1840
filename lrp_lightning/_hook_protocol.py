"""Zennit's hook protocol, for custom rules written against ``zennit.core.Hook``.

Our own rules are stateless: each call of a module gets one autograd node whose backward is the rule
(:mod:`lrp_lightning.core`). Rules written for Zennit instead keep state on the hook object and work
through callbacks:

* ``forward(module, input, output)`` after each forward (``input`` a tuple), e.g. to store the input in
  ``stored_tensors``;
* ``pre_backward(module, grad_input, grad_output)`` when the gradient reaches the module's output
  (by default it stores ``stored_tensors['grad_output']``);
* ``backward(module, grad_input, grad_output)`` with tuples: ``grad_input`` is the module's true
  gradient at its input; a returned tuple replaces it, ``None`` keeps it;
* ``active``: while False, the hook leaves gradients alone, also in graphs built while it was True.

This module runs such hooks as Zennit does: an identity node before the module (its gradient hook
calls ``backward``) and a gradient hook at the module's output (calls ``pre_backward``). Unlike Zennit,
the output gradient that ``backward`` receives is the one of the same call, so a module called twice
in one forward pass gets each call's own output gradient; what a hook stores in ``forward`` is its
own state, and a later call overwrites it, as in Zennit. Modules called inside a rule's backward pass
do not run hooks.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from typing import Any

import torch
import torch.nn as nn

from ._primitives import Identity, RemovableHandleList, _evaluating, _Finalizer, _no_hooks

Tensor = torch.Tensor

_ZENNIT_ONLY = ("forward", "pre_forward", "post_forward", "pre_backward")
_PROTOCOL_CACHE: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()
_pending = threading.local()


def _defined_here(cls: type, name: str) -> type | None:
    """The class of ``cls``'s MRO that defines ``name``."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _is_ours(klass: type | None) -> bool:
    return klass is None or klass.__module__.split(".")[0] == "lrp_lightning"


def uses_zennit_protocol(cls: type) -> bool:
    """Whether hooks of class ``cls`` run by Zennit's protocol.

    ``cls.zennit_protocol`` decides when set. Otherwise a class runs by Zennit's protocol when it (or a
    base outside lrp_lightning) defines one of ``forward``, ``pre_forward``, ``post_forward`` or
    ``pre_backward``, when its ``backward`` names its second argument ``grad_input`` (Zennit's name), or
    when it defines no ``backward`` at all (Zennit's base hook: the plain gradient). Classes of
    lrp_lightning other than the base ``Hook`` are our rules.
    """
    explicit = getattr(cls, "zennit_protocol", None)
    if explicit is not None:
        return bool(explicit)
    cached = _PROTOCOL_CACHE.get(cls)
    if cached is not None:
        return cached
    backward_owner = _defined_here(cls, "backward")
    if _is_ours(cls) and cls is not HookProtocol and cls.__name__ != "Hook":
        result = False  # our rules (FirstCallRule delegates, its backward is never called)
    elif backward_owner is HookProtocol:
        result = True
    elif any(not _is_ours(_defined_here(cls, name)) for name in _ZENNIT_ONLY):
        result = True
    else:
        parameters = list(inspect.signature(cls.backward).parameters)
        result = len(parameters) > 2 and parameters[2] == "grad_input"
    _PROTOCOL_CACHE[cls] = result
    return result


class _Call:
    """One attributed call of a module: the gradient at its output, once the backward pass reached it."""

    __slots__ = ("grad_output", "registration")

    def __init__(self, registration: _Registration | None) -> None:
        self.grad_output: Any = None
        self.registration = registration

    def live(self, hook: HookProtocol | None) -> bool:
        """Whether the hook still modifies this call's gradient (alive, active and not removed)."""
        return hook is not None and hook.active and (self.registration is None or self.registration.live)


class _Registration:
    """A hook's attachment to one module; graphs built under it stop calling the hook once it is removed."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = True


def _registrations(hook: HookProtocol) -> weakref.WeakKeyDictionary:
    return hook.__dict__.setdefault("_zennit_registrations", weakref.WeakKeyDictionary())


def _stack() -> list:
    stack = getattr(_pending, "stack", None)
    if stack is None:
        stack = _pending.stack = []
    return stack


def _call_of(hook: HookProtocol, input: Any, pop: bool) -> _Call | None:
    """The call that ``pre_forward`` opened for this forward of the module (its input is the identity's output)."""
    first = input[0] if isinstance(input, tuple) and input else input
    stack = _stack()
    for index in range(len(stack) - 1, -1, -1):
        owner, tensor, call = stack[index]
        if owner is hook and tensor is first:
            if pop:
                del stack[index]
            return call
    return None


def pre_forward(hook: HookProtocol, module: nn.Module, input: Any) -> Any:
    """Zennit's ``pre_forward``: route the input through an identity node whose gradient hook is ``backward``."""
    if not isinstance(input, tuple):
        input = (input,)
    attributed = (
        bool(input)
        and isinstance(input[0], Tensor)
        and input[0].requires_grad
        and torch.is_grad_enabled()
        and not _evaluating()
    )
    if not attributed:
        return input[0] if len(input) == 1 else input
    call = _Call(_registrations(hook).get(module))
    routed = Identity.apply(*input)
    routed[0].grad_fn.register_hook(functools.partial(_input_gradient, weakref.ref(hook), module, call))
    # copies, so that an in-place operation in the module cannot change the identity's output
    routed = tuple(tensor.clone() for tensor in routed)
    _stack().append((hook, routed[0], call))
    return routed[0] if len(routed) == 1 else routed


def post_forward(hook: HookProtocol, module: nn.Module, input: Any, output: Any) -> Any:
    """Zennit's ``post_forward``: a gradient hook at the output that calls ``pre_backward`` for this call."""
    outputs = output if isinstance(output, tuple) else (output,)
    call = _call_of(hook, input, pop=False)
    if call is not None and isinstance(outputs[0], Tensor) and outputs[0].grad_fn is not None:
        outputs[0].grad_fn.register_hook(functools.partial(_output_gradient, weakref.ref(hook), module, call))
    return outputs[0] if len(outputs) == 1 else outputs


def _after_forward(hook: HookProtocol, module: nn.Module, input: tuple, output: Any) -> Any:
    _call_of(hook, input, pop=True)
    return hook.forward(module, input, output)


def _output_gradient(hook_ref: weakref.ref, module: nn.Module, call: _Call, grad_input: tuple, grad_output: tuple):
    hook = hook_ref()
    if not call.live(hook):
        return None
    call.grad_output = grad_output
    return hook.pre_backward(module, grad_input, grad_output)


def _input_gradient(hook_ref: weakref.ref, module: nn.Module, call: _Call, grad_input: tuple, grad_output: tuple):
    hook = hook_ref()
    if not call.live(hook):
        return None
    if call.grad_output is not None:
        # this call's output gradient (a module called twice has one per call)
        hook.stored_tensors["grad_output"] = call.grad_output
    with _no_hooks():
        result = hook.backward(module, grad_input, hook.stored_tensors.get("grad_output"))
    if isinstance(result, Tensor):
        result = (result,)
    return result


def _register(hook: HookProtocol, module: nn.Module) -> RemovableHandleList:
    """Attach a hook of Zennit's protocol to ``module``; removing the handles calls ``hook.remove()``."""
    registration = _registrations(hook)[module] = _Registration()

    def unregister() -> None:
        registration.live = False
        if _registrations(hook).get(module) is registration:
            del _registrations(hook)[module]
        hook.remove()

    return RemovableHandleList(
        [
            _Finalizer(unregister),
            module.register_forward_pre_hook(hook.pre_forward),
            module.register_forward_hook(hook.post_forward),
            module.register_forward_hook(functools.partial(_after_forward, hook)),
        ]
    )


class HookProtocol:
    """Zennit's hook interface, the base of :class:`lrp_lightning.core.Hook`.

    Our rules implement only ``backward(module, input, grad_output)``; these methods are for hooks
    written for Zennit (see the module docstring). :meth:`backward` here is Zennit's default: ``None``,
    the plain gradient.
    """

    #: False: the hook leaves gradients alone
    active: bool = True

    def __init__(self) -> None:
        self.active = True

    @property
    def stored_tensors(self) -> dict[str, Any]:
        """Zennit's per-hook storage, for hooks of Zennit's protocol (our rules keep nothing here)."""
        return self.__dict__.setdefault("_stored_tensors", {})

    @stored_tensors.setter
    def stored_tensors(self, value: dict[str, Any]) -> None:
        self.__dict__["_stored_tensors"] = value

    def backward(self, module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
        """Return the relevance of ``module``'s input; here (Zennit's default) ``None``: the gradient."""
        return None

    def forward(self, module: nn.Module, input: tuple, output: Any) -> Any:
        """Called after each forward of ``module`` (e.g. to store the input); ``None`` keeps the output."""
        return None

    def pre_forward(self, module: nn.Module, input: Any) -> Any:
        """Put an identity node before ``module``, so that :meth:`backward` can replace its gradient."""
        return pre_forward(self, module, input)

    def post_forward(self, module: nn.Module, input: Any, output: Any) -> Any:
        """Catch the gradient at ``module``'s output for :meth:`pre_backward`."""
        return post_forward(self, module, input, output)

    def pre_backward(self, module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
        """Store the output gradient as ``stored_tensors['grad_output']``."""
        self.stored_tensors["grad_output"] = grad_output

    def remove(self) -> None:
        """Forget the stored tensors (called when the hook's handles are removed)."""
        self.stored_tensors.clear()

    @classmethod
    def uses_zennit_protocol(cls) -> bool:
        """Whether hooks of this class run by Zennit's protocol (see :func:`uses_zennit_protocol`)."""
        return uses_zennit_protocol(cls)

    def register_zennit_protocol(self, module: nn.Module) -> RemovableHandleList:
        """Attach this hook to ``module`` by Zennit's protocol; removing the handles calls :meth:`remove`."""
        return _register(self, module)
