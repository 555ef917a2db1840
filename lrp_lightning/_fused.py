"""Fused relevance paths for attention blocks: the same rules in fewer passes.

Two compositions of rules reduce to something cheaper than running each rule on its own:

* Scaled dot-product attention under AttnLRP: the softmax rule is the softmax's gradient times its input
  (``x * (R - s * sum(R)) = x * s * (R / s - sum(R))``), and the uniform rule of a bilinear product is the
  product's gradient times each factor, halved. Chained, the relevance of the queries, keys and values is
  ``share * x * g_x`` with ``g`` the gradient of ``softmax(scale * q k^T + mask) v`` at ``R / O`` (``O`` the
  attention's output): ``1/4`` for queries and keys (half of ``A @ v``, then half of ``q k^T``), ``1/2`` for
  values. The scores' relevance divided by the scores cancels exactly (the per-rule path divides by the
  stabilized scores there, which differs only where a score is within the stabilizer of zero), so autograd
  runs torch's fused ``scaled_dot_product_attention`` and its backward, with no ``(..., T, T)`` tensor
  materialised outside that kernel. CP-LRP (attention weights constant) is the same with the queries and
  keys detached and share 1 for the values.
* A residual sum ``a + b`` with the proportional rule (:class:`~lrp_lightning.rules.Norm` on a
  :class:`~lrp_lightning.layer.Sum`): ``R_a = a * R / (a + b)`` without stacking the summands first.

:mod:`lrp_lightning.attention` decides when the rules attached to a block's operation modules are exactly
these (and the call is attributed) and uses the functions here; any other rule runs its own way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["fused_attention", "proportional_sum"]


class _Relevance(torch.autograd.Function):
    """Identity forward; backward turns the gradient arriving at ``x`` into relevance ``share * x * g``."""

    @staticmethod
    def forward(ctx, x: Tensor, share: float) -> Tensor:  # type: ignore[override]
        ctx.share = share
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, gradient: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        relevance = x * gradient
        return (relevance if ctx.share == 1.0 else relevance.mul_(ctx.share)), None


class _Ratio(torch.autograd.Function):
    """Identity forward; backward turns the relevance arriving at ``output`` into the gradient ``R / stab(O)``."""

    @staticmethod
    def forward(ctx, output: Tensor, stabilize: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        ctx.stabilize = stabilize
        ctx.save_for_backward(output)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        (output,) = ctx.saved_tensors
        stabilized = ctx.stabilize(output)
        if stabilized is output:  # a custom stabilizer may return its input: do not write into it
            return relevance / stabilized, None
        return torch.div(relevance, stabilized, out=stabilized), None


def fused_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None,
    scale: float,
    stabilize: Callable[[Tensor], Tensor],
    constant_weights: bool = False,
) -> Tensor:
    """``softmax(scale * q k^T + mask) v`` whose backward propagates AttnLRP's (or CP-LRP's) relevance.

    Parameters
    ----------
    query, key, value : torch.Tensor
        ``(..., queries, d)``, ``(..., keys, d)``, ``(..., keys, d_v)``.
    mask : torch.Tensor or None
        Additive, broadcastable to the scores.
    scale : float
    stabilize : callable
        Stabilizer of the output in ``R / O`` (the values' product rule's).
    constant_weights : bool, default False
        CP-LRP: the attention weights are constant, the values get all relevance.
    """
    if constant_weights:
        query, key = query.detach(), key.detach()
    weighted = query.requires_grad or key.requires_grad  # the attention weights carry relevance
    if value.requires_grad:
        value = _Relevance.apply(value, 0.5 if weighted else 1.0)
    if weighted:
        share = (0.5 if value.requires_grad else 1.0) / (int(query.requires_grad) + int(key.requires_grad))
        query = _Relevance.apply(query, share) if query.requires_grad else query
        key = _Relevance.apply(key, share) if key.requires_grad else key
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)
    return _Ratio.apply(output, stabilize)


class _ProportionalSum(torch.autograd.Function):
    """``a + b`` whose backward is ``R_a = a * R / stab(a + b)``, ``R_b = b * R / stab(a + b)``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, stabilize: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        output = a + b
        ctx.stabilize = stabilize
        ctx.save_for_backward(a, b)
        # kept by reference; the version counter tells whether an in-place op changed it since
        ctx.output, ctx.version = output, output._version
        return output

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        output, ctx.output = ctx.output, None
        if output is None or output._version != ctx.version:
            output = a + b
        stabilized = ctx.stabilize(output)
        if stabilized is output:
            ratio = relevance / stabilized
        else:
            ratio = torch.div(relevance, stabilized, out=stabilized)
        relevance_a = (a * ratio).sum_to_size(a.shape) if ctx.needs_input_grad[0] else None
        relevance_b = (b * ratio).sum_to_size(b.shape) if ctx.needs_input_grad[1] else None
        return relevance_a, relevance_b, None


def proportional_sum(a: Tensor, b: Tensor, stabilize: Callable[[Tensor], Tensor]) -> Tensor:
    """``a + b`` whose backward splits relevance in proportion to the summands (the rule ``Norm`` of a ``Sum``)."""
    return _ProportionalSum.apply(a, b, stabilize)
