"""Configuration that :class:`LRPCallback` and :class:`LRPPredictionWriter` share, checked at once.

* :func:`resolve_composite` builds the composite from a name, class or object (with its keyword
  arguments and canonizers) and describes it for the store's manifest.
* :func:`check_target`, :func:`check_heatmap_size` and :func:`check_class_names` check the
  arguments of the same names, in the message style of :mod:`lrp_lightning._validation`.
* :func:`qualified_name` and :func:`jsonable` describe objects in the manifest the same way in
  every process (no memory addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from lrp_lightning._json import to_json
from lrp_lightning._validation import InvalidArgumentError, argument_error, check_int_pair, check_type
from lrp_lightning.composites import get_composite
from lrp_lightning.core import Composite

TargetSpec = str | Callable[[Tensor, Tensor | None], Tensor]
"""What an explanation explains: ``"label"``, ``"prediction"`` or ``(output, labels) -> class indices``."""


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class, function or of an object's class."""
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"


def jsonable(value: Any) -> Any:
    """A JSON value describing ``value`` that is the same in every process (no memory addresses).

    The manifest's rules for :func:`~lrp_lightning._json.to_json`: non-finite floats as text, arrays
    of more than 16 elements as their shape, and objects (canonizers, callables) as their class's
    qualified name.
    """
    return to_json(value, nonfinite="text", default=qualified_name, max_array_size=16)


def resolve_composite(
    composite: Any, canonizers: Any, composite_kwargs: Mapping[str, Any] | None, owner: str
) -> tuple[Composite, dict[str, Any], Any]:
    """Build the composite once; return it with its manifest description and the canonizer config."""
    check_type(
        composite_kwargs,
        "composite_kwargs",
        owner,
        Mapping,
        "a dict of composite arguments",
        note="e.g. {'low': 0.0, 'high': 1.0}",
        allow_none=True,
    )
    kwargs = dict(composite_kwargs or {})
    if not (canonizers is None or isinstance(canonizers, (str, list, tuple)) or hasattr(canonizers, "apply")):
        raise argument_error(
            owner, "canonizers", "'auto', None, or a list of canonizers or canonizer names", canonizers
        )
    if isinstance(composite, Composite):
        if kwargs:
            raise ValueError(
                f"{owner}: composite_kwargs {sorted(kwargs)} only apply to a composite given by name; "
                "configure the composite object itself (e.g. EpsilonGammaBox(low=0.0, high=1.0)) or pass "
                "composite='epsilon_gamma_box'"
            )
        if canonizers != "auto":
            raise ValueError(
                f"{owner}: canonizers only apply to a composite given by name; pass them to the composite "
                "object itself, e.g. EpsilonGammaBox(canonizers=[SequentialMergeBatchNorm()])"
            )
        name = composite.name or qualified_name(composite)
        return composite, {"name": name, "kwargs": {}}, jsonable(composite.canonizers)
    if not (isinstance(composite, str) or isinstance(composite, type) and issubclass(composite, Composite)):
        raise argument_error(
            owner,
            "composite",
            "a registered name such as 'epsilon_gamma_box', a Composite class or a Composite object",
            composite,
        )
    try:
        built = get_composite(composite, canonizers=canonizers, **kwargs)
    except InvalidArgumentError as exc:  # a checked argument (e.g. a rule's alpha): its own message says it
        raise InvalidArgumentError(f"{owner}: composite_kwargs: {exc}") from exc
    except TypeError as exc:
        raise TypeError(
            f"{owner}: composite_kwargs {sorted(kwargs)} do not fit composite {composite!r} ({exc}); "
            "see the composite's docstring for its arguments"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{owner}: {exc}") from exc
    name = composite if isinstance(composite, str) else (composite.name or qualified_name(composite))
    return built, {"name": name, "kwargs": jsonable(kwargs)}, jsonable(canonizers)


def check_target(target: Any, owner: str) -> TargetSpec:
    if isinstance(target, str) and target in ("label", "prediction"):
        return target
    if callable(target) and not isinstance(target, str):
        return target
    raise argument_error(
        owner,
        "target",
        "'label' (explain the true class), 'prediction' (the predicted class) or a callable "
        "(output, labels) -> class indices",
        target,
    )


def target_mode(target: TargetSpec) -> str:
    return target if isinstance(target, str) else f"callable:{qualified_name(target)}"


def check_heatmap_size(size: Any, owner: str) -> tuple[int, int] | None:
    if size is None:
        return None
    values = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    try:
        return check_int_pair(values, "heatmap_size", owner, 1)
    except InvalidArgumentError:
        raise argument_error(
            owner, "heatmap_size", "None (the input's size), an int >= 1 (square maps) or (height, width)", size
        ) from None


def check_class_names(class_names: Any, owner: str) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise argument_error(owner, "class_names", "a list of str, one per class, or None", class_names)
    return [str(name) for name in class_names]
