"""Canonizers for Hugging Face transformers: BERT-, GPT-2- and LLaMA-style blocks, matched by class name.

Transformers compute attention, activations, gates and residual sums as functions inside a block's
``forward``, where no rule can see them. These canonizers give the blocks a temporary LRP-aware
``forward`` (an instance attribute plus a parameter-free child ``lrp_ops``, both removed afterwards, as
for the canonizers of :mod:`lrp_lightning.attention_canonizers`; nothing is written into the model). It
computes the same output with the building blocks of :mod:`lrp_lightning.attention`: the scores, softmax
and ``A @ v`` of attention, gates (:class:`~lrp_lightning.attention.Multiply`), functional activations
(:class:`~lrp_lightning.attention.Pointwise`) and residual and embedding sums
(:class:`~lrp_lightning.layer.Sum`) become modules, and the composite gives them their rules:
``"attn_lrp"`` the AttnLRP rules (Achtibat et al., ICML 2024), ``"cp_lrp"`` the CP-LRP ones (Ali et al.,
ICML 2022). ``torch.nn.LayerNorm`` and ``LlamaRMSNorm`` keep their modules and get the composite's
normalisation rules; linear layers keep theirs. Two operations need no rule choice and are routed here:

* rotary position embeddings (LLaMA), a linear map of the queries and keys with constants: LRP-0;
* GPT-2 adds ``wte(ids) + wpe(positions)`` inline in ``GPT2Model.forward``: each part gets relevance in
  proportion to its contribution (the rule of sums).

GPT-2's ``Conv1D`` (``x @ W + b``) is shown to the composite as a parameter-free ``nn.Linear``
(:class:`~lrp_lightning.attention.Projection` of the transposed weight), so its linear rule applies.

``transformers`` is never imported here: blocks are recognised by their class name (those of transformers
4.x), so same-named blocks of other models built the same way work too. A key/value cache from earlier
calls, cross-attention, head masks and relative position embeddings are refused with a clear error:
attribution explains one forward pass over the whole sequence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn as nn

from ._validation import argument_error
from .attention import AttentionOps, Multiply, Projection, attention, residual, temporary_child
from .attention_canonizers import EMBEDDING_SUM_OWNERS, OPS_NAME, BlockCanonizer
from .canonizers import Canonizer, CompositeCanonizer, override_forward, register_canonizer
from .core import override_params, stabilize

Tensor = torch.Tensor

__all__ = ["BertCanonizer", "GPT2Canonizer", "HuggingFaceCanonizer", "LlamaCanonizer"]

# their canonizers split these blocks' embedding sums themselves (BERT through a Sum, GPT-2 inline)
EMBEDDING_SUM_OWNERS.update({"BertEmbeddings", "GPT2Model"})

#: stabilizer of the canonizers' own denominators (rotary embeddings, GPT-2's inline embedding sum)
DEFAULT_EPSILON = 1e-12


# --------------------------------------------------------------------------------------------------------
# Operations without a rule choice: LRP-0 of a constant linear map, parts of an inline sum
# --------------------------------------------------------------------------------------------------------


class _AffineLRP0(torch.autograd.Function):
    """``fn(x)`` for ``fn`` affine in ``x`` (constants: masks, scales, rotations): ``R_x = x * J^T (R / z)``."""

    @staticmethod
    def forward(ctx, fn: Callable[[Tensor], Tensor], input: Tensor, epsilon: float) -> Tensor:  # type: ignore[override]
        output = fn(input)
        ctx.fn, ctx.epsilon = fn, epsilon
        ctx.save_for_backward(input, output)
        return output

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        input, output = ctx.saved_tensors
        ratio = relevance / stabilize(output, ctx.epsilon)
        with torch.enable_grad():
            leaf = input.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(ctx.fn(leaf), leaf, ratio)
        return None, input * gradient, None


class _ProportionalPart(torch.autograd.Function):
    """One summand of an inline sum ``z = sum(parts)``: its relevance is ``x * R / z`` (Norm rule)."""

    @staticmethod
    def forward(ctx, input: Tensor, parts: list, epsilon: float) -> Tensor:  # type: ignore[override]
        parts.append(input.detach())
        ctx.parts, ctx.epsilon = parts, epsilon
        ctx.save_for_backward(input)
        return input.view_as(input)

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        (input,) = ctx.saved_tensors
        total = functools.reduce(torch.add, ctx.parts)
        return input * relevance / stabilize(total, ctx.epsilon), None, None


class _InlineEmbeddingSum(Canonizer):
    """GPT-2 adds ``wte(ids) + wpe(positions)`` inline in ``GPT2Model.forward``: split relevance in proportion.

    For each forward pass of the model, temporary forward hooks on ``wte`` and ``wpe`` (registered when the
    pass starts, so after any rule's hook: they see the rule's output) mark each embedding output as one
    part of the sum; ``inputs_embeds`` passed instead of ids is marked the same way. The relevance arriving
    at the sum then reaches each part as ``part * R / sum`` instead of in full.
    """

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        self.epsilon = epsilon
        self._handles: list[Any] = []
        self._pass_handles: list[Any] = []

    def copy(self) -> _InlineEmbeddingSum:
        return type(self)(self.epsilon)

    def register(self, model: nn.Module) -> None:
        def start(module: nn.Module, args: tuple, kwargs: dict) -> tuple:
            self._end_pass()
            parts: list[Tensor] = []
            if isinstance(kwargs.get("inputs_embeds"), Tensor):
                kwargs = {
                    **kwargs,
                    "inputs_embeds": _ProportionalPart.apply(kwargs["inputs_embeds"], parts, self.epsilon),
                }
            mark = functools.partial(self._mark, parts)
            self._pass_handles = [model.wte.register_forward_hook(mark), model.wpe.register_forward_hook(mark)]
            return args, kwargs

        self._handles = [
            model.register_forward_pre_hook(start, with_kwargs=True),
            model.register_forward_hook(lambda module, args, output: self._end_pass()),
        ]

    def _mark(self, parts: list, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return _ProportionalPart.apply(output, parts, self.epsilon)

    def _end_pass(self) -> None:
        for handle in self._pass_handles:
            handle.remove()
        self._pass_handles = []

    def remove(self) -> None:
        self._end_pass()
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances = []
        for module in root_module.modules():
            if type(module).__name__ == "GPT2Model":
                instance = self.copy()
                instance.register(module)
                instances.append(instance)
        return instances


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(cos: Tensor, sin: Tensor, x: Tensor) -> Tensor:
    return x * cos + _rotate_half(x) * sin


def _repeat_kv(states: Tensor, repeats: int) -> Tensor:
    if repeats == 1:
        return states
    batch, heads, length, dim = states.shape
    return states[:, :, None].expand(batch, heads, repeats, length, dim).reshape(batch, heads * repeats, length, dim)


class _DetachedInputCall(nn.Module):
    """Calls ``inner`` with its first argument detached (a module that reads only its input's shape/dtype)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input: Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.inner(input.detach(), *args, **kwargs)


class _DetachRotaryInput(Canonizer):
    """``LlamaModel.rotary_emb`` reads only the dtype of the hidden states: call it on them detached.

    Otherwise a strict composite takes the rotary module (a leaf without a rule) for a layer that mixes
    relevance. The child is swapped in place, so the order of the model's children is kept.
    """

    def __init__(self) -> None:
        self._swapped: list[tuple[nn.Module, nn.Module]] = []

    def copy(self) -> _DetachRotaryInput:
        return type(self)()

    def apply(self, root_module: nn.Module) -> list[Any]:
        instance = self.copy()
        for module in list(root_module.modules()):
            inner = module._modules.get("rotary_emb")
            if type(module).__name__ == "LlamaModel" and inner is not None:
                module._modules["rotary_emb"] = _DetachedInputCall(inner)
                instance._swapped.append((module, inner))
        return [instance]

    def remove(self) -> None:
        while self._swapped:
            module, inner = self._swapped.pop()
            module._modules["rotary_emb"] = inner


def _refuse(block: nn.Module, what: str) -> None:
    raise ValueError(
        f"{type(block).__name__}: the LRP canonizer explains one forward pass over the whole sequence and does "
        f"not support {what}; call the model without it (e.g. use_cache=False, no past_key_values) to attribute"
    )


def _additive_mask(mask: Tensor | None, scores_dtype: torch.dtype, causal: tuple[int, int] | None) -> Tensor | None:
    """One additive mask: the model's (float, or boolean True = allowed) and, for ``causal=(queries, keys)``,
    the future masked with the dtype's minimum (as transformers do: no ``-inf``, no all-masked rows)."""
    lowest = torch.finfo(scores_dtype).min
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=scores_dtype, device=mask.device).masked_fill(~mask, lowest)
    elif mask is not None:
        mask = mask.to(scores_dtype)
    if causal is None:
        return mask
    queries, keys = causal
    device = None if mask is None else mask.device
    allowed = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
    base = torch.zeros((), dtype=scores_dtype, device=device) if mask is None else mask
    return torch.where(allowed, base, torch.full((), lowest, dtype=scores_dtype, device=device))


