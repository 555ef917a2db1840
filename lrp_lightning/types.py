"""Groups of layer types that rules and composites are mapped to.

Each name is a tuple of classes, usable directly with :func:`isinstance` and in layer maps, e.g.
``layer_map=[(Convolution, Gamma())]``. The groups match Zennit's ``zennit.types``.
"""

from __future__ import annotations

import torch.nn as nn

ConvolutionStandard = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ConvolutionTranspose = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
Convolution = ConvolutionStandard + ConvolutionTranspose
Dense = (nn.Linear,)
#: Every layer that is an affine map of its input with a ``weight`` (and optional ``bias``).
Linear = Convolution + Dense
BatchNorm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AvgPool = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
MaxPool = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
#: Element-wise activations (Zennit's list); composites pass relevance through them unchanged.
Activation = (
    nn.ELU,
    nn.Hardshrink,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.LogSigmoid,
    nn.MultiheadAttention,
    nn.PReLU,
    nn.ReLU,
    nn.ReLU6,
    nn.RReLU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.Sigmoid,
    nn.SiLU,
    nn.Softplus,
    nn.Softshrink,
    nn.Softsign,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Threshold,
)
#: Modules that neither mix values nor carry a rule: relevance flows through them as the gradient.
Structural = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

__all__ = [
    "Activation",
    "AvgPool",
    "BatchNorm",
    "Convolution",
    "ConvolutionStandard",
    "ConvolutionTranspose",
    "Dense",
    "Linear",
    "MaxPool",
    "Structural",
]
