"""Engine primitives: stabilizers, handles, the identity node and the switch that keeps rules out of rules.

Split from :mod:`lrp_lightning.core`, which re-exports the public names (Zennit's ``zennit.core`` has
them); :mod:`lrp_lightning._hook_protocol` uses them too, without importing ``core``.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ._validation import argument_error

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------------------
# Stabilizer
# --------------------------------------------------------------------------------------------------------


def stabilize(
    input: Tensor,
    epsilon: float = 1e-6,
    clip: bool = False,
    norm_scale: bool = False,
    dim: int | Sequence[int] | None = None,
) -> Tensor:
    """Stabilize ``input`` for a safe division.

    Parameters
    ----------
    input : torch.Tensor
        The denominator to stabilize.
    epsilon : float, default 1e-6
        Shift away from zero: each entry moves by ``epsilon`` in the direction of its sign (``+`` for ``+0``;
        ``-0`` keeps its sign bit and moves to ``-epsilon``, one pass where Zennit takes three).
    clip : bool, default False
        Instead of shifting, clip the magnitude of each entry to at least ``epsilon``, keeping its sign.
    norm_scale : bool, default False
        Scale ``epsilon`` by the root mean square of ``input`` over ``dim`` (per sample).
    dim : int or sequence of int, optional
        Dimensions of the root mean square of ``norm_scale``; all but the batch dimension by default.

    Returns
    -------
    torch.Tensor
        A new tensor without zeros.
    """
    if not (norm_scale or clip):
        # the common case in two passes (torch.where is several times slower on CPU); equal to
        # input + sign * epsilon with sign(+0) = +1 (and sign(-0) = -1, a zero denominator either way)
        shift = torch.copysign(torch.full((), epsilon, dtype=input.dtype, device=input.device), input)
        return input + shift if torch.is_grad_enabled() else shift.add_(input)
    sign = (input == 0.0).to(input) + input.sign()
    if norm_scale:
        if dim is None:
            dim = tuple(range(1, input.ndim))
        elif isinstance(dim, int):
            dim = (dim,)
        epsilon = epsilon * (input**2).mean(dim=tuple(dim), keepdim=True) ** 0.5
    if clip:
        return sign * input.abs().clip(min=epsilon)
    return input + sign * epsilon


class Stabilizer:
    """A callable that stabilizes denominators, see :func:`stabilize`.

    Parameters
    ----------
    epsilon : float, default 1e-6
    clip : bool, default False
    norm_scale : bool, default False
    dim : sequence of int, optional
    """

    def __init__(
        self,
        epsilon: float = 1e-6,
        clip: bool = False,
        norm_scale: bool = False,
        dim: int | Sequence[int] | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.clip = clip
        self.norm_scale = norm_scale
        self.dim = dim

    def __call__(self, input: Tensor) -> Tensor:
        return stabilize(input, self.epsilon, self.clip, self.norm_scale, self.dim)

    @property
    def shift(self) -> float | None:
        """``epsilon`` when this stabilizer only shifts away from zero (no clip, no norm scale), else None.

        Fast paths use it on denominators of known sign, shifting them in place.
        """
        return None if (self.clip or self.norm_scale) else float(self.epsilon)

    def __repr__(self) -> str:
        return f"Stabilizer(epsilon={self.epsilon}, clip={self.clip}, norm_scale={self.norm_scale}, dim={self.dim})"

    @classmethod
    def ensure(cls, value: float | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """Return a stabilizer for a number (used as ``epsilon``) or a callable (used as is)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(epsilon=float(value))
        if callable(value):
            return value
        raise argument_error(None, "stabilizer", "a number (e.g. 1e-6) or a callable tensor -> tensor", value)


def expand(value: Any, shape: Sequence[int], cut_batch_dim: bool = False) -> Tensor:
    """Broadcast a number or tensor to ``shape``.

    A vector of length ``C`` is per channel for an ``(N, C, ...)`` shape (also when ``N == C``); other
    tensors with fewer dimensions than ``shape`` get trailing singleton dimensions, so ``(1, C, 1, 1)``
    and ``(N, 1, 1, 1)`` broadcast as written.
    With ``cut_batch_dim``, a tensor with a longer batch dimension is cut to the first ``shape[0]`` rows.
    """
    tensor = value if isinstance(value, Tensor) else torch.as_tensor(value)
    shape = tuple(shape)
    if tensor.ndim == 0:
        return tensor.expand(shape)
    if tensor.ndim == 1 and len(shape) >= 2 and tensor.shape[0] == shape[1] and tensor.shape[0] > 1:
        # a per-channel vector for an (N, C, ...) input, also when N == C
        tensor = tensor[(None, slice(None)) + (None,) * (len(shape) - 2)]
    if tensor.ndim < len(shape) and all(a in (1, b) for a, b in zip(tensor.shape, shape)):
        tensor = tensor[(...,) + (None,) * (len(shape) - tensor.ndim)]
    if tensor.ndim == len(shape):
        if all(a in (1, b) for a, b in zip(tensor.shape, shape)):
            return tensor.expand(shape)
        if (
            cut_batch_dim
            and tensor.shape[0] > shape[0]
            and all(a in (1, b) for a, b in zip(tensor.shape[1:], shape[1:]))
        ):
            return tensor[: shape[0]].expand(shape)
    raise RuntimeError(f"cannot broadcast a tensor of shape {tuple(tensor.shape)} to the input shape {shape}")


