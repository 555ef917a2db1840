"""The on-disk contract of an lrp-lightning run: manifest, probe set, attributions, analysis tables.

This module is the single owner of the format. The callback writes through it; analysis, the CLI and
the TensorBoard plugin read through it. It imports only the standard library, NumPy and PyArrow, so
reading a run is cheap (no torch, no Lightning).

Layout
------
A run is the logger's ``log_dir``; everything of ours lives below ``<run>/plugins/lrp/``::

    manifest.json                          format version, run metadata, the list of complete epochs
    probe.parquet                          one row per probe sample (PROBE_SCHEMA)
    attributions/epoch=000003/part-00000.parquet    one row per (sample, epoch) (ATTRIBUTION_SCHEMA),
    attributions/epoch=000003/part-00001.parquet    one part per rank, zstd
    attributions/epoch=000003/_commit.json          identity of this version of the epoch
    analysis/epoch=000003/<name>.parquet   analysis tables, tagged with the config hash that made them

Relevance maps are stored channel-summed as float16 (little-endian, row-major), one ``binary`` value
of ``H * W * 2`` bytes per row; ``heatmap_shape`` in the manifest gives ``(H, W)``. Use
:func:`decode_relevance` (or :meth:`RunStore.heatmaps`) to get ``float32`` arrays back; the values
round-trip bit-exactly, NaN and infinities included.

Writing an epoch (one writer process per rank, rank 0 commits)
---------------------------------------------------------------
1. Every rank calls :meth:`RunStore.write_part`, which writes
   ``attributions/.staging-epoch=000003-step=<global_step>/part-<rank>.parquet`` through a temp file,
   ``fsync`` and ``os.replace``. Every rank knows the global step, so they agree on the directory
   without communicating. A rank without samples still writes an (empty) part.
2. The caller synchronises the ranks (a barrier).
3. Rank 0 calls :meth:`RunStore.commit_epoch`, which

   a. checks that parts ``0 .. world_size - 1`` exist and are readable Parquet with compatible
      schemas, removes other files from the staging directory, and counts the unique sample ids;
   b. writes ``_commit.json`` into the staging directory (atomically) with a fresh random commit id;
   c. if ``epoch=000003/`` exists (a re-run after resuming), renames it to
      ``.replaced-epoch=000003-<its commit id>/``;
   d. renames the staging directory to ``epoch=000003/``;
   e. rewrites ``manifest.json`` atomically (temp file in the same directory, ``fsync``,
      ``os.replace``, ``fsync`` of the directory) with the epoch's entry, which names the commit id;
   f. deletes the moved-aside previous version and stale staging directories of this epoch.

Why readers never see a partial epoch or a mix
----------------------------------------------
Readers look only at epochs listed in the manifest, and an entry names a commit id. The files of
commit ``c`` are read from ``epoch=NNNNNN/`` if its ``_commit.json`` says ``c``, otherwise from
``.replaced-epoch=NNNNNN-c/``. A directory is only ever created complete (by a rename, after its
parts and marker were written and synced) and is never modified afterwards, only renamed or deleted;
commit ids are never reused, and a version that left ``epoch=NNNNNN/`` never comes back. Crash
points:

* during 1-b: only the staging directory is touched; the manifest still lists the previous version
  (or nothing) in ``epoch=NNNNNN/``. Leftover staging directories and temp files start with ``.``
  and are ignored by readers (and by ``pyarrow.dataset``); the next commit of that epoch removes
  them. A re-run with the same global step overwrites each rank's part; parts of ranks beyond the
  current ``world_size`` are removed in 3-a.
* between c and d: ``epoch=NNNNNN/`` is missing, the manifest names the old commit, which is read
  from ``.replaced-epoch=NNNNNN-<old>/``.
* between d and e: ``epoch=NNNNNN/`` holds the new version, whose marker does not match the
  manifest, so readers still read the old version from its moved-aside directory.
* between e and f: the manifest names the new version in ``epoch=NNNNNN/``; the moved-aside
  directory is unreferenced garbage, deleted by the next commit of that epoch or by
  :meth:`RunStore.create`.

:meth:`RunStore.create` on an existing store (a resumed run) finishes an interrupted commit: an
``epoch=NNNNNN/`` directory whose marker differs from the manifest is complete (it was renamed into
place after step b), so its entry is written to the manifest (roll forward) before unreferenced
moved-aside directories are deleted.

A reader opens all part files of a version before reading any, and checks the marker again after
opening them: an open file stays readable after a concurrent rename or delete (POSIX), so a read
either sees one version completely or retries with a fresh manifest.

Versioning
----------
``format_version`` is ``"major.minor"``. Minor versions only add (columns, manifest keys); a reader
reads every minor version of its major version. A different major version is refused with
:class:`UnsupportedFormatError`. Writing into a store of a newer minor version is refused, since it
could drop what the newer version added.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "ANALYSIS_DIR",
    "ATTRIBUTIONS_DIR",
    "ATTRIBUTION_COLUMNS",
    "ATTRIBUTION_SCHEMA",
    "COMMIT_MARKER",
    "COMPRESSION",
    "DATASET_INDEX",
    "EPOCH",
    "FORMAT_VERSION",
    "GLOBAL_STEP",
    "LABEL",
    "MANIFEST_FILE",
    "PREDICTION",
    "PROBABILITY",
    "PROBE_COLUMNS",
    "PROBE_FILE",
    "PROBE_SCHEMA",
    "RELEVANCE",
    "RELEVANCE_SUM",
    "RUN_METADATA_KEYS",
    "SAMPLE_ID",
    "SCORE",
    "STORE_SUBDIR",
    "TARGET",
    "THUMBNAIL",
    "AnalysisNotFoundError",
    "CorruptFileError",
    "EpochInfo",
    "EpochNotFoundError",
    "IncompatibleRunError",
    "PartWriter",
    "RunStore",
    "SampleNotFoundError",
    "SchemaError",
    "StoreError",
    "StoreNotFoundError",
    "UnsupportedFormatError",
    "decode_relevance",
    "encode_relevance",
    "epoch_dirname",
    "find_runs",
    "make_attribution_table",
    "make_probe_table",
    "part_filename",
]

# --------------------------------------------------------------------------------------------------
# Format constants: the one place that names files, columns and types.
# --------------------------------------------------------------------------------------------------

FORMAT_VERSION = "1.0"
"""Store format written by this library, ``"major.minor"``."""

STORE_SUBDIR = Path("plugins", "lrp")
"""Where our files live inside a run directory (TensorBoard's convention for plugin files)."""

MANIFEST_FILE = "manifest.json"
PROBE_FILE = "probe.parquet"
ATTRIBUTIONS_DIR = "attributions"
ANALYSIS_DIR = "analysis"
COMMIT_MARKER = "_commit.json"
COMPRESSION = "zstd"

ROW_GROUP_BYTES = 32 * 2**20
"""Target size of one row group of an attribution part; the unit of streaming reads."""
MAX_ROW_GROUP_ROWS = 65_536

SAMPLE_ID = "sample_id"
EPOCH = "epoch"
GLOBAL_STEP = "global_step"
LABEL = "label"
PREDICTION = "prediction"
TARGET = "target"
SCORE = "score"
PROBABILITY = "probability"
RELEVANCE_SUM = "relevance_sum"
RELEVANCE = "relevance"
DATASET_INDEX = "dataset_index"
THUMBNAIL = "thumbnail"

ATTRIBUTION_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(EPOCH, pa.int32(), nullable=False),
        pa.field(GLOBAL_STEP, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(PREDICTION, pa.int64(), nullable=False),
        pa.field(TARGET, pa.int64(), nullable=False),
        pa.field(SCORE, pa.float32(), nullable=False),
        pa.field(PROBABILITY, pa.float32(), nullable=False),
        pa.field(RELEVANCE_SUM, pa.float32(), nullable=False),
        pa.field(
            RELEVANCE,
            pa.binary(),
            nullable=False,
            metadata={b"encoding": b"float16 little-endian, row-major; heatmap_shape in manifest.json"},
        ),
    ]
)
"""Required columns of an attribution part, in order. Extra numeric columns may follow."""
ATTRIBUTION_COLUMNS: tuple[str, ...] = tuple(ATTRIBUTION_SCHEMA.names)

PROBE_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(DATASET_INDEX, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(THUMBNAIL, pa.binary(), nullable=True, metadata={b"encoding": b"PNG"}),
    ]
)
"""Required columns of ``probe.parquet``, in order. User metadata columns of any type may follow."""
PROBE_COLUMNS: tuple[str, ...] = tuple(PROBE_SCHEMA.names)

RUN_METADATA_KEYS = (
    "model_class",
    "composite",
    "canonizers",
    "input_shape",
    "heatmap_shape",
    "class_names",
    "target_mode",
    "probe",
    "metadata",
)
"""Manifest keys that describe a run; resuming into a store requires all of them to be equal."""

_META_FORMAT = b"lrp.format_version"
_META_HEATMAP_SHAPE = b"lrp.heatmap_shape"
_META_CONFIG_HASH = b"lrp.config_hash"
_META_SOURCE_COMMIT = b"lrp.source_commit"

