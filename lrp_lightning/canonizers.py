"""Canonizers: rewrite a model into an equivalent form that LRP rules can explain.

This module holds the generic mechanism; model families live at the edge (torchvision's VGG and ResNet in
:mod:`lrp_lightning.torchvision`, as in Zennit).

* Batch-norm merging (:class:`SequentialMergeBatchNorm`, :class:`NamedMergeBatchNorm`): a batch norm after
  an affine layer is folded into that layer's weight and bias. The model's parameters are not touched:
  the merged ones are computed as new tensors, registered as overrides that the rules see, and used by a
  temporary ``forward`` of the affine layer; the batch norm's temporary ``forward`` is the identity.
  Merging uses the running statistics (evaluation-mode semantics), as LRP always does.
* :class:`AttributeCanonizer` sets instance attributes (a ``forward``, a module) for the duration of an
  attribution; :class:`CompositeCanonizer` chains canonizers.
* The registry: :func:`register_canonizer` names a canonizer class, so configs can say
  ``canonizers=["merge_batchnorm"]``, and :func:`auto_canonizers` (``canonizers="auto"``) asks every
  registered class whether it :meth:`~Canonizer.applies` to a model. :func:`register_unsupported` adds a
  check that makes ``"auto"`` refuse a model no canonizer handles, and :func:`warn_uncanonized` reports
  what a registered canonizer would have rewritten but nothing did.

Writing a canonizer: subclass :class:`Canonizer`, implement ``apply(root_module)`` returning a list of
objects with a ``remove()`` method that undoes what was done. To let ``"auto"`` pick it, decorate the class
with ``@register_canonizer("name")`` and override the classmethod :meth:`~Canonizer.applies`::

    @register_canonizer("my_block")
    class MyBlockCanonizer(AttributeCanonizer):
        def __init__(self):
            super().__init__(lambda name, module: {...} if isinstance(module, MyBlock) else None)

        @classmethod
        def applies(cls, model):
            return any(isinstance(module, MyBlock) for module in model.modules())
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import torch
import torch.nn as nn

from . import types as ltypes
from .core import affine_forward, collect_leaves, derived_param, module_params, override_params

__all__ = [
    "CANONIZERS",
    "AttributeCanonizer",
    "Canonizer",
    "CompositeCanonizer",
    "MergeBatchNorm",
    "NamedMergeBatchNorm",
    "SequentialMergeBatchNorm",
    "auto_canonizers",
    "collect_leaves",
    "override_forward",
    "register_canonizer",
    "register_unsupported",
    "resolve_canonizers",
    "warn_uncanonized",
]


class Canonizer(ABC):
    """Base class: ``apply`` rewrites a model and returns handles whose ``remove()`` undoes it."""

    @abstractmethod
    def apply(self, root_module: nn.Module) -> list[Any]:
        """Apply to ``root_module``; return objects with ``remove()`` (here none: subclasses extend the list)."""
        return []

    def register(self, *args: Any, **kwargs: Any) -> None:  # noqa: B027 - optional in subclasses
        """Apply to specific modules (used by :meth:`apply` of subclasses)."""

    def remove(self) -> None:  # noqa: B027 - optional in subclasses
        """Undo :meth:`register`."""

    def copy(self) -> Canonizer:
        """A fresh, unregistered instance with the same configuration."""
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        """Whether ``canonizers="auto"`` picks this (registered) canonizer for ``model``.

        False by default: the canonizer is then used only when it is named or passed.
        """
        return False

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        """After a composite's canonizers were applied: what in ``model`` still needs this canonizer, or None.

        Called for every registered canonizer when an LRP (strict) composite is registered; the text
        becomes a warning (see :func:`warn_uncanonized`). None by default.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@contextmanager
def override_forward(module: nn.Module, forward: Callable[..., torch.Tensor]):
    """Inside the context, calling ``module`` runs ``forward`` (an instance attribute; hooks still apply)."""
    missing = object()
    previous = module.__dict__.get("forward", missing)
    module.forward = forward
    try:
        yield
    finally:
        del module.forward
        if previous is not missing:
            module.forward = previous


def _identity_forward(input: torch.Tensor) -> torch.Tensor:
    return input


# --------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------

#: registered canonizer classes by name (constructed without arguments when named in a config)
CANONIZERS: dict[str, type[Canonizer]] = {}