def _functional(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """A module's own forward as a function (called without the module's hooks: its rule is the op's)."""
    return functools.partial(type(module).forward, module)


class _NamedBlock(BlockCanonizer):
    """A block canonizer for the classes named in :attr:`names`: ``lrp_ops`` child + temporary forward."""

    names: tuple[str, ...] = ()
    forward: Callable[..., Any]

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return type(module).__name__ in cls.names

    def make_ops(self, module: nn.Module) -> AttentionOps:
        return AttentionOps()

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        ops = stack.enter_context(temporary_child(module, OPS_NAME, self.make_ops(module)))
        stack.enter_context(override_forward(module, functools.partial(type(self).forward, module, ops)))


# --------------------------------------------------------------------------------------------------------
# BERT
# --------------------------------------------------------------------------------------------------------


class _BertEmbeddings(_NamedBlock):
    names = ("BertEmbeddings",)

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        past_key_values_length: int = 0,
    ) -> Tensor:
        shape = input_ids.size() if input_ids is not None else inputs_embeds.size()[:-1]
        length = shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, past_key_values_length : length + past_key_values_length]
        if token_type_ids is None:
            if hasattr(self, "token_type_ids"):
                token_type_ids = self.token_type_ids[:, :length].expand(shape[0], length)
            else:
                token_type_ids = torch.zeros(shape, dtype=torch.long, device=self.position_ids.device)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        parts = [inputs_embeds, self.token_type_embeddings(token_type_ids)]
        if self.position_embedding_type == "absolute":
            parts.append(self.position_embeddings(position_ids))
        embeddings = ops.sum(torch.stack(torch.broadcast_tensors(*parts), dim=-1))
        return self.dropout(self.LayerNorm(embeddings))


