"""The conservation guard: warn when relevance is lost or created where every rule conserves it.

LRP rules without biases pass on all relevance: what reaches the input sums to the target's relevance.
When every rule a composite attached to a model conserves relevance and the sums still differ, the
forward pass computes something the engine does not see: a functional operation between layers
(``x.sum(1)``, ``F.softmax``, a residual ``x + f(x)`` without a :class:`~lrp_lightning.layer.Sum`, a
multiplication by a constant), through which relevance flows as a gradient. :func:`check_conservation`
warns once per model, naming these likely causes. (A functional ``x.mean(1)`` conserves the sum but spreads
relevance uniformly; no sum can show that.) One cause has a signature of its own and a warning that names
its fix: token embeddings added with a plain ``+`` (``tok(ids) + pos(positions)``) give every summand all of
the relevance, so each sample gets ``k`` times the target's relevance for ``k`` counted embeddings; the
``embedding_sum`` canonizer (:class:`~lrp_lightning.attention_canonizers.EmbeddingSumCanonizer`, picked by
``canonizers="auto"``) or a :class:`~lrp_lightning.layer.Sum` splits such a sum in proportion.

A rule says whether it conserves relevance on a module with a ``conserves(module)`` method (the rules of
:mod:`lrp_lightning.attention`); the rules of :mod:`lrp_lightning.rules` are known here. Only rules that
conserve for every input count: Pass, Norm, and Epsilon (``epsilon <= 1e-4``), Flat and WSquare on layers
without (or with a zero, or a zeroed) bias. Gamma, ZPlus, AlphaBeta and ZBox drop the relevance of
outputs whose denominator is zero, so a composite with them is not checked. The difference is measured
per sample against the sum of the magnitudes of the target's relevance.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
import torch.nn as nn

from . import rules as lrules
from .core import Composite, Hook, module_params

Tensor = torch.Tensor

__all__ = ["CONSERVATION_RTOL", "check_conservation", "composite_conserves", "rule_conserves"]

#: relative difference between the input's and the target's relevance (per sample) that triggers the warning
CONSERVATION_RTOL = 1e-2

_WARNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_CACHE: weakref.WeakKeyDictionary[Composite, tuple[int, int, bool]] = weakref.WeakKeyDictionary()

_AFFINE_RULES = (lrules.Flat, lrules.WSquare)
#: the largest Epsilon that counts as conserving (a larger one absorbs relevance by design)
_EPSILON_LIMIT = 1e-4


def _no_bias(rule: Hook, module: nn.Module) -> bool:
    if "bias" in lrules._zero_params(rule):  # type: ignore[arg-type]
        return True
    bias = module_params(module).get("bias")
    return bias is None or not bool(torch.any(bias != 0))


def rule_conserves(rule: Hook | None, module: nn.Module) -> bool:
    """Whether ``rule`` passes on all relevance on ``module`` (False when unknown)."""
    if rule is None:
        return True
    if hasattr(rule, "first") and hasattr(rule, "rest"):  # a first-layer rule and the rule of later calls
        return rule_conserves(rule.first, module) and rule_conserves(rule.rest, module)
    conserves = getattr(rule, "conserves", None)
    if callable(conserves):
        return bool(conserves(module))
    if isinstance(rule, (lrules.Pass, lrules.Norm)):
        return True
    if isinstance(rule, lrules.Epsilon):
        epsilon = rule.epsilon
        small = isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and abs(epsilon) <= _EPSILON_LIMIT
        return small and _no_bias(rule, module)
    if isinstance(rule, _AFFINE_RULES):
        return _no_bias(rule, module)
    return False


def composite_conserves(composite: Composite, model: nn.Module) -> bool:
    """Whether every rule ``composite`` attached to ``model`` conserves relevance (cached per registration)."""
    rule_map = composite.rule_map
    key = (id(rule_map), len(rule_map))
    cached = _CACHE.get(composite)
    if cached is not None and cached[:2] == key:
        return cached[2]
    modules = dict(model.named_modules())
    result = bool(rule_map) and all(
        rule_conserves(rule, modules[name]) for name, rule in rule_map.items() if name in modules
    )
    _CACHE[composite] = (*key, result)
    return result


def _embedding_multiple(model: nn.Module, reached: Tensor, expected: Tensor, scale: Tensor) -> int | None:
    """``k`` when every sample got ``k`` times the target's relevance, ``2 <= k <=`` the model's embeddings.

    The signature of embeddings added with a plain ``+`` on an otherwise conserving model: the gradient of
    a sum hands every summand all of the relevance, so a token with ``k`` counted embeddings gets it ``k`` times.
    """
    embeddings = sum(isinstance(module, nn.Embedding) for module in model.modules())
    if embeddings < 2 or not bool((expected.abs() > CONSERVATION_RTOL * scale).all()):
        return None
    ratio = reached / expected
    multiple = round(float(ratio.mean()))
    if not 2 <= multiple <= embeddings:
        return None
    if float((ratio - multiple).abs().max()) > CONSERVATION_RTOL * multiple:
        return None
    return multiple


def check_conservation(
    model: nn.Module, composite: Composite | None, target_relevance: Tensor, input_relevance: Tensor, **_: Any
) -> None:
    """Warn once per model when the per-sample sums of the two relevances differ on a conserving composite.

    Parameters
    ----------
    model : torch.nn.Module
    composite : Composite or None
        Registered on ``model``; nothing is checked without one.
    target_relevance : torch.Tensor
        The initial relevance at the output, ``(B, ...)``.
    input_relevance : torch.Tensor
        The relevance that reached the input, ``(B, ...)``.
    """
    if composite is None or model in _WARNED or not composite.rule_map:
        return
    if not composite_conserves(composite, model):
        return
    with torch.no_grad():
        target = target_relevance.detach().reshape(target_relevance.shape[0], -1).double()
        expected = target.sum(1)
        reached = input_relevance.detach().reshape(input_relevance.shape[0], -1).sum(1).double()
        scale = target.abs().sum(1)
        checked = scale > 0
        if not bool(checked.any()):
            return
        error = ((reached - expected).abs()[checked] / scale[checked]).max().item()
    if error <= CONSERVATION_RTOL:
        return
    _WARNED.add(model)
    label = composite.name or type(composite).__name__
    multiple = _embedding_multiple(model, reached[checked], expected[checked], scale[checked])
    if multiple is not None:
        warnings.warn(
            f"composite {label}: the relevance reaching the tokens is {multiple} times the target's on "
            f"{type(model).__name__}: the outputs of its nn.Embedding layers are likely added with a plain + (e.g. "
            "self.tok(ids) + self.pos(positions), or token + type embeddings), whose gradient gives each summand "
            "all of the relevance. Pass canonizers='auto' (or add 'embedding_sum' to the composite's canonizers), "
            "which splits such a sum in proportion, or add them through lrp_lightning.layer.Sum: "
            "self.sum(torch.stack(torch.broadcast_tensors(tok, pos), dim=-1)) with self.sum = Sum().",
            UserWarning,
            stacklevel=4,
        )
        return
    warnings.warn(
        f"composite {label}: the relevance reaching the input differs from the target's by {100 * error:.3g}% "
        f"on {type(model).__name__}, although every rule attached conserves relevance. The forward pass likely "
        "computes something the engine does not see, so relevance flows through it as a gradient: a functional "
        "operation between layers such as x.sum(1) or x.mean(1), F.softmax, a residual x + f(x) without a Sum "
        "module (or embeddings added with a plain +), or a multiplication by a constant. Route it through a "
        "module with a rule (lrp_lightning.layer.Sum, the operation modules of lrp_lightning.attention) or a "
        "canonizer.",
        UserWarning,
        stacklevel=4,
    )
