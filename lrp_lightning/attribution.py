"""Attributors: compute an attribution of a model's output to its input.

:class:`Gradient` with a composite computes LRP; without one, the plain input gradient. :class:`SmoothGrad`
and :class:`IntegratedGradients` average gradients (or LRP maps) over noisy or interpolated inputs, and
:class:`Occlusion` measures the drop of the target score when patches are hidden. The API is Zennit's::

    with Gradient(model=model, composite=composite) as attributor:
        output, relevance = attributor(x, target)

``target`` says which output is explained (:func:`output_weights` turns it into the initial relevance):

* ``None`` — the output itself (Zennit's default),
* an ``int``, a list or an integer tensor of class indices (one per sample) — a one-hot vector,
* ``"prediction"`` — the one-hot vector of each sample's highest score,
* a float tensor shaped like the output (e.g. a one-hot matrix) — used as given,
* a callable ``output -> tensor shaped like the output``.

Attributors enable gradients themselves, so they work inside ``torch.no_grad()`` and
``torch.inference_mode()`` blocks (e.g. in a Lightning validation step). They never touch the model's
parameters or their ``.grad``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ._conservation import check_conservation
from ._model_io import OutputSpec, call_model, check_output_spec, padding_mask_of, select_output, token_ids_of
from ._validation import argument_error, check_choice, check_int, check_type
from .core import BasicHook, Composite

Tensor = torch.Tensor
Target = None | int | str | Sequence[int] | Tensor | Callable[[Tensor], Tensor]

__all__ = [
    "Attribution",
    "Attributor",
    "Gradient",
    "IntegratedGradients",
    "Occlusion",
    "SmoothGrad",
    "explain",
    "output_weights",
]

_TARGET_KINDS = "class indices, 'prediction', None, a tensor or a callable output -> weights"


class Attribution(NamedTuple):
    """The model's output and the attribution (relevance) of its input, same shape as the input."""

    output: Tensor
    relevance: Tensor


def _one_hot(indices: Tensor, output: Tensor) -> Tensor:
    if output.ndim != 2:
        raise ValueError(
            f"class targets need class scores of shape (batch, classes), but the model returned shape "
            f"{tuple(output.shape)}; return logits from forward() or pass target as a tensor shaped like the output"
        )
    classes = output.shape[1]
    indices = indices.to(device=output.device, dtype=torch.long).reshape(-1)
    if indices.numel() == 1 and output.shape[0] != 1:
        indices = indices.expand(output.shape[0])
    if indices.numel() != output.shape[0]:
        raise argument_error(
            None,
            "target",
            f"one class index or one per sample ({output.shape[0]})",
            indices.tolist(),
        )
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        raise argument_error(
            None,
            "target",
            f"class indices in [0, {classes - 1}]",
            int(indices[bad][0]),
            f"the output has {classes} classes",
        )
    weights = torch.zeros_like(output)
    weights[torch.arange(output.shape[0], device=output.device), indices] = 1.0
    return weights


def output_weights(output: Tensor, target: Target) -> Tensor:
    """The initial relevance (gradient at the output) for ``target``; see the module docstring."""
    output = output.detach()
    if target is None:
        return output
    if isinstance(target, str):
        check_choice(target, "target", None, ["prediction"], note="or class indices, a tensor or a callable")
        if output.ndim != 2:
            return _one_hot(torch.zeros(0), output)  # raises the shape error
        return _one_hot(output.argmax(dim=1), output)
    if callable(target) and not isinstance(target, Tensor):
        weights = target(output)
        if not isinstance(weights, Tensor) or weights.shape != output.shape:
            raise argument_error(
                None,
                "target",
                f"a callable that returns a tensor shaped like the output {tuple(output.shape)}",
                target,
                f"it gave {tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__}",
            )
        return weights.to(output)
    if isinstance(target, Tensor):
        if target.is_floating_point() and target.shape == output.shape:
            return target.to(output)
        if target.is_floating_point() and target.ndim == output.ndim and target.shape[0] == 1:
            return target.to(output).expand_as(output)
        if target.is_floating_point():
            raise argument_error(
                None,
                "target",
                f"a float tensor shaped like the output {tuple(output.shape)}",
                target,
                f"its shape is {tuple(target.shape)}; pass class indices as an integer tensor",
            )
        return _one_hot(target, output)
    if isinstance(target, int) and not isinstance(target, bool):
        return _one_hot(torch.tensor([target]), output)
    if isinstance(target, Sequence) and not isinstance(target, bool):
        return _one_hot(torch.as_tensor(list(target)), output)
    raise argument_error(None, "target", _TARGET_KINDS, target)