class _BertSelfAttention(_NamedBlock):
    names = ("BertSelfAttention", "BertSdpaSelfAttention")

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        head_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        past_key_value: Any = None,
        output_attentions: bool = False,
    ) -> tuple:
        if encoder_hidden_states is not None:
            _refuse(self, "cross-attention (encoder_hidden_states)")
        if past_key_value is not None:
            _refuse(self, "a key/value cache (past_key_value)")
        if head_mask is not None:
            _refuse(self, "a head mask (head_mask)")
        if getattr(self, "position_embedding_type", "absolute") != "absolute":
            _refuse(self, f"relative position embeddings ({self.position_embedding_type!r})")
        query = self.transpose_for_scores(self.query(hidden_states))
        key = self.transpose_for_scores(self.key(hidden_states))
        value = self.transpose_for_scores(self.value(hidden_states))
        mask = _additive_mask(attention_mask, query.dtype, None)
        dropout = self.dropout.p if self.training else 0.0
        context, weights = attention(
            ops, query, key, value, mask, 1.0 / math.sqrt(self.attention_head_size), dropout, bool(output_attentions)
        )
        context = context.permute(0, 2, 1, 3).contiguous()
        context = context.view(*context.shape[:-2], self.all_head_size)
        outputs: tuple = (context, weights) if output_attentions else (context,)
        if self.is_decoder:
            outputs = (*outputs, (key, value))
        return outputs