#: checks that make ``canonizers="auto"`` refuse a model: ``(model) -> error message or None``
_UNSUPPORTED: list[Callable[[nn.Module], str | None]] = []

CanonizerType = TypeVar("CanonizerType", bound=type[Canonizer])


def register_canonizer(name: str) -> Callable[[CanonizerType], CanonizerType]:
    """Class decorator: register a canonizer class under ``name``.

    The class must be constructible without arguments. A registered class can be named in a config
    (``canonizers=["name"]``), and ``canonizers="auto"`` picks it for the models its classmethod
    :meth:`Canonizer.applies` accepts. A class may be registered under several names.
    """

    def register(cls: CanonizerType) -> CanonizerType:
        if name in CANONIZERS and CANONIZERS[name] is not cls:
            raise ValueError(f"a canonizer named {name!r} is already registered ({CANONIZERS[name].__name__})")
        CANONIZERS[name] = cls
        return cls

    return register


def register_unsupported(check: Callable[[nn.Module], str | None]) -> Callable[[nn.Module], str | None]:
    """Decorator: ``canonizers="auto"`` raises ``ValueError(check(model))`` when ``check`` returns a message.

    For model structures that need a canonizer none of the registered ones provides: refusing is better
    than explaining them wrongly. The message should name the layer and the fix.
    """
    _UNSUPPORTED.append(check)
    return check


def _registered_classes() -> list[type[Canonizer]]:
    return list(dict.fromkeys(CANONIZERS.values()))  # registration order, each class once


def _contains(canonizer: Canonizer, other: Canonizer) -> bool:
    """Whether ``canonizer`` already does ``other``'s job: it is of ``other``'s class, or holds one."""
    if canonizer is not other and isinstance(canonizer, type(other)):
        return True
    if isinstance(canonizer, CompositeCanonizer):
        return any(
            part is not other and (isinstance(part, type(other)) or _contains(part, other))
            for part in canonizer.canonizers
        )
    return False


def auto_canonizers(model: nn.Module) -> list[Canonizer]:
    """Pick canonizers for ``model``: every registered canonizer that applies to it.

    A picked canonizer that another picked one already contains (the batch-norm merge of
    ``ResNetCanonizer``) is left out. Plain sequential models get :class:`SequentialMergeBatchNorm`;
    torchvision's VGG and ResNet are handled by :mod:`lrp_lightning.torchvision` once it is imported
    (:mod:`lrp_lightning.composites` imports it). Raises ``ValueError`` naming the problem when a registered
    check refuses the model (a torchvision architecture no canonizer handles) or when the model holds a
    batch norm that follows no affine layer.
    """
    for check in _UNSUPPORTED:
        message = check(model)
        if message is not None:
            raise ValueError(message)
    picked = [cls() for cls in _registered_classes() if cls.applies(model)]
    chosen = [c for c in picked if not any(_contains(other, c) for other in picked)]
    leaves = list(collect_leaves(model))
    names = {id(module): name for name, module in model.named_modules()}
    for previous, leaf in zip([None, *leaves[:-1]], leaves):
        if isinstance(leaf, ltypes.BatchNorm) and not isinstance(previous, ltypes.Linear):
            raise ValueError(
                f"batch norm layer {names.get(id(leaf), '?')} ({type(leaf).__name__}) does not follow an affine "
                "layer, so canonizers='auto' cannot merge it; pass canonizers=[NamedMergeBatchNorm("
                "[(['<layer before it>'], '<its name>')])] or canonizers=[] to let relevance pass through it"
            )
    return chosen


