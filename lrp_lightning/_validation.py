"""Argument checks for the whole package, all with one message style.

Every public constructor and function of lrp-lightning checks its arguments at once, through these
functions, in the spirit of scikit-learn's ``_param_validation``. A failed check raises
:class:`InvalidArgumentError` with one message shape::

    <owner>: <name> must be <what to pass>[ (<why or an example>)], got <what was given>

for example ``LRPCallback: every_n_epochs must be an int >= 1 (1 explains every epoch), got 0``.
The owner is the class or function whose argument it is; ``<what to pass>`` is the fix.

:class:`InvalidArgumentError` is both a :class:`ValueError` and a :class:`TypeError` (as
scikit-learn's ``InvalidParameterError``): a wrong type and a wrong value are both a wrong argument,
and callers that catch either keep working.

Checks of a single concept live next to it (e.g. the callbacks' ``check_target``) but build their
errors with :func:`argument_error`, so that the message style stays one.

This module imports nothing heavier than NumPy: the store and the TensorBoard plugin use it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "InvalidArgumentError",
    "argument_error",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_float",
    "check_int",
    "check_int_pair",
    "check_path",
    "check_random_state",
    "check_subset",
    "check_type",
    "describe",
]

_REPR_LIMIT = 80


class InvalidArgumentError(ValueError, TypeError):
    """An argument of the wrong type or value; the message names it, what was given and what to pass."""


def describe(value: Any) -> str:
    """How an error shows a given value: its repr (shortened), after its type unless that is plain.

    Numbers, ``None``, booleans and strings show as their repr (``3``, ``'3'``); anything else gets
    its type name first (``list [1, 2]``), so that a tuple or an array is not mistaken for a list.
    """
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return text
    return f"{type(value).__name__} {text}"


def argument_error(owner: str | None, name: str, expected: str, value: Any, note: str = "") -> InvalidArgumentError:
    """The error for argument ``name`` of ``owner``: it must be ``expected`` but ``value`` was given.

    Parameters
    ----------
    owner : str or None
        The class or function whose argument it is (``"LRPCallback"``); None leaves the prefix out.
    name : str
        The argument's name as the caller spells it (``"heatmap_size"``, ``"pool_size[0]"``).
    expected : str
        What to pass instead, phrased to follow "must be" (``"an int >= 1"``).
    value : Any
        What was given.
    note : str, default ""
        Why, or an example; shown in parentheses after ``expected``.

    Returns
    -------
    InvalidArgumentError
        To be raised by the caller (``raise argument_error(...)``).
    """
    prefix = f"{owner}: " if owner else ""
    because = f" ({note})" if note else ""
    return InvalidArgumentError(f"{prefix}{name} must be {expected}{because}, got {describe(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_one_of(value: Any, choices: Sequence[Any]) -> bool:
    """``value == choice`` for some choice; ``True`` never stands for ``1``, arrays never match."""
    for choice in choices:
        if isinstance(choice, bool) != isinstance(value, bool):
            continue
        try:
            if bool(choice == value):
                return True
        except (TypeError, ValueError):  # an array compared elementwise has no single truth value
            continue
    return False


def _range_text(low: float | None, high: float | None, kind: str) -> str:
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def check_int(
    value: Any,
    name: str,
    owner: str | None,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    note: str = "",
) -> int:
    """Return ``value`` as an int if it is an integer in ``[minimum, maximum]`` (bounds optional).

    NumPy integers are accepted; booleans and floats (even ``3.0``) are refused, since they are
    usually a mistake (``True`` samples, ``1e3`` steps).

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be an int >= <minimum>, got <value>``.
    """
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise argument_error(owner, name, _range_text(minimum, maximum, "an int"), value, note)
    return int(value)


def check_float(
    value: Any,
    name: str,
    owner: str | None,
    low: float | None = None,
    high: float | None = None,
    *,
    note: str = "",
) -> float:
    """Return ``value`` as a float if it is a real number in ``[low, high]`` (bounds optional).

    Ints and NumPy reals are accepted; booleans, complex numbers and NaN are refused. Infinity
    passes only where a bound is left open.

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be a number in [<low>, <high>], got <value>``.
    """
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    inside = (
        real
        and value == value  # NaN is never equal to itself
        and (low is None or value >= low)
        and (high is None or value <= high)
    )
    if not inside:
        raise argument_error(owner, name, _range_text(low, high, "a number"), value, note)
    return float(value)


def check_bool(value: Any, name: str, owner: str | None, *, note: str = "") -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (NumPy booleans too; 0, 1 and strings are refused).

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be True or False, got <value>``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise argument_error(owner, name, "True or False", value, note)
    return bool(value)


def check_choice(value: Any, name: str, owner: str | None, choices: Sequence[Any], *, note: str = "") -> Any:
    """Return ``value`` if it equals one of ``choices`` (``True`` is not ``1``).

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be one of [<choices>], got <value>``.
    """
    if not _is_one_of(value, choices):
        raise argument_error(owner, name, f"one of {list(choices)}", value, note)
    return value


def check_subset(
    values: Any,
    name: str,
    owner: str | None,
    choices: Sequence[Any],
    *,
    allow_empty: bool = True,
    note: str = "",
) -> tuple[Any, ...]:
    """Return ``values`` (one choice, or an iterable of them) as a tuple without repeats, in order.

    A single string is one choice, not a sequence of letters.

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be a [non-empty] subset of [<choices>], got <values>``.
    """
    items: Any = (values,) if isinstance(values, str) else values
    valid = isinstance(items, Iterable) and not isinstance(items, (bytes, dict))
    if valid:
        items = tuple(items)
        valid = (allow_empty or bool(items)) and all(_is_one_of(item, choices) for item in items)
    if not valid:
        kind = "a subset" if allow_empty else "a non-empty subset"
        raise argument_error(owner, name, f"{kind} of {list(choices)}", values, note)
    return tuple(dict.fromkeys(items))


def check_int_pair(
    value: Any,
    name: str,
    owner: str | None,
    minimum: int | None = None,
    *,
    expected: str = "(height, width)",
    note: str = "",
) -> tuple[int, int]:
    """Return ``value`` as a tuple of two ints, each ``>= minimum``.

    Parameters
    ----------
    expected : str, default "(height, width)"
        What the two ints mean, shown in the error (``"(smallest k, largest k)"``).

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be (height, width) of ints >= <minimum>, got <value>``.
    """
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if isinstance(value, (str, bytes)) or len(items) != 2 or not all(_is_int(v) for v in items):
        valid = False
    else:
        valid = minimum is None or min(items) >= minimum
    if not valid:
        raise argument_error(owner, name, f"{expected}, {_range_text(minimum, None, 'two ints')}", value, note)
    return int(items[0]), int(items[1])


def check_random_state(value: Any, owner: str | None, name: str = "random_state") -> int:
    """Return ``value`` if it is an int >= 0: random states are explicit, so that results repeat.

    Raises
    ------
    InvalidArgumentError
        ``<owner>: random_state must be an int >= 0 (results must be reproducible), got <value>``.
    """
    return check_int(value, name, owner, 0, note="results must be reproducible")


def check_type(
    value: Any,
    name: str,
    owner: str | None,
    types: type | tuple[type, ...],
    expected: str | None = None,
    *,
    allow_none: bool = False,
    note: str = "",
) -> Any:
    """Return ``value`` if it is an instance of ``types`` (or None, where ``allow_none``).

    Parameters
    ----------
    expected : str, optional
        What to pass, shown in the error (``" or None"`` is added where None is allowed); default:
        ``"a <type name>"``.

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be <expected>, got <value>``.
    """
    if (value is None and allow_none) or isinstance(value, types):
        return value
    if expected is None:
        options = types if isinstance(types, tuple) else (types,)
        expected = " or ".join(f"a {kind.__name__}" for kind in options)
    raise argument_error(owner, name, expected + (" or None" if allow_none else ""), value, note)


def check_callable(
    value: Any,
    name: str,
    owner: str | None,
    expected: str = "a callable",
    *,
    allow_none: bool = False,
    note: str = "",
) -> Callable[..., Any] | None:
    """Return ``value`` if it is callable (or None, where ``allow_none``).

    Parameters
    ----------
    expected : str, default "a callable"
        What to pass, with its signature where that helps (``"a callable batch -> (inputs, labels)"``).

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be <expected>, got <value>``.
    """
    if (value is None and allow_none) or callable(value):
        return value
    raise argument_error(owner, name, expected + (" or None" if allow_none else ""), value, note)


def check_path(
    value: Any, name: str, owner: str | None, *, allow_none: bool = False, note: str = ""
) -> str | os.PathLike[str] | None:
    """Return ``value`` if it is a path (``str`` or ``os.PathLike``), or None where ``allow_none``.

    Raises
    ------
    InvalidArgumentError
        ``<owner>: <name> must be a path (str or os.PathLike), got <value>``.
    """
    if (value is None and allow_none) or isinstance(value, (str, os.PathLike)):
        return value
    raise argument_error(owner, name, "a path (str or os.PathLike)" + (" or None" if allow_none else ""), value, note)
