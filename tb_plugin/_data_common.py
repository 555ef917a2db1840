"""Shared pieces of the plugin's data layer (:mod:`.data`): limits and defaults, errors, binary columns, run pieces.

The :class:`~lrp_lightning.tb_plugin.data.PluginData` mixins (:mod:`._data_images`,
:mod:`._data_analysis`, :mod:`._data_findings`) and :mod:`.data` itself import from here; the names
that routes and tests use are re-exported by :mod:`.data`.

Binary columns
--------------
Embeddings and per-sample tables go to the browser as ``b"LRPB"``, a little-endian ``uint32`` header
length, a UTF-8 JSON header padded with spaces so the data starts at a multiple of 8 bytes, then the
columns, each little-endian and starting at a multiple of 8 bytes. The header is
``{"count": N, "columns": [{"name", "dtype", "offset"}], "meta": {...}}`` with offsets counted from
the start of the data; dtypes are ``int8``, ``int16``, ``int32``, ``uint8``, ``float32`` or
``float64`` (the JavaScript typed arrays of the same names read them without copying).
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lrp_lightning._json import to_json
from lrp_lightning.store import (
    LABEL,
    PREDICTION,
    PROBABILITY,
    RELEVANCE_SUM,
    SAMPLE_ID,
    SCORE,
    TARGET,
)

__all__: list[str] = []

DEFAULT_CMAP = "bwr"
"""Colour map the frontend starts with: red for the explained class, blue against, white for zero."""

HEATMAP_KINDS = ("heatmap", "overlay")
SPECTRAL_EMBEDDING = "spectral"
"""Embedding name for two coordinates of the spectral embedding (``x``/``y`` pick the eigenvectors)."""

SAMPLE_COLUMNS = (SAMPLE_ID, LABEL, PREDICTION, TARGET, SCORE, PROBABILITY, RELEVANCE_SUM)
"""Per-sample columns of an epoch that the frontend gets (everything but the maps)."""

MAX_REQUEST_TEXT = 256
"""Longest text a request parameter may hold (a run name included); every such text must be printable."""

SAMPLE_METADATA = "metadata"
"""Key of the samples payload's ``meta``: the probe set's user metadata columns, ``{name: [value per row]}``."""

_MAGIC = b"LRPB"
_SAFE_INTEGER = 2**53


class Selected(str):
    """A run's name that also carries the attribution method and named analysis a request selects.

    It equals and hashes as (name, method, analysis), so the caches keep each selection apart; ``str()``
    gives the plain name, which messages and the run index use. None selects the run's default.
    """

    method: str | None
    analysis: str | None

    def __new__(cls, run: str, method: str | None = None, analysis: str | None = None) -> Selected:
        value = super().__new__(cls, run)
        value.method, value.analysis = method, analysis
        return value

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other) and (getattr(other, "method", None), getattr(other, "analysis", None)) == (
            self.method,
            self.analysis,
        )

    def __hash__(self) -> int:
        return hash((str(self), self.method, self.analysis))


class NotFound(LookupError):
    """The requested item does not exist or cannot be read; the message tells the user why."""


class BadArgument(ValueError):
    """A request value names nothing in this run (e.g. an unknown clustering); the message lists what does."""


# --------------------------------------------------------------------------------------------------
# Binary columns
# --------------------------------------------------------------------------------------------------


def encode_columns(columns: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Encode equal-length 1-D arrays in the plugin's binary column format (see the module docstring).

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        Name to 1-D array; dtypes int8/16/32, uint8, float32 or float64.
    meta : mapping, optional
        JSON-serialisable values for the header's ``meta`` (default: empty).

    Returns
    -------
    bytes
    """
    lengths = {len(array) for array in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns must have one length, got {sorted(lengths)}")
    count = lengths.pop() if lengths else 0
    specs, blobs, offset = [], [], 0
    for name, array in columns.items():
        array = np.asarray(array)
        if array.ndim != 1 or array.dtype.name not in ("int8", "int16", "int32", "uint8", "float32", "float64"):
            raise ValueError(f"column {name!r} must be 1-D int8/16/32, uint8, float32 or float64, got {array.dtype}")
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        specs.append({"name": name, "dtype": array.dtype.name, "offset": offset})
        padding = -len(data) % 8
        blobs.append(data + b"\0" * padding)
        offset += len(data) + padding
    header = json.dumps({"count": count, "columns": specs, "meta": dict(meta or {})}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return _MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)


def decode_columns(payload: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decode :func:`encode_columns` output into ``(columns, meta)`` (what the frontend does, for tests)."""
    if payload[:4] != _MAGIC:
        raise ValueError("not an LRPB payload")
    (length,) = struct.unpack("<I", payload[4:8])
    header = json.loads(payload[8 : 8 + length])
    start, count = 8 + length, header["count"]
    columns = {}
    for spec in header["columns"]:
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        columns[spec["name"]] = np.frombuffer(payload, dtype=dtype, count=count, offset=start + spec["offset"])
    return columns, header["meta"]


def compact_int(values: np.ndarray) -> np.ndarray:
    """The smallest of int16, int32, float64 that holds the integers exactly (JavaScript has no int64)."""
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.int32)
    low, high = int(values.min()), int(values.max())
    if -(2**15) <= low and high < 2**15:
        return values.astype(np.int16)
    if -(2**31) <= low and high < 2**31:
        return values.astype(np.int32)
    return values.astype(np.float64)  # exact up to 2**53, which the frontend is told in meta


@dataclass
class Payload:
    """Encoded bytes of a response, with a gzip-compressed copy made on first use."""

    raw: bytes
    _gzipped: bytes | None = field(default=None, repr=False)

    @property
    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.raw, compresslevel=3, mtime=0)
        return self._gzipped

    @property
    def nbytes(self) -> int:
        return len(self.raw) + len(self._gzipped or b"")


# --------------------------------------------------------------------------------------------------
# Decoded pieces of a run
# --------------------------------------------------------------------------------------------------


@dataclass
class _Samples:
    """Per-sample columns of one epoch, with a sorted index for id lookups."""

    columns: dict[str, np.ndarray]
    order: np.ndarray
    sorted_ids: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> _Samples:
        columns = {name: table.column(name).to_numpy() for name in table.column_names}
        order = np.argsort(columns[SAMPLE_ID], kind="stable")
        return cls(columns, order, columns[SAMPLE_ID][order])

    def row(self, sample_id: int) -> int | None:
        position = int(np.searchsorted(self.sorted_ids, sample_id))
        if position < self.sorted_ids.size and self.sorted_ids[position] == sample_id:
            return int(self.order[position])
        return None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values()) + self.order.nbytes + self.sorted_ids.nbytes


@dataclass
class _EpochMaps:
    """All relevance maps of one epoch as stored (float16), with an id index."""

    samples: _Samples
    maps: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.maps.nbytes + self.samples.nbytes


@dataclass
class _Probe:
    ids: _Samples
    thumbnails: list[bytes | None]
    metadata: dict[str, list[Any]] = field(default_factory=dict)
    """User metadata columns (JSON-safe values, in probe-table order); see :func:`_json_column`."""
    key: tuple[Any, ...] = ()
    """Identity of the probe file the values come from (part of cache keys built on them)."""

    @property
    def nbytes(self) -> int:
        rows = sum(len(values) for values in self.metadata.values())
        return self.ids.nbytes + sum(len(t or b"") for t in self.thumbnails) + 64 * rows


def _json_column(column: pa.ChunkedArray) -> list[bool | int | float | str | None] | None:
    """A probe metadata column as JSON-safe values (NaN and infinities as None).

    Booleans, integers, floats and strings keep their type; dictionary-encoded columns are decoded;
    decimals, dates, times and durations become text. Nested and binary columns return None (the
    plugin leaves them out: they make neither a readable detail row nor a colour category).
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_decimal(kind):
        column = column.cast(pa.float64())
        kind = column.type
    usable = (
        pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_temporal(kind)
    )
    if not usable:
        return None
    # decimals, dates, times and durations have no JSON form: their text
    return to_json(column.to_pylist(), nonfinite="null", default=str)


class _Tables(Mapping[str, pa.Table]):
    """Analysis tables by name, each read (and cached) on first use."""

    def __init__(self, names: Sequence[str], load: Callable[[str], pa.Table]) -> None:
        self._names = tuple(names)
        self._load = load

    def __getitem__(self, name: str) -> pa.Table:
        if name not in self._names:
            raise KeyError(name)
        return self._load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass
class _Analysis:
    """The current analysis tables of one epoch, all of one configuration (read lazily)."""

    config_hash: str
    tables: Mapping[str, pa.Table]


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
