"""The weight cache: what rules derive from a layer's parameters alone, kept while a rule is registered.

Rules derive tensors from parameters (``w+``, ``w-``, batch-norm-merged weights). Recomputing them in
every backward pass costs a few operations per layer, which dominate at small inputs; keeping them costs
memory (about one copy of the parameters). :func:`derived_param` keeps them per registered module until a
parameter changes; :func:`set_weight_cache` switches the cache off for the least memory.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ._validation import argument_error

Tensor = torch.Tensor

__all__ = ["derived_bytes", "derived_param", "set_weight_cache", "weight_cache"]

#: per module with a registered rule: tensors computed from its parameters alone (w+, w-, stacked or
#: batch-norm-merged weights), kept while the rule is registered
_DERIVED: weakref.WeakKeyDictionary[nn.Module, dict[Any, tuple]] = weakref.WeakKeyDictionary()


#: whether :func:`derived_param` keeps its values (see :func:`set_weight_cache`)
_CACHE_ENABLED = True


def set_weight_cache(enabled: bool) -> bool:
    """Switch the weight cache of registered rules on or off for the whole process; return the previous state.

    On (the default), what a rule derives from a layer's parameters alone (``w+``, ``w-`` for alpha-beta, the
    batch-norm-merged weights) is computed once per registration and kept while the composite is
    registered: repeated attributions with one registration (the callback's probe batches) skip those
    operations. The cache holds one copy of a layer's weights per derived tensor (torchvision's ResNet50:
    1.84 times its parameters with epsilon_gamma_box, 2.76 with epsilon_alpha2_beta1; VGG16, whose dense
    layers derive nothing, far less); :func:`derived_bytes` says how much. Off, every backward pass derives
    them again and frees them layer by layer: the least memory, a few more operations per layer. Values
    cached before are dropped when the cache is switched off.
    """
    global _CACHE_ENABLED
    if not isinstance(enabled, bool):
        raise argument_error("set_weight_cache", "enabled", "True or False", enabled)
    previous, _CACHE_ENABLED = _CACHE_ENABLED, enabled
    if not _CACHE_ENABLED:
        for cache in list(_DERIVED.values()):
            cache.clear()
    return previous


@contextmanager
def weight_cache(enabled: bool):
    """Inside the context, the weight cache is on (``True``) or off (``False``); see :func:`set_weight_cache`."""
    previous = set_weight_cache(enabled)
    try:
        yield
    finally:
        set_weight_cache(previous)


def derived_param(module: nn.Module, key: Any, sources: Sequence[Tensor | None], compute: Callable[[], Any]) -> Any:
    """``compute()``, cached for ``module`` while a rule is registered on it, until one of ``sources`` changes.

    A source changes when it is written in place (an optimizer step raises its version counter) or replaced
    by another tensor (``load_state_dict``, ``.to()``); the cache holds the sources, so their memory cannot be
    reused by a new tensor at the same address. Without a registered rule, or with the cache switched off
    (:func:`set_weight_cache`), nothing is cached. Values are computed without a graph (parameters are
    constants to the rules). ``key`` names the value (e.g. ``(rule, "w+")``).
    """
    cache = _DERIVED.get(module)
    if cache is None or not _CACHE_ENABLED:
        with torch.no_grad():
            return compute()
    stamp = tuple(None if t is None else (t.data_ptr(), t._version, t.shape, t.dtype, t.device) for t in sources)
    entry = cache.get(key)
    if entry is not None and entry[0] == stamp:
        return entry[2]
    with torch.no_grad():
        value = compute()
    cache[key] = (stamp, tuple(sources), value)
    return value


def derived_bytes(model: nn.Module) -> int:
    """Bytes held now by the cache of :func:`derived_param` for ``model`` and its submodules.

    Each distinct tensor storage is counted once; the model's own parameters and buffers (kept to detect
    their replacement, or returned unmodified) are not counted."""
    seen: set[int] = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    total = 0
    for module in model.modules():
        for _, _, value in _DERIVED.get(module, {}).values():
            for tensor in _tensors_in(value):
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total


def _tensors_in(value: Any) -> Iterable[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


def _forget_derived(module: nn.Module) -> None:
    _DERIVED.pop(module, None)
