"""LRP for attention models: rules and building blocks of AttnLRP and CP-LRP, written from the papers.

AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022) explain transformers layer by
layer, with rules for what a transformer computes besides affine layers. This module holds those rules
and the *operation modules* that canonizers put in place of functional code (``torch.matmul``,
``F.softmax``, ``x * gate``, ``F.gelu``), so that rules can be attached to them. Nothing here writes into
a model; :mod:`lrp_lightning.attention_canonizers` uses these blocks for ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` and torchvision's ViT, and canonizers for other model families (Hugging
Face BERT, GPT-2, LLaMA blocks) are built from the same pieces.

Relevance flows backwards as the "gradient" (the engine's convention, see :mod:`lrp_lightning.core`):
every rule below returns the relevance of its inputs. Formulas (``R`` the relevance at the output):

* Normalisation (:class:`LayerNormRule`, :class:`RMSNormRule`): the normalisation constant ``sigma`` is
  held fixed, so the layer is the linear map ``y = (x - mean(x)) / sigma * w + b`` (``x / rms * w`` for RMS
  norm) and the epsilon rule applies to it: ``R_x = x * M^T (R / y)``; the bias absorbs its share.
* Softmax (:class:`SoftmaxRule`, AttnLRP Proposition 3.1): ``R_x = x * (R - s * sum(R))`` with
  ``s = softmax(x)``; masked (``-inf``) scores get 0.
* Bilinear products (:class:`UniformMatMul`, AttnLRP Proposition 3.3): for ``O = scale * A @ B + bias``
  each contribution ``scale * A_ji B_ip`` gets ``R_jp / O_jp``, shared uniformly between the two operands
  (one half each when both carry relevance). :class:`CPMatMul` (CP-LRP) holds the first operand (the
  attention weights) constant: the values get all of it, the softmax nothing.
* Element-wise products, e.g. gates (:class:`UniformProduct`, AttnLRP Proposition 3.2): ``R_a = R_b =
  R / 2``. :class:`ConstantFactor` (CP-LRP's gates) gives all of it to one factor.
* Point-wise non-linearities (GELU, SiLU, tanh; :class:`Pointwise` for functional ones) and dropout pass
  relevance unchanged (identity rule, :class:`~lrp_lightning.rules.Pass`); residual sums go through
  :class:`~lrp_lightning.layer.Sum` with :class:`~lrp_lightning.rules.Norm`.

Building blocks for canonizers (reused by model-family canonizers):

* :class:`MatMul` (and its roles :class:`AttentionScores`, :class:`AttentionValues`), :class:`Multiply`,
  :class:`Functional` (any differentiable function, e.g. rotary embeddings; epsilon rule through its
  Jacobian), :class:`Pointwise`, ``nn.Softmax``, :class:`~lrp_lightning.layer.Sum` — operation modules. They compute
  exactly the functional operation; while a composite gives them a rule, an attributed call runs the rule
  in the backward pass. :class:`Projection` is a part of a packed weight (``in_proj_weight[:E]``) as a
  parameter-free ``nn.Linear``, so linear rules (Epsilon, Gamma) apply to it.
* :class:`AttentionOps` holds one of each for a block; :func:`attention` is scaled dot-product attention
  through them, :func:`residual` a residual sum, :func:`merge_masks` turns boolean / float / padding masks
  into one additive mask. Where the rules attached are exactly AttnLRP's or CP-LRP's (and no other hook
  observes the operation modules), both take fused paths with the same relevance in fewer passes
  (:mod:`lrp_lightning._fused`: torch's fused attention kernel, a sum without stacking).
* :class:`Projection` also turns a linear layer with a transposed weight (GPT-2's ``Conv1D``) into an
  ``nn.Linear``: ``Projection(conv1d.weight.T, conv1d.bias)``.
* :data:`LAYER_NORM_NAMES` and :data:`RMS_NORM_NAMES`: class names (not types, so that no library is
  imported) of normalisation layers that the transformer composites give :class:`LayerNormRule` /
  :class:`RMSNormRule`; :func:`class_names` makes such a name set usable in a layer map.
* :func:`temporary_child` attaches an operation module to a model's block for the duration of a
  canonization (removed exactly); together with :func:`lrp_lightning.canonizers.override_forward` and
  :func:`lrp_lightning.core.override_params` it is all a canonizer needs.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._fused import fused_attention, proportional_sum
from .core import (
    MISSING_RULE_ADVICE,
    Hook,
    RemovableHandleList,
    Stabilizer,
    _evaluating,
    _Finalizer,
    _no_hooks,
    module_params,
    sole_rule,
)
from .layer import Sum
from .rules import Norm, _divide

Tensor = torch.Tensor

__all__ = [
    "LAYER_NORM_NAMES",
    "RMS_NORM_NAMES",
    "AttentionOps",
    "AttentionScores",
    "AttentionValues",
    "CPMatMul",
    "ConstantFactor",
    "EpsilonFunctional",
    "Functional",
    "LayerNormRule",
    "MatMul",
    "Multiply",
    "OpRule",
    "Pointwise",
    "Projection",
    "RMSNormRule",
    "SoftmaxRule",
    "UniformMatMul",
    "UniformProduct",
    "ZeroRelevance",
    "attention",
    "class_names",
    "merge_masks",
    "residual",
    "temporary_child",
]


# --------------------------------------------------------------------------------------------------------
# Operation modules with several inputs and their rules
# --------------------------------------------------------------------------------------------------------

_OP_RULES: weakref.WeakKeyDictionary[nn.Module, OpRule] = weakref.WeakKeyDictionary()


class OpRule(Hook):
    """Base class of rules for operation modules with several tensor inputs (:class:`MatMul`, :class:`Multiply`).

    A composite attaches it like any rule; the operation module then calls :meth:`relevance` in the backward
    pass of an attributed call, with its inputs, its output and the relevance at the output.
    """

    #: the rule returns relevance (LRP), not a modified gradient
    propagates_relevance = True

    def register(self, module: nn.Module) -> RemovableHandleList:
        if not isinstance(module, _Op):
            raise TypeError(
                f"{type(self).__name__} applies to operation modules (MatMul, Multiply), not {type(module).__name__}"
            )
        _OP_RULES[module] = self
        return RemovableHandleList([_Finalizer(lambda: _OP_RULES.pop(module, None))])

    def relevance(
        self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor, relevance: Tensor, **options: Any
    ) -> tuple[Tensor | None, ...]:
        """Return the relevance of each input (None for none)."""
        raise NotImplementedError

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} is evaluated by its operation module, not as a layer rule")

    def conserves(self, module: nn.Module) -> bool:
        """Whether the rule passes on all relevance (used by the conservation check)."""
        return False


class _OpFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rule: OpRule, module: nn.Module, options: dict, box: list, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rule, ctx.module, ctx.options = rule, module, options
        output = box.pop()
        ctx.save_for_backward(*inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        *inputs, output = ctx.saved_tensors
        with _no_hooks():
            relevances = ctx.rule.relevance(ctx.module, tuple(inputs), output, grad_output, **ctx.options)
        result = []
        for x, r in zip(inputs, relevances):
            if r is not None and r.shape != x.shape:
                r = r.sum_to_size(x.shape)
            result.append(r)
        return (None, None, None, None, *result)


class _Op(nn.Module):
    """An operation module: computes a functional operation, or its rule's node in an attributed call."""

    def _run(self, compute: Callable[..., Tensor], inputs: tuple[Tensor, ...], **options: Any) -> Tensor:
        rule = _OP_RULES.get(self)
        attributed = (
            rule is not None and torch.is_grad_enabled() and not _evaluating() and any(x.requires_grad for x in inputs)
        )
        if not attributed:
            return compute(*inputs, **options)
        with torch.no_grad():
            output = compute(*inputs, **options)
        return _OpFunction.apply(rule, self, options, [output], *inputs)