_FLOAT16_MAX = 65504.0
_OPEN_RETRIES = 20
_EPOCH_DIR_RE = re.compile(r"epoch=(\d+)")
_ASIDE_RE = re.compile(r"\.replaced-epoch=(\d+)-([0-9A-Za-z]+)")
_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of every error raised by :mod:`lrp_lightning.store`."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No manifest where a store was expected."""


class UnsupportedFormatError(StoreError):
    """The store was written in a format version this library cannot read (or write)."""


class IncompatibleRunError(StoreError):
    """Writing would mix two different runs in one store."""


class CorruptFileError(StoreError):
    """A file of the store cannot be parsed."""


class SchemaError(StoreError, ValueError):
    """Data passed for writing does not match the store's schema or shapes."""


class EpochNotFoundError(StoreError, LookupError):
    """The epoch is not a complete epoch of the store."""


class SampleNotFoundError(StoreError, LookupError):
    """A requested sample id is not in the epoch(s) read."""


class AnalysisNotFoundError(StoreError, LookupError):
    """No current analysis table of that name (missing, stale, or made with another config)."""


# --------------------------------------------------------------------------------------------------
# Small value types and naming helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochInfo:
    """One complete epoch as listed in the manifest.

    Attributes
    ----------
    epoch : int
        Training epoch (0-based, Lightning's ``current_epoch``).
    global_step : int
        Optimizer step at which the epoch was explained.
    rows : int
        Number of unique samples in the epoch (duplicates across ranks counted once).
    files : tuple of str
        Part files, relative to the store directory, in rank order.
    commit : str
        Identity of this version of the epoch; changes when the epoch is written again.
    """

    epoch: int
    global_step: int
    rows: int
    files: tuple[str, ...]
    commit: str

    def to_json(self) -> dict[str, Any]:
        """Return the manifest entry of this epoch."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rows": self.rows,
            "files": list(self.files),
            "commit": self.commit,
        }


def epoch_dirname(epoch: int) -> str:
    """Return the directory name of an epoch, e.g. ``epoch=000003``."""
    return f"epoch={epoch:06d}"


def part_filename(rank: int) -> str:
    """Return the file name of a rank's part, e.g. ``part-00001.parquet``."""
    return f"part-{rank:05d}.parquet"


def _library_version() -> str:
    try:
        from lrp_lightning import __version__
    except ImportError:  # pragma: no cover - only when the module is used outside the package
        return "unknown"
    return str(__version__)


def _parse_version(value: Any, source: Path) -> tuple[int, int]:
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+", value):
        raise UnsupportedFormatError(
            f"{source} has format_version {value!r}, expected 'major.minor' such as {FORMAT_VERSION!r}; "
            "the file was not written by lrp-lightning or is damaged."
        )
    major, minor = value.split(".")
    return int(major), int(minor)


_OWN_VERSION = tuple(int(part) for part in FORMAT_VERSION.split("."))


def _check_readable(manifest: Mapping[str, Any], source: Path) -> None:
    major, _ = _parse_version(manifest.get("format_version"), source)
    if major != _OWN_VERSION[0]:
        raise UnsupportedFormatError(
            f"{source} uses store format {manifest['format_version']} (written by lrp-lightning "
            f"{manifest.get('library_version', 'unknown')}), but this lrp-lightning "
            f"({_library_version()}) reads format {_OWN_VERSION[0]}.x only (up to {FORMAT_VERSION}). "
            "Upgrade lrp-lightning (pip install --upgrade lrp-lightning) to read this run."
        )


def _check_writable(manifest: Mapping[str, Any], source: Path) -> None:
    _check_readable(manifest, source)
    version = _parse_version(manifest["format_version"], source)
    if version > _OWN_VERSION:
        raise UnsupportedFormatError(
            f"{source} uses store format {manifest['format_version']}, newer than format "
            f"{FORMAT_VERSION} written by this lrp-lightning ({_library_version()}); writing into it "
            "could lose what the newer version stores. Upgrade lrp-lightning to resume this run, or "
            "write to another directory."
        )


def _check_index(value: Any, name: str, minimum: int = 0) -> int:
    try:
        number = int(value) if isinstance(value, np.integer) else value
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def _check_heatmap_shape(shape: Any) -> tuple[int, int]:
    try:
        values = tuple(int(v) for v in shape)
    except TypeError:
        values = ()
    if len(values) != 2 or min(values) < 1:
        raise SchemaError(
            f"heatmap_shape must be (height, width) of the channel-summed relevance map, got {shape!r}"
        )
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Atomic file operations
# --------------------------------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` through ``write(tmp_path)``, fsync, then ``os.replace`` into place."""
    tmp = _tmp_path(path)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(data, indent=2) + "\n"
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _atomic_write_parquet(table: pa.Table, path: Path, **options: Any) -> None:
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression=COMPRESSION, **options))


def _move_dir(src: Path, dst: Path) -> None:
    if dst.exists():  # os.replace would silently replace an empty directory
        raise StoreError(f"cannot move {src} to {dst}: the destination exists")
    os.replace(src, dst)
    _fsync_dir(dst.parent)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _staging_path(store_dir: Path, epoch: int, global_step: int) -> Path:
    return store_dir / ATTRIBUTIONS_DIR / f".staging-{epoch_dirname(epoch)}-step={global_step}"


class PartWriter:
    """Stream one rank's attribution rows of an epoch into its staged part, a few rows at a time.

    The same as one :meth:`RunStore.write_part` call with all rows, but the rows arrive in chunks
    (:meth:`write`), each written as Parquet row groups, so they need not be held in memory. The rows go
    to a temp file (name starting with ``.``) in the epoch's staging directory; :meth:`close` syncs it and
    renames it to the rank's part, which, like :meth:`RunStore.write_part`'s, stays invisible to readers
    until rank 0 calls :meth:`RunStore.commit_epoch`. A crash or :meth:`abort` leaves only the temp file,
    which the next commit of the epoch removes. No manifest is needed yet (rank 0 may create the store
    later); the caller checks that ``heatmap_shape`` is the store's before committing.

    Parameters
    ----------
    path : path
        Run directory or ``plugins/lrp`` directory of the store, as for :meth:`RunStore.create`.
    epoch, global_step : int
        As for :meth:`RunStore.write_part`.
    heatmap_shape : (int, int)
        ``(H, W)`` of the relevance maps.
    rank : int, default 0
        Global rank of the writer.
    row_group_size : int, optional
        Most rows per row group. Default: about 32 MiB of maps per row group.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        epoch: int,
        global_step: int,
        *,
        heatmap_shape: Sequence[int],
        rank: int = 0,
        row_group_size: int | None = None,
    ) -> None:
        self.epoch = _check_index(epoch, "epoch")
        self.global_step = _check_index(global_step, "global_step")
        self.rank = _check_index(rank, "rank")
        self.heatmap_shape = _check_heatmap_shape(heatmap_shape)
        self.row_group_size = row_group_size or _rows_per_group(self.heatmap_shape)
        self.path = _staging_path(_store_dir_for_create(Path(path)), self.epoch, self.global_step) / part_filename(
            self.rank
        )
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._closed = False

    def write(self, table: pa.Table) -> None:
        """Append rows (see :func:`make_attribution_table`); every chunk must have the same columns."""
        if self._closed:
            raise StoreError(f"the part writer of {self.path} is closed")
        table = _conform_attribution_table(table, self.heatmap_shape, self.epoch, self.global_step)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = _tmp_path(self.path)
            small = [name for name in table.column_names if name != RELEVANCE]
            self._writer = pq.ParquetWriter(
                self._tmp,
                table.schema,
                compression=COMPRESSION,
                use_dictionary=small,
                write_statistics=small,
            )
        elif not table.schema.equals(self._writer.schema, check_metadata=False):
            raise SchemaError(
                f"rows for {self.path} have columns {table.schema.names} of other types than the rows "
                f"written before ({self._writer.schema.names})"
            )
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def close(self) -> Path:
        """Finish the part: sync it and move it into the staging directory. Returns the staged part.

        Raises
        ------
        StoreError
            If no rows were written (write an empty part with :meth:`RunStore.write_part`).
        """
        if self._writer is None or self._tmp is None:
            raise StoreError(f"no rows were written for {self.path}; stage an empty part with write_part")
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
                _fsync_file(self._tmp)
                os.replace(self._tmp, self.path)
            except BaseException:
                self._tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop the rows written so far (nothing is staged)."""
        self._closed = True
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                if self._tmp is not None:
                    self._tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Parquet reading helpers
# --------------------------------------------------------------------------------------------------


def _corrupt(path: Path, exc: BaseException) -> CorruptFileError:
    return CorruptFileError(
        f"{path} is not a readable Parquet file ({exc}). It was damaged after writing (lrp-lightning "
        "writes files atomically); delete the run's plugins/lrp directory or re-run the attribution "
        "into another directory."
    )


