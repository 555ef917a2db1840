"""Errors of the run store, and the checks of argument values that the store's functions share.

Every error the store raises for a problem with a run is a :class:`StoreError`; the subclasses say
which problem, and those that match a built-in category also derive from it (a missing store is a
``FileNotFoundError``, an unknown epoch a ``LookupError``), so callers can catch either. This module
imports nothing else from the package but its validation, so every other module of the store can import it.
"""

from __future__ import annotations

from typing import Any

from .._validation import check_int

__all__ = [
    "AnalysisNotFoundError",
    "CorruptFileError",
    "EpochNotFoundError",
    "IncompatibleRunError",
    "LinkOutsideRunError",
    "NotRegularFileError",
    "SampleNotFoundError",
    "SchemaError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnsupportedFormatError",
]


class StoreError(Exception):
    """Base class of every error raised by :mod:`lrp_lightning.store`."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No manifest where a store was expected."""


class UnsupportedFormatError(StoreError):
    """The store was written in a format version this library cannot read (or write)."""


class IncompatibleRunError(StoreError):
    """Writing would mix two different runs in one store."""


class StoreLockedError(StoreError):
    """Another live process holds the store's writer lock (:class:`~lrp_lightning.store.WriterLock`)."""


class CorruptFileError(StoreError):
    """A file of the store cannot be parsed."""


class NotRegularFileError(CorruptFileError, OSError):
    """A named pipe, directory, device or socket is where the store keeps a file.

    The store only ever opens regular files: opening a named pipe would block until something writes
    to it, so a pipe planted in a store would hang every reader.
    """


class LinkOutsideRunError(CorruptFileError, OSError):
    """A symbolic link leads from a store file out of its run directory; the store never follows it."""


class SchemaError(StoreError, ValueError):
    """Data passed for writing does not match the store's schema or shapes."""


class EpochNotFoundError(StoreError, LookupError):
    """The epoch is not a complete epoch of the store."""


class SampleNotFoundError(StoreError, LookupError):
    """A requested sample id is not in the epoch(s) read."""


class AnalysisNotFoundError(StoreError, LookupError):
    """No current analysis table of that name (missing, stale, or made with another config)."""


def _check_index(value: Any, name: str, minimum: int = 0) -> int:
    """An epoch, step or rank: the package's one integer check (:func:`lrp_lightning._validation.check_int`)."""
    return check_int(value, name, None, minimum)


def _check_heatmap_shape(shape: Any) -> tuple[int, int]:
    try:
        values = tuple(int(v) for v in shape)
    except TypeError:
        values = ()
    if len(values) != 2 or min(values) < 1:
        raise SchemaError(f"heatmap_shape must be (height, width) of the channel-summed relevance map, got {shape!r}")
    return values  # type: ignore[return-value]