def collect_leaves(module: nn.Module) -> Iterator[nn.Module]:
    """Leaf modules of ``module`` in definition (depth-first) order; ``module`` itself if it has none."""
    children = list(module.children())
    if not children:
        yield module
        return
    for child in children:
        yield from collect_leaves(child)


class Identity(torch.autograd.Function):
    """The identity on any number of tensors, as a node of the graph (a place for a gradient hook)."""

    @staticmethod
    def forward(ctx, *inputs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return inputs

    @staticmethod
    def backward(ctx, *grad_outputs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return grad_outputs


_local = threading.local()


def _evaluating() -> bool:
    return getattr(_local, "depth", 0) > 0


@contextmanager
def _no_hooks():
    """Modules called by a rule in the backward pass must not trigger rules themselves."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


class _Finalizer:
    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def remove(self) -> None:
        self.fn()


class RemovableHandle:
    """Calls ``remove`` on a (weakly referenced) object, e.g. a canonizer instance."""

    def __init__(self, instance: Any) -> None:
        self.instance_ref = weakref.ref(instance)

    def remove(self) -> None:
        instance = self.instance_ref()
        if instance is not None:
            instance.remove()


class RemovableHandleList(list):
    """A list of handles removed together, last registered first."""

    def remove(self) -> None:  # type: ignore[override]
        errors = []
        while self:
            handle = super().pop()
            try:
                handle.remove()
            except Exception as error:  # keep removing the rest, report afterwards
                errors.append(error)
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------------------------------------
# Optional compilation of the rules' element-wise kernels
# --------------------------------------------------------------------------------------------------------

#: environment variable that switches compilation on at import (``1``, ``true``, ``yes`` or ``on``)
COMPILE_ENV = "LRP_LIGHTNING_COMPILE"
_compile_state = {"enabled": os.environ.get(COMPILE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}}


def set_compile_kernels(enabled: bool) -> bool:
    """Switch ``torch.compile`` of the rules' element-wise kernels on or off; return the previous state.

    Off by default (or on when the environment variable ``LRP_LIGHTNING_COMPILE=1`` is set at import).
    On, the chains of element-wise operations a fast rule path runs per layer (the gamma rule's shares from
    the layer's output: about ten passes over the output) are each fused by ``torch.compile`` into one
    kernel; convolutions and matrix products are not compiled. The first attribution compiles (seconds to
    a minute; shapes are dynamic, so new input sizes rarely recompile); results equal the uncompiled ones
    within float rounding. Nothing requires it: where compilation fails (no C++ compiler, an unsupported
    platform), a warning is given once and the uncompiled kernels run.
    """
    if not isinstance(enabled, bool):
        raise argument_error("set_compile_kernels", "enabled", "True or False", enabled)
    previous = _compile_state["enabled"]
    _compile_state["enabled"] = enabled
    return previous


@contextmanager
def compile_kernels(enabled: bool = True):
    """Inside the context, rule kernels are compiled (``True``) or not (``False``); see :func:`set_compile_kernels`."""
    previous = set_compile_kernels(enabled)
    try:
        yield
    finally:
        set_compile_kernels(previous)


def rule_kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an element-wise kernel of a rule: run it compiled while :func:`set_compile_kernels` is on.

    The wrapper's ``compiled`` attribute is ``None`` until the first compiled call, then the compiled
    function, or ``False`` after compilation failed (the plain kernel runs from then on).
    """

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        if not _compile_state["enabled"] or call.compiled is False:
            return fn(*args)
        if call.compiled is None:
            call.compiled = torch.compile(fn, dynamic=True, fullgraph=True)
        # detached: the layer's output has a graph, which the compiler would inspect (and warn about)
        tensors = tuple(arg.detach() if isinstance(arg, Tensor) else arg for arg in args)
        try:
            return call.compiled(*tensors)
        except Exception as error:  # compilation is never required: fall back to the plain kernel
            call.compiled = False
            warnings.warn(
                f"torch.compile of the rule kernel {fn.__name__} failed ({type(error).__name__}: {error}); "
                f"running it uncompiled. Unset {COMPILE_ENV} or call set_compile_kernels(False) to skip compiling",
                stacklevel=2,
            )
            return fn(*args)

    call.compiled = None  # type: ignore[attr-defined]
    return call
