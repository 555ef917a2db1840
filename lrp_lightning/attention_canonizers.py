"""Canonizers for attention models: ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, torchvision's ViT.

Each gives the modules it handles a temporary LRP-aware ``forward`` that computes the same values as the
original one, but routes every operation that mixes values through a module that can carry a rule (the
building blocks of :mod:`lrp_lightning.attention`): the packed input projection of
``nn.MultiheadAttention`` becomes three :class:`~lrp_lightning.attention.Projection` layers, the scores,
softmax and ``A @ v`` of (scaled dot-product) attention become operation modules, residual sums a
:class:`~lrp_lightning.layer.Sum`, a functional activation a :class:`~lrp_lightning.attention.Pointwise`.
The operation modules are attached as a child ``lrp_ops`` (and ``lrp_q`` ... for projections) of the
block while the canonizer is applied; they hold no parameters. Removing the canonizer deletes them and
the ``forward`` attribute again: the model, its ``state_dict`` and its outputs are exactly as before.

Registered names (``canonizers="auto"`` picks them for models that hold these modules):

* ``"multihead_attention"``: :class:`MultiheadAttentionCanonizer`.
* ``"transformer_encoder_layer"``: :class:`TransformerEncoderLayerCanonizer` (with the attention inside).
* ``"transformer_decoder_layer"``: :class:`TransformerDecoderLayerCanonizer` (self- and cross-attention).
* ``"vision_transformer"``: :class:`VisionTransformerCanonizer`, torchvision's ``EncoderBlock`` (residual
  sums) and ``Encoder`` (the position embedding, added like a bias), with the attention inside.
* ``"embedding_sum"``: :class:`EmbeddingSumCanonizer`, embeddings added with a plain ``+`` (``tok(ids) +
  pos(positions)``) split relevance in proportion instead of each getting all of it (models with two or
  more ``nn.Embedding`` layers).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn as nn

from .attention import AttentionOps, Projection, attention, merge_masks, residual, temporary_child
from .canonizers import Canonizer, CompositeCanonizer, override_forward, register_canonizer
from .core import _evaluating, override_params, stabilize

Tensor = torch.Tensor

__all__ = [
    "EMBEDDING_SUM_OWNERS",
    "BlockCanonizer",
    "EmbeddingSumCanonizer",
    "MultiheadAttentionCanonizer",
    "TransformerDecoderLayerCanonizer",
    "TransformerEncoderLayerCanonizer",
    "VisionTransformerCanonizer",
]

OPS_NAME = "lrp_ops"


class BlockCanonizer(Canonizer):
    """Base class: give every module that :meth:`matches` a temporary forward (see :meth:`canonize`).

    Subclasses implement :meth:`matches` and :meth:`canonize`; a module canonized already (it has an
    ``lrp_ops`` child, e.g. by another canonizer that contains this one) is left as it is.
    """

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        """Whether ``module`` is one this canonizer rewrites."""
        raise NotImplementedError

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        """Enter the temporary changes of ``module`` into ``stack`` (closed by :meth:`remove`)."""
        raise NotImplementedError

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        return any(cls.matches(module) for module in model.modules())

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        names = [
            name for name, module in model.named_modules() if cls.matches(module) and OPS_NAME not in module._modules
        ]
        if not names:
            return None
        return (
            f"{len(names)} {cls.__name__.replace('Canonizer', '')} module(s) ({', '.join(names[:3]) or '<root>'}) are "
            "explained without their canonizer, so functional softmax/matmul/residual sums inside get no rule; "
            "pass canonizers='auto'"
        )

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances = []
        try:
            for module in list(root_module.modules()):
                if self.matches(module) and OPS_NAME not in module._modules:
                    instance = type(self)()
                    instance._stack = ExitStack()
                    instances.append(instance)
                    self.canonize(module, instance._stack)
        except BaseException:
            for done in reversed(instances):
                done.remove()
            raise
        return instances

    def remove(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def copy(self) -> BlockCanonizer:
        return type(self)()


# --------------------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------------


@register_canonizer("multihead_attention")
class MultiheadAttentionCanonizer(BlockCanonizer):
    """``nn.MultiheadAttention`` with its projections, scores, softmax and ``A @ v`` as modules with rules.

    Supports batched and unbatched inputs, ``batch_first`` either way, boolean and float ``attn_mask`` /
    ``key_padding_mask``, ``is_causal``, ``need_weights`` and separate key/value dimensions. Refuses
    ``add_bias_kv`` and ``add_zero_attn`` (named in the error).
    """

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention)

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "MultiheadAttentionCanonizer: add_bias_kv=True and add_zero_attn=True are not supported; build the "
                "attention without them or pass canonizers=[] (relevance is then not propagated through it)"
            )
        embed = module.embed_dim
        if module._qkv_same_embed_dim:
            weights = [(module.in_proj_weight, i * embed, (i + 1) * embed) for i in range(3)]
        else:
            weights = [(w, 0, None) for w in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)]
        projections = []
        for i, (name, (weight, start, stop)) in enumerate(zip(("lrp_q", "lrp_k", "lrp_v"), weights)):
            projection = Projection(weight, module.in_proj_bias, start, stop, bias_start=i * embed)
            stack.enter_context(temporary_child(module, name, projection))
            stack.enter_context(override_params(projection, projection.overrides()))
            projections.append(projection)
        ops = stack.enter_context(temporary_child(module, OPS_NAME, AttentionOps()))
        stack.enter_context(override_forward(module, functools.partial(_mha_forward, module, ops, *projections)))


def _mha_forward(
    module: nn.MultiheadAttention,
    ops: AttentionOps,
    q_proj: Projection,
    k_proj: Projection,
    v_proj: Projection,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    elif not module.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    batch, queries, _ = query.shape
    keys = key.shape[1]
    heads = module.num_heads
    head_dim = module.embed_dim // heads
    q = q_proj(query).reshape(batch, queries, heads, head_dim).transpose(1, 2)
    k = k_proj(key).reshape(batch, keys, heads, head_dim).transpose(1, 2)
    v = v_proj(value).reshape(batch, keys, heads, head_dim).transpose(1, 2)
    mask = merge_masks(attn_mask, key_padding_mask, batch, heads, queries, keys, q.dtype, is_causal, q.device)
    dropout_p = module.dropout if module.training else 0.0
    output, weights = attention(ops, q, k, v, mask, 1.0 / math.sqrt(head_dim), dropout_p, need_weights)
    output = module.out_proj(output.transpose(1, 2).reshape(batch, queries, module.embed_dim))
    if not batched:
        output = output.squeeze(0)
    elif not module.batch_first:
        output = output.transpose(0, 1)
    if not need_weights:
        return output, None
    weights = weights.mean(dim=1) if average_attn_weights else weights
    return output, (weights if batched else weights.squeeze(0))


# --------------------------------------------------------------------------------------------------------
# nn.TransformerEncoderLayer
# --------------------------------------------------------------------------------------------------------


class _EncoderLayerBlock(BlockCanonizer):
    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.TransformerEncoderLayer)

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        activation = module.activation
        functional = None if isinstance(activation, nn.Module) else activation
        ops = stack.enter_context(temporary_child(module, OPS_NAME, AttentionOps(activation=functional)))
        stack.enter_context(override_forward(module, functools.partial(_encoder_layer_forward, module, ops)))


def _encoder_layer_forward(
    module: nn.TransformerEncoderLayer,
    ops: AttentionOps,
    src: Tensor,
    src_mask: Tensor | None = None,
    src_key_padding_mask: Tensor | None = None,
    is_causal: bool = False,
) -> Tensor:
    activation: Callable[[Tensor], Tensor] = ops.activation if ops.activation is not None else module.activation

    def attend(x: Tensor) -> Tensor:
        out = module.self_attn(
            x, x, x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask, need_weights=False, is_causal=is_causal
        )[0]
        return module.dropout1(out)

    def feed_forward(x: Tensor) -> Tensor:
        return module.dropout2(module.linear2(module.dropout(activation(module.linear1(x)))))

    x = src
    if module.norm_first:
        x = residual(ops, x, attend(module.norm1(x)))
        return residual(ops, x, feed_forward(module.norm2(x)))
    x = module.norm1(residual(ops, x, attend(x)))
    return module.norm2(residual(ops, x, feed_forward(x)))


class _DecoderLayerBlock(BlockCanonizer):
    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.TransformerDecoderLayer)

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        activation = module.activation
        functional = None if isinstance(activation, nn.Module) else activation
        ops = stack.enter_context(temporary_child(module, OPS_NAME, AttentionOps(activation=functional)))
        stack.enter_context(override_forward(module, functools.partial(_decoder_layer_forward, module, ops)))


def _decoder_layer_forward(
    module: nn.TransformerDecoderLayer,
    ops: AttentionOps,
    tgt: Tensor,
    memory: Tensor,
    tgt_mask: Tensor | None = None,
    memory_mask: Tensor | None = None,
    tgt_key_padding_mask: Tensor | None = None,
    memory_key_padding_mask: Tensor | None = None,
    tgt_is_causal: bool = False,
    memory_is_causal: bool = False,
) -> Tensor:
    activation: Callable[[Tensor], Tensor] = ops.activation if ops.activation is not None else module.activation

    def attend(x: Tensor) -> Tensor:
        out = module.self_attn(
            x,
            x,
            x,
            attn_mask=tgt_mask,
            key_padding_mask=tgt_key_padding_mask,
            is_causal=tgt_is_causal,
            need_weights=False,
        )[0]
        return module.dropout1(out)

    def cross(x: Tensor) -> Tensor:
        out = module.multihead_attn(
            x,
            memory,
            memory,
            attn_mask=memory_mask,
            key_padding_mask=memory_key_padding_mask,
            is_causal=memory_is_causal,
            need_weights=False,
        )[0]
        return module.dropout2(out)

    def feed_forward(x: Tensor) -> Tensor:
        return module.dropout3(module.linear2(module.dropout(activation(module.linear1(x)))))

    x = tgt
    if module.norm_first:
        x = residual(ops, x, attend(module.norm1(x)))
        x = residual(ops, x, cross(module.norm2(x)))
        return residual(ops, x, feed_forward(module.norm3(x)))
    x = module.norm1(residual(ops, x, attend(x)))
    x = module.norm2(residual(ops, x, cross(x)))
    return module.norm3(residual(ops, x, feed_forward(x)))


@register_canonizer("transformer_decoder_layer")
class TransformerDecoderLayerCanonizer(CompositeCanonizer):
    """``nn.TransformerDecoderLayer``: residual sums and a functional activation as modules, with the
    :class:`MultiheadAttentionCanonizer` for its self- and cross-attention (pre- and post-norm layers)."""

    def __init__(self) -> None:
        super().__init__([MultiheadAttentionCanonizer(), _DecoderLayerBlock()])

    def copy(self) -> TransformerDecoderLayerCanonizer:
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        return _DecoderLayerBlock.applies(model)

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        return _DecoderLayerBlock.uncanonized(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_canonizer("transformer_encoder_layer")
class TransformerEncoderLayerCanonizer(CompositeCanonizer):
    """``nn.TransformerEncoderLayer``: residual sums and a functional activation as modules, with the
    :class:`MultiheadAttentionCanonizer` for its attention (pre- and post-norm layers)."""

    def __init__(self) -> None:
        super().__init__([MultiheadAttentionCanonizer(), _EncoderLayerBlock()])

    def copy(self) -> TransformerEncoderLayerCanonizer:
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        return _EncoderLayerBlock.applies(model)

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        return _EncoderLayerBlock.uncanonized(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------------------------------------
# torchvision's VisionTransformer
# --------------------------------------------------------------------------------------------------------


def _vit_module() -> Any:
    return sys.modules.get("torchvision.models.vision_transformer")  # only a model built with it has its blocks


class _ViTEncoderBlock(BlockCanonizer):
    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        vit = _vit_module()
        return vit is not None and isinstance(module, vit.EncoderBlock)

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        ops = stack.enter_context(temporary_child(module, OPS_NAME, AttentionOps()))
        stack.enter_context(override_forward(module, functools.partial(_vit_block_forward, module, ops)))


def _vit_block_forward(module: nn.Module, ops: AttentionOps, input: Tensor) -> Tensor:
    x = module.ln_1(input)
    x, _ = module.self_attention(x, x, x, need_weights=False)
    x = residual(ops, module.dropout(x), input)
    return residual(ops, x, module.mlp(module.ln_2(x)))


class _ViTEncoder(BlockCanonizer):
    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        vit = _vit_module()
        return vit is not None and isinstance(module, vit.Encoder)

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        ops = stack.enter_context(temporary_child(module, OPS_NAME, AttentionOps()))
        stack.enter_context(override_forward(module, functools.partial(_vit_encoder_forward, module, ops)))


def _vit_encoder_forward(module: nn.Module, ops: AttentionOps, input: Tensor) -> Tensor:
    # the position embedding is added like a bias: it takes its share of the relevance
    x = residual(ops, input, module.pos_embedding.expand_as(input))
    return module.ln(module.layers(module.dropout(x)))


@register_canonizer("vision_transformer")
class VisionTransformerCanonizer(CompositeCanonizer):
    """torchvision's ``VisionTransformer``: its ``Encoder`` (position embedding), ``EncoderBlock`` (residual
    sums) and their ``nn.MultiheadAttention`` (:class:`MultiheadAttentionCanonizer`)."""

    def __init__(self) -> None:
        super().__init__([MultiheadAttentionCanonizer(), _ViTEncoderBlock(), _ViTEncoder()])

    def copy(self) -> VisionTransformerCanonizer:
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        return _ViTEncoderBlock.applies(model) or _ViTEncoder.applies(model)

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        return _ViTEncoderBlock.uncanonized(model) or _ViTEncoder.uncanonized(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------------------------------------
# Embedding sums written with a plain `+`
# --------------------------------------------------------------------------------------------------------

#: class names of modules whose own canonizer splits their embedding sum already (e.g. ``GPT2Model``);
#: :class:`EmbeddingSumCanonizer` leaves models holding one of them alone (model-family modules add to it)
EMBEDDING_SUM_OWNERS: set[str] = set()

#: stabilizer of the proportional split (it matters only where the parts sum to zero)
_EPSILON = 1e-12

_ADDS = frozenset({torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__})
_INPLACE_ADDS = frozenset({Tensor.add_, Tensor.__iadd__})  # `x += y` calls add_
_SCALES = frozenset({torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__})
_DIVISIONS = frozenset({torch.div, Tensor.div, Tensor.__truediv__})
#: operations through which relevance passes as the gradient does, so the result stays a part of the sum
_STRUCTURAL = frozenset(
    {
        Tensor.__getitem__,
        Tensor.unsqueeze,
        Tensor.expand,
        Tensor.expand_as,
        Tensor.view,
        Tensor.reshape,
        Tensor.contiguous,
        Tensor.to,
        Tensor.type_as,
        Tensor.transpose,
        Tensor.permute,
    }
)


class _EmbeddingPart(Tensor):
    """An embedding output (or a sum or rescaling of them) in an attributed forward pass.

    ``a + b`` of two parts splits relevance in proportion to their values, ``part * c`` (``c`` a number)
    passes it unchanged; any other operation returns a plain tensor. ``shared`` marks an output computed once
    for the whole batch (an embedding of 1-D indices, e.g. ``pos(torch.arange(T))`` of shape ``(T, hidden)``).
    """

    shared: bool = False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        with torch._C.DisableTorchFunctionSubclass():
            if not kwargs and len(args) == 2:
                first, second = args
                both = isinstance(first, _EmbeddingPart) and isinstance(second, _EmbeddingPart)
                if both and func in _ADDS:
                    return _mark(_ProportionalSum.apply(first, second), first.shared and second.shared)
                if both and func in _INPLACE_ADDS and first.shape == torch.broadcast_shapes(first.shape, second.shape):
                    shared = first.shared and second.shared
                    _InplaceProportionalSum.apply(first, second)
                    first.shared = shared
                    return first
                if (func in _SCALES or func in _DIVISIONS) and isinstance(first, _EmbeddingPart) and _is_number(second):
                    factor = 1.0 / second if func in _DIVISIONS else float(second)
                    return _mark(_ConstantScale.apply(first, factor), first.shared)
            result = func(*args, **(kwargs or {}))
            if func in _STRUCTURAL and isinstance(args[0], _EmbeddingPart) and isinstance(result, Tensor):
                return _mark(result, args[0].shared)
            return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0


def _mark(tensor: Tensor, shared: bool) -> Tensor:
    part = tensor.as_subclass(_EmbeddingPart)
    part.shared = shared
    return part


class _ProportionalSum(torch.autograd.Function):
    """``a + b`` whose backward splits the relevance ``R`` in proportion: ``R_a = a * R / (a + b)``.

    A part shared by the batch (see :class:`_EmbeddingPart`) is no per-sample input: the per-sample parts
    share ``R`` among themselves, so the token at a position keeps its position's relevance.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        shared = (getattr(a, "shared", False), getattr(b, "shared", False))
        ctx.counted = (True, True) if all(shared) else (not shared[0], not shared[1])
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        return _split(relevance, ctx.saved_tensors, ctx.counted)