def _prepare_input(input: Tensor) -> Tensor:
    check_type(input, "input", None, Tensor, "a torch.Tensor")
    input = input.detach()
    if input.is_inference():
        input = input.clone()
    if not input.is_floating_point():
        raise argument_error(None, "input", "a floating point tensor", input, f"its dtype is {input.dtype}")
    return input


class Attributor:
    """Base class: optional composite, registered while the attributor is used.

    Parameters
    ----------
    model : torch.nn.Module
    composite : Composite, optional
        Registered on ``model`` inside ``with`` or for the duration of each call.
    attr_output : target, optional
        Default target of calls that give none (see the module docstring); the output itself if ``None``.
    create_graph : bool, default False
        Build a graph of the attribution, so that it can be differentiated again (as in Zennit).
    retain_graph : bool, optional
        Keep the forward graph after the attribution; defaults to ``create_graph``.
    output : None, str, int or callable, optional
        Which part of the model's output holds the scores (see :func:`lrp_lightning._model_io.select_output`):
        by default the tensor itself, else a ``"logits"`` key or attribute.

    Notes
    -----
    Token input: besides a float tensor, :class:`Gradient` accepts integer token ids ``(B, T)`` or a mapping
    with ``"input_ids"`` (and e.g. ``"attention_mask"``; the model is called with the keys its ``forward``
    accepts). The relevance is then per token, shape ``(B, T)``: the relevance reaching the outputs of the
    model's ``nn.Embedding`` layers with an output of shape ``(B, T, hidden)`` or ``(1, T, hidden)`` (token,
    position and type embeddings alike; one computed for the whole batch counts per sample), summed over the
    hidden dimension; embeddings of another shape (e.g. ``(T, hidden)``) are not counted, like a bias.
    Without an LRP composite it is gradient x embedding summed over the hidden dimension. Padding positions
    (``attention_mask == 0``) are exactly 0.
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        attr_output: Target = None,
        create_graph: bool = False,
        retain_graph: bool | None = None,
        output: OutputSpec = None,
    ) -> None:
        owner = type(self).__name__
        check_type(model, "model", owner, nn.Module, "a torch.nn.Module")
        note = "e.g. get_composite('epsilon_gamma_box')"
        check_type(composite, "composite", owner, Composite, "a Composite", allow_none=True, note=note)
        self.model = model
        self.composite = composite
        self.attr_output = attr_output
        self.create_graph = create_graph
        self.retain_graph = retain_graph
        self.output = check_output_spec(output, owner)
        self._registered = False

    def __enter__(self) -> Attributor:
        if self.composite is not None:
            # canonizers compute tensors (merged parameters) that autograd must be allowed to save
            with torch.inference_mode(False):
                self.composite.register(self.model)
            self._registered = True
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        if self._registered:
            self._registered = False
            self.composite.remove()
        return False

    def __call__(self, input: Tensor, attr_output: Target = None) -> Attribution:
        """Attribute ``input`` for ``attr_output`` (or the default target); returns ``(output, relevance)``."""
        target = self.attr_output if attr_output is None else attr_output
        ids = token_ids_of(input)
        tokens = ids is not None and (isinstance(input, Mapping) or ids.ndim == 2)
        if tokens and not isinstance(self, Gradient):
            raise argument_error(
                type(self).__name__, "input", "a float tensor", input, "token input is attributed by Gradient only"
            )
        with torch.inference_mode(False), torch.enable_grad():
            input = _prepare_tokens(input) if tokens else _prepare_input(input)
            forward = self.token_grad if tokens else self.forward
            if self.composite is None or self._registered:
                return Attribution(*forward(input, target))
            with self:
                return Attribution(*forward(input, target))

    def forward(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        """Compute ``(output, attribution)``; the composite is registered already."""
        raise NotImplementedError

    def grad(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        """Output and (modified) gradient of the target w.r.t. ``input``."""
        leaf = input.detach().requires_grad_(True)
        output = select_output(self.model(leaf), self.output, type(self).__name__)
        if not output.requires_grad:
            raise RuntimeError(
                "the model's output does not depend on its input through autograd (is a part of forward "
                "wrapped in torch.no_grad() or detached?)"
            )
        weights = output_weights(output, target)
        (gradient,) = torch.autograd.grad(
            output,
            leaf,
            grad_outputs=weights,
            allow_unused=True,
            create_graph=self.create_graph,
            retain_graph=self.retain_graph,
        )
        if gradient is None:
            gradient = torch.zeros_like(leaf)
        check_conservation(self.model, self.composite, weights, gradient)
        return (output if self.create_graph else output.detach()), gradient

    def token_grad(self, inputs: Tensor | Mapping[str, Any], target: Target) -> tuple[Tensor, Tensor]:
        """Output and per-token relevance ``(B, T)`` for token ids or a mapping with ``"input_ids"``."""
        ids = token_ids_of(inputs)
        if ids.ndim != 2:
            raise argument_error(type(self).__name__, "input", "token ids of shape (batch, tokens)", ids)
        batch, length = ids.shape
        captured: list[Tensor] = []
        skipped: list[nn.Module] = []

        def capture(module: nn.Module, args: tuple, out: Any) -> Tensor | None:
            # an embedding output over the tokens, (B, T, H), or broadcast to them (position embeddings (1, T, H))
            shaped = isinstance(out, Tensor) and out.is_floating_point() and out.ndim == 3
            if not shaped or out.shape[1] != length or out.shape[0] not in (1, batch):
                skipped.append(module)
                return None
            leaf = out.detach().expand(batch, length, out.shape[-1]).clone().requires_grad_(True)
            captured.append(leaf)
            return leaf.clone()  # not the leaf itself: the model may change it in place

        embeddings = [module for module in self.model.modules() if isinstance(module, nn.Embedding)]
        if not embeddings:
            raise TypeError(
                f"{type(self).__name__}: token input needs a model with nn.Embedding layers (the relevance of a "
                f"token is read at their outputs), {type(self.model).__name__} has none; pass embedded inputs as "
                "a float tensor instead"
            )
        handles = [module.register_forward_hook(capture) for module in embeddings]
        try:
            output = select_output(call_model(self.model, inputs), self.output, type(self).__name__)
        finally:
            for handle in handles:
                handle.remove()
        if not captured or not output.requires_grad:
            raise RuntimeError(
                f"{type(self).__name__}: no embedding output of shape (batch, {length}, hidden) reached the model's "
                "output through autograd; token relevance is read at the outputs of the nn.Embedding layers"
            )
        weights = output_weights(output, target)
        gradients = torch.autograd.grad(
            output,
            captured,
            grad_outputs=weights,
            allow_unused=True,
            create_graph=self.create_graph,
            retain_graph=self.retain_graph,
        )
        relevance_flows = _relevance_flows(self.composite)
        relevance = torch.zeros((batch, length), dtype=captured[0].dtype, device=captured[0].device)
        for leaf, gradient in zip(captured, gradients):
            if gradient is not None:
                relevance = relevance + (gradient if relevance_flows else gradient * leaf).sum(-1)
        if not skipped:
            check_conservation(self.model, self.composite, weights, relevance)
        mask = padding_mask_of(inputs)
        if mask is not None:
            relevance = relevance.masked_fill(mask.to(relevance.device).reshape(batch, length) == 0, 0.0)
        return (output if self.create_graph else output.detach()), relevance


def _prepare_tokens(inputs: Tensor | Mapping[str, Any]) -> Tensor | dict[str, Any]:
    """Token input outside inference mode (inference tensors cannot take part in an attribution)."""

    def prepare(value: Any) -> Any:
        if not isinstance(value, Tensor):
            return value
        value = value.detach()
        return value.clone() if value.is_inference() else value

    if isinstance(inputs, Mapping):
        return {key: prepare(value) for key, value in inputs.items()}
    return prepare(inputs)


def _relevance_flows(composite: Composite | None) -> bool:
    """Whether ``composite``'s rules propagate relevance (LRP), not a (modified) gradient."""
    if composite is None:
        return False
    rules = [getattr(rule, "first", rule) for rule in composite.rule_map.values()]
    return any(isinstance(rule, BasicHook) or getattr(rule, "propagates_relevance", False) for rule in rules)


