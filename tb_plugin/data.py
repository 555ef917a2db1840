"""Data layer of the LRP plugin: cached reads through ``RunStore``, PNG rendering, binary columns.

Everything here reads through :mod:`lrp_lightning.store` (the one owner of the on-disk format) and
renders through :mod:`lrp_lightning.image` (the one owner of colour maps). Nothing here knows about
HTTP: methods take already validated values and raise :class:`NotFound` (the item does not exist or
cannot be read, with a message for the user) or :class:`BadArgument` (a value that names nothing in
this run, e.g. an unknown clustering).

Caching
-------
Every cache key holds the epoch's commit id (:attr:`lrp_lightning.store.EpochInfo.commit`), so a
re-written epoch is never served from a stale entry, and new epochs of a running training appear
as soon as the manifest lists them. One byte-bounded LRU holds decoded tables, relevance maps of
whole epochs (float16, as stored), rendered PNGs and encoded binary payloads.

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
import io
import json
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from lrp_lightning import image as lrp_image
from lrp_lightning import store as lrp_store
from lrp_lightning._json import to_json
from lrp_lightning.store import (
    ACCURACY,
    ATYPICAL,
    BORDER_SHARE,
    CATEGORY,
    CLASS_INDEX,
    CLASS_NAME,
    CLUSTER,
    CLUSTER_COLUMN_PREFIX,
    CLUSTERING,
    CLUSTERS_TABLE,
    COMPACTNESS,
    CONCENTRATION,
    CORNER_SHARE,
    EIGENGAP,
    EIGENGAP_K,
    EIGENVALUES,
    EMBEDDING_COLUMN_PREFIX,
    EVENT,
    FLAG_REASON,
    FLAG_REGION,
    FLAGGED,
    LABEL,
    LINEAGE_TABLE,
    MAJORITY_LABEL,
    MATCH_JACCARD,
    MESSAGE,
    META_CONFIG_HASH,
    N_NEIGHBORS,
    N_SAMPLES,
    POINTS_TABLE,
    PREDICTION,
    PREVIOUS_CLUSTER,
    PROBABILITY,
    PROBE_COLUMNS,
    PROTOTYPE,
    PURITY,
    RELEVANCE_SUM,
    RUN_INFO_KEYS,
    SAMPLE_ID,
    SCORE,
    SELECTED_CLUSTERING,
    SIZE,
    SOURCES,
    SPECTRAL,
    SPECTRUM_TABLE,
    STATUS,
    TARGET,
    THUMBNAIL,
    TRACK,
    TYPICAL,
    EpochInfo,
    RunStore,
    StoreError,
    cluster_column,
    embedding_columns,
)

from .discovery import RunIndex, RunNotFound, RunUnreadable

__all__ = [
    "DEFAULT_CMAP",
    "HEATMAP_KINDS",
    "MAX_REQUEST_TEXT",
    "NONFINITE_COLORS",
    "SAMPLE_COLUMNS",
    "SAMPLE_METADATA",
    "BadArgument",
    "NotFound",
    "Payload",
    "PluginData",
    "decode_columns",
    "encode_columns",
    "mark_nonfinite",
]

DEFAULT_CMAP = "bwr"
"""Colour map the frontend starts with: red for the explained class, blue against, white for zero."""

HEATMAP_KINDS = ("heatmap", "overlay")
OVERLAY_ALPHA = 0.5
SPECTRAL_EMBEDDING = "spectral"
"""Embedding name for two coordinates of the spectral embedding (``x``/``y`` pick the eigenvectors)."""

SAMPLE_COLUMNS = (SAMPLE_ID, LABEL, PREDICTION, TARGET, SCORE, PROBABILITY, RELEVANCE_SUM)
"""Per-sample columns of an epoch that the frontend gets (everything but the maps)."""

MAX_REQUEST_TEXT = 256
"""Longest text a request parameter may hold (a run name included); every such text must be printable."""

MAX_LISTED_SAMPLES = 16
"""How many typical/atypical sample ids of a cluster go to the frontend."""

SAMPLE_METADATA = "metadata"
"""Key of the samples payload's ``meta``: the probe set's user metadata columns, ``{name: [value per row]}``."""

_MAGIC = b"LRPB"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAFE_INTEGER = 2**53
_FLOAT_INDICATORS = (PURITY, ACCURACY, CONCENTRATION, BORDER_SHARE, CORNER_SHARE, COMPACTNESS, EIGENGAP, MATCH_JACCARD)


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


NONFINITE_COLORS = ((0, 0, 0), (255, 255, 0))
"""Checkerboard (black and yellow, in no colour map) drawn on the pixels of a map that hold NaN or
infinity: a map of a sample whose output was NaN shows as marked, not as a blank (all-zero) map."""


def mark_nonfinite(picture: Image.Image, bad: np.ndarray) -> Image.Image:
    """Paint the pixels where ``bad`` (an ``(H, W)`` mask) is True with the :data:`NONFINITE_COLORS` checkerboard."""
    if not bad.any():
        return picture
    pixels = np.array(picture.convert("RGB"))
    rows, columns = np.nonzero(bad)
    pixels[rows, columns] = np.asarray(NONFINITE_COLORS, np.uint8)[(rows + columns) % 2]
    return Image.fromarray(pixels, "RGB")


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def _size_of(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, pa.Table):
        return value.nbytes
    if isinstance(value, Payload):
        return value.nbytes + len(value.raw)  # room for the gzipped copy
    size = getattr(value, "nbytes", None)
    return int(size) if size is not None else 1024


class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values.

    ``get_or_make(key, make)`` calls ``make()`` outside the lock; two threads that miss the same key
    at once may both compute it (harmless: the values are equal).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
            self.misses += 1
        value = make()
        size = _size_of(value)
        if size <= self.max_bytes:
            with self._lock:
                old = self._items.pop(key, None)
                if old is not None:
                    self._bytes -= old[1]
                self._items[key] = (value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


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


# --------------------------------------------------------------------------------------------------
# The data layer
# --------------------------------------------------------------------------------------------------


class PluginData:
    """Reads, caches and renders what the plugin's routes serve.

    Parameters
    ----------
    index : RunIndex
        The runs the plugin found.
    cache_bytes : int, optional
        Budget of the shared LRU cache (default 512 MiB).
    epoch_maps_bytes : int, optional
        Largest epoch whose maps are cached whole (default 64 MiB of float16); larger epochs are read
        one sample at a time.
    """

    def __init__(self, index: RunIndex, cache_bytes: int = 512 * 2**20, epoch_maps_bytes: int = 64 * 2**20) -> None:
        self.index = index
        self.cache = ByteLRU(cache_bytes)
        self.epoch_maps_bytes = int(epoch_maps_bytes)

    # ------------------------------------------------------------------------------ helpers

    def _store(self, run: str) -> RunStore:
        try:
            return self.index.get(run)
        except RunNotFound:
            raise NotFound(f"no run {run!r} with LRP data below the logdir; known runs: {self.index.names()}") from None
        except RunUnreadable as exc:
            raise NotFound(f"run {run!r} cannot be read: {exc}") from None

    def _epoch(self, run: str, store: RunStore, epoch: int) -> EpochInfo:
        try:
            return store.epoch_info(epoch)
        except lrp_store.EpochNotFoundError:
            complete = [info.epoch for info in store.epochs()]
            raise NotFound(
                f"epoch {epoch} is not a complete epoch of run {run!r}; complete epochs: {complete}"
            ) from None
        except (StoreError, OSError) as exc:
            raise self._unreadable(f"run {run!r}", exc) from exc

    def _unreadable(self, what: str, exc: BaseException) -> NotFound:
        return NotFound(f"{what} cannot be read: {self.index.redact(str(exc))}")

    def _read(self, what: str, read: Callable[[], Any]) -> Any:
        """Run a store read, turning damaged or vanished files into :class:`NotFound` for that item."""
        try:
            return read()
        except (lrp_store.EpochNotFoundError, lrp_store.SampleNotFoundError, lrp_store.AnalysisNotFoundError) as exc:
            raise NotFound(self.index.redact(str(exc))) from exc
        except (StoreError, OSError, pa.ArrowException, ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(what, exc) from exc

    # ------------------------------------------------------------------------------ runs

    def runs(self) -> list[dict[str, Any]]:
        """Every run the last scan found: name, number of complete epochs, or why it cannot be read."""
        result = []
        for name in self.index.names():
            entry: dict[str, Any] = {"run": name, "epochs": 0, "error": None}
            if len(name) > MAX_REQUEST_TEXT or not name.isprintable():
                # the routes refuse such a name, so the run cannot be opened: say so instead of listing it as healthy
                entry["error"] = (
                    f"the run's directory name is longer than {MAX_REQUEST_TEXT} characters or holds control "
                    "characters, which requests cannot carry; rename the run's directory"
                )
                result.append(entry)
                continue
            try:
                entry["epochs"] = len(self._store(name).epochs())
            except NotFound as exc:
                entry["error"] = str(exc)
            except (StoreError, OSError) as exc:
                entry["error"] = str(self._unreadable(f"run {name!r}", exc))
            result.append(entry)
        return result

    def run_info(self, run: str) -> dict[str, Any]:
        """Run metadata, its complete epochs (and which have an analysis) and the colour maps."""
        store = self._store(run)
        manifest = self._read(f"run {run!r}", lambda: store.manifest)
        epochs = []
        for info in self._read(f"run {run!r}", store.epochs):
            config_hash, analysis_error = self._analysis_state(store, info)
            epochs.append(
                {
                    "epoch": info.epoch,
                    "global_step": info.global_step,
                    "rows": info.rows,
                    "version": info.commit[:12],  # goes into image URLs, so browsers may cache them
                    "analysis": config_hash is not None,
                    "analysis_error": analysis_error,
                }
            )
        try:
            thumbnails = any(t is not None for t in self._probe(run, store).thumbnails)
        except NotFound:
            thumbnails = False
        return {
            "run": run,
            **{key: manifest.get(key) for key in RUN_INFO_KEYS},
            "thumbnails": thumbnails,
            "epochs": epochs,
            "colormaps": sorted(lrp_image.COLOR_MAPS),
            "default_cmap": DEFAULT_CMAP,
        }

    # ------------------------------------------------------------------------------ samples

    def _samples(self, run: str, store: RunStore, info: EpochInfo) -> _Samples:
        def make() -> _Samples:
            table = self._read(
                f"epoch {info.epoch} of run {run!r}", lambda: store.attributions(info.epoch, list(SAMPLE_COLUMNS))
            )
            return _Samples.from_table(table)

        return self.cache.get_or_make(("samples", run, info.epoch, info.commit), make)

    def samples(self, run: str, epoch: int) -> Payload:
        """Per-sample columns of an epoch (:data:`SAMPLE_COLUMNS`) as binary columns.

        The header's ``meta`` holds, under :data:`SAMPLE_METADATA`, the probe set's user metadata
        columns (``LRPCallback(probe_metadata=...)``) as ``{name: [value per row of the payload]}``:
        JSON values (bool, int, float, str, null for NaN or a sample missing from the probe set);
        an empty mapping for a run without metadata.
        """
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        try:
            probe: _Probe | None = self._probe(run, store)
        except NotFound:
            probe = None  # no probe set (yet): the samples without metadata

        def make() -> Payload:
            samples = self._samples(run, store, info)
            c = samples.columns
            ids = compact_int(c[SAMPLE_ID])
            columns = {
                SAMPLE_ID: ids,
                LABEL: compact_int(c[LABEL]),
                PREDICTION: compact_int(c[PREDICTION]),
                TARGET: compact_int(c[TARGET]),
                SCORE: c[SCORE].astype(np.float32),
                PROBABILITY: c[PROBABILITY].astype(np.float32),
                RELEVANCE_SUM: c[RELEVANCE_SUM].astype(np.float32),
            }
            meta = {"run": run, "epoch": info.epoch, "global_step": info.global_step}
            meta["ids_exact"] = bool(ids.dtype != np.float64 or np.all(np.abs(c[SAMPLE_ID]) < _SAFE_INTEGER))
            meta[SAMPLE_METADATA] = self._sample_metadata(probe, c[SAMPLE_ID])
            return Payload(encode_columns(columns, meta))

        key = ("samples-payload", run, info.epoch, info.commit, probe.key if probe is not None else None)
        return self.cache.get_or_make(key, make)

    @staticmethod
    def _sample_metadata(probe: _Probe | None, sample_ids: np.ndarray) -> dict[str, list[Any]]:
        """The probe metadata columns in the order of ``sample_ids`` (None where a sample is not in the probe)."""
        if probe is None or not probe.metadata:
            return {}
        known = probe.ids.sorted_ids
        positions = np.minimum(np.searchsorted(known, sample_ids), max(known.size - 1, 0))
        found = (known[positions] == sample_ids) if known.size else np.zeros(len(sample_ids), bool)
        rows = [int(probe.ids.order[p]) if f else None for p, f in zip(positions.tolist(), found.tolist())]
        return {name: [None if row is None else values[row] for row in rows] for name, values in probe.metadata.items()}

    # ------------------------------------------------------------------------------ maps and images

    def _map(self, run: str, store: RunStore, info: EpochInfo, sample_id: int) -> np.ndarray:
        what = f"epoch {info.epoch} of run {run!r}"
        height, width = self._read(what, lambda: store.heatmap_shape)
        if info.rows * height * width * 2 <= self.epoch_maps_bytes:

            def make_epoch() -> _EpochMaps:
                ids, maps = self._read(what, lambda: store.heatmaps(info.epoch))
                table = pa.table({SAMPLE_ID: ids})
                return _EpochMaps(_Samples.from_table(table), maps.astype(np.float16))

            cached = self.cache.get_or_make(("maps", run, info.epoch, info.commit), make_epoch)
            row = cached.samples.row(sample_id)
            if row is None:
                raise NotFound(f"sample {sample_id} is not in epoch {info.epoch} of run {run!r}")
            return cached.maps[row].astype(np.float32)

        def make_one() -> np.ndarray:
            _, maps = self._read(what, lambda: store.heatmaps(info.epoch, [sample_id]))
            return maps[0]

        return self.cache.get_or_make(("map", run, info.epoch, info.commit, sample_id), make_one)

    def _probe(self, run: str, store: RunStore) -> _Probe:
        path = store.probe_path
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"run {run!r} has no probe set yet (written at the first validation epoch)") from None

        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)

        def make() -> _Probe:
            table = self._read(f"the probe set of run {run!r}", store.probe_table)
            extra = [name for name in table.column_names if name not in PROBE_COLUMNS]
            converted = self._read(
                f"the metadata columns of the probe set of run {run!r}",
                lambda: {name: _json_column(table.column(name)) for name in extra},
            )
            metadata = {name: values for name, values in converted.items() if values is not None}
            thumbnails = table.column(THUMBNAIL).to_pylist()
            return _Probe(_Samples.from_table(table.select([SAMPLE_ID])), thumbnails, metadata, key)

        return self.cache.get_or_make(("probe", run, *key), make)

    def input_png(self, run: str, sample_id: int) -> bytes:
        """The stored input thumbnail (PNG) of a probe sample."""
        store = self._store(run)
        probe = self._probe(run, store)
        row = probe.ids.row(sample_id)
        if row is None:
            raise NotFound(f"sample {sample_id} is not in the probe set of run {run!r}")
        thumbnail = probe.thumbnails[row]
        if thumbnail is None:
            raise NotFound(f"sample {sample_id} of run {run!r} has no input thumbnail")
        if not thumbnail.startswith(_PNG_SIGNATURE):
            raise NotFound(f"the input thumbnail of sample {sample_id} of run {run!r} is not a PNG image (damaged)")
        return thumbnail

    def _input_image(self, run: str, store: RunStore, sample_id: int, size: tuple[int, int]) -> np.ndarray:
        png = self.input_png(run, sample_id)
        try:
            with Image.open(io.BytesIO(png)) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NotFound(
                f"the input thumbnail of sample {sample_id} of run {run!r} cannot be decoded ({exc})"
            ) from exc
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb)

    def heatmap_png(self, run: str, epoch: int, sample_id: int, cmap: str, kind: str) -> bytes:
        """A sample's relevance map of an epoch, colour-mapped (symmetric around 0) or over its input."""
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        if kind not in HEATMAP_KINDS:
            raise BadArgument(f"unknown kind {kind!r}; known: {list(HEATMAP_KINDS)}")
        store = self._store(run)
        info = self._epoch(run, store, epoch)

        def make() -> bytes:
            raw = self._map(run, store, info, sample_id)
            relevance = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
            if kind == "overlay":
                height, width = relevance.shape
                base = self._input_image(run, store, sample_id, (width, height))
                picture = lrp_image.overlay(base, relevance, alpha=OVERLAY_ALPHA, cmap=cmap)
            else:
                picture = lrp_image.heatmap(relevance, cmap=cmap)
            return lrp_image.to_png_bytes(mark_nonfinite(picture, ~np.isfinite(raw)))

        return self.cache.get_or_make(("png", run, info.epoch, info.commit, sample_id, cmap, kind), make)

    def timeline(self, run: str, sample_id: int) -> dict[str, Any]:
        """One sample in every complete epoch: label, prediction, score, probability, relevance sum.

        Epochs that cannot be read are left out and listed under ``unreadable`` with the reason.
        """
        store = self._store(run)
        rows: dict[str, list[Any]] = {key: [] for key in ("epoch", "global_step", *SAMPLE_COLUMNS[2:])}
        label = None
        unreadable = []
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                samples = self._samples(run, store, info)
            except NotFound as exc:  # one damaged epoch leaves the others readable
                unreadable.append({"epoch": info.epoch, "error": str(exc)})
                continue
            row = samples.row(sample_id)
            if row is None:
                continue
            label = int(samples.columns[LABEL][row])
            rows["epoch"].append(info.epoch)
            rows["global_step"].append(info.global_step)
            for name in SAMPLE_COLUMNS[2:]:
                value = samples.columns[name][row]
                rows[name].append(int(value) if name in (PREDICTION, TARGET) else _finite_or_none(value))
        if not rows["epoch"]:
            if unreadable:
                raise NotFound(f"sample {sample_id}: {'; '.join(u['error'] for u in unreadable)}")
            raise NotFound(f"sample {sample_id} is in no complete epoch of run {run!r}")
        return {"run": run, "sample_id": sample_id, "label": label, **rows, "unreadable": unreadable}

    # ------------------------------------------------------------------------------ analysis

    def _analysis_state(self, store: RunStore, info: EpochInfo) -> tuple[str | None, str | None]:
        """``(config hash, error)`` of the epoch's current analysis, from its ``spectrum`` table (written last).

        ``(None, None)``: no (current) analysis; ``(None, message)``: the spectrum cannot be read.
        """
        try:
            entries = tuple(
                (name, stat.st_ino, stat.st_mtime_ns, stat.st_size)
                for name, stat in ((name, path.stat()) for name, path in store.analysis_files(info.epoch).items())
            )
        except OSError:
            return None, None
        if SPECTRUM_TABLE not in (entry[0] for entry in entries):
            return None, None

        def make() -> tuple[str | None, str | None]:
            try:
                table = store.read_analysis_table(info.epoch, SPECTRUM_TABLE)
            except lrp_store.AnalysisNotFoundError:
                return None, None  # made from a replaced version of the epoch
            except (StoreError, OSError, pa.ArrowException) as exc:
                return None, self.index.redact(str(exc))
            return (table.schema.metadata or {}).get(META_CONFIG_HASH, b"").decode() or None, None

        key = ("analysis-state", str(store.store_dir), info.epoch, info.commit, entries)
        return self.cache.get_or_make(key, make)

    def _analysis(self, run: str, store: RunStore, info: EpochInfo) -> _Analysis:
        config_hash, error = self._analysis_state(store, info)
        if error is not None:
            raise NotFound(f"the analysis of epoch {info.epoch} of run {run!r} cannot be read: {error}")
        if config_hash is None:
            raise NotFound(
                f"epoch {info.epoch} of run {run!r} has no analysis yet; run `lrp-analyze` on the run "
                "(or let the callback analyse)"
            )

        def load(name: str) -> pa.Table:
            def make() -> pa.Table:
                return self._read(
                    f"analysis table {name!r} of epoch {info.epoch} of run {run!r}",
                    lambda: store.read_analysis_table(info.epoch, name, config_hash=config_hash),
                )

            return self.cache.get_or_make(("analysis", run, info.epoch, info.commit, config_hash, name), make)

        names = (POINTS_TABLE, CLUSTERS_TABLE, LINEAGE_TABLE, SPECTRUM_TABLE)
        return _Analysis(config_hash, _Tables(names, load))

    @staticmethod
    def _rows(table: pa.Table, **equal: Any) -> pa.Table:
        mask = None
        for name, value in equal.items():
            condition = pc.equal(table.column(name), value)
            mask = condition if mask is None else pc.and_(mask, condition)
        return table if mask is None else table.filter(mask)

    def _category_rows(self, run: str, analysis: _Analysis, info: EpochInfo, category: str) -> pa.Table:
        points = analysis.tables[POINTS_TABLE]
        categories = self._categories(analysis)
        if category not in categories:
            raise BadArgument(f"category {category!r} is not analysed in epoch {info.epoch}; analysed: {categories}")
        return self._rows(points, **{CATEGORY: category})

    @staticmethod
    def _categories(analysis: _Analysis) -> list[str]:
        spectrum = analysis.tables[SPECTRUM_TABLE]
        return [str(c) for c in spectrum.column(CATEGORY).to_pylist()]

    @staticmethod
    def _embeddings(points: pa.Table) -> list[str]:
        names = []
        for column in points.column_names:
            if column.startswith(EMBEDDING_COLUMN_PREFIX) and column.endswith(".x"):
                method = column[len(EMBEDDING_COLUMN_PREFIX) : -2]
                if embedding_columns(method)[1] in points.column_names:
                    names.append(method)
        return names

    @classmethod
    def _category_embeddings(cls, points: pa.Table) -> dict[str, list[str]]:
        """Per category, the 2-D embeddings that hold values for it, in the table's column order.

        The analysis lays out t-SNE and UMAP only for some categories (``Embeddings(scope="flagged")``:
        all samples and the categories with a flagged cluster); the others' columns are null there.
        """
        methods = cls._embeddings(points)
        if not methods or points.num_rows == 0:
            return {}
        names, codes = np.unique(points.column(CATEGORY).to_numpy(zero_copy_only=False), return_inverse=True)
        found: dict[str, list[str]] = {str(name): [] for name in names}
        for method in methods:
            x_name, y_name = embedding_columns(method)
            x = np.asarray(points.column(x_name).to_numpy(zero_copy_only=False), dtype=np.float64)
            y = np.asarray(points.column(y_name).to_numpy(zero_copy_only=False), dtype=np.float64)
            placed = np.bincount(codes[np.isfinite(x) & np.isfinite(y)], minlength=names.size)
            for name, count in zip(names, placed):
                if count:
                    found[str(name)].append(method)
        return found

    @staticmethod
    def _clusterings(points: pa.Table) -> list[str]:
        return [c[len(CLUSTER_COLUMN_PREFIX) :] for c in points.column_names if c.startswith(CLUSTER_COLUMN_PREFIX)]

    @staticmethod
    def _grid_shape(clusters: pa.Table) -> list[int] | None:
        raw = (clusters.schema.metadata or {}).get(lrp_store.META_GRID_SHAPE)
        try:
            shape = [int(v) for v in json.loads(raw)] if raw else None
        except (ValueError, TypeError):
            return None
        return shape if shape and len(shape) == 2 and min(shape) > 0 else None

    def analysis(self, run: str, epoch: int) -> dict[str, Any]:
        """Summary of an epoch's analysis: per category the spectrum, eigengap, clusterings and embeddings.

        ``embeddings`` lists every 2-D embedding of the epoch; each category's own ``embeddings`` only
        those that hold values for it (a category outside ``Embeddings(scope="flagged")`` has PCA only).
        """
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        analysis = self._analysis(run, store, info)
        points, clusters, spectrum = (analysis.tables[n] for n in (POINTS_TABLE, CLUSTERS_TABLE, SPECTRUM_TABLE))
        pairs = set(zip(clusters.column(CATEGORY).to_pylist(), clusters.column(CLUSTERING).to_pylist()))
        all_clusterings = self._clusterings(points)
        dims = self._spectral_dims(points)
        laid_out = self._category_embeddings(points)
        categories = []
        for row in spectrum.to_pylist():
            category = row[CATEGORY]
            categories.append(
                {
                    "category": category,
                    "class_index": row.get(CLASS_INDEX),
                    "class_name": row.get(CLASS_NAME),
                    "status": row.get(STATUS),
                    "message": row.get(MESSAGE),
                    "n_samples": row.get(N_SAMPLES),
                    "n_neighbors": row.get(N_NEIGHBORS),
                    "eigenvalues": [_finite_or_none(v) for v in row.get(EIGENVALUES) or []],
                    "eigengap_k": row.get(EIGENGAP_K),
                    "eigengap": _finite_or_none(row.get(EIGENGAP)),
                    "selected_clustering": row.get(SELECTED_CLUSTERING),
                    "clusterings": [c for c in all_clusterings if (category, c) in pairs],
                    "spectral_dims": dims.get(category, 0),
                    # what this category can be shown in: the epoch's list below may hold more
                    "embeddings": laid_out.get(category, []) + ([SPECTRAL_EMBEDDING] if dims.get(category) else []),
                }
            )
        return {
            "run": run,
            "epoch": info.epoch,
            "config_hash": analysis.config_hash,
            "embeddings": self._embeddings(points) + ([SPECTRAL_EMBEDDING] if dims else []),
            "clusterings": all_clusterings,
            "grid_shape": self._grid_shape(clusters),
            "embedding_config": self._embedding_config(points),
            "categories": categories,
        }

    @staticmethod
    def _embedding_config(points: pa.Table) -> dict[str, Any] | None:
        """Parameters of the analysis's embeddings step (perplexity, UMAP neighbours ...), from the table's config.

        The frontend names them under the scatter; None when the analysis did not record its config.
        """
        raw = (points.schema.metadata or {}).get(lrp_store.META_ANALYSIS_CONFIG)
        try:
            params = json.loads(raw)["pipeline"]["embeddings"]["params"] if raw else None
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(params, dict):
            return None
        return {str(k): v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}

    @staticmethod
    def _spectral_dims(points: pa.Table) -> dict[str, int]:
        if SPECTRAL not in points.column_names or points.num_rows == 0:
            return {}
        lengths = pc.list_value_length(points.column(SPECTRAL)).fill_null(0).to_numpy()
        categories = points.column(CATEGORY).to_numpy(zero_copy_only=False)
        dims = {}
        for category in np.unique(categories):
            values = lengths[categories == category]
            dims[str(category)] = int(values.min()) if values.size else 0
        return dims

    def embedding(
        self,
        run: str,
        epoch: int,
        category: str,
        method: str,
        x_dim: int,
        y_dim: int,
        clustering: str | None,
    ) -> Payload:
        """Points of a category in a 2-D embedding as binary columns.

        Columns: ``sample_id``, ``x``, ``y`` (float32), ``label``, ``prediction`` and, when a
        clustering is given, ``cluster`` (-1 noise, -2 where the clustering has no label).
        """
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        analysis = self._analysis(run, store, info)

        def make() -> Payload:
            rows = self._category_rows(run, analysis, info, category)
            points = analysis.tables[POINTS_TABLE]
            if method == SPECTRAL_EMBEDDING:
                dims = self._spectral_dims(points).get(category, 0)
                if max(x_dim, y_dim) >= dims:
                    raise BadArgument(
                        f"the spectral embedding of category {category!r} has {dims} dimensions (0 to {dims - 1}); "
                        f"got x={x_dim}, y={y_dim}"
                    )
                x = pc.list_element(rows.column(SPECTRAL), x_dim).to_numpy(zero_copy_only=False)
                y = pc.list_element(rows.column(SPECTRAL), y_dim).to_numpy(zero_copy_only=False)
            else:
                known = self._embeddings(points)
                if method not in known:
                    raise BadArgument(f"unknown embedding {method!r}; known: {known + [SPECTRAL_EMBEDDING]}")
                x_name, y_name = embedding_columns(method)
                x = rows.column(x_name).to_numpy(zero_copy_only=False)
                y = rows.column(y_name).to_numpy(zero_copy_only=False)
                placed = np.isfinite(np.asarray(x, dtype=np.float64)) & np.isfinite(np.asarray(y, dtype=np.float64))
                if x.size and not placed.any():
                    computed = self._category_embeddings(rows).get(category, [])
                    computed += [SPECTRAL_EMBEDDING] if self._spectral_dims(rows).get(category) else []
                    raise BadArgument(
                        f"embedding {method!r} was not computed for category {category!r} in epoch {info.epoch}: "
                        "by default the analysis lays out t-SNE and UMAP only for all samples and the categories "
                        "with a flagged cluster (`lrp-analyze --embeddings all` lays out every category); "
                        f"this category has {computed}"
                    )
            x = np.asarray(x, dtype=np.float32)
            y = np.asarray(y, dtype=np.float32)
            ids = rows.column(SAMPLE_ID).to_numpy()
            columns = {
                SAMPLE_ID: compact_int(ids),
                "x": x,
                "y": y,
                LABEL: compact_int(rows.column(LABEL).to_numpy()),
                PREDICTION: compact_int(rows.column(PREDICTION).to_numpy()),
            }
            if clustering is not None:
                known = self._clusterings(points)
                if clustering not in known:
                    raise BadArgument(f"unknown clustering {clustering!r}; known: {known}")
                labels = rows.column(cluster_column(clustering)).fill_null(-2).to_numpy()
                columns[CLUSTER] = compact_int(labels)
            finite = np.isfinite(x) & np.isfinite(y)
            bounds = (
                [float(x[finite].min()), float(x[finite].max()), float(y[finite].min()), float(y[finite].max())]
                if finite.any()
                else None
            )
            meta = {
                "run": run,
                "epoch": info.epoch,
                "category": category,
                "embedding": method,
                "x_dim": x_dim,
                "y_dim": y_dim,
                "clustering": clustering,
                "bounds": bounds,
                "ids_exact": bool(np.all(np.abs(ids) < _SAFE_INTEGER)) if ids.size else True,
            }
            return Payload(encode_columns(columns, meta))

        key = ("embedding", run, info.epoch, info.commit, analysis.config_hash, category, method, x_dim, y_dim)
        key += (clustering,)
        return self.cache.get_or_make(key, make)

    def _cluster_rows(self, run: str, analysis: _Analysis, info: EpochInfo, category: str, clustering: str) -> pa.Table:
        self._category_rows(run, analysis, info, category)  # validates the category
        known = self._clusterings(analysis.tables[POINTS_TABLE])
        if clustering not in known:
            raise BadArgument(f"unknown clustering {clustering!r}; known: {known}")
        return self._rows(analysis.tables[CLUSTERS_TABLE], **{CATEGORY: category, CLUSTERING: clustering})

    def clusters(self, run: str, epoch: int, category: str, clustering: str) -> dict[str, Any]:
        """The clusters of one clustering of a category: size, purity, indicators, flags, lineage."""
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        analysis = self._analysis(run, store, info)
        rows = self._cluster_rows(run, analysis, info, category, clustering)
        keep = [
            CLUSTER, SIZE, PURITY, MAJORITY_LABEL, ACCURACY, CONCENTRATION, BORDER_SHARE, CORNER_SHARE,
            COMPACTNESS, EIGENGAP, FLAGGED, FLAG_REGION, FLAG_REASON, TRACK, PREVIOUS_CLUSTER, MATCH_JACCARD, EVENT,
        ]  # fmt: skip
        result = []
        for row in rows.to_pylist():
            entry = {name: row.get(name) for name in keep}
            for name in _FLOAT_INDICATORS:
                entry[name] = _finite_or_none(entry[name])
            entry[TYPICAL] = list(row.get(TYPICAL) or [])[:MAX_LISTED_SAMPLES]
            entry[ATYPICAL] = list(row.get(ATYPICAL) or [])[:MAX_LISTED_SAMPLES]
            entry["has_prototype"] = bool(row.get(PROTOTYPE))
            result.append(entry)
        result.sort(key=lambda entry: entry[CLUSTER])
        return {
            "run": run,
            "epoch": info.epoch,
            "category": category,
            "clustering": clustering,
            "grid_shape": self._grid_shape(analysis.tables[CLUSTERS_TABLE]),
            "clusters": result,
        }

    def prototype_png(
        self, run: str, epoch: int, category: str, clustering: str, cluster: int, cmap: str
    ) -> bytes:
        """A cluster's prototype (mean L1-normalised map on the analysis grid), colour-mapped."""
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        analysis = self._analysis(run, store, info)

        def make() -> bytes:
            rows = self._cluster_rows(run, analysis, info, category, clustering)
            rows = self._rows(rows, **{CLUSTER: cluster})
            if rows.num_rows == 0:
                raise NotFound(f"no cluster {cluster} in clustering {clustering!r} of category {category!r}")
            values = np.asarray(rows.column(PROTOTYPE)[0].as_py() or [], dtype=np.float64)
            shape = self._grid_shape(analysis.tables[CLUSTERS_TABLE])
            if shape is None or shape[0] * shape[1] != values.size:
                side = math.isqrt(values.size)
                if values.size == 0 or side * side != values.size:
                    raise NotFound(
                        f"the prototype of cluster {cluster} has {values.size} values, which fit no grid shape "
                        f"(table metadata: {shape}); the analysis table is damaged"
                    )
                shape = [side, side]
            grid = np.nan_to_num(values.reshape(shape), nan=0.0, posinf=0.0, neginf=0.0)
            return lrp_image.to_png_bytes(lrp_image.heatmap(grid, cmap=cmap))

        key = ("prototype", run, info.epoch, info.commit, analysis.config_hash, category, clustering, cluster, cmap)
        return self.cache.get_or_make(key, make)

    def lineage(self, run: str, category: str, clustering: str) -> dict[str, Any]:
        """Clusters of one clustering over all analysed epochs: size, track, event, sources, flags."""
        store = self._store(run)
        epochs, missing = [], []
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                analysis = self._analysis(run, store, info)
            except NotFound:
                missing.append(info.epoch)
                continue
            where = {CATEGORY: category, CLUSTERING: clustering}
            if self._rows(analysis.tables[CLUSTERS_TABLE], **where).num_rows == 0:  # points are not read here
                missing.append(info.epoch)
                continue
            sources: dict[int | None, list[int]] = {}
            vanished = []
            for row in self._rows(analysis.tables[LINEAGE_TABLE], **where).to_pylist():
                if row.get(CLUSTER) is None:
                    vanished.append({"previous_cluster": row.get(PREVIOUS_CLUSTER), TRACK: row.get(TRACK)})
                else:
                    sources[row[CLUSTER]] = list(row.get(SOURCES) or [])
            clusters = []
            for row in self._rows(analysis.tables[CLUSTERS_TABLE], **where).to_pylist():
                clusters.append(
                    {
                        CLUSTER: row[CLUSTER],
                        SIZE: row.get(SIZE),
                        PURITY: _finite_or_none(row.get(PURITY)),
                        TRACK: row.get(TRACK),
                        EVENT: row.get(EVENT),
                        PREVIOUS_CLUSTER: row.get(PREVIOUS_CLUSTER),
                        MATCH_JACCARD: _finite_or_none(row.get(MATCH_JACCARD)),
                        SOURCES: sources.get(row[CLUSTER], []),
                        FLAGGED: bool(row.get(FLAGGED)),
                        FLAG_REASON: row.get(FLAG_REASON),
                    }
                )
            clusters.sort(key=lambda entry: entry[CLUSTER])
            epochs.append({"epoch": info.epoch, "clusters": clusters, "vanished": vanished})
        if not epochs:
            raise NotFound(
                f"no analysed epoch of run {run!r} has clustering {clustering!r} for category {category!r}"
            )
        return {"run": run, "category": category, "clustering": clustering, "epochs": epochs, "missing": missing}

    # ------------------------------------------------------------------------------ findings
    # The findings table's name and columns are the store contract's (lrp_lightning.store.FINDINGS_SCHEMA).

    def _epoch_findings(self, run: str, store: RunStore, info: EpochInfo) -> list[dict[str, Any]] | None:
        """The rows of an epoch's ``findings`` table as dicts, or None when the epoch has no current one.

        None means "no analysis" or "an analysis that predates findings" (no such table for this
        configuration); an epoch whose table exists but cannot be read raises :class:`NotFound`.
        """
        try:
            analysis = self._analysis(run, store, info)
        except NotFound:
            return None

        def make() -> _Rows:
            try:
                table = store.read_analysis_table(
                    info.epoch, lrp_store.FINDINGS_TABLE, config_hash=analysis.config_hash
                )
            except lrp_store.AnalysisNotFoundError:
                return _Rows(None)
            except (StoreError, OSError, pa.ArrowException) as exc:
                raise self._unreadable(f"the findings of epoch {info.epoch} of run {run!r}", exc) from exc
            missing = [name for name in _REQUIRED_FINDING_COLUMNS if name not in table.column_names]
            if missing:
                raise NotFound(
                    f"the findings table of epoch {info.epoch} of run {run!r} lacks columns {missing}; "
                    "analyse the run again with this version (lrp-analyze)"
                )
            return _Rows(table.to_pylist())

        key = ("findings", run, info.epoch, info.commit, analysis.config_hash)
        return self.cache.get_or_make(key, make).rows

    def _category_names(self, run: str, store: RunStore, info: EpochInfo) -> dict[str, str]:
        """Category → words ("digit 3", "all samples"), from the epoch's spectrum table, else the manifest."""
        names = {lrp_store.CATEGORY_ALL: "all samples"}
        class_names = self._read(f"run {run!r}", lambda: store.manifest).get("class_names") or []
        for index, name in enumerate(class_names):
            names[lrp_store.class_category(index)] = str(name)
        try:
            spectrum = self._analysis(run, store, info).tables[SPECTRUM_TABLE]
        except NotFound:
            return names
        for category, name, index in zip(
            spectrum.column(CATEGORY).to_pylist(),
            spectrum.column(CLASS_NAME).to_pylist(),
            spectrum.column(CLASS_INDEX).to_pylist(),
        ):
            if name:
                names[category] = str(name)
            elif index is not None and category not in names:
                names[category] = f"class {index}"
        return names

    def findings(self, run: str) -> dict[str, Any]:
        """The run's findings with their lineage over the analysed epochs (see :func:`findings_json`).

        An epoch whose findings table cannot be read is left out and listed under ``unreadable``
        (``{epoch, error}``); a run without analysis, or analysed before findings existed, has none.
        """
        store = self._store(run)
        per_epoch: list[tuple[int, list[dict[str, Any]]]] = []
        without: list[int] = []
        unreadable: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                rows = self._epoch_findings(run, store, info)
            except NotFound as exc:  # one damaged table leaves the other epochs' findings readable
                unreadable.append({"epoch": info.epoch, "error": str(exc)})
                continue
            if rows is None:
                if self._analysis_state(store, info)[0] is not None:
                    without.append(info.epoch)  # analysed before findings existed
                continue
            per_epoch.append((info.epoch, rows))
            if rows:
                names = self._category_names(run, store, info)
        return {**findings_json(run, per_epoch, without, names), "unreadable": unreadable}

    def finding_prototype_png(self, run: str, finding_id: str, epoch: int, cmap: str) -> bytes:
        """Mean relevance map of a finding's members in one epoch (each map L1-normalised), colour-mapped."""
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        rows = self._epoch_findings(run, store, info)
        if rows is None:
            raise NotFound(f"epoch {epoch} of run {run!r} has no findings table; run `lrp-analyze` on the run")
        row = next((r for r in rows if r[lrp_store.FINDING_ID] == finding_id), None)
        if row is None:
            known = [r[lrp_store.FINDING_ID] for r in rows]
            raise NotFound(f"no finding {finding_id!r} in epoch {epoch} of run {run!r}; its findings: {known[:20]}")
        members = [int(i) for i in row[lrp_store.MEMBER_IDS]]
        if not members:
            raise NotFound(f"finding {finding_id!r} has no members in epoch {epoch} of run {run!r}")

        def make() -> bytes:
            _, maps = self._read(f"epoch {epoch} of run {run!r}", lambda: store.heatmaps(info.epoch, members))
            maps = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            # every member weighs the same, however much relevance its map holds (as the cluster prototypes)
            scale = np.abs(maps).reshape(len(maps), -1).sum(axis=1)
            mean = (maps / np.where(scale > 0, scale, 1.0)[:, None, None]).mean(axis=0)
            return lrp_image.to_png_bytes(lrp_image.heatmap(mean, cmap=cmap))

        analysis = self._analysis(run, store, info)
        key = ("finding-png", run, info.epoch, info.commit, analysis.config_hash, finding_id, cmap)
        return self.cache.get_or_make(key, make)