class MatMul(_Op):
    """``scale * (a @ b) + bias`` as a module (``bias``: e.g. an additive attention mask, held constant)."""

    def forward(self, a: Tensor, b: Tensor, scale: float | None = None, bias: Tensor | None = None) -> Tensor:
        return self._run(_matmul, (a, b), scale=scale, bias=bias)


class AttentionScores(MatMul):
    """The attention scores ``scale * q @ k^T + mask`` (a :class:`MatMul` in this role)."""


class AttentionValues(MatMul):
    """The attention output ``A @ v`` (a :class:`MatMul` in this role; CP-LRP holds ``A`` constant)."""


def _matmul(a: Tensor, b: Tensor, scale: float | None = None, bias: Tensor | None = None) -> Tensor:
    if scale is not None:
        a = a * scale  # scaled first, as torch's attention does
    out = a @ b
    return out if bias is None else out + bias


class Multiply(_Op):
    """The element-wise product ``a * b`` (gates) as a module."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self._run(torch.mul, (a, b))


class Functional(_Op):
    """Any differentiable function of one or more tensors as a module, e.g. rotary position embeddings
    (``q * cos + rotate_half(q) * sin``) or a scaling; composites give it :class:`EpsilonFunctional`.

    Parameters
    ----------
    function : callable
        ``(*tensors) -> tensor``.
    """

    def __init__(self, function: Callable[..., Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, *inputs: Tensor) -> Tensor:
        return self._run(self.function, inputs)

    def extra_repr(self) -> str:
        return getattr(self.function, "__name__", repr(self.function))


class Pointwise(nn.Module):
    """A functional point-wise non-linearity (``F.gelu``, ``torch.tanh``) as a module; composites pass
    relevance through it unchanged (identity rule).

    Parameters
    ----------
    function : callable
        ``tensor -> tensor`` of the same shape.
    """

    def __init__(self, function: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, input: Tensor) -> Tensor:
        return self.function(input)

    def extra_repr(self) -> str:
        return getattr(self.function, "__name__", repr(self.function))


class Projection(nn.Linear):
    """Rows ``start:stop`` of a packed weight (and bias) as a parameter-free ``nn.Linear``.

    It holds no parameters of its own (nothing enters a ``state_dict``): the forward pass uses the slices of
    the owner's parameters, and :meth:`overrides` gives the rules their detached values (register them with
    :func:`lrp_lightning.core.override_params`).

    Parameters
    ----------
    weight : torch.Tensor
        The packed weight, e.g. ``nn.MultiheadAttention.in_proj_weight``.
    bias : torch.Tensor or None
    start, stop : int, optional
        Rows of this projection in ``weight``; all by default.
    bias_start : int, optional
        First row of this projection in ``bias`` (``start`` by default; the bias may be packed while the
        weights are separate, as in ``nn.MultiheadAttention`` with ``kdim``/``vdim``).
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        start: int = 0,
        stop: int | None = None,
        bias_start: int | None = None,
    ) -> None:
        nn.Module.__init__(self)
        stop = weight.shape[0] if stop is None else stop
        self.in_features = weight.shape[1]
        self.out_features = stop - start
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        bias_start = start if bias_start is None else bias_start
        self._source = (weight, bias, slice(start, stop), slice(bias_start, bias_start + stop - start))

    def _slices(self) -> tuple[Tensor, Tensor | None]:
        weight, bias, rows, bias_rows = self._source
        return weight[rows], None if bias is None else bias[bias_rows]

    def overrides(self) -> dict[str, Tensor | None]:
        """The detached weight and bias that rules see."""
        weight, bias = self._slices()
        return {"weight": weight.detach(), "bias": None if bias is None else bias.detach()}

    def forward(self, input: Tensor) -> Tensor:
        weight, bias = self._slices()
        return F.linear(input, weight, bias)


