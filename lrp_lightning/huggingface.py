"""Canonizers for Hugging Face transformers: BERT-, GPT-2- and LLaMA-style blocks, matched by class name.

Transformers compute attention, activations, gating and residual sums as functions inside a block's
``forward``, where no rule can see them. These canonizers give the blocks an LRP-aware ``forward`` for the
duration of an attribution (an instance attribute, removed afterwards, as the batch-norm canonizers do;
nothing is written into the model). The LRP-aware forward computes the same output and routes every
functional operation through an autograd node whose backward is the AttnLRP rule (Achtibat et al.,
ICML 2024) or, with ``variant="cp_lrp"``, the CP-LRP rule (Ali et al., ICML 2022):

* ``q @ k^T`` and ``A @ v``: the bilinear products split relevance uniformly between both factors
  (AttnLRP); CP-LRP holds the attention weights constant, so all relevance flows to ``v``.
* softmax: ``R_x = x * (R - s * sum(R))`` (AttnLRP); CP-LRP: no relevance (the weights are constant).
* point-wise non-linearities (GELU, SiLU, tanh): identity.
* the gate ``act(g) * u`` of a gated MLP: uniform (AttnLRP); CP-LRP holds the gate constant.
* the constant scale, additive masks and rotary position embeddings: LRP-0 of an affine map.
* RMSNorm (LLaMA): the normalisation held constant; relevance passes through the diagonal scaling.
* residual sums and the embedding sums (word + position + token type): :class:`~lrp_lightning.layer.Sum`
  modules, which carry the composite's rule for sums (Norm), or a proportional split where the sum is
  inline in a model's forward (GPT-2's ``wte(ids) + wpe(positions)``).

Linear layers keep their own rules from the composite; GPT-2's ``Conv1D`` (an affine layer with a
transposed weight) is shown to the composite as a temporary ``torch.nn.Linear`` child, so the composite's
rule for linear layers applies to it. ``torch.nn.LayerNorm`` modules get the composite's rule.

``transformers`` is never imported here: blocks are recognised by their class name, so the canonizers
work for any model whose blocks have those names and structure (the names of transformers 4.x).
Attention with a key/value cache from earlier calls, cross-attention and relative position embeddings are
refused with a clear error; attribution runs one forward pass over the whole sequence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn as nn

from ._validation import argument_error, check_choice
from .canonizers import AttributeCanonizer, Canonizer, CompositeCanonizer, override_forward, register_canonizer
from .core import RULE_IN_FORWARD, Hook, affine_forward, module_params, override_params, stabilize
from .layer import Sum

Tensor = torch.Tensor

__all__ = [
    "BertCanonizer",
    "GPT2Canonizer",
    "HuggingFaceCanonizer",
    "LlamaCanonizer",
    "VARIANTS",
]

#: the attention rules: AttnLRP (relevance through the softmax) and CP-LRP (attention weights constant)
VARIANTS = ("attn_lrp", "cp_lrp")

#: stabilizer of the functional rules' denominators (the composite's rules keep their own)
DEFAULT_EPSILON = 1e-9


# --------------------------------------------------------------------------------------------------------
# Functional rules: autograd nodes whose backward maps the relevance of the output to that of the inputs
# --------------------------------------------------------------------------------------------------------


class _PointwiseIdentity(torch.autograd.Function):
    """``fn(x)`` for an element-wise ``fn``; relevance passes unchanged (AttnLRP's identity rule)."""

    @staticmethod
    def forward(ctx, fn: Callable[[Tensor], Tensor], input: Tensor) -> Tensor:  # type: ignore[override]
        return fn(input)

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        return None, relevance


class _Bilinear(torch.autograd.Function):
    """``a @ b``; the relevance of each product term ``a_ik b_kj`` goes ``share`` to ``a``, the rest to ``b``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, share: float, epsilon: float) -> Tensor:  # type: ignore[override]
        output = torch.matmul(a, b)
        ctx.save_for_backward(a, b, output)
        ctx.share, ctx.epsilon = share, epsilon
        return output

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        a, b, output = ctx.saved_tensors
        ratio = relevance / stabilize(output, ctx.epsilon)
        relevance_a = relevance_b = None
        if ctx.needs_input_grad[0] and ctx.share != 0.0:
            relevance_a = a * torch.matmul(ratio, b.transpose(-1, -2)) * ctx.share
        if ctx.needs_input_grad[1] and ctx.share != 1.0:
            relevance_b = b * torch.matmul(a.transpose(-1, -2), ratio) * (1.0 - ctx.share)
        return relevance_a, relevance_b, None, None


class _Softmax(torch.autograd.Function):
    """``softmax(x)`` with AttnLRP's rule ``R_x = x * (R - s * sum(R))`` (masked entries get none)."""

    @staticmethod
    def forward(ctx, input: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        output = torch.softmax(input, dim=dim)
        ctx.save_for_backward(input, output)
        ctx.dim = dim
        return output

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        input, output = ctx.saved_tensors
        result = input * (relevance - output * relevance.sum(ctx.dim, keepdim=True))
        return torch.where(torch.isfinite(input), result, torch.zeros_like(result)), None


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


class _Gate(torch.autograd.Function):
    """The element-wise product ``a * b`` with the uniform rule: each factor gets half the relevance."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        return a * b

    @staticmethod
    def backward(ctx, relevance: Tensor):  # type: ignore[override]
        half = relevance * 0.5
        return half, half


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


def pointwise(fn: Callable[[Tensor], Tensor], input: Tensor) -> Tensor:
    """``fn(input)`` for an element-wise non-linearity, with the identity rule."""
    return _PointwiseIdentity.apply(fn, input)


def affine(fn: Callable[[Tensor], Tensor], input: Tensor, epsilon: float = DEFAULT_EPSILON) -> Tensor:
    """``fn(input)`` for a map that is affine in ``input`` (all else constant), with the LRP-0 rule."""
    return _AffineLRP0.apply(fn, input, epsilon)


# --------------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------------


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    scale: float,
    mask: Tensor | None = None,
    causal: bool = False,
    head_mask: Tensor | None = None,
    dropout: nn.Module | None = None,
    variant: str = "attn_lrp",
    epsilon: float = DEFAULT_EPSILON,
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention with LRP rules on every step.

    Parameters
    ----------
    query, key, value : torch.Tensor
        ``(batch, heads, length, head_dim)``; ``key`` and ``value`` already repeated for grouped queries.
    scale : float
        Factor of the scores ``q @ k^T``.
    mask : torch.Tensor, optional
        Added to the scores (float), or a boolean mask of the positions that may be attended to.
    causal : bool, default False
        Mask the future (each query attends to keys at its position and before).
    head_mask : torch.Tensor, optional
        Multiplies the attention weights.
    dropout : torch.nn.Module, optional
        Applied to the attention weights (a no-op in evaluation mode).
    variant : {"attn_lrp", "cp_lrp"}, default "attn_lrp"
    epsilon : float, default 1e-9
        Stabilizer of the rules' denominators.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The attention output ``(batch, heads, length, head_dim)`` and the attention weights.
    """
    constant_weights = variant == "cp_lrp"
    if constant_weights:
        query, key = query.detach(), key.detach()
        scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    else:
        scores = _Bilinear.apply(query, key.transpose(-1, -2), 0.5, epsilon)
        scores = _PointwiseIdentity.apply(functools.partial(torch.mul, other=scale), scores)
    if causal:
        length_q, length_k = scores.shape[-2:]
        allowed = torch.ones(length_q, length_k, dtype=torch.bool, device=scores.device).tril(length_k - length_q)
        scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        else:
            mask = mask.to(scores.dtype)
            scores = affine(functools.partial(torch.add, other=mask), scores, epsilon)
    weights = torch.softmax(scores, dim=-1) if constant_weights else _Softmax.apply(scores, -1)
    if dropout is not None:
        weights = dropout(weights)
    if head_mask is not None:
        weights = affine(functools.partial(torch.mul, other=head_mask), weights, epsilon)
    output = _Bilinear.apply(weights, value, 0.0 if constant_weights else 0.5, epsilon)
    return output, weights


def _refuse(block: nn.Module, what: str) -> None:
    raise ValueError(
        f"{type(block).__name__}: the LRP canonizer explains one forward pass over the whole sequence and does "
        f"not support {what}; call the model without it (e.g. use_cache=False, no past_key_values) to attribute"
    )


# --------------------------------------------------------------------------------------------------------
# BERT
# --------------------------------------------------------------------------------------------------------


def _bert_embeddings_forward(
    self: nn.Module,
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
    embeddings = self.canonizer_sum(torch.stack(torch.broadcast_tensors(*parts), dim=-1))
    return self.dropout(self.LayerNorm(embeddings))


def _bert_self_attention_forward(
    self: nn.Module,
    hidden_states: Tensor,
    attention_mask: Tensor | None = None,
    head_mask: Tensor | None = None,
    encoder_hidden_states: Tensor | None = None,
    encoder_attention_mask: Tensor | None = None,
    past_key_value: Any = None,
    output_attentions: bool = False,
    *,
    variant: str,
    epsilon: float,
) -> tuple:
    if encoder_hidden_states is not None:
        _refuse(self, "cross-attention (encoder_hidden_states)")
    if past_key_value is not None:
        _refuse(self, "a key/value cache (past_key_value)")
    if getattr(self, "position_embedding_type", "absolute") != "absolute":
        _refuse(self, f"relative position embeddings ({self.position_embedding_type!r})")
    query = self.transpose_for_scores(self.query(hidden_states))
    key = self.transpose_for_scores(self.key(hidden_states))
    value = self.transpose_for_scores(self.value(hidden_states))
    context, weights = attention(
        query,
        key,
        value,
        scale=1.0 / math.sqrt(self.attention_head_size),
        mask=attention_mask,
        head_mask=head_mask,
        dropout=self.dropout,
        variant=variant,
        epsilon=epsilon,
    )
    context = context.permute(0, 2, 1, 3).contiguous()
    context = context.view(*context.shape[:-2], self.all_head_size)
    outputs: tuple = (context, weights) if output_attentions else (context,)
    if self.is_decoder:
        outputs = (*outputs, (key, value))
    return outputs


def _residual_output_forward(self: nn.Module, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
    """BertSelfOutput / BertOutput: dense, dropout, LayerNorm of the residual sum."""
    hidden_states = self.dropout(self.dense(hidden_states))
    return self.LayerNorm(self.canonizer_sum(torch.stack([hidden_states, input_tensor], dim=-1)))


def _bert_intermediate_forward(self: nn.Module, hidden_states: Tensor) -> Tensor:
    return pointwise(self.intermediate_act_fn, self.dense(hidden_states))


def _bert_head_transform_forward(self: nn.Module, hidden_states: Tensor) -> Tensor:
    return self.LayerNorm(pointwise(self.transform_act_fn, self.dense(hidden_states)))


# --------------------------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------------------------


def _gpt2_attention_forward(
    self: nn.Module,
    hidden_states: Tensor,
    layer_past: Any = None,
    attention_mask: Tensor | None = None,
    head_mask: Tensor | None = None,
    encoder_hidden_states: Tensor | None = None,
    encoder_attention_mask: Tensor | None = None,
    use_cache: bool | None = False,
    output_attentions: bool | None = False,
    *,
    variant: str,
    epsilon: float,
    **kwargs: Any,
) -> tuple:
    if encoder_hidden_states is not None:
        _refuse(self, "cross-attention (encoder_hidden_states)")
    if layer_past is not None:
        _refuse(self, "a key/value cache (past_key_values)")
    query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
    shape = (*query.shape[:-1], -1, self.head_dim)
    query, key, value = (t.view(shape).transpose(1, 2) for t in (query, key, value))
    scale = 1.0 / math.sqrt(value.size(-1)) if self.scale_attn_weights else 1.0
    if self.scale_attn_by_inverse_layer_idx:
        scale /= float(self.layer_idx + 1)
    output, weights = attention(
        query,
        key,
        value,
        scale=scale,
        mask=attention_mask,
        causal=True,
        head_mask=head_mask,
        dropout=self.attn_dropout,
        variant=variant,
        epsilon=epsilon,
    )
    output = output.transpose(1, 2)
    output = output.reshape(*output.shape[:-2], -1).contiguous()
    output = self.resid_dropout(self.c_proj(output))
    outputs: tuple = (output, (key, value) if use_cache else None)
    if output_attentions:
        outputs = (*outputs, weights)
    return outputs


def _gpt2_block_forward(
    self: nn.Module,
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
    hidden_states = self.canonizer_sum(torch.stack([attn_outputs[0], hidden_states], dim=-1))
    feed_forward = self.mlp(self.ln_2(hidden_states))
    hidden_states = self.canonizer_sum(torch.stack([hidden_states, feed_forward], dim=-1))
    rest = attn_outputs[1:]
    return (hidden_states, *rest) if use_cache else (hidden_states, *rest[1:])


def _gpt2_mlp_forward(self: nn.Module, hidden_states: Tensor) -> Tensor:
    return self.dropout(self.c_proj(pointwise(self.act, self.c_fc(hidden_states))))


def _conv1d_forward(self: nn.Module, input: Tensor) -> Tensor:
    return self.canonizer_linear(input)


class _Conv1DAsLinear(Canonizer):
    """Show GPT-2's ``Conv1D`` (``x @ W + b``, weight ``(in, out)``) to the composite as a ``Linear``.

    A temporary ``torch.nn.Linear`` child without storage (meta device) is registered as
    ``canonizer_linear``; the rules see the Conv1D's transposed weight and its bias as parameter overrides,
    and the Conv1D's temporary forward calls the child.
    """

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    def copy(self) -> _Conv1DAsLinear:
        return type(self)()

    def register(self, module: nn.Module) -> None:
        in_features, out_features = module.weight.shape
        linear = nn.Linear(in_features, out_features, bias=module.bias is not None, device="meta")
        params = {"weight": module.weight.detach().t(), "bias": None if module.bias is None else module.bias.detach()}
        stack = ExitStack()
        try:
            stack.enter_context(override_params(linear, params))
            stack.enter_context(override_forward(linear, functools.partial(_linear_forward, linear)))
            canonizer = AttributeCanonizer(lambda name, mod: None)
            canonizer.register(module, {"canonizer_linear": linear, "forward": _conv1d_forward.__get__(module)})
            stack.callback(canonizer.remove)
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def remove(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def apply(self, root_module: nn.Module) -> list[Any]:
        instances = []
        try:
            for module in root_module.modules():
                if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
                    instance = self.copy()
                    instance.register(module)
                    instances.append(instance)
        except BaseException:
            for done in instances:
                done.remove()
            raise
        return instances


def _linear_forward(linear: nn.Linear, input: Tensor) -> Tensor:
    params = module_params(linear)
    return affine_forward(linear, input, params["weight"], params.get("bias"))


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


# --------------------------------------------------------------------------------------------------------
# LLaMA
# --------------------------------------------------------------------------------------------------------


def _llama_rms_norm_forward(self: nn.Module, hidden_states: Tensor) -> Tensor:
    # w * x / rms(x) with the normalisation held constant is a diagonal linear map without bias, whose
    # LRP-0 relevance is the output's, element by element (exact, though the module normalises in float32)
    return pointwise(functools.partial(type(self).forward, self), hidden_states)


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


def _llama_attention_forward(
    self: nn.Module,
    hidden_states: Tensor,
    position_embeddings: tuple[Tensor, Tensor],
    attention_mask: Tensor | None,
    past_key_value: Any = None,
    cache_position: Tensor | None = None,
    *,
    variant: str,
    epsilon: float,
    **kwargs: Any,
) -> tuple:
    if past_key_value is not None and past_key_value.get_seq_length(self.layer_idx) > 0:
        _refuse(self, "a key/value cache from earlier calls (past_key_values)")
    shape = (*hidden_states.shape[:-1], -1, self.head_dim)
    query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
    key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
    value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
    cos, sin = (t.unsqueeze(1).detach() for t in position_embeddings)
    query = affine(functools.partial(_rotary, cos, sin), query, epsilon)
    key = affine(functools.partial(_rotary, cos, sin), key, epsilon)
    if past_key_value is not None:
        key, value = past_key_value.update(
            key, value, self.layer_idx, {"sin": sin, "cos": cos, "cache_position": cache_position}
        )
    key = _repeat_kv(key, self.num_key_value_groups)
    value = _repeat_kv(value, self.num_key_value_groups)
    mask = None if attention_mask is None else attention_mask[:, :, :, : key.shape[-2]]
    output, weights = attention(
        query,
        key,
        value,
        scale=self.scaling,
        mask=mask,
        causal=mask is None and query.shape[-2] > 1,
        variant=variant,
        epsilon=epsilon,
    )
    output = output.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1).contiguous()
    return self.o_proj(output), weights


def _llama_decoder_layer_forward(
    self: nn.Module,
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
    hidden_states = self.canonizer_sum(torch.stack([hidden_states, attn_output], dim=-1))
    feed_forward = self.mlp(self.post_attention_layernorm(hidden_states))
    hidden_states = self.canonizer_sum(torch.stack([hidden_states, feed_forward], dim=-1))
    return (hidden_states, weights) if output_attentions else (hidden_states,)


def _llama_mlp_forward(self: nn.Module, x: Tensor, *, variant: str) -> Tensor:
    gate = self.gate_proj(x)
    if variant == "cp_lrp":
        # the gate is a constant factor: relevance passes to the up projection unchanged (LRP-0)
        constant_gate = self.act_fn(gate.detach())
        return self.down_proj(pointwise(functools.partial(torch.mul, other=constant_gate), self.up_proj(x)))
    return self.down_proj(_Gate.apply(pointwise(self.act_fn, gate), self.up_proj(x)))


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


# --------------------------------------------------------------------------------------------------------
# Canonizers
# --------------------------------------------------------------------------------------------------------


def _block_attributes(table: dict[str, Callable[[nn.Module], dict[str, Any]]]) -> Callable:
    def attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        make = table.get(type(module).__name__)
        return None if make is None else make(module)

    return attribute_map


def _forward(function: Callable, **bound: Any) -> Callable[[nn.Module], dict[str, Any]]:
    return lambda module: {"forward": functools.partial(function, module, **bound)}


def _forward_with_sum(function: Callable) -> Callable[[nn.Module], dict[str, Any]]:
    return lambda module: {"forward": functools.partial(function, module), "canonizer_sum": Sum()}


class HuggingFaceCanonizer(CompositeCanonizer):
    """Base of the Hugging Face canonizers: a table ``class name -> temporary attributes`` and extras.

    Parameters
    ----------
    variant : {"attn_lrp", "cp_lrp"}, default "attn_lrp"
        AttnLRP (relevance through the softmax and both factors of each bilinear product) or CP-LRP
        (attention weights and gates held constant).
    epsilon : float, default 1e-9
        Stabilizer of the functional rules' denominators (bilinear products, masks, inline sums).
    """

    #: class names of the attention blocks this canonizer rewrites (``applies`` looks for them)
    block_names: tuple[str, ...] = ()

    def __init__(self, variant: str = "attn_lrp", epsilon: float = DEFAULT_EPSILON) -> None:
        owner = type(self).__name__
        check_choice(variant, "variant", owner, VARIANTS)
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
            raise argument_error(owner, "epsilon", "a number >= 0 (e.g. 1e-9)", epsilon)
        self.variant = variant
        self.epsilon = float(epsilon)
        super().__init__([AttributeCanonizer(_block_attributes(self.attribute_table())), *self.extra_canonizers()])

    def attribute_table(self) -> dict[str, Callable[[nn.Module], dict[str, Any]]]:
        """``class name -> (module -> temporary attributes)``."""
        return {}

    def extra_canonizers(self) -> list[Canonizer]:
        """Canonizers applied after the attribute table (e.g. GPT-2's Conv1D as Linear)."""
        return []

    def copy(self) -> HuggingFaceCanonizer:
        return type(self)(self.variant, self.epsilon)

    @classmethod
    def applies(cls, model: nn.Module) -> bool:
        """Whether ``model`` holds one of :attr:`block_names`."""
        return any(type(module).__name__ in cls.block_names for module in model.modules())

    @classmethod
    def uncanonized(cls, model: nn.Module) -> str | None:
        """Blocks of this family that keep their own forward (their functional attention has no rule)."""
        blocks = [
            name
            for name, module in model.named_modules()
            if type(module).__name__ in cls.block_names and "forward" not in module.__dict__
        ]
        if not blocks:
            return None
        return (
            f"{len(blocks)} Hugging Face blocks (first: {blocks[0]}) keep their own forward, whose attention, "
            f"activations and residual sums no LRP rule sees; pass canonizers='auto' (or {cls.__name__}())"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r}, epsilon={self.epsilon})"


@register_canonizer("bert")
class BertCanonizer(HuggingFaceCanonizer):
    """BERT-style encoders (``BertModel`` and its task heads): attention, residual sums, embeddings."""

    block_names = ("BertSelfAttention", "BertSdpaSelfAttention")

    def attribute_table(self) -> dict[str, Callable[[nn.Module], dict[str, Any]]]:
        attention_forward = _forward(_bert_self_attention_forward, variant=self.variant, epsilon=self.epsilon)
        return {
            "BertEmbeddings": _forward_with_sum(_bert_embeddings_forward),
            "BertSelfAttention": attention_forward,
            "BertSdpaSelfAttention": attention_forward,
            "BertSelfOutput": _forward_with_sum(_residual_output_forward),
            "BertOutput": _forward_with_sum(_residual_output_forward),
            "BertIntermediate": _forward(_bert_intermediate_forward),
            "BertPredictionHeadTransform": _forward(_bert_head_transform_forward),
        }


@register_canonizer("gpt2")
class GPT2Canonizer(HuggingFaceCanonizer):
    """GPT-2-style decoders: attention, MLP, residual sums, ``Conv1D`` layers, the token + position sum."""

    block_names = ("GPT2Attention",)

    def attribute_table(self) -> dict[str, Callable[[nn.Module], dict[str, Any]]]:
        return {
            "GPT2Attention": _forward(_gpt2_attention_forward, variant=self.variant, epsilon=self.epsilon),
            "GPT2Block": _forward_with_sum(_gpt2_block_forward),
            "GPT2MLP": _forward(_gpt2_mlp_forward),
        }

    def extra_canonizers(self) -> list[Canonizer]:
        return [_Conv1DAsLinear(), _InlineEmbeddingSum(self.epsilon)]


@register_canonizer("llama")
class LlamaCanonizer(HuggingFaceCanonizer):
    """LLaMA-style decoders (also the same-named blocks of models built like it): attention with rotary
    position embeddings and grouped keys, the gated MLP, RMSNorm, residual sums."""

    block_names = ("LlamaAttention",)

    def attribute_table(self) -> dict[str, Callable[[nn.Module], dict[str, Any]]]:
        return {
            "LlamaAttention": _forward(_llama_attention_forward, variant=self.variant, epsilon=self.epsilon),
            "LlamaDecoderLayer": _forward_with_sum(_llama_decoder_layer_forward),
            "LlamaMLP": _forward(_llama_mlp_forward, variant=self.variant),
            "LlamaRMSNorm": lambda module: {
                "forward": functools.partial(_llama_rms_norm_forward, module),
                RULE_IN_FORWARD: True,
            },
        }

    def extra_canonizers(self) -> list[Canonizer]:
        return [_DetachRotaryInput()]


class _LayerNormRule(Hook):
    """LayerNorm with the normalisation held constant: LRP-0 through ``(x - mean(x)) * w / std``.

    Used until the engine's own LayerNorm rule is available to the composites here.
    """

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        self.epsilon = epsilon

    needs_output = True

    def backward(self, module: nn.Module, input: Tensor, grad_output: Tensor, output: Tensor | None = None) -> Tensor:
        if output is None:
            output = module(input)
        dims = tuple(range(-len(module.normalized_shape), 0))
        std = torch.sqrt(input.var(dim=dims, unbiased=False, keepdim=True) + module.eps)
        ratio = grad_output / stabilize(output, self.epsilon)
        if module.weight is not None:
            ratio = ratio * module.weight.detach()
        ratio = ratio / std
        return input * (ratio - ratio.mean(dim=dims, keepdim=True))