class Gradient(Attributor):
    """The (modified) gradient: LRP with a composite, the plain input gradient without one."""

    def forward(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        return self.grad(input, target)


class SmoothGrad(Attributor):
    """SmoothGrad: the mean attribution over ``n_iter`` noisy copies of the input.

    Parameters
    ----------
    model, composite, attr_output : see :class:`Attributor`
    noise_level : float, default 0.1
        Noise standard deviation relative to each sample's value range (max - min).
    n_iter : int, default 20
        Number of samples; the last one is noise-free (as in Zennit), and its output is returned.
    generator : torch.Generator, optional
        Source of the noise; the global RNG if ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        attr_output: Target = None,
        noise_level: float = 0.1,
        n_iter: int = 20,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, composite, attr_output, **kwargs)
        n_iter = check_int(n_iter, "n_iter", type(self).__name__, 1)
        self.noise_level = noise_level
        self.n_iter = n_iter
        self.generator = generator

    def forward(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        dims = tuple(range(1, input.ndim))
        std = self.noise_level * (input.amax(dims, keepdim=True) - input.amin(dims, keepdim=True))
        result = torch.zeros_like(input)
        output = None
        for n in range(self.n_iter):
            if n < self.n_iter - 1:
                noise = torch.randn(input.shape, generator=self.generator, device=input.device, dtype=input.dtype)
                noisy = input + noise * std
            else:
                noisy = input
            output, gradient = self.grad(noisy, target)
            result += gradient / self.n_iter
        return output, result


class IntegratedGradients(Attributor):
    """Integrated gradients: ``(x - x0) * mean of gradients along the straight path from x0 to x``.

    Parameters
    ----------
    model, composite, attr_output : see :class:`Attributor`
    baseline_fn : callable, optional
        ``input -> baseline``; zeros by default.
    n_iter : int, default 20
        Steps ``alpha = 1/n, 2/n, ..., 1`` (right Riemann sum, as in Zennit).
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        attr_output: Target = None,
        baseline_fn: Callable[[Tensor], Tensor] | None = None,
        n_iter: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, composite, attr_output, **kwargs)
        n_iter = check_int(n_iter, "n_iter", type(self).__name__, 1)
        self.baseline_fn = baseline_fn or torch.zeros_like
        self.n_iter = n_iter

    def forward(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        baseline = self.baseline_fn(input)
        if isinstance(target, str) and target == "prediction":
            with torch.no_grad():
                target = select_output(self.model(input), self.output, type(self).__name__).argmax(dim=1)
        result = torch.zeros_like(input)
        output = None
        for alpha in torch.linspace(1.0 / self.n_iter, 1.0, self.n_iter):
            output, gradient = self.grad(baseline + alpha * (input - baseline), target)
            result += gradient / self.n_iter
        return output, result * (input - baseline)


class Occlusion(Attributor):
    """Occlusion: the drop of the target score when a sliding window of the input is hidden.

    Each input element gets the mean of ``score(x) - score(x with the window hidden)`` over the windows that
    cover it (captum's definition; Zennit's occlusion instead sums the occluded scores). The score is the
    output weighted by the target (e.g. the target logit). A composite has no effect.

    Parameters
    ----------
    model, composite, attr_output : see :class:`Attributor`
    window : int or tuple of int, default 8
        Window size over the trailing input dimensions (an int covers all non-batch dimensions, clipped
        to their sizes; e.g. ``(1, 8, 8)`` hides one channel at a time).
    stride : int or tuple of int, default 8
    fill_fn : callable, optional
        ``input -> values of hidden elements``; zeros by default.
    output : None, str, int or callable, optional
        Which part of the model's output holds the scores (see :class:`Attributor`).
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        attr_output: Target = None,
        window: int | tuple[int, ...] = 8,
        stride: int | tuple[int, ...] = 8,
        fill_fn: Callable[[Tensor], Tensor] | None = None,
        output: OutputSpec = None,
    ) -> None:
        super().__init__(model, composite, attr_output, output=output)
        for label, value in (("window", window), ("stride", stride)):
            values = (value,) if isinstance(value, int) else tuple(value)
            if not values or not all(isinstance(v, int) and v > 0 for v in values):
                raise argument_error(type(self).__name__, label, "an int >= 1 or a tuple of ints >= 1", value)
        self.window = window
        self.stride = stride
        self.fill_fn = fill_fn or torch.zeros_like

    def _shape(self, value: int | tuple[int, ...], sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(value, int):
            return tuple(min(value, size) for size in sample_shape)
        value = tuple(value)
        if len(value) > len(sample_shape):
            raise ValueError(f"window/stride {value} has more dimensions than the input sample {sample_shape}")
        return tuple(sample_shape[: len(sample_shape) - len(value)]) + value

    def forward(self, input: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        sample_shape = tuple(input.shape[1:])
        window = self._shape(self.window, sample_shape)
        stride = self._shape(self.stride, sample_shape)
        with torch.no_grad():
            output = select_output(self.model(input), self.output, type(self).__name__)
            weights = output_weights(output, target)
            reduce_dims = tuple(range(1, output.ndim))
            base_score = (weights * output).sum(reduce_dims)
            fill = self.fill_fn(input)
            total = torch.zeros_like(input)
            counts = torch.zeros(sample_shape, dtype=input.dtype, device=input.device)
            # like captum, a last window clipped at the border covers what the stride would skip
            starts = [range(0, size - w + s, s) for size, w, s in zip(sample_shape, window, stride)]
            for offset in itertools.product(*starts):
                region = tuple(slice(o, o + w) for o, w in zip(offset, window))
                occluded = input.clone()
                occluded[(slice(None),) + region] = fill[(slice(None),) + region]
                score = (weights * select_output(self.model(occluded), self.output)).sum(reduce_dims)
                drop = (base_score - score)[(slice(None),) + (None,) * len(sample_shape)]
                total[(slice(None),) + region] += drop
                counts[region] += 1
        return output, total / counts.clamp(min=1)


_ATTRIBUTORS: dict[str, type[Attributor]] = {
    "gradient": Gradient,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "occlusion": Occlusion,
}


def explain(
    model: nn.Module,
    input: Tensor | Mapping[str, Any],
    target: Target = "prediction",
    composite: str | Composite | None = "epsilon_gamma_box",
    canonizers: Any = "auto",
    attributor: str | type[Attributor] = "gradient",
    attributor_kwargs: dict[str, Any] | None = None,
    **composite_kwargs: Any,
) -> Attribution:
    """Explain ``model`` on ``input`` in one call; the model is put in eval mode and restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
    input : torch.Tensor or mapping
        A batch, e.g. ``(N, C, H, W)``; or token ids ``(N, T)`` / a dict with ``"input_ids"`` (relevance per
        token, see :class:`Attributor`; use ``composite="attn_lrp"`` or ``"cp_lrp"`` for transformers).
    target : target, default "prediction"
        What to explain (see the module docstring).
    composite : str or Composite or None, default "epsilon_gamma_box"
        A registered name (see :data:`lrp_lightning.composites.COMPOSITES`), a composite, or ``None`` for
        the plain gradient.
    canonizers : "auto", list or None, default "auto"
        Used when ``composite`` is a name.
    attributor : str or Attributor class, default "gradient"
        ``"gradient"``, ``"smoothgrad"``, ``"integrated_gradients"`` or ``"occlusion"``.
    attributor_kwargs : dict, optional
        E.g. ``{"n_iter": 10}``.
    **composite_kwargs
        Passed to the composite when it is a name, e.g. ``low=-1.0, high=1.0, epsilon=1e-3``.

    Returns
    -------
    Attribution
        ``(output, relevance)``; ``relevance`` has the input's shape.
    """
    from .composites import get_composite

    if isinstance(composite, str):
        composite = get_composite(composite, canonizers=canonizers, **composite_kwargs)
    elif composite_kwargs:
        raise argument_error(
            "explain",
            "composite",
            "a composite name",
            composite,
            f"composite arguments {sorted(composite_kwargs)} apply only to a composite given by name",
        )
    if isinstance(attributor, str):
        attributor = _ATTRIBUTORS[check_choice(attributor.lower(), "attributor", "explain", sorted(_ATTRIBUTORS))]
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with attributor(model=model, composite=composite, **(attributor_kwargs or {})) as instance:
            return instance(input, target)
    finally:
        for module, training in modes:
            module.training = training