class _Parquet:
    """An open Parquet file; open handles survive concurrent renames and deletes (POSIX)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source = pa.OSFile(str(path), "r")  # FileNotFoundError propagates: a concurrent commit
        try:
            self.file = pq.ParquetFile(self._source)
        except (pa.ArrowException, OSError) as exc:
            self._source.close()
            raise _corrupt(path, exc) from exc

    @property
    def names(self) -> list[str]:
        return self.file.schema_arrow.names

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            return self.file.read(columns=None if columns is None else list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise _corrupt(self.path, exc) from exc

    def read_row_group(self, index: int, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            return self.file.read_row_group(index, columns=None if columns is None else list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise _corrupt(self.path, exc) from exc

    def close(self) -> None:
        self.file.close()
        self._source.close()


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    handle = _Parquet(path)
    try:
        return handle.read(columns)
    finally:
        handle.close()


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / COMMIT_MARKER).read_text(encoding="utf-8"))
        _entry_from_json(data, directory / COMMIT_MARKER)
    except (OSError, ValueError, StoreError):
        return None
    return data


def _entry_from_json(data: Any, source: Path) -> EpochInfo:
    try:
        files = data["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError("files must be a list of str")
        info = EpochInfo(
            epoch=_check_index(data["epoch"], "epoch"),
            global_step=_check_index(data["global_step"], "global_step"),
            rows=_check_index(data["rows"], "rows"),
            files=tuple(files),
            commit=str(data["commit"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"{source} has a malformed epoch entry {data!r} ({exc}); the file was edited by hand or is "
            "damaged."
        ) from exc
    return info


# --------------------------------------------------------------------------------------------------
# Relevance encoding and table builders
# --------------------------------------------------------------------------------------------------


def encode_relevance(maps: Any) -> pa.ChunkedArray:
    """Encode channel-summed relevance maps as the ``relevance`` column.

    Parameters
    ----------
    maps : array_like of shape (N, H, W)
        Floating-point maps (float16, float32 or float64; NaN and inf allowed). Values outside the
        float16 range become ±inf, with a :class:`RuntimeWarning`.

    Returns
    -------
    pyarrow.ChunkedArray
        ``binary`` values of ``H * W * 2`` bytes each (float16, little-endian, row-major).

    Raises
    ------
    SchemaError
        If ``maps`` is not a 3-D floating-point array.
    """
    array = np.asarray(maps)
    if array.dtype.kind != "f":
        raise SchemaError(
            f"relevance maps must be floating point (float16, float32 or float64), got dtype {array.dtype}"
        )
    if array.ndim != 3:
        hint = " Sum over the channel axis first: relevance.sum(axis=1)." if array.ndim == 4 else ""
        raise SchemaError(
            f"relevance maps must have shape (N, height, width), got shape {array.shape}.{hint}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        half = np.ascontiguousarray(array, dtype="<f2")
    if array.dtype.itemsize > 2:
        overflowed = int(np.count_nonzero(np.isinf(half) & np.isfinite(array)))
        if overflowed:
            warnings.warn(
                f"{overflowed} relevance values exceed the float16 range (|x| > {_FLOAT16_MAX:g}) and are "
                "stored as +-inf; relevance_sum keeps the exact sums. Normalise the relevance if this "
                "is unexpected.",
                RuntimeWarning,
                stacklevel=2,
            )
    n, height, width = half.shape
    nbytes = height * width * 2
    rows_per_chunk = max(1, (2**31 - 1) // nbytes)  # binary offsets are int32
    flat = half.reshape(n, height * width).view(np.uint8)
    chunks = []
    for start in range(0, n, rows_per_chunk):
        block = np.ascontiguousarray(flat[start : start + rows_per_chunk])
        count = block.shape[0]
        offsets = np.arange(count + 1, dtype=np.int32) * np.int32(nbytes)
        chunks.append(
            pa.Array.from_buffers(
                pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(block.reshape(-1))]
            )
        )
    return pa.chunked_array(chunks, type=pa.binary())


def decode_relevance(column: pa.Array | pa.ChunkedArray, heatmap_shape: Sequence[int]) -> np.ndarray:
    """Decode a ``relevance`` column into ``float32`` maps of shape ``(N, H, W)``.

    Parameters
    ----------
    column : pyarrow.Array or pyarrow.ChunkedArray
        The ``relevance`` column as read from an attribution table.
    heatmap_shape : sequence of int
        ``(H, W)``, e.g. :attr:`RunStore.heatmap_shape`.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(N, H, W)``; the conversion from float16 is exact.

    Raises
    ------
    CorruptFileError
        If a value is null or does not hold ``H * W`` float16 values.
    """
    height, width = _check_heatmap_shape(heatmap_shape)
    nbytes = height * width * 2
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty((len(column), height, width), dtype=np.float32)
    position = 0
    for chunk in chunks:
        count = len(chunk)
        if count == 0:
            continue
        if chunk.null_count:
            raise CorruptFileError(f"the relevance column holds {chunk.null_count} null maps")
        if not (pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type)):
            raise CorruptFileError(f"the relevance column has type {chunk.type}, expected binary")
        offset_type = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)[
            chunk.offset : chunk.offset + count + 1
        ]
        lengths = np.diff(offsets)
        if np.any(lengths != nbytes):
            bad = int(lengths[np.flatnonzero(lengths != nbytes)[0]])
            raise CorruptFileError(
                f"a relevance map holds {bad} bytes, but heatmap_shape {height}x{width} needs {nbytes}"
            )
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        out[position : position + count] = data.view("<f2").reshape(count, height, width)
        position += count
    return out


def _int_column(values: Any, name: str, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        array = np.full(length, array)
    if array.shape != (length,):
        raise SchemaError(f"{name} must hold one value per map ({length}), got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise SchemaError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _float_column(values: Any, name: str, length: int, dtype: Any = np.float32) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        array = np.full(length, array)
    if array.shape != (length,):
        raise SchemaError(f"{name} must hold one value per map ({length}), got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise SchemaError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array.astype(dtype)


def make_attribution_table(
    *,
    epoch: int,
    global_step: int,
    sample_id: Any,
    label: Any,
    prediction: Any,
    target: Any,
    score: Any,
    probability: Any,
    relevance: Any,
    relevance_sum: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Build an attribution table (:data:`ATTRIBUTION_SCHEMA`) from arrays, one row per sample.

    Parameters
    ----------
    epoch, global_step : int
        Epoch and optimizer step the rows belong to.
    sample_id, label, prediction, target : array_like of int, shape (N,)
        Probe sample id, true label, predicted class and the explained class.
    score, probability : array_like of float, shape (N,)
        Output logit and softmax probability of ``target``.
    relevance : array_like of float, shape (N, H, W)
        Channel-summed relevance maps; stored as float16 (NaN allowed).
    relevance_sum : array_like of float, shape (N,), optional
        Total relevance per sample; default: computed from ``relevance`` before the float16 cast.
    extra : mapping of str to array_like, optional
        Extra numeric columns (e.g. metrics), one value per sample. Default: none.

    Returns
    -------
    pyarrow.Table
        Table to pass to :meth:`RunStore.write_part`.
    """
    epoch = _check_index(epoch, "epoch")
    global_step = _check_index(global_step, "global_step")
    maps = np.asarray(relevance)
    encoded = encode_relevance(maps)
    n = maps.shape[0]
    if relevance_sum is None:
        sums = maps.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)
    else:
        sums = _float_column(relevance_sum, RELEVANCE_SUM, n)
    arrays: list[Any] = [
        _int_column(sample_id, SAMPLE_ID, n),
        np.full(n, epoch, dtype=np.int32),
        np.full(n, global_step, dtype=np.int64),
        _int_column(label, LABEL, n),
        _int_column(prediction, PREDICTION, n),
        _int_column(target, TARGET, n),
        _float_column(score, SCORE, n),
        _float_column(probability, PROBABILITY, n),
        sums,
        encoded,
    ]
    fields = list(ATTRIBUTION_SCHEMA)
    for name, values in (extra or {}).items():
        if name in ATTRIBUTION_COLUMNS:
            raise SchemaError(f"extra column {name!r} clashes with a required attribution column")
        array = np.asarray(values)
        if array.dtype.kind not in "fiub":
            raise SchemaError(f"extra column {name!r} must be numeric or bool, got dtype {array.dtype}")
        if array.shape != (n,):
            raise SchemaError(f"extra column {name!r} must hold one value per map ({n}), got {array.shape}")
        arrays.append(array)
        fields.append(pa.field(name, pa.from_numpy_dtype(array.dtype)))
    shape = json.dumps(list(maps.shape[1:])).encode()
    schema = pa.schema(fields, metadata={_META_HEATMAP_SHAPE: shape})
    return pa.Table.from_arrays([_as_arrow(a) for a in arrays], schema=schema)


def _as_arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(values)