@dataclass
class _Rows:
    """A cached table read as rows; ``rows`` None when the table does not exist."""

    rows: list[dict[str, Any]] | None

    @property
    def nbytes(self) -> int:
        return 256 * (len(self.rows) if self.rows else 1)


_REQUIRED_FINDING_COLUMNS = (
    lrp_store.FINDING_ID,
    lrp_store.CATEGORY,
    lrp_store.FINDING_KIND,
    lrp_store.FINDING_REGION,
    lrp_store.FIRST_EPOCH,
    lrp_store.EPOCHS_SEEN,
    lrp_store.MEMBER_IDS,
    lrp_store.FINDING_REASON,
)
"""Columns of the findings table that the plugin cannot do without (the others may be absent)."""


def findings_json(
    run: str,
    per_epoch: Sequence[tuple[int, Sequence[Mapping[str, Any]]]],
    without_findings: Sequence[int],
    category_names: Mapping[str, str],
) -> dict[str, Any]:
    """The ``/findings`` answer from the ``findings`` rows of each analysed epoch (the one place that reads columns).

    Parameters
    ----------
    run : str
    per_epoch : sequence of (epoch, rows)
        Each epoch that has a findings table, ascending, with its rows as dicts of the table's columns.
    without_findings : sequence of int
        Analysed epochs whose analysis predates findings (no findings table).
    category_names : mapping of str to str
        Category → words.

    Returns
    -------
    dict
        ``{"run", "epochs": [epochs with a findings table], "without_findings": [...], "ids_exact",
        "findings": [...]}``; each finding: ``finding_id``, ``category``, ``category_name``, ``kind``,
        ``region``, ``region_detail``, ``first_epoch``, ``last_epoch``, ``epochs_seen`` (from the
        last epoch's row), the last epoch's ``n_members``, ``member_ids``, ``strength``, ``share``,
        ``rest_share``, ``input_spread``, ``p_value``, ``q_value``, ``clusters`` and ``reason``, and
        ``history``: one ``{epoch, n_members, strength, share, rest_share, q_value}`` per epoch the
        finding has a row in. Ordered: seen most recently first, then by q value, then by strength.
    """
    history: dict[str, list[dict[str, Any]]] = {}
    last: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for epoch, rows in per_epoch:
        for row in rows:
            finding_id = row[lrp_store.FINDING_ID]
            history.setdefault(finding_id, []).append(
                {
                    "epoch": epoch,
                    "n_members": len(row[lrp_store.MEMBER_IDS]),
                    "strength": _finite_or_none(row.get(lrp_store.FINDING_STRENGTH)),
                    "share": _finite_or_none(row.get(lrp_store.FINDING_SHARE)),
                    "rest_share": _finite_or_none(row.get(lrp_store.REST_SHARE)),
                    "q_value": _finite_or_none(row.get(lrp_store.Q_VALUE)),
                }
            )
            last[finding_id] = (epoch, row)
    findings = []
    exact = True
    for finding_id, (epoch, row) in last.items():
        members = [int(i) for i in row[lrp_store.MEMBER_IDS]]
        exact = exact and all(abs(i) < _SAFE_INTEGER for i in members)
        category = row[lrp_store.CATEGORY]
        findings.append(
            {
                "finding_id": finding_id,
                "category": category,
                "category_name": category_names.get(category, category),
                "kind": row[lrp_store.FINDING_KIND],
                "region": row[lrp_store.FINDING_REGION],
                "region_detail": row.get(lrp_store.FINDING_REGION_DETAIL),
                "first_epoch": int(row[lrp_store.FIRST_EPOCH]),
                "last_epoch": epoch,
                "epochs_seen": [int(e) for e in row[lrp_store.EPOCHS_SEEN]],
                "n_members": len(members),
                "member_ids": members,
                "strength": _finite_or_none(row.get(lrp_store.FINDING_STRENGTH)),
                "share": _finite_or_none(row.get(lrp_store.FINDING_SHARE)),
                "rest_share": _finite_or_none(row.get(lrp_store.REST_SHARE)),
                "input_spread": _finite_or_none(row.get(lrp_store.INPUT_SPREAD)),
                "p_value": _finite_or_none(row.get(lrp_store.P_VALUE)),
                "q_value": _finite_or_none(row.get(lrp_store.Q_VALUE)),
                "clusters": list(row.get(lrp_store.FINDING_CLUSTERS) or []),
                "reason": row[lrp_store.FINDING_REASON],
                "history": history[finding_id],
            }
        )
    findings.sort(
        key=lambda f: (-f["last_epoch"], f["q_value"] if f["q_value"] is not None else 1.0, -(f["strength"] or 0.0))
    )
    return {
        "run": run,
        "epochs": [epoch for epoch, _ in per_epoch],
        "without_findings": list(without_findings),
        "ids_exact": exact,
        "findings": findings,
    }