class _BertResidualOutput(_NamedBlock):
    """BertSelfOutput / BertOutput: dense, dropout, LayerNorm of the residual sum."""

    names = ("BertSelfOutput", "BertOutput")

    @staticmethod
    def forward(self: nn.Module, ops: AttentionOps, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return self.LayerNorm(residual(ops, self.dropout(self.dense(hidden_states)), input_tensor))


class _BertIntermediate(_NamedBlock):
    names = ("BertIntermediate",)

    def make_ops(self, module: nn.Module) -> AttentionOps:
        return AttentionOps(activation=_functional(module.intermediate_act_fn))

    @staticmethod
    def forward(self: nn.Module, ops: AttentionOps, hidden_states: Tensor) -> Tensor:
        return ops.activation(self.dense(hidden_states))


class _BertHeadTransform(_NamedBlock):
    names = ("BertPredictionHeadTransform",)

    def make_ops(self, module: nn.Module) -> AttentionOps:
        return AttentionOps(activation=_functional(module.transform_act_fn))

    @staticmethod
    def forward(self: nn.Module, ops: AttentionOps, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(ops.activation(self.dense(hidden_states)))


# --------------------------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------------------------


class _GPT2Attention(_NamedBlock):
    names = ("GPT2Attention",)

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        hidden_states: Tensor,
        layer_past: Any = None,
        attention_mask: Tensor | None = None,
        head_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        use_cache: bool | None = False,
        output_attentions: bool | None = False,
        **kwargs: Any,
    ) -> tuple:
        if encoder_hidden_states is not None:
            _refuse(self, "cross-attention (encoder_hidden_states)")
        if layer_past is not None:
            _refuse(self, "a key/value cache (past_key_values)")
        if head_mask is not None:
            _refuse(self, "a head mask (head_mask)")
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        shape = (*query.shape[:-1], -1, self.head_dim)
        query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
        scale = 1.0 / math.sqrt(value.size(-1)) if self.scale_attn_weights else 1.0
        if self.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        mask = _additive_mask(attention_mask, query.dtype, (query.shape[-2], key.shape[-2]))
        dropout = self.attn_dropout.p if self.training else 0.0
        output, weights = attention(ops, query, key, value, mask, scale, dropout, bool(output_attentions))
        output = output.transpose(1, 2)
        output = self.resid_dropout(self.c_proj(output.reshape(*output.shape[:-2], -1).contiguous()))
        outputs: tuple = (output, (key, value) if use_cache else None)
        return (*outputs, weights) if output_attentions else outputs


class _GPT2Block(_NamedBlock):
    names = ("GPT2Block",)

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        hidden_states: Tensor,
        layer_past: Any = None,
        attention_mask: Tensor | None = None,
        head_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        use_cache: bool | None = False,
        output_attentions: bool | None = False,
    ) -> tuple:
        if encoder_hidden_states is not None:
            _refuse(self, "cross-attention (encoder_hidden_states)")
        attn_outputs = self.attn(
            self.ln_1(hidden_states),
            layer_past=layer_past,
            attention_mask=attention_mask,
            head_mask=head_mask,
            use_cache=use_cache,
            output_attentions=output_attentions,
        )
        hidden_states = residual(ops, attn_outputs[0], hidden_states)
        hidden_states = residual(ops, hidden_states, self.mlp(self.ln_2(hidden_states)))
        rest = attn_outputs[1:]
        return (hidden_states, *rest) if use_cache else (hidden_states, *rest[1:])


