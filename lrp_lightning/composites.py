"""Composites: which rule each layer of a model gets.

The building blocks map layers by type (:class:`LayerMapComposite`), by name (:class:`NameMapComposite`),
give the first matching layer its own rule (:class:`SpecialFirstLayerMapComposite`) or combine several
(:class:`MixedComposite`). The named composites are registered in :data:`COMPOSITES`, so configs and
command lines can say ``"epsilon_gamma_box"``. As in Zennit: user maps come first, the first match wins,
and "the first layer" is the first module in ``model.named_modules()`` order that matches the first map.

LRP composites are *strict*: a leaf layer that mixes values but has no rule (an ``Upsample``, a custom
layer) raises :class:`~lrp_lightning.core.MissingRuleError` naming it, instead of silently treating it
as a gradient. Pass ``strict=False`` to allow that. A strict composite also warns about parts of the model
that a registered canonizer should have rewritten (torchvision residual blocks without ResNetCanonizer).

Canonizers may be given by registered name or as ``"auto"``: the composites here resolve them through the
registry of :mod:`lrp_lightning.canonizers` when they are registered on a model. This module imports
:mod:`lrp_lightning.torchvision` and :mod:`lrp_lightning.huggingface`, so that their canonizers are registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from . import attention_canonizers as _attention_canonizers  # noqa: F401 - registers the attention canonizers
from . import huggingface as _huggingface  # noqa: F401 - registers the BERT, GPT-2, LLaMA canonizers
from . import torchvision as _torchvision  # noqa: F401 - registers the VGG and ResNet canonizers
from . import types as ltypes
from ._validation import argument_error
from .attention import (
    LAYER_NORM_NAMES,
    RMS_NORM_NAMES,
    AttentionValues,
    ConstantFactor,
    CPMatMul,
    EpsilonFunctional,
    Functional,
    LayerNormRule,
    MatMul,
    Multiply,
    Pointwise,
    RMSNormRule,
    SoftmaxRule,
    UniformMatMul,
    UniformProduct,
    ZeroRelevance,
    class_names,
)
from .canonizers import resolve_canonizers, warn_uncanonized
from .core import Composite, Hook
from .layer import Sum
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    Pass,
    ReLUBetaSmooth,
    ReLUDeconvNet,
    ReLUGuidedBackprop,
    ZBox,
    ZPlus,
)

__all__ = [
    "COMPOSITES",
    "AttnLRP",
    "CPLRP",
    "BetaSmooth",
    "DeconvNet",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "FirstCallRule",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "ExcitationBackprop",
    "GuidedBackprop",
    "LayerMapComposite",
    "MixedComposite",
    "NameLayerMapComposite",
    "NameMapComposite",
    "RegistryComposite",
    "SpecialFirstLayerMapComposite",
    "get_composite",
    "layer_map_base",
    "register_composite",
]

LayerMap = Sequence[tuple[Any, Hook]]
NameMap = Sequence[tuple[Sequence[str], Hook]]
Canonizers = Sequence[Any] | str | None


class RegistryComposite(Composite):
    """A composite whose canonizers may also be registered names or ``"auto"``.

    The base class of the composites here: :meth:`resolved_canonizers` resolves the names through the
    canonizer registry, and a strict composite warns after registering when a registered canonizer reports
    parts of the model it should have rewritten (:func:`~lrp_lightning.canonizers.warn_uncanonized`).
    """

    def resolved_canonizers(self, module: nn.Module) -> list[Any]:
        """The canonizers this composite applies to ``module`` (names and ``"auto"`` resolved)."""
        return resolve_canonizers(self.canonizers, module)

    def register(self, module: nn.Module) -> None:
        super().register(module)
        if self.strict:
            warn_uncanonized(module, self.name or type(self).__name__, stacklevel=2)


class LayerMapComposite(RegistryComposite):
    """Give each layer the rule of the first ``(types, rule)`` entry it is an instance of.

    Parameters
    ----------
    layer_map : list of (type or tuple of types, rule)
    canonizers : list of Canonizer or "auto", optional
    strict : bool, default False
    """

    def __init__(self, layer_map: LayerMap, canonizers: Canonizers = None, strict: bool = False) -> None:
        self.layer_map = list(layer_map)
        super().__init__(module_map=self.mapping, canonizers=canonizers, strict=strict)

    def mapping(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        return next((rule for types, rule in self.layer_map if isinstance(module, types)), None)


class SpecialFirstLayerMapComposite(LayerMapComposite):
    """Like :class:`LayerMapComposite`, but the first layer matching ``first_map`` gets that rule.

    Parameters
    ----------
    layer_map : list of (types, rule)
    first_map : list of (types, rule)
    canonizers : list of Canonizer or "auto", optional
    strict : bool, default False
    """

    def __init__(
        self, layer_map: LayerMap, first_map: LayerMap, canonizers: Canonizers = None, strict: bool = False
    ) -> None:
        self.first_map = list(first_map)
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)

    def mapping(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        if not ctx.get("first_layer_visited", False):
            for types, rule in self.first_map:
                if isinstance(module, types):
                    ctx["first_layer_visited"] = True
                    # a layer called again later in the forward pass (shared weights) is not the input
                    # layer there: the first-layer rule (e.g. ZBox, which assumes the input's bounds)
                    # belongs to its first call only, its later calls get the layer map's rule
                    return FirstCallRule(rule, super().mapping(ctx, name, module))
        return super().mapping(ctx, name, module)

    def register(self, module: nn.Module) -> None:
        super().register(module)
        first = [rule for rule in self.rule_map.values() if isinstance(rule, FirstCallRule)]
        if first:  # every forward pass of the model starts counting the first layer's calls anew

            def reset(*_: Any) -> None:
                for rule in first:
                    rule.reset()

            self.handles.append(module.register_forward_pre_hook(reset))


class FirstCallRule(Hook):
    """``first`` at a layer's first attributed call in each forward pass of the model, ``rest`` at later calls.

    :class:`SpecialFirstLayerMapComposite` gives its first layer this rule, so that a layer used twice
    (once as the input layer, once inside the network) gets the input-layer rule only where it sees the
    input. ``rest`` None: no rule at later calls.
    """

    def __init__(self, first: Hook, rest: Hook | None) -> None:
        self.first = first
        self.rest = rest
        self._calls = 0

    def reset(self) -> None:
        """Start counting calls anew (at each forward pass of the model)."""
        self._calls = 0

    def rule_for_call(self) -> Hook | None:
        rule = self.first if self._calls == 0 else self.rest
        self._calls += 1
        return rule

    def __repr__(self) -> str:
        return f"FirstCallRule({self.first!r}, then {self.rest!r})"


class NameMapComposite(RegistryComposite):
    """Give layers rules by their names in ``model.named_modules()``.

    Parameters
    ----------
    name_map : list of (list of names, rule)
    canonizers : list of Canonizer or "auto", optional
    strict : bool, default False
    """

    def __init__(self, name_map: NameMap, canonizers: Canonizers = None, strict: bool = False) -> None:
        self.name_map = [(list(names), rule) for names, rule in name_map]
        super().__init__(module_map=self.mapping, canonizers=canonizers, strict=strict)

    def mapping(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        return next((rule for names, rule in self.name_map if name in names), None)


class MixedComposite(RegistryComposite):
    """Ask several composites in order; the first that has a rule for a layer wins.

    Parameters
    ----------
    composites : list of Composite
    canonizers : list of Canonizer, optional
        Applied in addition to the canonizers of ``composites``.
    strict : bool, default False
    """

    def __init__(self, composites: Sequence[Composite], canonizers: Canonizers = None, strict: bool = False):
        self.composites = list(composites)
        collected: list[Any] = list(canonizers) if not isinstance(canonizers, str) and canonizers else []
        for composite in self.composites:
            if isinstance(composite.canonizers, str):
                raise argument_error(
                    "MixedComposite",
                    "composites",
                    "composites without canonizers given by name",
                    composite,
                    f"canonizers={composite.canonizers!r} is only supported on the outermost composite",
                )
            collected += composite.canonizers
        super().__init__(
            module_map=self.mapping,
            canonizers=canonizers if isinstance(canonizers, str) else collected,
            strict=strict,
        )

    def mapping(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        if not ctx:
            ctx.update({id(composite): {} for composite in self.composites})
        for composite in self.composites:
            rule = composite.module_map(ctx[id(composite)], name, module)
            if rule is not None:
                return rule
        return None


class NameLayerMapComposite(MixedComposite):
    """Rules by name first, then by layer type.

    Parameters
    ----------
    name_map : list of (list of names, rule), optional
    layer_map : list of (types, rule), optional
    canonizers : list of Canonizer or "auto", optional
    strict : bool, default False
    """

    def __init__(
        self,
        name_map: NameMap | None = None,
        layer_map: LayerMap | None = None,
        canonizers: Canonizers = None,
        strict: bool = False,
    ) -> None:
        super().__init__(
            composites=[NameMapComposite(name_map or []), LayerMapComposite(layer_map or [])],
            canonizers=canonizers,
            strict=strict,
        )


COMPOSITES: dict[str, type[Composite]] = {}


def register_composite(name: str) -> Callable[[type[Composite]], type[Composite]]:
    """Class decorator: register a composite under ``name`` for :func:`get_composite`."""

    def register(cls: type[Composite]) -> type[Composite]:
        if name in COMPOSITES and COMPOSITES[name] is not cls:
            raise ValueError(f"a composite named {name!r} is already registered ({COMPOSITES[name].__name__})")
        COMPOSITES[name] = cls
        cls.name = name
        return cls

    return register


def get_composite(composite: str | Composite | type[Composite], **kwargs: Any) -> Composite:
    """Return a composite from its registered name, its class, or as is.

    Parameters
    ----------
    composite : str, Composite class or instance
        E.g. ``"epsilon_gamma_box"``; see :data:`COMPOSITES` for the names.
    **kwargs
        Constructor arguments (``canonizers``, ``epsilon``, ``low`` ...) for a name or class.
    """
    if isinstance(composite, Composite):
        if kwargs:
            raise TypeError(f"arguments {sorted(kwargs)} cannot be applied to an existing composite instance")
        return composite
    if isinstance(composite, str):
        key = composite.strip().lower().replace("-", "_")
        if key not in COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}; choose one of {sorted(COMPOSITES)}")
        return COMPOSITES[key](**kwargs)
    if isinstance(composite, type) and issubclass(composite, Composite):
        return composite(**kwargs)
    raise TypeError(
        f"composite must be a name such as 'epsilon_gamma_box', a Composite class or instance, "
        f"not {type(composite).__name__}"
    )


def layer_map_base(stabilizer: float | Callable = 1e-6) -> list[tuple[Any, Hook]]:
    """The rules every LRP composite shares: pass through activations and batch norm, Norm for sums/pooling."""
    return [
        (ltypes.Activation, Pass()),
        (Sum, Norm(stabilizer=stabilizer)),
        (ltypes.AvgPool, Norm(stabilizer=stabilizer)),
        (ltypes.BatchNorm, Pass()),
    ]


def _epsilon_layer_map(
    convolution_rule: Hook, epsilon: float, stabilizer: float, zero_params: str | Sequence[str] | None
) -> list[tuple[Any, Hook]]:
    """The shared part of the LRP composites: base rules, ``convolution_rule``, Epsilon on dense layers."""
    return layer_map_base(stabilizer) + [
        (ltypes.Convolution, convolution_rule),
        (nn.Linear, Epsilon(epsilon=epsilon, zero_params=zero_params)),
    ]


def _maps(layer_map: LayerMap | None, first_map: LayerMap | None = None) -> tuple[list, list]:
    return list(layer_map or []), list(first_map or [])


@register_composite("epsilon_gamma_box")
class EpsilonGammaBox(SpecialFirstLayerMapComposite):
    """ZBox on the first convolution, Gamma on the other convolutions, Epsilon on dense layers.

    Parameters
    ----------
    low, high : float or torch.Tensor, optional
        Input bounds of the ZBox rule. ``None`` (only here, Zennit requires them) uses each sample's
        minimum and maximum; pass the true bounds of your input domain when you know them.
    epsilon : float, default 1e-6
    gamma : float, default 0.25
    stabilizer : float, default 1e-6
    layer_map, first_map : list of (types, rule), optional
        Put before the defaults.
    zero_params : str or list of str, optional
    canonizers : list of Canonizer or "auto", optional
    strict : bool, default True
    """

    def __init__(
        self,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        first_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, first_map = _maps(layer_map, first_map)
        convolution_rule = Gamma(gamma=gamma, stabilizer=stabilizer, zero_params=zero_params)
        layer_map += _epsilon_layer_map(convolution_rule, epsilon, stabilizer, zero_params)
        first_map += [(ltypes.Convolution, ZBox(low=low, high=high, stabilizer=stabilizer, zero_params=zero_params))]
        super().__init__(layer_map=layer_map, first_map=first_map, canonizers=canonizers, strict=strict)


@register_composite("epsilon_plus")
class EpsilonPlus(LayerMapComposite):
    """ZPlus on convolutions, Epsilon on dense layers."""

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, _ = _maps(layer_map)
        convolution_rule = ZPlus(stabilizer=stabilizer, zero_params=zero_params)
        layer_map += _epsilon_layer_map(convolution_rule, epsilon, stabilizer, zero_params)
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("epsilon_alpha2_beta1")
class EpsilonAlpha2Beta1(LayerMapComposite):
    """AlphaBeta(2, 1) on convolutions, Epsilon on dense layers."""

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, _ = _maps(layer_map)
        convolution_rule = AlphaBeta(alpha=2, beta=1, stabilizer=stabilizer, zero_params=zero_params)
        layer_map += _epsilon_layer_map(convolution_rule, epsilon, stabilizer, zero_params)
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("epsilon_plus_flat")
class EpsilonPlusFlat(SpecialFirstLayerMapComposite):
    """Flat on the first affine layer, ZPlus on convolutions, Epsilon on dense layers."""

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        first_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, first_map = _maps(layer_map, first_map)
        convolution_rule = ZPlus(stabilizer=stabilizer, zero_params=zero_params)
        layer_map += _epsilon_layer_map(convolution_rule, epsilon, stabilizer, zero_params)
        first_map += [(ltypes.Linear, Flat(stabilizer=stabilizer, zero_params=zero_params))]
        super().__init__(layer_map=layer_map, first_map=first_map, canonizers=canonizers, strict=strict)


@register_composite("epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1Flat(SpecialFirstLayerMapComposite):
    """Flat on the first affine layer, AlphaBeta(2, 1) on convolutions, Epsilon on dense layers."""

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        first_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, first_map = _maps(layer_map, first_map)
        convolution_rule = AlphaBeta(alpha=2, beta=1, stabilizer=stabilizer, zero_params=zero_params)
        layer_map += _epsilon_layer_map(convolution_rule, epsilon, stabilizer, zero_params)
        first_map += [(ltypes.Linear, Flat(stabilizer=stabilizer, zero_params=zero_params))]
        super().__init__(layer_map=layer_map, first_map=first_map, canonizers=canonizers, strict=strict)


@register_composite("excitation_backprop")
class ExcitationBackprop(LayerMapComposite):
    """Excitation backprop: ZPlus on every affine layer, Norm on sums and average pooling."""

    def __init__(
        self,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = True,
    ) -> None:
        layer_map, _ = _maps(layer_map)
        layer_map += [
            (Sum, Norm(stabilizer=stabilizer)),
            (ltypes.AvgPool, Norm(stabilizer=stabilizer)),
            (ltypes.Linear, ZPlus(stabilizer=stabilizer, zero_params=zero_params)),
        ]
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("guided_backprop")
class GuidedBackprop(LayerMapComposite):
    """Guided backpropagation: the gradient with ReLUs passing only positive gradients of active units."""

    def __init__(self, layer_map: LayerMap | None = None, canonizers: Canonizers = None, strict: bool = False):
        layer_map, _ = _maps(layer_map)
        layer_map += [(nn.ReLU, ReLUGuidedBackprop())]
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("deconvnet")
class DeconvNet(LayerMapComposite):
    """DeconvNet: the gradient with ReLUs passing only positive gradients."""

    def __init__(self, layer_map: LayerMap | None = None, canonizers: Canonizers = None, strict: bool = False):
        layer_map, _ = _maps(layer_map)
        layer_map += [(nn.ReLU, ReLUDeconvNet())]
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("beta_smooth")
class BetaSmooth(LayerMapComposite):
    """The gradient with ReLU gradients replaced by softplus gradients ``sigmoid(beta_smooth * x)``."""

    def __init__(
        self,
        beta_smooth: float = 10.0,
        layer_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = None,
        strict: bool = False,
    ) -> None:
        layer_map, _ = _maps(layer_map)
        layer_map += [(nn.ReLU, ReLUBetaSmooth(beta_smooth=beta_smooth))]
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


#: normalisation layers (torch's RMSNorm since torch 2.4; others by class name, see lrp_lightning.attention)
_LAYER_NORMS: tuple[type, ...] = (nn.LayerNorm, class_names(LAYER_NORM_NAMES))
_RMS_NORMS: tuple[type, ...] = ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()) + (class_names(RMS_NORM_NAMES),)


def attention_layer_map(
    conservative: bool,
    epsilon: float = 1e-6,
    gamma: float | None = None,
    stabilizer: float = 1e-6,
    zero_params: str | Sequence[str] | None = None,
) -> list[tuple[Any, Hook | None]]:
    """The rules of :class:`AttnLRP` (``conservative=False``) and :class:`CPLRP` (``conservative=True``).

    Model-family canonizers that add operation modules of :mod:`lrp_lightning.attention` get their rules
    from here. ``nn.MultiheadAttention`` itself gets no rule: its canonizer routes its parts through rules.
    """
    if gamma is None:
        affine_rule: Hook = Epsilon(epsilon=epsilon, zero_params=zero_params)
    else:
        affine_rule = Gamma(gamma=gamma, stabilizer=stabilizer, zero_params=zero_params)
    rules: list[tuple[Any, Hook | None]] = [(nn.MultiheadAttention, None)]
    if conservative:
        rules += [
            (AttentionValues, CPMatMul(epsilon=epsilon)),
            (nn.Softmax, ZeroRelevance()),
            (Multiply, ConstantFactor(0)),
        ]
    else:
        rules += [(nn.Softmax, SoftmaxRule()), (Multiply, UniformProduct())]
    rules += [
        (MatMul, UniformMatMul(epsilon=epsilon)),
        (Functional, EpsilonFunctional(epsilon=epsilon)),
        (_LAYER_NORMS, LayerNormRule(epsilon=epsilon)),
        (_RMS_NORMS, RMSNormRule(epsilon=epsilon)),
        (Pointwise, Pass()),
    ]
    return rules + layer_map_base(stabilizer) + [(ltypes.Convolution, affine_rule), (nn.Linear, affine_rule)]


class _AttentionComposite(LayerMapComposite):
    conservative = False

    def __init__(
        self,
        epsilon: float = 1e-6,
        gamma: float | None = None,
        stabilizer: float = 1e-6,
        layer_map: LayerMap | None = None,
        zero_params: str | Sequence[str] | None = None,
        canonizers: Canonizers = "auto",
        strict: bool = True,
    ) -> None:
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0):
            raise argument_error(type(self).__name__, "gamma", "None (epsilon rule) or a float >= 0", gamma)
        layer_map, _ = _maps(layer_map)
        layer_map += attention_layer_map(self.conservative, epsilon, gamma, stabilizer, zero_params)
        super().__init__(layer_map=layer_map, canonizers=canonizers, strict=strict)


@register_composite("attn_lrp")
class AttnLRP(_AttentionComposite):
    """AttnLRP (Achtibat et al., ICML 2024) for transformers.

    Epsilon (or, with ``gamma``, Gamma, the paper's choice for ViTs) on linear layers and convolutions; the
    AttnLRP rules of :mod:`lrp_lightning.attention` on LayerNorm/RMSNorm, softmax, the bilinear products of
    attention (uniform split) and element-wise gates; identity on point-wise non-linearities and dropout;
    residual sums in proportion. Canonizers are picked automatically by default (``"auto"``), which routes
    the functional parts of ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and torchvision's ViT
    through these rules.

    Parameters
    ----------
    epsilon : float, default 1e-6
        Stabilizer of the epsilon rule (linear layers, normalisation, products).
    gamma : float, optional
        Use Gamma with this value on linear layers and convolutions instead of Epsilon.
    stabilizer : float, default 1e-6
        Stabilizer of Gamma and of the sums.
    layer_map : list of (types, rule), optional
        Put before the defaults.
    zero_params : str or list of str, optional
        E.g. ``"bias"``.
    canonizers : "auto", list or None, default "auto"
    strict : bool, default True
    """


@register_composite("cp_lrp")
class CPLRP(_AttentionComposite):
    """CP-LRP (Ali et al., ICML 2022): :class:`AttnLRP` with the attention weights (and gates) held constant.

    The values of attention get all the relevance of ``A @ v``; nothing flows through the softmax into the
    queries and keys. Same parameters as :class:`AttnLRP`.
    """

    conservative = True