class _InplaceProportionalSum(torch.autograd.Function):
    """``a += b`` with the backward of :class:`_ProportionalSum` (``a``'s value before the sum is kept)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        shared = (getattr(a, "shared", False), getattr(b, "shared", False))
        ctx.counted = (True, True) if all(shared) else (not shared[0], not shared[1])
        ctx.parts = (a.detach().clone(), b.detach())
        ctx.mark_dirty(a)
        return a.add_(b)

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        return _split(relevance, ctx.parts, ctx.counted)


def _split(relevance: Tensor, parts: tuple[Tensor, Tensor], counted: tuple[bool, bool]) -> tuple:
    """The relevance of each counted part of a sum, in proportion to its value; None for the others."""
    if counted.count(True) == 1:  # a token + a shared position embedding: the token keeps all of it
        part = parts[counted.index(True)]
        only = relevance.sum_to_size(part.shape)
        return (only, None) if counted[0] else (None, only)
    kept = [part if count else None for part, count in zip(parts, counted)]
    ratio = relevance / stabilize(sum(part for part in kept if part is not None), _EPSILON)
    return tuple(None if part is None else (part * ratio).sum_to_size(part.shape) for part in kept)


class _ConstantScale(torch.autograd.Function):
    """``x * c`` for a number ``c``: the epsilon rule of a constant scaling passes relevance unchanged."""

    @staticmethod
    def forward(ctx, input: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        return input * factor

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        return relevance, None


@register_canonizer("embedding_sum")
class EmbeddingSumCanonizer(Canonizer):
    """Embeddings added with a plain ``+`` (``tok(ids) + pos(positions)``, token + type embeddings).

    The engine passes relevance backwards as the gradient, and the gradient of ``a + b`` is the same for
    both summands: each embedding would get all of the relevance, and token relevance (the sum over a
    token's embeddings) would count it twice. While applied, the outputs of the model's ``nn.Embedding``
    layers in an attributed forward pass are marked; ``a + b`` (also ``torch.add``, ``+=``) of two marked
    outputs then splits the relevance in proportion to their values, ``R_a = a * R / (a + b)``, as
    :class:`~lrp_lightning.rules.Norm` does for a :class:`~lrp_lightning.layer.Sum`; a rescaling by a number
    (``tok(ids) * math.sqrt(d)``) passes it unchanged (the epsilon rule of a constant factor), and
    indexing, ``unsqueeze``, ``expand``, ``view``, ``reshape`` keep the mark. An embedding of 1-D indices
    (``pos(torch.arange(T))``, shape ``(T, hidden)``) is shared by the batch: it takes no share, so
    relevance stays with the tokens at its positions. Everything else, and every forward pass that is not
    attributed (training, ``torch.no_grad()``), is untouched. ``canonizers="auto"`` picks it for a model
    with two or more ``nn.Embedding`` layers (not for model families whose canonizer does this itself).
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._pending: list[Any] = []

    def copy(self) -> EmbeddingSumCanonizer:
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        modules = list(model.modules())
        if any(type(module).__name__ in EMBEDDING_SUM_OWNERS for module in modules):
            return False
        return sum(isinstance(module, nn.Embedding) for module in modules) >= 2

    def apply(self, root_module: nn.Module) -> list[Any]:
        instance = self.copy()
        for module in root_module.modules():
            if isinstance(module, nn.Embedding):
                instance._handles.append(module.register_forward_pre_hook(instance._arm))
        return [instance]

    def _arm(self, module: nn.Module, args: tuple) -> None:
        # registered now, the marking hook runs after every forward hook registered before the call (a
        # rule's, the token attributor's capture), so it marks the tensor the model's code receives
        if torch.is_grad_enabled() and not _evaluating():
            ids = args[0] if args and isinstance(args[0], Tensor) else None
            shared = ids is not None and ids.ndim == 1
            self._pending.append(
                module.register_forward_hook(functools.partial(self._mark_output, shared), always_call=True)
            )

    def _mark_output(self, shared: bool, module: nn.Module, args: tuple, output: Any) -> Any:
        self._disarm()
        if isinstance(output, Tensor) and output.is_floating_point() and output.requires_grad:
            return _mark(output, shared)
        return None

    def _disarm(self) -> None:
        for handle in self._pending:
            handle.remove()
        self._pending = []

    def remove(self) -> None:
        self._disarm()
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