def make_probe_table(
    *,
    sample_id: Any,
    dataset_index: Any,
    label: Any,
    thumbnail: Sequence[bytes | None] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Build a probe table (:data:`PROBE_SCHEMA`), one row per probe sample.

    Parameters
    ----------
    sample_id, dataset_index, label : array_like of int, shape (N,)
        Stable id of the sample, its index in the validation dataset, and its label.
    thumbnail : sequence of bytes or None, optional
        PNG bytes of the input per sample. Default: no thumbnails (null).
    metadata : mapping of str to array_like, optional
        User metadata columns, one value per sample, any Arrow-convertible type. Default: none.

    Returns
    -------
    pyarrow.Table
        Table to pass to :meth:`RunStore.write_probe`.
    """
    ids = np.asarray(sample_id)
    if ids.ndim != 1:
        raise SchemaError(f"sample_id must be a 1-D array of ints, got shape {ids.shape}")
    n = ids.shape[0]
    ids = _int_column(ids, SAMPLE_ID, n)
    thumbs = [None] * n if thumbnail is None else list(thumbnail)
    if len(thumbs) != n:
        raise SchemaError(f"thumbnail must hold one PNG per sample ({n}), got {len(thumbs)}")
    arrays: list[Any] = [
        pa.array(ids),
        pa.array(_int_column(dataset_index, DATASET_INDEX, n)),
        pa.array(_int_column(label, LABEL, n)),
        pa.array(thumbs, type=pa.binary()),
    ]
    fields = list(PROBE_SCHEMA)
    for name, values in (metadata or {}).items():
        if name in PROBE_COLUMNS:
            raise SchemaError(f"metadata column {name!r} clashes with a required probe column")
        column = pa.array(values)
        if len(column) != n:
            raise SchemaError(f"metadata column {name!r} must hold one value per sample ({n})")
        arrays.append(column)
        fields.append(pa.field(name, column.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _conform_required(table: pa.Table, schema: pa.Schema, what: str, builder: str) -> list[Any]:
    if not isinstance(table, pa.Table):
        raise SchemaError(
            f"{what} must be a pyarrow.Table, got {type(table).__name__}; build it with {builder}"
        )
    if len(set(table.column_names)) != len(table.column_names):
        raise SchemaError(f"{what} has duplicate column names: {table.column_names}")
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; build it with {builder}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.null_count and not field.nullable:
            raise SchemaError(f"column {field.name!r} of the {what} has {column.null_count} null values")
        if column.type != field.type:
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"column {field.name!r} of the {what} has type {column.type}, "
                    f"expected {field.type} ({exc})"
                ) from exc
        columns.append(column)
    return columns


def _conform_attribution_table(
    table: pa.Table, heatmap_shape: tuple[int, int], epoch: int, global_step: int
) -> pa.Table:
    columns = _conform_required(table, ATTRIBUTION_SCHEMA, "attribution table", "make_attribution_table(...)")
    fields = list(ATTRIBUTION_SCHEMA)
    for name in table.column_names:
        if name in ATTRIBUTION_COLUMNS:
            continue
        column = table.column(name)
        kind = column.type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            raise SchemaError(
                f"extra attribution column {name!r} has type {kind}; extra columns must be numeric or bool "
                "(store other results in analysis tables)"
            )
        columns.append(column)
        fields.append(pa.field(name, kind))
    height, width = heatmap_shape
    declared = (table.schema.metadata or {}).get(_META_HEATMAP_SHAPE)
    if declared is not None and tuple(json.loads(declared)) != heatmap_shape:
        raise SchemaError(
            f"relevance maps have shape {tuple(json.loads(declared))}, but this store holds maps of "
            f"heatmap_shape {heatmap_shape}; pass maps of shape (N, {height}, {width})"
        )
    relevance = columns[ATTRIBUTION_COLUMNS.index(RELEVANCE)]
    lengths = np.concatenate(
        [np.empty(0, np.int32)]
        + [
            np.diff(np.frombuffer(c.buffers()[1], np.int32)[c.offset : c.offset + len(c) + 1])
            for c in relevance.chunks
            if len(c)
        ]
    )
    bad = np.flatnonzero(lengths != height * width * 2)
    if bad.size:
        found = int(lengths[bad[0]]) // 2
        raise SchemaError(
            f"relevance map of row {int(bad[0])} holds {found} values, but this store holds maps of "
            f"heatmap_shape ({height}, {width}) = {height * width} values; pass maps of shape "
            f"(N, {height}, {width}) (see encode_relevance)"
        )
    for name, expected in ((EPOCH, epoch), (GLOBAL_STEP, global_step)):
        values = columns[ATTRIBUTION_COLUMNS.index(name)].to_numpy()
        if np.any(values != expected):
            raise SchemaError(
                f"column {name!r} holds {sorted(set(values.tolist()))[:5]}, expected only {expected}"
            )
    metadata = {
        _META_FORMAT: FORMAT_VERSION.encode(),
        _META_HEATMAP_SHAPE: json.dumps([height, width]).encode(),
    }
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))


def _conform_probe_table(table: pa.Table) -> pa.Table:
    if isinstance(table, pa.Table) and THUMBNAIL not in table.column_names:
        table = table.append_column(pa.field(THUMBNAIL, pa.binary()), pa.nulls(table.num_rows, pa.binary()))
    columns = _conform_required(table, PROBE_SCHEMA, "probe table", "make_probe_table(...)")
    fields = list(PROBE_SCHEMA)
    for name in table.column_names:
        if name not in PROBE_COLUMNS:
            columns.append(table.column(name))
            fields.append(table.schema.field(name))
    ids = columns[0].to_numpy()
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise SchemaError(f"probe sample ids must be unique; repeated: {unique[counts > 1][:10].tolist()}")
    return pa.Table.from_arrays(
        columns, schema=pa.schema(fields, metadata={_META_FORMAT: FORMAT_VERSION.encode()})
    )


def _rows_per_group(heatmap_shape: tuple[int, int]) -> int:
    row_bytes = heatmap_shape[0] * heatmap_shape[1] * 2 + 64
    return int(max(1, min(MAX_ROW_GROUP_ROWS, ROW_GROUP_BYTES // row_bytes)))


def _first_occurrences(ids: np.ndarray) -> np.ndarray | None:
    """Mask keeping the first row of each sample id, or None when ids are already unique."""
    unique, first = np.unique(ids, return_index=True)
    if unique.size == ids.size:
        return None
    keep = np.zeros(ids.size, dtype=bool)
    keep[first] = True
    return keep


def _normalise_json(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{name} must be JSON-serialisable (str, numbers, lists, dicts): {exc}") from exc


def _resolve_store_dir(path: Path) -> Path:
    if (path / MANIFEST_FILE).is_file():
        return path
    if (path / STORE_SUBDIR / MANIFEST_FILE).is_file():
        return path / STORE_SUBDIR
    raise StoreNotFoundError(
        f"no lrp-lightning store at {path}: neither {path / MANIFEST_FILE} nor "
        f"{path / STORE_SUBDIR / MANIFEST_FILE} exists. Pass the directory of a run trained with "
        "LRPCallback (the logger's log_dir) or its plugins/lrp directory; find_runs(root) lists the runs "
        "below a folder."
    )


def _store_dir_for_create(path: Path) -> Path:
    if (path / MANIFEST_FILE).is_file() or path.parts[-2:] == STORE_SUBDIR.parts:
        return path
    return path / STORE_SUBDIR


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Find every run directory below ``root`` (``root`` included) that holds an lrp-lightning store.

    Parameters
    ----------
    root : path
        Folder to search, e.g. TensorBoard's ``--logdir``.

    Returns
    -------
    list of pathlib.Path
        Sorted run directories (the parent of ``plugins/lrp``). Hidden directories are skipped.
    """
    root = Path(root)
    runs: set[Path] = set()
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if MANIFEST_FILE in files and here.parts[-2:] == STORE_SUBDIR.parts:
            runs.add(here.parent.parent)
            subdirs[:] = []  # attributions/ and analysis/ hold no runs
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return sorted(runs)


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


class _EpochSnapshot:
    """All part files of one committed version of an epoch, opened together."""

    def __init__(self, info: EpochInfo, parts: list[_Parquet], heatmap_shape: tuple[int, int]) -> None:
        self.info = info
        self.parts = parts
        self.heatmap_shape = heatmap_shape
        self._keep: list[np.ndarray | None] | None = None
        self._ids: list[np.ndarray] | None = None

    def __enter__(self) -> _EpochSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        for part in self.parts:
            part.close()

    @property
    def names(self) -> list[str]:
        names: list[str] = []
        for part in self.parts:
            names.extend(n for n in part.names if n not in names)
        return names

    def unified_schema(self) -> pa.Schema:
        return pa.unify_schemas([part.file.schema_arrow for part in self.parts]).remove_metadata()

    def sample_ids(self) -> list[np.ndarray]:
        if self._ids is None:
            self._ids = [part.read([SAMPLE_ID]).column(0).to_numpy() for part in self.parts]
        return self._ids

    def keep_masks(self) -> list[np.ndarray | None]:
        """Per part, the rows to keep (first occurrence of each sample id in rank order)."""
        if self._keep is None:
            ids = self.sample_ids()
            keep = _first_occurrences(np.concatenate(ids)) if ids else None
            if keep is None:
                self._keep = [None] * len(ids)
            else:
                bounds = np.cumsum([0] + [len(i) for i in ids])
                self._keep = [keep[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return self._keep

    def row_groups(self, columns: Sequence[str] | None) -> Iterator[pa.Table]:
        """Yield each row group, duplicates removed, conformed to the unified schema."""
        schema = self.unified_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        for part, keep in zip(self.parts, self.keep_masks()):
            present = [c for c in schema.names if c in part.names]
            start = 0
            for index in range(part.file.num_row_groups):
                table = part.read_row_group(index, present)
                stop = start + part.file.metadata.row_group(index).num_rows
                if keep is not None:
                    table = table.filter(pa.array(keep[start:stop]))
                start = stop
                if table.num_rows:
                    yield _conform_to(table, schema)

    def select(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids, maps) of the wanted ids present in this epoch, reading only matching row groups."""
        found_ids, found_maps = [], []
        for part, ids, keep in zip(self.parts, self.sample_ids(), self.keep_masks()):
            start = 0
            for index in range(part.file.num_row_groups):
                stop = start + part.file.metadata.row_group(index).num_rows
                match = np.isin(ids[start:stop], wanted)
                if keep is not None:
                    match &= keep[start:stop]
                if match.any():
                    column = part.read_row_group(index, [RELEVANCE]).column(0).filter(pa.array(match))
                    found_ids.append(ids[start:stop][match])
                    found_maps.append(decode_relevance(column, self.heatmap_shape))
                start = stop
        if not found_ids:
            return np.empty(0, np.int64), np.empty((0, *self.heatmap_shape), np.float32)
        return np.concatenate(found_ids), np.concatenate(found_maps)


def _conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class RunStore:
    """Read and write the lrp-lightning files of one run.

    Parameters
    ----------
    path : path
        The run directory (the logger's ``log_dir``, holding ``plugins/lrp/``) or the ``plugins/lrp``
        directory itself. It must hold a manifest; use :meth:`create` to start a new store.

    Raises
    ------
    StoreNotFoundError
        If no manifest is found.
    UnsupportedFormatError
        If the manifest's major format version is not this library's.

    Examples
    --------
    >>> store = RunStore("runs/mnist/version_0")            # doctest: +SKIP
    >>> [e.epoch for e in store.epochs()]                   # doctest: +SKIP
    [0, 1, 2]
    >>> ids, maps = store.heatmaps(2)                       # doctest: +SKIP
    >>> maps.shape                                          # doctest: +SKIP
    (256, 28, 28)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._store_dir = _resolve_store_dir(Path(path))
        self._manifest: dict[str, Any] | None = None
        self._manifest_signature: tuple[int, int, int] | None = None
        self._manifest_data()

    # ---------------------------------------------------------------------------------- creation

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        heatmap_shape: Sequence[int],
        input_shape: Sequence[int] | None = None,
        model_class: str | None = None,
        composite: Any = None,
        canonizers: Any = None,
        class_names: Sequence[str] | None = None,
        target_mode: str | None = None,
        probe: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Create a store, or open an existing one of the same run for writing (resume).

        Call it on rank 0, then synchronise; other ranks open the store with ``RunStore(path)``.
        Calling it on every rank is also safe: it writes the same manifest.

        Parameters
        ----------
        path : path
            Run directory (files go to ``<path>/plugins/lrp``) or the ``plugins/lrp`` directory.
        heatmap_shape : (int, int)
            ``(H, W)`` of the channel-summed relevance maps.
        input_shape : sequence of int, optional
            Shape of one model input, e.g. ``(1, 28, 28)``. Default: not recorded.
        model_class : str, optional
            Qualified class name of the model. Default: not recorded.
        composite, canonizers : JSON-serialisable, optional
            Composite and canonizer configuration (names or dicts). Default: not recorded.
        class_names : sequence of str, optional
            Name of each class index. Default: not recorded.
        target_mode : str, optional
            Which class is explained (e.g. ``"label"`` or ``"prediction"``). Default: not recorded.
        probe : mapping, optional
            Probe-set configuration (size, seed, stratification). Default: not recorded.
        metadata : mapping, optional
            Any other JSON-serialisable run metadata. Default: none.

        Returns
        -------
        RunStore

        Raises
        ------
        IncompatibleRunError
            If the directory holds a store of a run with different metadata. Nothing is deleted.
        UnsupportedFormatError
            If the existing store has another major format version or a newer minor one.
        """
        store_dir = _store_dir_for_create(Path(path))
        run = {
            "model_class": model_class,
            "composite": composite,
            "canonizers": canonizers,
            "input_shape": None if input_shape is None else [int(v) for v in input_shape],
            "heatmap_shape": list(_check_heatmap_shape(heatmap_shape)),
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "target_mode": target_mode,
            "probe": probe,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        run = {key: _normalise_json(value, key) for key, value in run.items()}
        manifest_path = store_dir / MANIFEST_FILE
        if manifest_path.is_file():
            store = cls(store_dir)
            existing = store._manifest_data()
            _check_writable(existing, manifest_path)
            differences = [key for key in RUN_METADATA_KEYS if existing.get(key) != run[key]]
            if differences:
                details = "; ".join(
                    f"{key} is {existing.get(key)!r} there but {run[key]!r} now" for key in differences
                )
                raise IncompatibleRunError(
                    f"{store_dir} already holds the lrp-lightning store of a different run ({details}). "
                    "Existing data is never replaced: write to another directory (e.g. a new logger "
                    "version or another dirpath), or restore the previous settings to resume this run."
                )
            store._recover()
            return store
        store_dir.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "library_version": _library_version(),
            **run,
            "epochs": [],
        }
        _atomic_write_json(manifest_path, manifest)
        return cls(store_dir)

    @classmethod
    def find(cls, root: str | os.PathLike[str]) -> list[RunStore]:
        """Open every store below ``root`` (see :func:`find_runs`).

        Raises on the first store that cannot be opened; to skip or report such runs one by one (as
        the TensorBoard plugin should), call :func:`find_runs` and open each run with ``RunStore``.
        """
        return [cls(run) for run in find_runs(root)]

    # ---------------------------------------------------------------------------------- locations

    @property
    def store_dir(self) -> Path:
        """The ``plugins/lrp`` directory."""
        return self._store_dir

    @property
    def run_dir(self) -> Path:
        """The run directory (parent of ``plugins/lrp``)."""
        if self._store_dir.parts[-2:] == STORE_SUBDIR.parts:
            return self._store_dir.parent.parent
        return self._store_dir

    def epoch_dir(self, epoch: int) -> Path:
        """Directory of an epoch's committed attribution parts (may not exist)."""
        return self._store_dir / ATTRIBUTIONS_DIR / epoch_dirname(_check_index(epoch, "epoch"))

    def analysis_dir(self, epoch: int) -> Path:
        """Directory of an epoch's analysis tables (may not exist)."""
        return self._store_dir / ANALYSIS_DIR / epoch_dirname(_check_index(epoch, "epoch"))

    def _staging_dir(self, epoch: int, global_step: int) -> Path:
        return _staging_path(self._store_dir, epoch, global_step)

    def _aside_dir(self, epoch: int, commit: str) -> Path:
        return self._store_dir / ATTRIBUTIONS_DIR / f".replaced-{epoch_dirname(epoch)}-{commit}"

    def __repr__(self) -> str:
        return f"RunStore({str(self.run_dir)!r}, epochs={[e.epoch for e in self.epochs()]})"

    # ---------------------------------------------------------------------------------- manifest

    def _manifest_data(self) -> dict[str, Any]:
        """The current manifest, re-read whenever the file was replaced."""
        path = self._store_dir / MANIFEST_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise StoreNotFoundError(f"{path} disappeared; the store was deleted while being read") from None
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._manifest is None or signature != self._manifest_signature:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CorruptFileError(
                    f"{path} is not valid JSON ({exc}); it was edited by hand or damaged."
                ) from exc
            if not isinstance(data, dict):
                raise CorruptFileError(f"{path} must hold a JSON object, got {type(data).__name__}")
            _check_readable(data, path)
            epochs = data.get("epochs", [])
            if not isinstance(epochs, list):
                raise CorruptFileError(f"{path}: 'epochs' must be a list, got {type(epochs).__name__}")
            data["_parsed_epochs"] = {
                info.epoch: info for info in (_entry_from_json(e, path) for e in epochs)
            }
            self._manifest, self._manifest_signature = data, signature
        return self._manifest

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of ``manifest.json`` (re-read when it changed on disk)."""
        data = dict(self._manifest_data())
        data.pop("_parsed_epochs")
        return copy.deepcopy(data)

    @property
    def heatmap_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the stored relevance maps."""
        return _check_heatmap_shape(self._manifest_data().get("heatmap_shape"))

    @property
    def format_version(self) -> str:
        """Format version of this store, ``"major.minor"``."""
        return str(self._manifest_data()["format_version"])

    def epochs(self) -> list[EpochInfo]:
        """Complete epochs in ascending order, as listed in the manifest."""
        parsed = self._manifest_data()["_parsed_epochs"]
        return [parsed[e] for e in sorted(parsed)]

    def epoch_info(self, epoch: int) -> EpochInfo:
        """The manifest entry of a complete epoch.

        Raises
        ------
        EpochNotFoundError
            If the epoch is not complete; the message lists the complete epochs.
        """
        epoch = _check_index(epoch, "epoch")
        parsed = self._manifest_data()["_parsed_epochs"]
        if epoch not in parsed:
            available = ", ".join(str(e) for e in sorted(parsed)) or "none yet"
            raise EpochNotFoundError(
                f"epoch {epoch} is not a complete epoch of {self._store_dir}; complete epochs: {available}"
            )
        return parsed[epoch]

    def _write_manifest(self, epochs: Mapping[int, EpochInfo]) -> None:
        data = self.manifest
        data["library_version"] = _library_version()
        data["epochs"] = [epochs[e].to_json() for e in sorted(epochs)]
        _atomic_write_json(self._store_dir / MANIFEST_FILE, data)

    def _require_writable(self) -> None:
        _check_writable(self._manifest_data(), self._store_dir / MANIFEST_FILE)

    # ---------------------------------------------------------------------------------- probe set

    def write_probe(self, table: pa.Table) -> Path:
        """Write ``probe.parquet`` once, atomically.

        Parameters
        ----------
        table : pyarrow.Table
            Probe rows, see :func:`make_probe_table`.

        Returns
        -------
        pathlib.Path
            Path of ``probe.parquet``.

        Raises
        ------
        IncompatibleRunError
            If the store already holds a probe set with other sample ids. Writing the same ids again
            does nothing (the first file is kept).
        """
        self._require_writable()
        table = _conform_probe_table(table)
        path = self._store_dir / PROBE_FILE
        if path.exists():
            existing = np.sort(_read_parquet(path, [SAMPLE_ID]).column(0).to_numpy())
            new = np.sort(table.column(SAMPLE_ID).to_numpy())
            if np.array_equal(existing, new):
                return path
            missing = np.setdiff1d(existing, new)[:5].tolist()
            added = np.setdiff1d(new, existing)[:5].tolist()
            raise IncompatibleRunError(
                f"{path} already holds a different probe set ({existing.size} samples; not in the new "
                f"one: {missing}, new: {added}). A run's probe set is fixed: write to another directory "
                "or reuse the saved probe ids (the callback restores them from its checkpoint state)."
            )
        _atomic_write_parquet(table, path, use_dictionary=False)
        return path

    def probe_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Read ``probe.parquet``.

        Raises
        ------
        StoreError
            If the probe set was not written yet.
        CorruptFileError
            If the file cannot be read.
        """
        path = self._store_dir / PROBE_FILE
        try:
            return _read_parquet(path, columns)
        except FileNotFoundError:
            raise StoreError(
                f"{path} does not exist yet: the callback writes the probe set at the first validation epoch"
            ) from None

    # ---------------------------------------------------------------------------------- writing

    def write_part(
        self,
        epoch: int,
        global_step: int,
        table: pa.Table,
        *,
        rank: int = 0,
        row_group_size: int | None = None,
    ) -> Path:
        """Stage one rank's attribution rows of an epoch; invisible to readers until committed.

        Every rank calls this (with an empty table if it has no samples), then the caller
        synchronises the ranks and rank 0 calls :meth:`commit_epoch`.

        Parameters
        ----------
        epoch, global_step : int
            Epoch and optimizer step; identical on all ranks.
        table : pyarrow.Table
            Rows of this rank, see :func:`make_attribution_table`.
        rank : int, default 0
            Global rank of the writer.
        row_group_size : int, optional
            Rows per row group. Default: about 32 MiB of maps per row group.

        Returns
        -------
        pathlib.Path
            The staged part file.

        Raises
        ------
        SchemaError
            If columns, types or the map shape do not match the store.
        """
        epoch = _check_index(epoch, "epoch")
        global_step = _check_index(global_step, "global_step")
        rank = _check_index(rank, "rank")
        self._require_writable()
        table = _conform_attribution_table(table, self.heatmap_shape, epoch, global_step)
        staging = self._staging_dir(epoch, global_step)
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / part_filename(rank)
        small = [name for name in table.column_names if name != RELEVANCE]
        _atomic_write_parquet(
            table,
            path,
            row_group_size=row_group_size or _rows_per_group(self.heatmap_shape),
            use_dictionary=small,
            write_statistics=small,
        )
        return path

    def commit_epoch(self, epoch: int, global_step: int, *, world_size: int = 1) -> EpochInfo:
        """Publish the staged parts of an epoch (rank 0, after all ranks wrote their part).

        Replaces a previous version of the epoch completely. See the module docstring for the
        crash-safety argument.

        Parameters
        ----------
        epoch, global_step : int
            As passed to :meth:`write_part`.
        world_size : int, default 1
            Number of ranks; parts ``0 .. world_size - 1`` must exist.

        Returns
        -------
        EpochInfo
            The new manifest entry.

        Raises
        ------
        StoreError
            If parts are missing.
        CorruptFileError, SchemaError
            If a part cannot be read or the parts' schemas conflict.
        """
        epoch = _check_index(epoch, "epoch")
        global_step = _check_index(global_step, "global_step")
        world_size = _check_index(world_size, "world_size", minimum=1)
        self._require_writable()
        staging = self._staging_dir(epoch, global_step)
        names = [part_filename(rank) for rank in range(world_size)]
        missing = [rank for rank, name in enumerate(names) if not (staging / name).is_file()]
        if missing:
            raise StoreError(
                f"cannot commit epoch {epoch} (global step {global_step}): no part from rank(s) {missing} "
                f"in {staging}. Every rank must call write_part (with an empty table if it has no "
                "samples) before rank 0 commits; synchronise the ranks in between."
            )
        for child in staging.iterdir():  # temp files, a stale marker, parts of ranks >= world_size
            if child.name in names:
                continue
            if child.is_dir():
                _remove_tree(child)
            else:
                child.unlink(missing_ok=True)
        parts = [_Parquet(staging / name) for name in names]
        try:
            try:
                pa.unify_schemas([part.file.schema_arrow for part in parts])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise SchemaError(f"the parts in {staging} have conflicting column types: {exc}") from exc
            ids = np.concatenate([part.read([SAMPLE_ID]).column(0).to_numpy() for part in parts])
        finally:
            for part in parts:
                part.close()
        relative = PurePosixPath(ATTRIBUTIONS_DIR, epoch_dirname(epoch))
        info = EpochInfo(
            epoch=epoch,
            global_step=global_step,
            rows=int(np.unique(ids).size),
            files=tuple(str(relative / name) for name in names),
            commit=uuid.uuid4().hex,
        )
        _atomic_write_json(staging / COMMIT_MARKER, info.to_json())
        final = self.epoch_dir(epoch)
        if final.exists():
            previous = _read_marker(final)
            commit = previous["commit"] if previous else f"unknown{uuid.uuid4().hex}"
            _move_dir(final, self._aside_dir(epoch, commit))
        _move_dir(staging, final)
        epochs = dict(self._manifest_data()["_parsed_epochs"])
        epochs[epoch] = info
        self._write_manifest(epochs)
        self._remove_leftovers(epoch)
        return info

    def write_epoch(self, epoch: int, global_step: int, table: pa.Table) -> EpochInfo:
        """Write and commit an epoch from one process (``write_part`` + ``commit_epoch``)."""
        self.write_part(epoch, global_step, table, rank=0)
        return self.commit_epoch(epoch, global_step, world_size=1)

    def _remove_leftovers(self, epoch: int) -> None:
        root = self._store_dir / ATTRIBUTIONS_DIR
        prefixes = (f".staging-{epoch_dirname(epoch)}-", f".replaced-{epoch_dirname(epoch)}-")
        for child in root.iterdir():
            if child.name.startswith(prefixes):
                _remove_tree(child)

    def _recover(self) -> None:
        """Finish an interrupted commit and drop unreferenced moved-aside versions (see module doc)."""
        root = self._store_dir / ATTRIBUTIONS_DIR
        for child in self._store_dir.glob(f".{MANIFEST_FILE}.tmp-*"):
            child.unlink(missing_ok=True)
        if not root.is_dir():
            return
        epochs = dict(self._manifest_data()["_parsed_epochs"])
        changed = False
        for child in sorted(root.iterdir()):
            match = _EPOCH_DIR_RE.fullmatch(child.name)
            marker = _read_marker(child) if match and child.is_dir() else None
            if marker is None:
                continue
            info = _entry_from_json(marker, child / COMMIT_MARKER)
            listed = epochs.get(info.epoch)
            complete = all((child / PurePosixPath(f).name).is_file() for f in info.files)
            if complete and info.epoch == int(match[1]) and (listed is None or listed.commit != info.commit):
                epochs[info.epoch] = info
                changed = True
        if changed:
            self._write_manifest(epochs)
        for child in root.iterdir():
            match = _ASIDE_RE.fullmatch(child.name)
            if match:
                listed = epochs.get(int(match[1]))
                if listed is None or listed.commit != match[2]:
                    _remove_tree(child)

    # ---------------------------------------------------------------------------------- reading

    def _open_epoch(self, epoch: int) -> _EpochSnapshot:
        epoch = _check_index(epoch, "epoch")
        shape = self.heatmap_shape
        looked: list[Path] = []
        for attempt in range(_OPEN_RETRIES):
            info = self.epoch_info(epoch)
            for directory in (self.epoch_dir(epoch), self._aside_dir(epoch, info.commit)):
                marker = _read_marker(directory)
                if marker is None or marker["commit"] != info.commit:
                    continue
                parts: list[_Parquet] = []
                try:
                    for name in info.files:
                        parts.append(_Parquet(directory / PurePosixPath(name).name))
                except FileNotFoundError:
                    for part in parts:
                        part.close()
                    continue
                except BaseException:
                    for part in parts:
                        part.close()
                    raise
                marker = _read_marker(directory)
                if marker is not None and marker["commit"] == info.commit:
                    return _EpochSnapshot(info, parts, shape)
                for part in parts:
                    part.close()
            looked = [self.epoch_dir(epoch), self._aside_dir(epoch, info.commit)]
            time.sleep(0.002 * (attempt + 1))  # a commit is replacing the epoch; read the new manifest
        raise StoreError(
            f"epoch {epoch} is listed in {self._store_dir / MANIFEST_FILE}, but its files were found in "
            f"neither {looked[0]} nor {looked[1]}; the store was modified outside lrp-lightning. "
            "Re-run the attribution of this epoch."
        )

    def _check_columns(self, snapshot: _EpochSnapshot, columns: Sequence[str] | None) -> list[str] | None:
        if columns is None:
            return None
        columns = list(columns)
        unknown = [c for c in columns if c not in snapshot.names]
        if unknown:
            raise SchemaError(
                f"unknown column(s) {unknown} in epoch {snapshot.info.epoch}; available: {snapshot.names}"
            )
        return columns

    def attributions(self, epoch: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Read all rows of a complete epoch, all ranks' parts concatenated.

        Parameters
        ----------
        epoch : int
            A complete epoch (see :meth:`epochs`).
        columns : sequence of str, optional
            Columns to read. Default: all (see :data:`ATTRIBUTION_COLUMNS`, plus extra columns).

        Returns
        -------
        pyarrow.Table
            One row per unique ``sample_id`` (the first one in rank order), in rank then row order.

        Raises
        ------
        EpochNotFoundError
            If the epoch is not complete; the message lists the complete ones.
        CorruptFileError
            If a part cannot be read; the message names the file.
        """
        with self._open_epoch(epoch) as snapshot:
            columns = self._check_columns(snapshot, columns)
            schema = snapshot.unified_schema()
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            tables = []
            for part, keep in zip(snapshot.parts, snapshot.keep_masks()):
                table = part.read([c for c in schema.names if c in part.names])
                if keep is not None:
                    table = table.filter(pa.array(keep))
                tables.append(_conform_to(table, schema))
        return pa.concat_tables(tables)

    def iter_batches(
        self, epoch: int, columns: Sequence[str] | None = None, batch_size: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream a complete epoch by row groups, duplicates removed, for memory-bounded analysis.

        The epoch's files are opened when iteration starts; a concurrent commit of the same epoch
        does not affect a running iteration.

        Parameters
        ----------
        epoch : int
            A complete epoch.
        columns : sequence of str, optional
            Columns to read. Default: all.
        batch_size : int, optional
            Maximum rows per batch. Default: one batch per row group.

        Yields
        ------
        pyarrow.RecordBatch
            Batches with identical schemas; together they hold the rows of :meth:`attributions`.
        """
        snapshot = self._open_epoch(epoch)  # errors (missing epoch, bad columns) surface here, not at next()
        try:
            columns = self._check_columns(snapshot, columns)
        except BaseException:
            snapshot.__exit__()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            with snapshot:
                for table in snapshot.row_groups(columns):
                    yield from table.combine_chunks().to_batches(max_chunksize=batch_size)

        return batches()

    def iter_heatmaps(
        self, epoch: int, batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``(sample_ids, maps)`` of a complete epoch, as :meth:`iter_batches` does rows.

        Yields
        ------
        sample_ids : numpy.ndarray of int64, shape (B,)
        maps : numpy.ndarray of float32, shape (B, H, W)
        """
        shape = self.heatmap_shape
        for batch in self.iter_batches(epoch, [SAMPLE_ID, RELEVANCE], batch_size):
            yield batch.column(0).to_numpy(), decode_relevance(batch.column(1), shape)

    def heatmaps(
        self, epoch: int, sample_ids: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read relevance maps of a complete epoch.

        Parameters
        ----------
        epoch : int
            A complete epoch.
        sample_ids : sequence of int, optional
            Samples to read, returned in this order. Default: all, in stored order.

        Returns
        -------
        sample_ids : numpy.ndarray of int64, shape (N,)
        maps : numpy.ndarray of float32, shape (N, H, W)

        Raises
        ------
        SampleNotFoundError
            If a requested sample id is not in the epoch.
        """
        if sample_ids is None:
            table = self.attributions(epoch, [SAMPLE_ID, RELEVANCE])
            return table.column(0).to_numpy(), decode_relevance(table.column(1), self.heatmap_shape)
        wanted = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        with self._open_epoch(epoch) as snapshot:
            found, maps = snapshot.select(wanted)
        order = np.argsort(found, kind="stable")
        position = np.minimum(np.searchsorted(found[order], wanted), max(found.size - 1, 0))
        hit = found[order][position] == wanted if found.size else np.zeros(wanted.size, dtype=bool)
        if not np.all(hit):
            absent = wanted[~hit][:10].tolist()
            raise SampleNotFoundError(
                f"sample id(s) {absent} are not in epoch {epoch} "
                f"({found.size} of {wanted.size} requested found); "
                "the probe set is in probe_table()"
            )
        return wanted.copy(), maps[order][position]

    def sample_heatmaps(self, sample_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Read one sample's relevance map in every complete epoch that holds it.

        Returns
        -------
        epochs : numpy.ndarray of int64, shape (E,)
        maps : numpy.ndarray of float32, shape (E, H, W)

        Raises
        ------
        SampleNotFoundError
            If no complete epoch holds the sample.
        """
        sample_id = _check_index(sample_id, "sample_id", minimum=-(2**63))
        found_epochs, found_maps = [], []
        for info in self.epochs():
            with self._open_epoch(info.epoch) as snapshot:
                _, maps = snapshot.select(np.array([sample_id], dtype=np.int64))
            if len(maps):
                found_epochs.append(info.epoch)
                found_maps.append(maps[0])
        if not found_epochs:
            raise SampleNotFoundError(
                f"sample id {sample_id} is in no complete epoch of {self._store_dir}; "
                "the probe set is in probe_table()"
            )
        return np.asarray(found_epochs, dtype=np.int64), np.stack(found_maps)

    # ---------------------------------------------------------------------------------- analysis

    def _analysis_path(self, epoch: int, name: str) -> Path:
        if not isinstance(name, str) or not _TABLE_NAME_RE.fullmatch(name):
            raise ValueError(
                f"analysis table name {name!r} must start with a letter or digit and hold only letters, "
                "digits, '_', '.' and '-' (e.g. 'points' or 'clusters')"
            )
        return self.analysis_dir(epoch) / f"{name}.parquet"

    def write_analysis_table(
        self, epoch: int, name: str, table: pa.Table, config_hash: str, *, source_commit: str | None = None
    ) -> Path:
        """Write an analysis table of a complete epoch atomically.

        Parameters
        ----------
        epoch : int
            The analysed, complete epoch.
        name : str
            Table name, e.g. ``"points"``, ``"clusters"``, ``"spectrum"``.
        table : pyarrow.Table
            Any columns.
        config_hash : str
            Hash of the analysis configuration that produced the table (the cache key).
        source_commit : str, optional
            :attr:`EpochInfo.commit` of the attributions analysed. Default: the epoch's current
            commit; pass the one read before analysing if the epoch may be replaced meanwhile.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        if not isinstance(config_hash, str) or not config_hash:
            raise ValueError(f"config_hash must be a non-empty str, got {config_hash!r}")
        if not isinstance(table, pa.Table):
            raise SchemaError(f"analysis table {name!r} must be a pyarrow.Table, got {type(table).__name__}")
        path = self._analysis_path(epoch, name)
        commit = source_commit or self.epoch_info(epoch).commit
        self._require_writable()
        metadata = dict(table.schema.metadata or {})
        metadata.update(
            {
                _META_FORMAT: FORMAT_VERSION.encode(),
                _META_CONFIG_HASH: config_hash.encode(),
                _META_SOURCE_COMMIT: commit.encode(),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_parquet(table.replace_schema_metadata(metadata), path)
        return path

    def _analysis_tags(self, path: Path) -> tuple[str, str] | None:
        try:
            handle = _Parquet(path)
        except FileNotFoundError:
            return None
        try:
            metadata = handle.file.schema_arrow.metadata or {}
        finally:
            handle.close()
        return (
            metadata.get(_META_CONFIG_HASH, b"").decode(),
            metadata.get(_META_SOURCE_COMMIT, b"").decode(),
        )

    def analysis_tables(self, epoch: int) -> dict[str, str]:
        """Current analysis tables of an epoch: name → config hash (stale tables left out)."""
        commit = self.epoch_info(epoch).commit
        directory = self.analysis_dir(epoch)
        tables: dict[str, str] = {}
        for path in sorted(directory.glob("*.parquet")) if directory.is_dir() else []:
            tags = self._analysis_tags(path)
            if tags is not None and tags[1] == commit:
                tables[path.stem] = tags[0]
        return tables

    def read_analysis_table(self, epoch: int, name: str, *, config_hash: str | None = None) -> pa.Table:
        """Read an analysis table of a complete epoch.

        Parameters
        ----------
        epoch : int
            A complete epoch.
        name : str
            Table name.
        config_hash : str, optional
            Require this configuration hash. Default: accept any.

        Returns
        -------
        pyarrow.Table
            The table; ``schema.metadata[b"lrp.config_hash"]`` holds its config hash.

        Raises
        ------
        AnalysisNotFoundError
            If the table is missing, was made from a replaced version of the epoch, or (when
            ``config_hash`` is given) with another configuration.
        """
        path = self._analysis_path(epoch, name)
        commit = self.epoch_info(epoch).commit
        try:
            table = _read_parquet(path)
        except FileNotFoundError:
            raise AnalysisNotFoundError(
                f"no analysis table {name!r} for epoch {epoch} ({path}); run the analysis (lrp-analyze)"
            ) from None
        metadata = table.schema.metadata or {}
        found_hash = metadata.get(_META_CONFIG_HASH, b"").decode()
        if metadata.get(_META_SOURCE_COMMIT, b"").decode() != commit:
            raise AnalysisNotFoundError(
                f"analysis table {name!r} of epoch {epoch} ({path}) was made from a replaced version of the "
                "epoch's attributions; run the analysis again"
            )
        if config_hash is not None and found_hash != config_hash:
            raise AnalysisNotFoundError(
                f"analysis table {name!r} of epoch {epoch} was made with config {found_hash}, "
                f"not {config_hash}; "
                "run the analysis with this configuration"
            )
        return table


# --------------------------------------------------------------------------------------------------
# --- analysis tables ---
# Schemas of the tables that the SpRAy analysis (lrp_lightning.analysis, lrp-analyze) writes with
# RunStore.write_analysis_table and that the TensorBoard plugin reads. Every table of one analysis of
# an epoch carries the same config hash; a reader takes them together only when the hashes agree.
# --------------------------------------------------------------------------------------------------

ANALYSIS_FORMAT_VERSION = "1.0"
"""Version of the analysis tables' layout (``"major.minor"``); part of every analysis cache key."""

POINTS_TABLE = "points"
CLUSTERS_TABLE = "clusters"
SPECTRUM_TABLE = "spectrum"
LINEAGE_TABLE = "lineage"
ANALYSIS_TABLES: tuple[str, ...] = (POINTS_TABLE, CLUSTERS_TABLE, LINEAGE_TABLE, SPECTRUM_TABLE)
"""Tables of one analysis of an epoch, in writing order (``spectrum`` last)."""

META_ANALYSIS_CONFIG = b"lrp.analysis_config"
"""Schema-metadata key: the analysis configuration (JSON) that produced a table."""
META_GRID_SHAPE = b"lrp.grid_shape"
"""Schema-metadata key: ``[h, w]`` (JSON) of the analysis grid of prototypes and spectral maps."""

CATEGORY = "category"
"""Which samples were analysed together: ``"all"`` or ``"class_<index>"`` (see :func:`class_category`)."""
CATEGORY_ALL = "all"
CLASS_INDEX = "class_index"
CLASS_NAME = "class_name"
SPECTRAL = "spectral"
STABILITY = "stability"
CLUSTERING = "clustering"
CLUSTER = "cluster"
SIZE = "size"
PURITY = "purity"
MAJORITY_LABEL = "majority_label"
ACCURACY = "accuracy"
PROTOTYPE = "prototype"
TYPICAL = "typical"
ATYPICAL = "atypical"
CONCENTRATION = "concentration"
BORDER_SHARE = "border_share"
CORNER_SHARE = "corner_share"
COMPACTNESS = "compactness"
EIGENGAP = "eigengap"
EIGENGAP_K = "eigengap_k"
FLAGGED = "flagged"
FLAG_REGION = "flag_region"
FLAG_REASON = "flag_reason"
TRACK = "track"
PREVIOUS_CLUSTER = "previous_cluster"
MATCH_JACCARD = "match_jaccard"
EVENT = "event"
SOURCES = "sources"
EIGENVALUES = "eigenvalues"
N_SAMPLES = "n_samples"
N_NEIGHBORS = "n_neighbors"
SELECTED_CLUSTERING = "selected_clustering"
STATUS = "status"
MESSAGE = "message"

CLUSTER_COLUMN_PREFIX = "cluster."
EMBEDDING_COLUMN_PREFIX = "embedding."

LINEAGE_EVENTS = ("born", "continued", "split", "merged", "vanished")
"""Values of the ``event`` column: how a cluster relates to the previous epoch's clusters."""


def class_category(class_index: int) -> str:
    """Return the category name of one class, e.g. ``"class_3"``."""
    return f"class_{_check_index(class_index, 'class_index')}"


def cluster_column(clustering: str) -> str:
    """Return the points-table column of a clustering's labels, e.g. ``"cluster.kmeans_4"``."""
    return f"{CLUSTER_COLUMN_PREFIX}{clustering}"


def embedding_columns(method: str) -> tuple[str, str]:
    """Return the points-table columns of a 2-D embedding, e.g. ``("embedding.tsne.x", "embedding.tsne.y")``."""
    return f"{EMBEDDING_COLUMN_PREFIX}{method}.x", f"{EMBEDDING_COLUMN_PREFIX}{method}.y"


POINTS_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(PREDICTION, pa.int64(), nullable=False),
        pa.field(TARGET, pa.int64(), nullable=False),
        pa.field(SPECTRAL, pa.list_(pa.float32()), nullable=False),
        pa.field(STABILITY, pa.float32(), nullable=True),
    ]
)
"""Leading columns of ``points`` (one row per category and sample). Then one ``int32`` column per
clustering (:func:`cluster_column`, -1 for noise, null where the clustering was not run for the
category) and two ``float32`` columns per 2-D embedding (:func:`embedding_columns`). ``spectral`` holds
the sample's coordinates in the first eigenvectors of the normalised Laplacian; ``stability`` the
cosine similarity of its preprocessed map to the previous complete epoch's (null at the first)."""

CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLUSTERING, pa.string(), nullable=False),
        pa.field(CLUSTER, pa.int32(), nullable=False),
        pa.field(SIZE, pa.int64(), nullable=False),
        pa.field(PURITY, pa.float32(), nullable=False),
        pa.field(MAJORITY_LABEL, pa.int64(), nullable=False),
        pa.field(ACCURACY, pa.float32(), nullable=False),
        pa.field(PROTOTYPE, pa.list_(pa.float32()), nullable=False),
        pa.field(TYPICAL, pa.list_(pa.int64()), nullable=False),
        pa.field(ATYPICAL, pa.list_(pa.int64()), nullable=False),
        pa.field(CONCENTRATION, pa.float32(), nullable=False),
        pa.field(BORDER_SHARE, pa.float32(), nullable=False),
        pa.field(CORNER_SHARE, pa.float32(), nullable=False),
        pa.field(COMPACTNESS, pa.float32(), nullable=False),
        pa.field(EIGENGAP, pa.float32(), nullable=False),
        pa.field(FLAGGED, pa.bool_(), nullable=False),
        pa.field(FLAG_REGION, pa.string(), nullable=True),
        pa.field(FLAG_REASON, pa.string(), nullable=True),
        pa.field(TRACK, pa.string(), nullable=False),
        pa.field(PREVIOUS_CLUSTER, pa.int32(), nullable=True),
        pa.field(MATCH_JACCARD, pa.float32(), nullable=True),
        pa.field(EVENT, pa.string(), nullable=False),
    ]
)
"""``clusters``: one row per (category, clustering, cluster). ``prototype`` is the mean of the members'
L1-normalised signed maps on the analysis grid (row-major, shape in :data:`META_GRID_SHAPE`);
``typical``/``atypical`` are sample ids nearest to / farthest from the cluster's centre in the spectral
embedding; shares are fractions of the members' absolute relevance; ``track`` is the cluster's identity
over epochs (``"<epoch born>:<cluster then>"``), ``event`` one of :data:`LINEAGE_EVENTS`."""

LINEAGE_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLUSTERING, pa.string(), nullable=False),
        pa.field(CLUSTER, pa.int32(), nullable=True),
        pa.field(TRACK, pa.string(), nullable=False),
        pa.field(EVENT, pa.string(), nullable=False),
        pa.field(PREVIOUS_CLUSTER, pa.int32(), nullable=True),
        pa.field(SOURCES, pa.list_(pa.int32()), nullable=False),
        pa.field(MATCH_JACCARD, pa.float32(), nullable=True),
    ]
)
"""``lineage``: how each cluster of an epoch relates to the previous complete epoch's clusters, plus one
row (``cluster`` null) per previous cluster that ``vanished``. ``sources`` lists the previous clusters
that gave a substantial share of their members."""

