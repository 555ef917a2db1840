"""One conversion of Python, NumPy and torch values into JSON values, for every JSON the package writes.

The manifest's description of a callback's configuration, an analysis step's configuration (part of
its cache key) and the plugin's probe metadata all go through :func:`to_json`. They differ only in
what they need from the same rules, and say so through its options:

* non-finite floats: kept (Python's ``json`` writes ``NaN``), written as text (``"nan"``) where the
  value must survive strict JSON readers and still say what it was, or ``null`` for a browser;
* values JSON has no type for: an error, or the caller's ``default`` (as :func:`json.dumps` has it),
  e.g. a class's qualified name for the manifest;
* arrays and tensors: as nested lists, or as a short ``"array[shape]"`` text above a size, so that a
  configuration holding a large tensor stays readable and the same in every process.

This module imports nothing heavier than NumPy (the store and the TensorBoard plugin use it); torch
tensors are recognised only where torch is already imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from ._validation import check_choice

__all__ = ["to_json"]

NonFinite = Literal["keep", "text", "null"]


def _as_array(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array if it is one or a torch tensor, else None."""
    if isinstance(value, np.ndarray):
        return value
    torch = sys.modules.get("torch")  # a tensor exists only where torch was imported
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return None


def to_json(
    value: Any,
    *,
    nonfinite: NonFinite = "keep",
    default: Callable[[Any], Any] | None = None,
    max_array_size: int | None = None,
) -> Any:
    """Return ``value`` as JSON values: None, bool, int, float, str, lists and dicts with str keys.

    NumPy scalars become Python numbers, tuples become lists, mapping keys become text; arrays and
    tensors become nested lists.

    Parameters
    ----------
    value : Any
        What to convert; containers are converted recursively.
    nonfinite : {"keep", "text", "null"}, default "keep"
        What NaN and infinities become: the float itself, its text (``"nan"``, ``"inf"``, ``"-inf"``)
        or None.
    default : callable, optional
        Called with each value that has no JSON form (a class, a function, a date); its result is
        used as it is. Default: such a value raises ``TypeError``.
    max_array_size : int, optional
        Arrays and tensors with more elements become the text ``"array[<shape>]"``. Default: every
        array becomes a list.

    Returns
    -------
    Any
        A value that :func:`json.dumps` writes (strict JSON unless ``nonfinite="keep"``).

    Raises
    ------
    TypeError
        If a value has no JSON form and no ``default`` is given.

    Examples
    --------
    >>> to_json({"k": (1, np.float32(0.5)), 2: float("nan")}, nonfinite="null")
    {'k': [1, 0.5], '2': None}
    >>> to_json(np.zeros((8, 8)), max_array_size=16)
    'array[8, 8]'
    """

    def convert(item: Any) -> Any:
        if item is None or isinstance(item, (bool, int, str)):
            return item
        if isinstance(item, float):
            if nonfinite == "keep" or np.isfinite(item):
                return item
            return str(item) if nonfinite == "text" else None
        if isinstance(item, np.generic):
            return convert(item.item())
        array = _as_array(item)
        if array is not None:
            if max_array_size is not None and array.size > max_array_size:
                return f"array{list(array.shape)}"
            return convert(array.tolist())
        if isinstance(item, Mapping):
            return {str(key): convert(entry) for key, entry in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(entry) for entry in item]
        if default is None:
            raise TypeError(
                f"{type(item).__name__} {item!r} has no JSON form; pass plain numbers, strings, lists or dicts"
            )
        return default(item)

    check_choice(nonfinite, "nonfinite", "to_json", ("keep", "text", "null"))
    return convert(value)
