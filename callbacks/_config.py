"""Configuration that :class:`LRPCallback` and :class:`LRPPredictionWriter` share, checked at once.

* :func:`resolve_composite` builds the composite from a name, class or object (with its keyword
  arguments and canonizers) and describes it for the store's manifest.
* :func:`check_target`, :func:`check_heatmap_size` and :func:`check_class_names` check the
  arguments of the same names; their errors name the owning callback and what to pass instead.
* :func:`qualified_name` and :func:`jsonable` describe objects in the manifest the same way in
  every process (no memory addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from lrp_lightning.composites import get_composite
from lrp_lightning.core import Composite

TargetSpec = str | Callable[[Tensor, Tensor | None], Tensor]
"""What an explanation explains: ``"label"``, ``"prediction"`` or ``(output, labels) -> class indices``."""


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class, function or of an object's class."""
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"


def jsonable(value: Any) -> Any:
    """A JSON value describing ``value`` that is the same in every process (no memory addresses)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
        return jsonable(array.tolist()) if array.size <= 16 else f"array{list(array.shape)}"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return qualified_name(value)


def resolve_composite(
    composite: Any, canonizers: Any, composite_kwargs: Mapping[str, Any] | None, owner: str
) -> tuple[Composite, dict[str, Any], Any]:
    """Build the composite once; return it with its manifest description and the canonizer config."""
    if composite_kwargs is not None and not isinstance(composite_kwargs, Mapping):
        raise TypeError(
            f"{owner}: composite_kwargs must be a dict of composite arguments, e.g. "
            f"{{'low': 0.0, 'high': 1.0}}, not {type(composite_kwargs).__name__}"
        )
    kwargs = dict(composite_kwargs or {})
    if not (canonizers is None or isinstance(canonizers, (str, list, tuple)) or hasattr(canonizers, "apply")):
        raise TypeError(
            f"{owner}: canonizers must be 'auto', None, or a list of canonizers or canonizer names, "
            f"not {type(canonizers).__name__}"
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
        raise TypeError(
            f"{owner}: composite must be a registered name such as 'epsilon_gamma_box', a Composite class "
            f"or a Composite object, not {type(composite).__name__}"
        )
    try:
        built = get_composite(composite, canonizers=canonizers, **kwargs)
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
    raise ValueError(
        f"{owner}: target must be 'label' (explain the true class), 'prediction' (the predicted class) or a "
        f"callable (output, labels) -> class indices, not {target!r}"
    )


def target_mode(target: TargetSpec) -> str:
    return target if isinstance(target, str) else f"callable:{qualified_name(target)}"


def check_heatmap_size(size: Any, owner: str) -> tuple[int, int] | None:
    if size is None:
        return None
    values = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        height, width = (int(v) for v in values)
        valid = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    except (TypeError, ValueError):
        valid = False
    if not valid or min(height, width) < 1:
        raise ValueError(
            f"{owner}: heatmap_size must be None (the input's size), a positive int (square maps) or "
            f"(height, width), not {size!r}"
        )
    return height, width


def check_int(value: Any, name: str, owner: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, not {value!r}{hint}")
    return int(value)


def check_class_names(class_names: Any, owner: str) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise TypeError(f"{owner}: class_names must be a list of str, one per class, not {class_names!r}")
    return [str(name) for name in class_names]
