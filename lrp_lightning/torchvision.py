"""Canonizers for torchvision models, under Zennit's module name (``zennit.torchvision``).

* :class:`VGGCanonizer` (VGG and VGG-BN) merges the batch norms.
* :class:`ResNetCanonizer` merges the batch norms and makes the residual addition ``out + identity`` of
  torchvision's ``BasicBlock`` / ``Bottleneck`` a :class:`~lrp_lightning.layer.Sum` module that carries the
  Norm rule. This temporarily sets ``forward`` and ``canonizer_sum`` on the block instances; both are
  removed again when the composite is removed.

The classes are registered (:func:`~lrp_lightning.canonizers.register_canonizer`) as ``"vgg"`` and
``"resnet"``; ``canonizers="auto"`` picks :class:`ResNetCanonizer` for models with torchvision residual
blocks, refuses torchvision architectures that no canonizer here rewrites, and an LRP composite warns
about residual blocks left uncanonized. torchvision itself is never imported here: a model can only hold
its blocks when the user has imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .canonizers import (
    AttributeCanonizer,
    CompositeCanonizer,
    SequentialMergeBatchNorm,
    register_canonizer,
    register_unsupported,
)
from .layer import Sum

__all__ = ["ResNetBasicBlockCanonizer", "ResNetBottleneckCanonizer", "ResNetCanonizer", "VGGCanonizer"]


@register_canonizer("vgg")
class VGGCanonizer(SequentialMergeBatchNorm):
    """Canonizer for torchvision VGG and VGG-BN models (merges the batch norms).

    ``canonizers="auto"`` picks the generic :class:`~lrp_lightning.canonizers.SequentialMergeBatchNorm`
    for these models, which does the same.
    """

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        return False


def _residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """torchvision ``BasicBlock`` / ``Bottleneck`` modules of ``model`` with their names."""
    resnet = sys.modules.get("torchvision.models.resnet")  # only a model built with torchvision can have them
    if resnet is None:
        return []
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (resnet.BasicBlock, resnet.Bottleneck))
    ]


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


@register_canonizer("resnet")
class ResNetCanonizer(CompositeCanonizer):
    """Canonizer for torchvision ResNets: merge batch norms, residual additions as Sum modules."""

    def __init__(self) -> None:
        super().__init__([SequentialMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()])

    def copy(self) -> ResNetCanonizer:
        return type(self)()

    def __repr__(self) -> str:
        return "ResNetCanonizer()"

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        """Whether ``model`` holds torchvision residual blocks."""
        return bool(_residual_blocks(model))

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        """Residual blocks that keep their own forward: their additions get no LRP rule."""
        blocks = [name for name, block in _residual_blocks(model) if "forward" not in block.__dict__]
        if not blocks:
            return None
        return (
            f"{len(blocks)} torchvision ResNet blocks (first: {blocks[0]}) keep their residual addition "
            "`out += identity`, which no LRP rule sees: relevance flows into both summands in full and doubles "
            "at every block. Pass canonizers='auto' (or ResNetCanonizer()) to the composite"
        )


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
    "MNASNet",
    "MaxVit",
)


@register_unsupported
def _unsupported_torchvision(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        module_type = type(module)
        if module_type.__module__.startswith("torchvision.models") and module_type.__name__ in (
            _UNSUPPORTED_TORCHVISION
        ):
            return (
                f"canonizers='auto' cannot pick canonizers for torchvision {module_type.__name__} "
                f"({name or 'the model'}); pass canonizers=[...] yourself (see lrp_lightning.canonizers), "
                "or canonizers=[] to explain it without (relevance may then not be conserved)"
            )
    return None