class _GPT2MLP(_NamedBlock):
    names = ("GPT2MLP",)

    def make_ops(self, module: nn.Module) -> AttentionOps:
        return AttentionOps(activation=_functional(module.act))

    @staticmethod
    def forward(self: nn.Module, ops: AttentionOps, hidden_states: Tensor) -> Tensor:
        return self.dropout(self.c_proj(ops.activation(self.c_fc(hidden_states))))


class _Conv1DAsLinear(BlockCanonizer):
    """GPT-2's ``Conv1D`` (``x @ W + b``, weight ``(in, out)``) as a parameter-free ``nn.Linear`` child."""

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return type(module).__name__ == "Conv1D" and isinstance(getattr(module, "weight", None), Tensor)

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        return None  # reported with the attention blocks

    def canonize(self, module: nn.Module, stack: ExitStack) -> None:
        projection = Projection(module.weight.t(), module.bias)
        stack.enter_context(temporary_child(module, OPS_NAME, projection))
        stack.enter_context(override_params(projection, projection.overrides()))
        # the bound __call__, not the module: a module assigned as an attribute would become a child
        stack.enter_context(override_forward(module, projection.__call__))


# --------------------------------------------------------------------------------------------------------
# LLaMA
# --------------------------------------------------------------------------------------------------------


class _LlamaAttention(_NamedBlock):
    names = ("LlamaAttention",)

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        hidden_states: Tensor,
        position_embeddings: tuple[Tensor, Tensor],
        attention_mask: Tensor | None,
        past_key_value: Any = None,
        cache_position: Tensor | None = None,
        **kwargs: Any,
    ) -> tuple:
        if past_key_value is not None and past_key_value.get_seq_length(self.layer_idx) > 0:
            _refuse(self, "a key/value cache from earlier calls (past_key_values)")
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1).detach() for t in position_embeddings)
        rotate = functools.partial(_rotary, cos, sin)
        query = _AffineLRP0.apply(rotate, query, DEFAULT_EPSILON)
        key = _AffineLRP0.apply(rotate, key, DEFAULT_EPSILON)
        if past_key_value is not None:
            cache = {"sin": sin, "cos": cos, "cache_position": cache_position}
            key, value = past_key_value.update(key, value, self.layer_idx, cache)
        key = _repeat_kv(key, self.num_key_value_groups)
        value = _repeat_kv(value, self.num_key_value_groups)
        mask = None if attention_mask is None else attention_mask[:, :, :, : key.shape[-2]]
        causal = (query.shape[-2], key.shape[-2]) if mask is None and query.shape[-2] > 1 else None
        mask = _additive_mask(mask, query.dtype, causal)
        dropout = self.attention_dropout if self.training else 0.0
        need_weights = bool(kwargs.get("output_attentions", False))
        output, weights = attention(ops, query, key, value, mask, self.scaling, dropout, need_weights)
        output = output.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1).contiguous()
        return self.o_proj(output), weights


class _LlamaDecoderLayer(_NamedBlock):
    names = ("LlamaDecoderLayer",)

    @staticmethod
    def forward(
        self: nn.Module,
        ops: AttentionOps,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_value: Any = None,
        output_attentions: bool | None = False,
        use_cache: bool | None = False,
        cache_position: Tensor | None = None,
        position_embeddings: tuple[Tensor, Tensor] | None = None,
        **kwargs: Any,
    ) -> tuple:
        attn_output, weights = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_value=past_key_value,
            output_attentions=output_attentions,
            use_cache=use_cache,
            cache_position=cache_position,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = residual(ops, hidden_states, attn_output)
        hidden_states = residual(ops, hidden_states, self.mlp(self.post_attention_layernorm(hidden_states)))
        return (hidden_states, weights) if output_attentions else (hidden_states,)