def resolve_canonizers(spec: Any, model: nn.Module) -> list[Canonizer]:
    """Canonizers for ``model`` from ``"auto"``, ``None``, a registered name, or a list of names / canonizers."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec == "auto":
            return auto_canonizers(model)
        spec = [spec]
    if isinstance(spec, Canonizer):
        spec = [spec]
    result = []
    for item in spec:
        if isinstance(item, str):
            if item not in CANONIZERS:
                raise ValueError(f"unknown canonizer {item!r}; choose 'auto' or one of {sorted(CANONIZERS)}")
            result.append(CANONIZERS[item]())
        elif hasattr(item, "apply"):
            result.append(item)
        else:
            raise TypeError(f"{item!r} is not a canonizer (an object with apply(model))")
    return result


def warn_uncanonized(model: nn.Module, label: str, stacklevel: int = 2) -> None:
    """Warn for each registered canonizer that reports parts of ``model`` it should have rewritten.

    Called by LRP (strict) composites after their canonizers were applied; ``label`` names the composite.
    """
    for cls in _registered_classes():
        message = cls.uncanonized(model)
        if message is not None:
            warnings.warn(f"composite {label}: {message}", UserWarning, stacklevel=stacklevel + 1)


class MergeBatchNorm(Canonizer):
    """Fold a batch norm into the affine layer(s) before it (as seen by the rules; the model is unchanged)."""

    linear_type: tuple[type, ...] = ltypes.Linear
    batch_norm_type: tuple[type, ...] = ltypes.BatchNorm

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    @staticmethod
    def merged_params(
        linear: nn.Module, batch_norm: nn.Module, params: dict[str, torch.Tensor | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Weight and bias of ``linear`` (or of ``params``) followed by ``batch_norm`` in evaluation mode."""
        _check_mergeable(batch_norm)
        params = module_params(linear) if params is None else params
        weight = params["weight"]
        bias = params.get("bias")
        std = (batch_norm.running_var.detach() + batch_norm.eps) ** 0.5
        gain = batch_norm.weight.detach() if batch_norm.weight is not None else torch.ones_like(std)
        scale = gain / std
        shift = batch_norm.bias.detach() if batch_norm.bias is not None else torch.zeros_like(scale)
        if isinstance(linear, ltypes.ConvolutionTranspose):
            index = (None, slice(None)) + (None,) * (weight.ndim - 2)
        else:
            index = (slice(None),) + (None,) * (weight.ndim - 1)
        if bias is None:
            bias = torch.zeros_like(scale)
        return {
            "weight": weight * scale[index].to(weight),
            "bias": ((bias - batch_norm.running_mean.detach()) * scale + shift).to(weight),
        }

    def _current_merge(self, linear: nn.Module, batch_norm: nn.Module, base: dict) -> dict[str, torch.Tensor]:
        """The merged parameters of the current weights and statistics: computed again only when one of them
        changed (an optimizer step, a statistics update), see :func:`~lrp_lightning.core.derived_param`."""
        own = linear._parameters
        stats = (batch_norm.weight, batch_norm.bias, batch_norm.running_mean, batch_norm.running_var)
        # the parameters themselves (not detached copies: no op per call), whose version counters see a step
        sources = [*own.values(), *stats]

        def merge() -> dict[str, torch.Tensor]:
            params = {**base, **{name: value.detach() for name, value in own.items() if value is not None}}
            return self.merged_params(linear, batch_norm, params)

        return derived_param(linear, ("merged batch norm", batch_norm), sources, merge)

    def register(self, linears: Sequence[nn.Module], batch_norm: nn.Module) -> None:
        if batch_norm.training:
            warnings.warn(
                f"merging {type(batch_norm).__name__} in training mode: LRP uses its running statistics; "
                "call model.eval() before attributing",
                stacklevel=3,
            )
        stack = ExitStack()
        try:
            for linear in linears:
                # checked here, not by merging: a registration per attribution would merge every layer twice
                _check_mergeable(batch_norm, linear)
                merged = functools.partial(self._current_merge, linear, batch_norm, module_params(linear))
                lazy = {
                    key: functools.partial(lambda key, merged: merged()[key], key, merged) for key in ("weight", "bias")
                }
                stack.enter_context(override_params(linear, lazy))
                stack.enter_context(override_forward(linear, functools.partial(_merged_forward, linear, merged)))
            stack.enter_context(override_forward(batch_norm, _identity_forward))
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def remove(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def apply(self, root_module: nn.Module) -> list[Any]:  # pragma: no cover - abstract in practice
        raise NotImplementedError("use SequentialMergeBatchNorm or NamedMergeBatchNorm")


@register_canonizer("merge_batchnorm")
@register_canonizer("sequential_merge_batchnorm")
class SequentialMergeBatchNorm(MergeBatchNorm):
    """Merge every batch norm that directly follows an affine layer in definition order of the leaves."""

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        """Always: a model without batch norms is left as it is."""
        return True

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances = []
        last = None
        for leaf in collect_leaves(root_module):
            if isinstance(last, self.linear_type) and isinstance(leaf, self.batch_norm_type):
                instance = self.copy()
                try:
                    instance.register((last,), leaf)
                except BaseException:
                    for done in instances:
                        done.remove()
                    raise
                instances.append(instance)
            last = leaf
        return instances


class NamedMergeBatchNorm(MergeBatchNorm):
    """Merge batch norms named explicitly: ``name_map=[(["conv1"], "bn1"), ...]``.

    Parameters
    ----------
    name_map : list of (list of affine layer names, batch norm name)
    """

    def __init__(self, name_map: Sequence[tuple[Sequence[str], str]]) -> None:
        super().__init__()
        self.name_map = [(list(linears), bn) for linears, bn in name_map]

    def copy(self) -> NamedMergeBatchNorm:
        return type(self)(self.name_map)

    def apply(self, root_module: nn.Module) -> list[Any]:
        lookup = dict(root_module.named_modules())
        unknown = [n for linears, bn in self.name_map for n in [*linears, bn] if n not in lookup]
        if unknown:
            raise ValueError(f"NamedMergeBatchNorm: no modules named {unknown} in {type(root_module).__name__}")
        instances = []
        try:
            for linears, bn in self.name_map:
                instance = self.copy()
                instance.register([lookup[name] for name in linears], lookup[bn])
                instances.append(instance)
        except BaseException:
            for done in instances:
                done.remove()
            raise
        return instances

    def __repr__(self) -> str:
        return f"NamedMergeBatchNorm({self.name_map!r})"


class AttributeCanonizer(Canonizer):
    """Temporarily set instance attributes (e.g. ``forward``) on modules chosen by ``attribute_map``.

    Parameters
    ----------
    attribute_map : callable
        ``(name, module) -> dict of attributes or None``.
    """

    def __init__(self, attribute_map: Callable[[str, nn.Module], dict[str, Any] | None]) -> None:
        self.attribute_map = attribute_map
        self.module: nn.Module | None = None
        self.previous: dict[str, Any] = {}

    def copy(self) -> AttributeCanonizer:
        return AttributeCanonizer(self.attribute_map)

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances = []
        for name, module in list(root_module.named_modules()):
            attributes = self.attribute_map(name, module)
            if attributes is not None:
                instance = self.copy()
                instance.register(module, attributes)
                instances.append(instance)
        return instances

    def register(self, module: nn.Module, attributes: dict[str, Any]) -> None:
        self.module = module
        _missing = object()
        for key, value in attributes.items():
            self.previous[key] = module.__dict__.get(key, module._modules.get(key, _missing))
            setattr(module, key, value)
        self._missing = _missing

    def remove(self) -> None:
        if self.module is None:
            return
        for key, value in self.previous.items():
            delattr(self.module, key)
            if value is not self._missing:
                setattr(self.module, key, value)
        self.module, self.previous = None, {}


class CompositeCanonizer(Canonizer):
    """Several canonizers applied in order.

    Parameters
    ----------
    canonizers : list of Canonizer
    """

    def __init__(self, canonizers: Sequence[Canonizer]) -> None:
        self.canonizers = list(canonizers)

    def copy(self) -> CompositeCanonizer:
        return type(self)([canonizer.copy() for canonizer in self.canonizers])

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances: list[Any] = []
        try:
            for canonizer in self.canonizers:
                instances += canonizer.apply(root_module)
        except BaseException:
            for done in reversed(instances):
                done.remove()
            raise
        return instances

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.canonizers!r})"


def _check_mergeable(batch_norm: nn.Module, linear: nn.Module | None = None) -> None:
    """Raise where :meth:`MergeBatchNorm.merged_params` would fail, without computing the merge."""
    if batch_norm.running_var is None or batch_norm.running_mean is None:
        raise ValueError(
            f"{type(batch_norm).__name__} has no running statistics (track_running_stats=False) and cannot "
            "be merged; pass canonizers=[] to leave it out"
        )
    weight = None if linear is None else getattr(linear, "weight", None)
    if isinstance(weight, torch.Tensor):
        out_dim = 1 if isinstance(linear, ltypes.ConvolutionTranspose) else 0
        if weight.ndim <= out_dim or weight.shape[out_dim] != batch_norm.running_var.numel():
            raise ValueError(
                f"{type(batch_norm).__name__} with {batch_norm.running_var.numel()} features cannot be merged into "
                f"{type(linear).__name__} with weight of shape {tuple(weight.shape)}; merge a batch norm only into "
                "the layer whose output it normalises"
            )


def _merged_forward(linear: nn.Module, merged: Callable[[], dict], input: torch.Tensor) -> torch.Tensor:
    return affine_forward(linear, input, **merged())
