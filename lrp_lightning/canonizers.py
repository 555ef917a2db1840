"""Canonizers: rewrite a model into an equivalent form that LRP rules can explain.

* Batch-norm merging (:class:`SequentialMergeBatchNorm`, :class:`NamedMergeBatchNorm`): a batch norm after
  an affine layer is folded into that layer's weight and bias. The model's parameters are not touched:
  the merged ones are computed as new tensors, registered as overrides that the rules see, and used by a
  temporary ``forward`` of the affine layer; the batch norm's temporary ``forward`` is the identity.
  Merging uses the running statistics (evaluation-mode semantics), as LRP always does.
* Residual blocks (:class:`ResNetCanonizer`): the addition ``out + identity`` of torchvision's
  ``BasicBlock`` / ``Bottleneck`` becomes a :class:`~lrp_lightning.layer.Sum` module that carries the
  Norm rule. This temporarily sets ``forward`` and ``canonizer_sum`` on the block instances; both are
  removed again when the composite is removed.
* :func:`auto_canonizers` picks canonizers for torchvision VGG / VGG-BN / ResNet models and plain
  sequential CNNs, and says clearly when a model needs one it cannot pick.

Writing a canonizer: subclass :class:`Canonizer`, implement ``apply(root_module)`` returning a list of
objects with a ``remove()`` method that undoes what was done.
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.nn as nn

from . import types as ltypes
from .core import affine_forward, module_params, override_params
from .layer import Sum

__all__ = [
    "AttributeCanonizer",
    "Canonizer",
    "CompositeCanonizer",
    "MergeBatchNorm",
    "NamedMergeBatchNorm",
    "ResNetBasicBlockCanonizer",
    "ResNetBottleneckCanonizer",
    "ResNetCanonizer",
    "SequentialMergeBatchNorm",
    "VGGCanonizer",
    "auto_canonizers",
    "resolve_canonizers",
]


class Canonizer(ABC):
    """Base class: ``apply`` rewrites a model and returns handles whose ``remove()`` undoes it."""

    @abstractmethod
    def apply(self, root_module: nn.Module) -> list[Any]:
        """Apply to ``root_module``; return objects with ``remove()``."""

    def register(self, *args: Any, **kwargs: Any) -> None:  # noqa: B027 - optional in subclasses
        """Apply to specific modules (used by :meth:`apply` of subclasses)."""

    def remove(self) -> None:  # noqa: B027 - optional in subclasses
        """Undo :meth:`register`."""

    def copy(self) -> Canonizer:
        """A fresh, unregistered instance with the same configuration."""
        return type(self)()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def collect_leaves(module: nn.Module) -> Iterator[nn.Module]:
    """Leaf modules of ``module`` in definition (depth-first) order; ``module`` itself if it has none."""
    children = list(module.children())
    if not children:
        yield module
        return
    for child in children:
        yield from collect_leaves(child)


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


class MergeBatchNorm(Canonizer):
    """Fold a batch norm into the affine layer(s) before it (as seen by the rules; the model is unchanged)."""

    linear_type: tuple[type, ...] = ltypes.Linear
    batch_norm_type: tuple[type, ...] = ltypes.BatchNorm

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    @staticmethod
    def merged_params(linear: nn.Module, batch_norm: nn.Module) -> dict[str, torch.Tensor]:
        """Weight and bias of ``linear`` followed by ``batch_norm`` in evaluation mode."""
        if batch_norm.running_var is None or batch_norm.running_mean is None:
            raise ValueError(
                f"{type(batch_norm).__name__} has no running statistics (track_running_stats=False) and cannot "
                "be merged; pass canonizers=[] to leave it out"
            )
        params = module_params(linear)
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
                params = self.merged_params(linear, batch_norm)
                stack.enter_context(override_params(linear, params))
                stack.enter_context(
                    override_forward(linear, functools.partial(affine_forward, linear, **params))
                )
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


class SequentialMergeBatchNorm(MergeBatchNorm):
    """Merge every batch norm that directly follows an affine layer in definition order of the leaves."""

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


class VGGCanonizer(SequentialMergeBatchNorm):
    """Canonizer for torchvision VGG and VGG-BN models (merges the batch norms)."""


def _residual_forward(with_third_conv: bool) -> Callable:
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if with_third_conv:
            out = self.bn3(self.conv3(self.relu(out)))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = self.canonizer_sum(torch.stack([identity, out], dim=-1))
        return self.relu(out)

    return forward


def _block_canonizer(block_type_name: str, with_third_conv: bool) -> Callable:
    forward = _residual_forward(with_third_conv)

    def attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        from torchvision.models import resnet

        if isinstance(module, getattr(resnet, block_type_name)):
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return attribute_map


class ResNetBottleneckCanonizer(AttributeCanonizer):
    """Make the residual addition of torchvision ``Bottleneck`` blocks a :class:`Sum` module."""

    def __init__(self) -> None:
        super().__init__(_block_canonizer("Bottleneck", with_third_conv=True))

    def copy(self) -> AttributeCanonizer:
        return AttributeCanonizer(self.attribute_map)


class ResNetBasicBlockCanonizer(AttributeCanonizer):
    """Make the residual addition of torchvision ``BasicBlock`` blocks a :class:`Sum` module."""

    def __init__(self) -> None:
        super().__init__(_block_canonizer("BasicBlock", with_third_conv=False))

    def copy(self) -> AttributeCanonizer:
        return AttributeCanonizer(self.attribute_map)


class ResNetCanonizer(CompositeCanonizer):
    """Canonizer for torchvision ResNets: merge batch norms, residual additions as Sum modules."""

    def __init__(self) -> None:
        super().__init__([SequentialMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()])

    def copy(self) -> ResNetCanonizer:
        return type(self)()

    def __repr__(self) -> str:
        return "ResNetCanonizer()"


# torchvision families whose structure (concatenations, residuals, squeeze-excitation) no canonizer here
# rewrites; ``auto`` refuses them instead of explaining them wrongly.
_UNSUPPORTED_TORCHVISION = (
    "DenseNet",
    "MobileNetV2",
    "MobileNetV3",
    "EfficientNet",
    "Inception3",
    "GoogLeNet",
    "ConvNeXt",
    "RegNet",
    "ShuffleNetV2",
    "SqueezeNet",
    "SwinTransformer",
    "VisionTransformer",
    "MNASNet",
    "MaxVit",
)


def auto_canonizers(model: nn.Module) -> list[Canonizer]:
    """Pick canonizers for ``model``.

    torchvision ResNets get :class:`ResNetCanonizer`; VGG / VGG-BN and plain sequential models get
    :class:`SequentialMergeBatchNorm`. Raises ``ValueError`` naming the problem when the model holds a
    batch norm that follows no affine layer, or a torchvision architecture no canonizer here handles.
    """
    from torchvision.models import resnet

    for name, module in model.named_modules():
        module_type = type(module)
        if module_type.__module__.startswith("torchvision.models") and module_type.__name__ in (
            _UNSUPPORTED_TORCHVISION
        ):
            raise ValueError(
                f"canonizers='auto' cannot pick canonizers for torchvision {module_type.__name__} "
                f"({name or 'the model'}); pass canonizers=[...] yourself (see lrp_lightning.canonizers), "
                "or canonizers=[] to explain it without (relevance may then not be conserved)"
            )
    has_blocks = any(isinstance(m, (resnet.BasicBlock, resnet.Bottleneck)) for m in model.modules())
    chosen: list[Canonizer] = [ResNetCanonizer()] if has_blocks else [SequentialMergeBatchNorm()]
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


_NAMED_CANONIZERS: dict[str, Callable[[], Canonizer]] = {
    "merge_batchnorm": SequentialMergeBatchNorm,
    "sequential_merge_batchnorm": SequentialMergeBatchNorm,
    "vgg": VGGCanonizer,
    "resnet": ResNetCanonizer,
}


def resolve_canonizers(spec: Any, model: nn.Module) -> list[Canonizer]:
    """Canonizers for ``model`` from ``"auto"``, ``None``, a name, or a list of names / canonizers."""
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
            if item not in _NAMED_CANONIZERS:
                raise ValueError(f"unknown canonizer {item!r}; choose 'auto' or one of {sorted(_NAMED_CANONIZERS)}")
            result.append(_NAMED_CANONIZERS[item]())
        elif hasattr(item, "apply"):
            result.append(item)
        else:
            raise TypeError(f"{item!r} is not a canonizer (an object with apply(model))")
    return result