class _LlamaMLP(_NamedBlock):
    names = ("LlamaMLP",)

    def make_ops(self, module: nn.Module) -> AttentionOps:
        ops = AttentionOps(activation=_functional(module.act_fn))
        ops.gate = Multiply()  # act(gate) * up: AttnLRP splits it uniformly, CP-LRP holds the gate constant
        return ops

    @staticmethod
    def forward(self: nn.Module, ops: AttentionOps, x: Tensor) -> Tensor:
        return self.down_proj(ops.gate(ops.activation(self.gate_proj(x)), self.up_proj(x)))


# --------------------------------------------------------------------------------------------------------
# Canonizers
# --------------------------------------------------------------------------------------------------------


class HuggingFaceCanonizer(CompositeCanonizer):
    """Base of the Hugging Face canonizers: block canonizers for one model family, matched by class name.

    The rules (AttnLRP or CP-LRP) come from the composite (``"attn_lrp"``, ``"cp_lrp"``), which picks these
    canonizers with ``canonizers="auto"``.
    """

    #: the family's block canonizers
    blocks: tuple[type[Canonizer], ...] = ()
    #: the attention block of the family (``applies`` and ``uncanonized`` look for it)
    attention_block: type[_NamedBlock]

    def __init__(self) -> None:
        super().__init__([block() for block in self.blocks])

    def copy(self) -> HuggingFaceCanonizer:
        return type(self)()

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        """Whether ``model`` holds the family's attention blocks."""
        return cls.attention_block.applies(model)

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        """Attention blocks of the family that keep their own forward."""
        names = [
            name
            for name, module in model.named_modules()
            if cls.attention_block.matches(module) and OPS_NAME not in module._modules
        ]
        if not names:
            return None
        return (
            f"{len(names)} Hugging Face attention blocks ({', '.join(names[:3])}) keep their own forward, whose "
            f"softmax, products, activations and residual sums no LRP rule sees; pass canonizers='auto' (or "
            f"{cls.__name__}())"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_canonizer("bert")
class BertCanonizer(HuggingFaceCanonizer):
    """BERT-style encoders (``BertModel`` and its task heads): embeddings sum, attention, residual sums,
    activations."""

    blocks = (_BertEmbeddings, _BertSelfAttention, _BertResidualOutput, _BertIntermediate, _BertHeadTransform)
    attention_block = _BertSelfAttention


@register_canonizer("gpt2")
class GPT2Canonizer(HuggingFaceCanonizer):
    """GPT-2-style decoders: attention, MLP, residual sums, ``Conv1D`` layers, the token + position sum.

    Parameters
    ----------
    epsilon : float, default 1e-12
        Stabilizer of the token + position sum's split.
    """

    blocks = (_GPT2Attention, _GPT2Block, _GPT2MLP, _Conv1DAsLinear)
    attention_block = _GPT2Attention

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon >= 0:
            raise argument_error(type(self).__name__, "epsilon", "a number >= 0 (e.g. 1e-12)", epsilon)
        self.epsilon = float(epsilon)
        super().__init__()
        self.canonizers.append(_InlineEmbeddingSum(self.epsilon))

    def copy(self) -> GPT2Canonizer:
        return type(self)(self.epsilon)


@register_canonizer("llama")
class LlamaCanonizer(HuggingFaceCanonizer):
    """LLaMA-style decoders: attention with rotary position embeddings and grouped keys, the gated MLP,
    residual sums (``LlamaRMSNorm`` gets the composite's RMSNorm rule)."""

    blocks = (_LlamaAttention, _LlamaDecoderLayer, _LlamaMLP)
    attention_block = _LlamaAttention

    def __init__(self) -> None:
        super().__init__()
        self.canonizers.append(_DetachRotaryInput())
