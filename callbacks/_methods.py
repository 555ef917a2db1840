"""Attribution methods of a callback: one LRP composite, or several methods explained side by side.

:func:`resolve_methods` turns the ``composite`` argument of :class:`LRPCallback` (a composite name,
class or object; a list of those and built-in method names; or a dict ``{name: method}``) into
:class:`Method` objects, each with its manifest description.

Built-in methods besides the registered LRP composites (:data:`lrp_lightning.composites.COMPOSITES`):

* ``"gradient"``: the plain input gradient of the explained class's score;
* ``"input_x_gradient"``: the gradient times the input;
* ``"integrated_gradients"``: integrated gradients from a zero baseline, 20 steps
  (:class:`lrp_lightning.attribution.IntegratedGradients`; pass ``functools.partial(IntegratedGradients,
  n_iter=...)`` in a dict for other settings).

Forward passes: the methods without a composite that read the plain gradient (``"gradient"`` and
``"input_x_gradient"``) share one forward and one backward pass per batch. Each LRP composite changes the
backward pass through hooks registered on the model, so it takes a forward and backward pass of its own
(registered for that pass only), as does every other attributor (integrated gradients: one per step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from lrp_lightning._validation import argument_error
from lrp_lightning.attribution import Attributor, Gradient, IntegratedGradients
from lrp_lightning.composites import COMPOSITES
from lrp_lightning.core import Composite
from lrp_lightning.store import check_name

from ._config import jsonable, resolve_composite

GRADIENT = "gradient"
INPUT_X_GRADIENT = "input_x_gradient"
INTEGRATED_GRADIENTS = "integrated_gradients"
BUILTIN_METHODS = (GRADIENT, INPUT_X_GRADIENT, INTEGRATED_GRADIENTS)
"""Method names that are not LRP composites."""

AttributorFactory = Callable[[nn.Module], Attributor]
"""``model -> Attributor``: an attributor class or e.g. ``functools.partial(IntegratedGradients, n_iter=32)``."""


@dataclass
class Method:
    """One attribution method of a run.

    Attributes
    ----------
    name : str
        Its name in the store (the :data:`~lrp_lightning.store.METHOD` column) and in scalar tags.
    kind : str
        ``"lrp"`` (a composite, registered for the method's own pass), ``"gradient"`` or
        ``"input_x_gradient"`` (the shared plain gradient), or ``"attributor"`` (its own attributor).
    composite : Composite or None
        The composite of an ``"lrp"`` method.
    factory : callable or None
        ``model -> Attributor`` of an ``"attributor"`` method.
    config : dict
        Its description in the manifest (``"name"``, ``"kind"`` and its settings).
    """

    name: str
    kind: str
    composite: Composite | None = None
    factory: AttributorFactory | None = None
    config: dict[str, Any] = field(default_factory=dict)
    composite_config: dict[str, Any] | None = None
    canonizer_config: Any = None

    @property
    def shares_gradient(self) -> bool:
        """Whether the method is computed from the batch's one plain-gradient pass."""
        return self.kind in (GRADIENT, INPUT_X_GRADIENT)

    def attributor(self, model: nn.Module) -> Attributor:
        """The attributor of an ``"lrp"`` or ``"attributor"`` method (the composite is not registered yet)."""
        if self.kind == "lrp":
            return Gradient(model=model, composite=self.composite)
        return self.factory(model)


def _accepted(composite: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``kwargs`` that the registered composite ``composite`` takes."""
    cls = COMPOSITES.get(composite.strip().lower().replace("-", "_"))
    if cls is None:
        return dict(kwargs)
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(kwargs)
    return {key: value for key, value in kwargs.items() if key in parameters}


def _one(name: str | None, value: Any, canonizers: Any, kwargs: Mapping[str, Any], owner: str) -> Method:
    """A :class:`Method` from one entry of ``composite``; ``name`` None: named after the value."""
    if isinstance(value, str) and value in BUILTIN_METHODS:
        if value == INTEGRATED_GRADIENTS:
            return Method(
                name or value, "attributor", factory=IntegratedGradients, config={"name": name or value, "kind": value}
            )
        return Method(name or value, value, config={"name": name or value, "kind": value})
    if (
        isinstance(value, type)
        and issubclass(value, Attributor)
        or (callable(value) and not isinstance(value, (str, Composite, type)))
    ):
        if name is None:
            raise argument_error(
                owner,
                "composite",
                "names for attributors: pass a dict {name: attributor}",
                value,
                note="e.g. {'ig': functools.partial(IntegratedGradients, n_iter=32)}",
            )
        return Method(
            name,
            "attributor",
            factory=value,
            config={"name": name, "kind": "attributor", "attributor": jsonable(value)},
        )
    built, composite_config, canonizer_config = resolve_composite(value, canonizers, kwargs, owner)
    name = name or composite_config["name"]
    config = {"name": name, "kind": "lrp", "composite": composite_config, "canonizers": canonizer_config}
    return Method(
        name,
        "lrp",
        composite=built,
        config=config,
        composite_config=composite_config,
        canonizer_config=canonizer_config,
    )


def resolve_methods(
    composite: Any, canonizers: Any, composite_kwargs: Mapping[str, Any] | None, owner: str
) -> list[Method]:
    """The methods of ``composite``: one composite, a list of methods, or a dict ``{name: method}``.

    ``composite_kwargs`` and ``canonizers`` apply to every composite given by name (each gets the
    arguments its constructor takes; an argument that none takes is an error).
    """
    if not isinstance(composite, (Sequence, Mapping)) or isinstance(composite, str):
        if isinstance(composite, str) and composite in BUILTIN_METHODS:
            return [_one(None, composite, canonizers, {}, owner)]
        return [_one(None, composite, canonizers, composite_kwargs, owner)]
    if not composite:
        raise argument_error(owner, "composite", "a composite, or a non-empty list or dict of methods", composite)
    entries = list(composite.items()) if isinstance(composite, Mapping) else [(None, value) for value in composite]
    kwargs = dict(composite_kwargs or {}) if isinstance(composite_kwargs, Mapping) else composite_kwargs
    used: set[str] = set()
    methods = []
    for name, value in entries:
        if name is not None:
            name = _check_method_name(name, owner)
        by_name = isinstance(value, str) and value not in BUILTIN_METHODS
        given = _accepted(value, kwargs) if by_name and isinstance(kwargs, Mapping) else {}
        used.update(given)
        methods.append(_one(name, value, canonizers if by_name else "auto", given, owner))
    if isinstance(kwargs, Mapping) and set(kwargs) - used:
        raise argument_error(
            owner,
            "composite_kwargs",
            "arguments that a composite given by name takes",
            sorted(set(kwargs) - used),
            note=f"none of the composites {[m.name for m in methods if m.kind == 'lrp']} takes them",
        )
    names = [method.name for method in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argument_error(
            owner,
            "composite",
            "methods with distinct names",
            composite,
            note=f"{repeated} repeat; name them in a dict, e.g. {{'eps_small': ..., 'eps_large': ...}}",
        )
    for method in methods:
        _check_method_name(method.name, owner)
    return methods


def _check_method_name(name: Any, owner: str) -> str:
    try:
        return check_name(name, "method")
    except ValueError as exc:
        raise ValueError(f"{owner}: composite: {exc}") from None


def input_times_gradient(inputs: Tensor, gradient: Tensor) -> Tensor:
    """``inputs * gradient`` for float inputs; token runs' gradient is already per token (times the embedding)."""
    return gradient * inputs if gradient.shape == getattr(inputs, "shape", None) else gradient


@dataclass
class MethodsOutcome:
    """The analyses of one epoch under every method: their messages and (per-method tagged) scalars."""

    messages: list[str] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)


def analyze_each_method(run: Callable[[Any, int], Any], methods: Sequence[str], store: Any, epoch: int) -> Any:
    """Run the callback's analysis ``run(store, epoch)`` for each method (the store selecting it)."""
    outcome = MethodsOutcome()
    for method in methods:
        result = run(store.select(method=method), epoch)
        outcome.messages.extend(f"{method}: {message}" for message in getattr(result, "messages", []))
        outcome.scalars.update(getattr(result, "scalars", None) or {})
    return outcome
