"""Building blocks shared by the analysis steps: the step base class, cache keys, fingerprints.

A step follows scikit-learn's conventions: the constructor only stores its parameters (validated at
once), methods such as ``fit``/``transform`` do the work, and :meth:`Step.get_params` returns exactly
the constructor's arguments. A step's *cache key* hashes its full configuration, the key (or
fingerprint) of its input and the versions of the libraries that compute it. Floats enter the key by
their exact ``repr``, so any parameter change, ``random_state`` included, gives another key.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np

from .. import _validation
from .._json import to_json

# The analysis steps check their parameters with the package's one validation module
# (lrp_lightning._validation); these names stay importable from here for code written against
# earlier versions, with their earlier signatures.
from .._validation import check_float, check_random_state  # noqa: F401

__all__ = ["AnalysisError", "Step", "cache_key", "fingerprint", "library_versions"]

_VERSIONED_DISTRIBUTIONS = ("lrp-lightning", "numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent")


class AnalysisError(Exception):
    """Input that the analysis cannot work with (the message names the item and the fix)."""


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries whose results enter the analysis (part of every cache key).

    Returns
    -------
    dict of str to str
        Distribution name to version; ``"absent"`` for one that is not installed.
    """
    versions = {}
    for name in _VERSIONED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    if versions["lrp-lightning"] == "absent":  # running from a source tree that is not installed
        from lrp_lightning import __version__

        versions["lrp-lightning"] = __version__
    return versions


def _canonical(value: Any) -> Any:
    """Turn a configuration value into JSON-able data without losing information."""
    if isinstance(value, Step):
        return value.get_config()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"ndarray": fingerprint(value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}  # exact: 0.1 and 0.10000000000000002 differ
    raise TypeError(f"cannot put {type(value).__name__} {value!r} into an analysis configuration")


def cache_key(*parts: Any) -> str:
    """Hash configuration parts into a hex key (SHA-256 of their canonical JSON).

    Parameters
    ----------
    *parts
        JSON-like values, :class:`Step` objects (their full configuration), or arrays (their
        :func:`fingerprint`). Floats are hashed exactly, never rounded.

    Returns
    -------
    str
        64 hex digits.
    """
    text = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(array: np.ndarray) -> str:
    """Return a content hash of an array (dtype, shape and bytes).

    Parameters
    ----------
    array : numpy.ndarray
        Any array.

    Returns
    -------
    str
        32 hex digits (BLAKE2b).
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


class Step:
    """Base class of analysis steps: parameters in, configuration and cache key out.

    Subclasses store every constructor argument as an attribute of the same name and validate it in
    ``__init__``; they never change parameters while working.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, parameter in signature.parameters.items()
            if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Return the constructor's parameters (as passed, after validation)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Step:
        """Return a copy with some parameters replaced (validated like the constructor's).

        Raises
        ------
        ValueError
            If a name is not a parameter of this step; the message lists the valid ones.
        """
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {unknown}; valid: {self._param_names()}")
        return type(self)(**{**self.get_params(), **params})

    def get_config(self) -> dict[str, Any]:
        """Return ``{"step": class name, "params": {...}}``, JSON-able, as entered into cache keys."""
        params = {name: to_json(value) for name, value in self.get_params().items()}
        return {"step": type(self).__name__, "params": params}

    def cache_key(self, input_key: str) -> str:
        """Key of this step's output for an input with key (or fingerprint) ``input_key``."""
        return cache_key(self, input_key, library_versions())

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(cache_key(self))


def check_choice(value: Any, name: str, choices: Sequence[Any], owner: str) -> Any:
    """:func:`lrp_lightning._validation.check_choice` with this module's earlier argument order."""
    return _validation.check_choice(value, name, owner, choices)


def check_int(value: Any, name: str, owner: str, minimum: int = 0) -> int:
    """:func:`lrp_lightning._validation.check_int` with this module's earlier default (``minimum=0``)."""
    return _validation.check_int(value, name, owner, minimum)