SPECTRUM_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLASS_INDEX, pa.int64(), nullable=True),
        pa.field(CLASS_NAME, pa.string(), nullable=True),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(MESSAGE, pa.string(), nullable=True),
        pa.field(N_SAMPLES, pa.int64(), nullable=False),
        pa.field(N_NEIGHBORS, pa.int64(), nullable=False),
        pa.field(EIGENVALUES, pa.list_(pa.float64()), nullable=False),
        pa.field(EIGENGAP_K, pa.int64(), nullable=False),
        pa.field(EIGENGAP, pa.float32(), nullable=False),
        pa.field(SELECTED_CLUSTERING, pa.string(), nullable=True),
    ]
)
"""``spectrum``: one row per category. ``status`` is ``"ok"`` or ``"skipped"`` (``message`` says why, e.g.
a class with too few samples); ``eigenvalues`` are the smallest eigenvalues of the normalised
Laplacian, ascending; ``eigengap_k`` the number of clusters the largest eigengap suggests."""

__all__ += [
    "ANALYSIS_FORMAT_VERSION",
    "ANALYSIS_TABLES",
    "CLUSTERS_SCHEMA",
    "LINEAGE_EVENTS",
    "LINEAGE_SCHEMA",
    "POINTS_SCHEMA",
    "SPECTRUM_SCHEMA",
    "class_category",
    "cluster_column",
    "embedding_columns",
]