# --------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------


def _zero_bias_or_none(bias: Tensor | None) -> bool:
    return bias is None or not bool(torch.any(bias != 0))


class _NormRuleBase(Hook):
    """Shared parts of the normalisation rules."""

    propagates_relevance = True

    def __init__(self, epsilon: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        self.epsilon = epsilon
        self._stabilize = Stabilizer.ensure(epsilon)

    @staticmethod
    def _dims(module: nn.Module, input: Tensor) -> tuple[int, ...]:
        shape = getattr(module, "normalized_shape", None)
        count = len(shape) if isinstance(shape, (tuple, list, torch.Size)) else 1
        return tuple(range(input.ndim - count, input.ndim))

    @staticmethod
    def _eps(module: nn.Module, input: Tensor) -> float:
        eps = getattr(module, "eps", None)
        if eps is None:
            eps = getattr(module, "variance_epsilon", None)
        if eps is None:  # nn.RMSNorm(eps=None) uses the dtype's machine epsilon
            eps = torch.finfo(input.dtype).eps
        return float(eps)

    def conserves(self, module: nn.Module) -> bool:
        return _zero_bias_or_none(module_params(module).get("bias"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


class LayerNormRule(_NormRuleBase):
    """AttnLRP's LayerNorm rule: the standard deviation held constant, the epsilon rule on the linear rest.

    ``y = (x - mean(x)) / sigma * w + b`` with ``sigma`` fixed is linear in ``x``; its relevance is
    ``R_x = x * ((h - mean(h)) / sigma)`` with ``h = w * R / y`` (means over the normalised dimensions).

    Parameters
    ----------
    epsilon : float or callable, default 1e-6
        Stabilizer of ``y`` in ``R / y``.
    """

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        dims = self._dims(module, input)
        params = module_params(module)
        weight, bias = params.get("weight"), params.get("bias")
        if isinstance(module, nn.LayerNorm) and not torch.is_grad_enabled():
            # one fused kernel for the output and 1 / sigma instead of nine element-wise passes
            output, _, rstd = torch.native_layer_norm(input, module.normalized_shape, weight, bias, float(module.eps))
            h = _divide(grad_output, output, self._stabilize)
            if weight is not None:
                h.mul_(weight)
            h.sub_(h.mean(dim=dims, keepdim=True))
            return h.mul_(rstd).mul_(input)
        centered = input - input.mean(dim=dims, keepdim=True)
        sigma = (centered.pow(2).mean(dim=dims, keepdim=True) + self._eps(module, input)).sqrt()
        output = centered / sigma
        if weight is not None:
            output = output * weight
        if bias is not None:
            output = output + bias
        h = grad_output / self._stabilize(output)
        if weight is not None:
            h = h * weight
        return input * (h - h.mean(dim=dims, keepdim=True)) / sigma


class RMSNormRule(_NormRuleBase):
    """AttnLRP's RMSNorm rule: ``y = x / rms(x) * w`` with ``rms`` held constant; ``R_x = x * w * R / (y rms)``.

    Parameters
    ----------
    epsilon : float or callable, default 1e-6
        Stabilizer of ``y`` in ``R / y``.
    """

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
        dims = self._dims(module, input)
        params = module_params(module)
        weight, bias = params.get("weight"), params.get("bias")
        rms = (input.pow(2).mean(dim=dims, keepdim=True) + self._eps(module, input)).sqrt()
        output = input / rms
        if weight is not None:
            output = output * weight
        if bias is not None:
            output = output + bias
        h = grad_output / self._stabilize(output)
        if weight is not None:
            h = h * weight
        return input * h / rms


class SoftmaxRule(Hook):
    """AttnLRP's softmax rule (Proposition 3.1): ``R_x = x * (R - s * sum(R))``, ``s = softmax(x)``.

    Entries of ``x`` that are not finite (masked scores, ``-inf``) get no relevance.
    """

    propagates_relevance = True
    needs_output = True

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor, output: Tensor | None = None) -> Tensor:
        dim = getattr(module, "dim", -1)
        if dim is None:
            raise ValueError("SoftmaxRule needs nn.Softmax(dim=...) with an explicit dim")
        if output is None or output.shape != input.shape:
            output = torch.softmax(input, dim=dim)
        relevance = input * (grad_output - output * grad_output.sum(dim=dim, keepdim=True))
        return torch.where(
            torch.isfinite(input), relevance, torch.zeros((), dtype=relevance.dtype, device=relevance.device)
        )

    def conserves(self, module: nn.Module) -> bool:
        return False


class ZeroRelevance(Hook):
    """No relevance flows through the layer (CP-LRP's softmax: the attention weights are held constant)."""

    propagates_relevance = True
    needs_input = False

    def backward(self, module: nn.Module, input: Tensor | None, grad_output: Tensor) -> Tensor:
        return torch.zeros_like(grad_output)

    def conserves(self, module: nn.Module) -> bool:
        return False


class UniformMatMul(OpRule):
    """AttnLRP's rule for bilinear products ``O = scale * a @ b + bias``: epsilon rule, uniform split.

    ``R_a = share * a * ((R / O) @ b^T) * scale`` and ``R_b = share * b * (a^T @ (R / O)) * scale``, with
    ``share = 1 / (number of operands that carry relevance)``, i.e. one half for ``q @ k^T`` and ``A @ v``.

    Parameters
    ----------
    epsilon : float or callable, default 1e-6
        Stabilizer of ``O``.
    """

    def __init__(self, epsilon: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        self.epsilon = epsilon
        self._stabilize = Stabilizer.ensure(epsilon)

    def _ratio(self, output: Tensor, relevance: Tensor, bias: Tensor | None) -> Tensor:
        ratio = relevance / self._stabilize(output)
        if bias is None:  # finite factors give a finite output: only a mask makes scores -inf
            return ratio
        return torch.where(torch.isfinite(output), ratio, torch.zeros((), dtype=ratio.dtype, device=ratio.device))

    def relevance(self, module, inputs, output, relevance, scale=None, bias=None):
        a, b = inputs
        ratio = self._ratio(output, relevance, bias)
        share = 1.0 / max(1, int(a.requires_grad) + int(b.requires_grad))
        factor = share if scale is None else share * scale  # on the factors' shapes, not on the (larger) output's
        relevance_a = a * (ratio @ b.transpose(-2, -1)).sum_to_size(a.shape).mul_(factor) if a.requires_grad else None
        relevance_b = b * (a.transpose(-2, -1) @ ratio).sum_to_size(b.shape).mul_(factor) if b.requires_grad else None
        return relevance_a, relevance_b

    def conserves(self, module: nn.Module) -> bool:
        return True  # up to a bias (an additive mask), which holds no relevance where it is finite and zero

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


class CPMatMul(UniformMatMul):
    """CP-LRP's rule for ``A @ v``: the attention weights ``A`` (first operand) are constant, ``v`` gets all.

    ``R_v = v * (A^T @ (R / O))``; ``R_A = 0``.
    """

    def relevance(self, module, inputs, output, relevance, scale=None, bias=None):
        a, b = inputs
        ratio = self._ratio(output, relevance, bias)
        gradient = (a.transpose(-2, -1) @ ratio).sum_to_size(b.shape)
        return None, b * (gradient if scale is None else gradient * scale)


class EpsilonFunctional(OpRule):
    """The epsilon rule for any function ``y = f(x_1, ..., x_n)`` of a :class:`Functional` module.

    ``R_{x_k} = x_k * J_k^T (R / y)`` with the Jacobian of ``f`` (autograd): Taylor's first-order term at
    the input, which is the epsilon rule for a function that is linear in its inputs (rotary embeddings,
    scalings, sums), with anything that is not (a bias) absorbing its share.

    Parameters
    ----------
    epsilon : float or callable, default 1e-6
        Stabilizer of ``y``.
    """

    def __init__(self, epsilon: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        self.epsilon = epsilon
        self._stabilize = Stabilizer.ensure(epsilon)

    def relevance(self, module, inputs, output, relevance):
        used = [i for i, x in enumerate(inputs) if x.requires_grad]
        leaves = [x.detach().requires_grad_(i in used) for i, x in enumerate(inputs)]
        with torch.enable_grad():
            out = module.function(*leaves)
            gradients = torch.autograd.grad(out, [leaves[i] for i in used], relevance / self._stabilize(out.detach()))
        result: list[Tensor | None] = [None] * len(inputs)
        for i, gradient in zip(used, gradients):
            result[i] = inputs[i] * gradient
        return tuple(result)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


class UniformProduct(OpRule):
    """AttnLRP's rule for element-wise products ``a * b`` (gates): ``R_a = R_b = R / 2``."""

    def relevance(self, module, inputs, output, relevance):
        half = relevance / 2
        return half, half

    def conserves(self, module: nn.Module) -> bool:
        return True


class ConstantFactor(OpRule):
    """Element-wise product with one factor held constant (CP-LRP's gates): the other gets all relevance.

    Parameters
    ----------
    constant : int, default 0
        Which factor (0: ``a``, 1: ``b``) is held constant.
    """

    def __init__(self, constant: int = 0) -> None:
        if constant not in (0, 1):
            raise ValueError(f"ConstantFactor: constant must be 0 or 1, got {constant!r}")
        self.constant = constant

    def relevance(self, module, inputs, output, relevance):
        return (None, relevance) if self.constant == 0 else (relevance, None)

    def conserves(self, module: nn.Module) -> bool:
        return True

    def __repr__(self) -> str:
        return f"ConstantFactor(constant={self.constant})"


#: class names of layer normalisations outside torch (``y = (x - mean) / sigma * w + b``), matched by name
LAYER_NORM_NAMES: set[str] = {"FusedLayerNorm", "LayerNorm2d"}
#: class names of RMS normalisations outside torch (``y = x / rms * w``; read ``eps`` or ``variance_epsilon``)
RMS_NORM_NAMES: set[str] = {
    "LlamaRMSNorm",
    "MistralRMSNorm",
    "MixtralRMSNorm",
    "Qwen2RMSNorm",
    "Qwen3RMSNorm",
    "PhiRMSNorm",
    "T5LayerNorm",
}


class _ClassNameMeta(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return type(instance).__name__ in cls.names  # type: ignore[attr-defined]

    def __repr__(cls) -> str:
        return f"class_names({sorted(cls.names)})"  # type: ignore[attr-defined]


def class_names(names: set[str] | frozenset[str]) -> type:
    """A "type" for layer maps and ``isinstance`` that matches modules by class name (``names`` is read live)."""
    return _ClassNameMeta("ClassNames", (), {"names": names})


# --------------------------------------------------------------------------------------------------------
# Building blocks for canonizers
# --------------------------------------------------------------------------------------------------------


class AttentionOps(nn.Module):
    """The operation modules of one attention block: scores, softmax, values, residual sum, activation.

    Parameters
    ----------
    activation : callable, optional
        A functional point-wise non-linearity of the block (wrapped in :class:`Pointwise`).
    """

    def __init__(self, activation: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.scores = AttentionScores()
        self.softmax = nn.Softmax(dim=-1)
        self.values = AttentionValues()
        self.sum = Sum()
        self.activation = Pointwise(activation) if activation is not None else None


def residual(ops: AttentionOps, a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` through ``ops.sum`` (relevance split in proportion to the summands).

    In an attributed call where ``ops.sum`` has the rule :class:`~lrp_lightning.rules.Norm` (and no other
    hook), the same relevance comes from :func:`lrp_lightning._fused.proportional_sum`, without stacking.
    """
    if a.shape == b.shape and _attributed(a, b):
        rule = sole_rule(ops.sum)
        if type(rule) is Norm:
            return proportional_sum(a, b, rule._stabilize)
    return ops.sum(torch.stack([a, b], dim=-1))


def _attributed(*inputs: Tensor) -> bool:
    return torch.is_grad_enabled() and not _evaluating() and any(x.requires_grad for x in inputs)


def merge_masks(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    batch: int,
    heads: int,
    queries: int,
    keys: int,
    dtype: torch.dtype,
    is_causal: bool = False,
    device: torch.device | None = None,
) -> Tensor | None:
    """One additive mask broadcastable to ``(batch, heads, queries, keys)`` (``-inf`` where masked).

    ``attn_mask``: ``(queries, keys)``, ``(batch * heads, queries, keys)`` or 4-D; ``key_padding_mask``:
    ``(batch, keys)``. Boolean masks are True where attention is *not* allowed (torch's convention); float
    masks are added. ``is_causal`` without ``attn_mask`` masks the future (a mask made on ``device``).
    """

    def additive(mask: Tensor) -> Tensor:
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        return mask.to(dtype)

    merged = None
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(queries, keys, dtype=torch.bool, device=device).triu(1)
    if attn_mask is not None:
        mask = additive(attn_mask)
        if mask.ndim == 3:
            mask = mask.reshape(batch, heads, queries, keys)
        merged = mask
    if key_padding_mask is not None:
        padding = additive(key_padding_mask).reshape(batch, 1, 1, keys)
        merged = padding if merged is None else merged + padding
    return merged


def attention(
    ops: AttentionOps,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention through ``ops``: ``softmax(scale * q k^T + mask) v``.

    Parameters
    ----------
    ops : AttentionOps
    query, key, value : torch.Tensor
        ``(..., queries, d)``, ``(..., keys, d)``, ``(..., keys, d_v)``.
    mask : torch.Tensor, optional
        Additive, broadcastable to the scores (see :func:`merge_masks`).
    scale : float, optional
        ``1 / sqrt(d)`` by default.
    dropout_p : float, default 0.0
        Dropout on the attention weights (pass 0 in evaluation mode).
    need_weights : bool, default True
        Whether the caller uses the weights. Without them, an attributed call whose operation modules have
        AttnLRP's rules (:class:`UniformMatMul`, :class:`SoftmaxRule`) or CP-LRP's (:class:`CPMatMul` on
        ``ops.values``) and no other hooks runs torch's fused attention and gets the same relevance in its
        backward (:func:`lrp_lightning._fused.fused_attention`); the weights are then None.

    Returns
    -------
    (output, weights)
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    if not need_weights and dropout_p == 0.0 and _attributed(query, key, value):
        fused = _fused_rules(ops)
        if fused is not None:
            stabilize, constant_weights = fused
            return fused_attention(query, key, value, mask, scale, stabilize, constant_weights), None
    scores = ops.scores(query, key.transpose(-2, -1), scale=scale, bias=mask)
    weights = ops.softmax(scores)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return ops.values(weights, value), weights


#: the largest stabilizer of the scores' product rule that the fused attention leaves out (the default)
_FUSED_MAX_EPSILON = 1e-6


def _fused_rules(ops: AttentionOps) -> tuple[Callable[[Tensor], Tensor], bool] | None:
    """(stabilizer of ``A @ v``, whether the weights are constant) when ``ops`` has rules the fused path computes."""
    if any(op._forward_hooks or op._forward_pre_hooks for op in (ops.scores, ops.values)):
        return None  # something else observes the call
    softmax = sole_rule(ops.softmax)
    if softmax is None and (ops.softmax._forward_hooks or ops.softmax._forward_pre_hooks):
        return None
    values = _OP_RULES.get(ops.values)
    if type(values) is CPMatMul:  # nothing flows into the weights: the softmax's and scores' rules never run
        return values._stabilize, True
    scores = _OP_RULES.get(ops.scores)
    if type(values) is not UniformMatMul or type(scores) is not UniformMatMul or type(softmax) is not SoftmaxRule:
        return None
    if not isinstance(scores.epsilon, (int, float)) or abs(scores.epsilon) > _FUSED_MAX_EPSILON:
        return None  # a larger stabilizer of the scores is an explicit choice: the per-rule path honours it
    return values._stabilize, False


@contextmanager
def temporary_child(module: nn.Module, name: str, child: nn.Module) -> Iterator[nn.Module]:
    """Attach ``child`` as ``module.<name>`` inside the context; removed exactly afterwards.

    The child must hold no parameters or buffers (the model's ``state_dict`` stays as it is).
    """
    if name in module.__dict__ or name in module._modules or name in module._parameters or name in module._buffers:
        raise ValueError(
            f"{type(module).__name__} already has an attribute {name!r}; cannot attach {type(child).__name__}"
        )
    if any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
        raise ValueError(f"temporary_child: {type(child).__name__} holds parameters or buffers")
    module.add_module(name, child)
    try:
        yield child
    finally:
        del module._modules[name]


_ADVICE = (
    "it is a part of transformers; explain attention models with composite='attn_lrp' or 'cp_lrp', or give it "
    "a rule of lrp_lightning.attention (e.g. layer_map=[({name}, {rule})])"
)
MISSING_RULE_ADVICE.update(
    {
        _Op: _ADVICE.format(name="lrp_lightning.attention.MatMul", rule="UniformMatMul()"),
        nn.LayerNorm: _ADVICE.format(name="torch.nn.LayerNorm", rule="LayerNormRule()"),
        nn.Softmax: _ADVICE.format(name="torch.nn.Softmax", rule="SoftmaxRule()"),
    }
)
if hasattr(nn, "RMSNorm"):
    MISSING_RULE_ADVICE[nn.RMSNorm] = _ADVICE.format(name="torch.nn.RMSNorm", rule="RMSNormRule()")
