"""Parquet tables of the store: reading with clear errors, the relevance encoding, and table builders.

* Reading: :class:`_Parquet` keeps a file open (an open handle survives a concurrent rename or
  delete, which the commit protocol of :mod:`lrp_lightning.store.epochs` relies on) and turns every
  Arrow or OS error into a :class:`~lrp_lightning.store.CorruptFileError` that names the file.
* Relevance maps: :func:`encode_relevance` and :func:`decode_relevance` convert channel-summed maps
  to and from the ``relevance`` column (float16, little-endian, row-major; bit-exact, NaN included).
* Builders: :func:`make_attribution_table` and :func:`make_probe_table` build tables of the
  contract's schemas from arrays; the ``_conform_*`` functions check tables passed for writing.

The schemas themselves are in :mod:`lrp_lightning.store.contract`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import fileio
from .contract import (
    ANALYSIS_DIR,
    ANALYSIS_SCHEMAS,
    ATTRIBUTION_COLUMNS,
    ATTRIBUTION_SCHEMA,
    CLUSTER_COLUMN_PREFIX,
    DATASET_INDEX,
    EMBEDDING_COLUMN_PREFIX,
    EPOCH,
    FORMAT_VERSION,
    GLOBAL_STEP,
    LABEL,
    MAX_ROW_GROUP_ROWS,
    META_FORMAT,
    META_HEATMAP_SHAPE,
    METHOD,
    METHOD_FIELD,
    POINTS_TABLE,
    PREDICTION,
    PROBABILITY,
    PROBE_COLUMNS,
    PROBE_FILE,
    PROBE_SCHEMA,
    RELEVANCE,
    RELEVANCE_SUM,
    ROW_GROUP_BYTES,
    SAMPLE_ID,
    SCORE,
    TARGET,
    THUMBNAIL,
    TOKEN_ID_FIELD,
    TOKEN_IDS,
    TOKEN_RELEVANCE,
    TOKEN_RELEVANCE_FIELD,
    TOKEN_STRING_FIELD,
    TOKENS,
)
from .errors import CorruptFileError, SchemaError, _check_heatmap_shape, _check_index

__all__ = ["decode_relevance", "encode_relevance", "make_attribution_table", "make_probe_table", "token_maps"]

_FLOAT16_MAX = 65504.0

# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _repair_advice(path: Path) -> str:
    """What to do about a damaged file, by what it holds: derived tables are recomputed, primary data
    is written again by what wrote it; nobody is told to delete a run's attributions."""
    if ANALYSIS_DIR in path.parts:
        return (
            "It is an analysis table (derived data): recompute it with `lrp-analyze --force` on the run, "
            "which replaces it; the attributions are not affected."
        )
    if path.name == PROBE_FILE:
        return (
            "It holds the probe set (sample ids, labels, thumbnails); restore it from a backup of the run. "
            "The attributions are not affected and stay readable."
        )
    return (
        "Re-run the attribution of this epoch (e.g. resume training from a checkpoint of that epoch); "
        "the other epochs are not affected."
    )


def _corrupt(path: Path, exc: BaseException) -> CorruptFileError:
    return CorruptFileError(
        f"{path} is not a readable Parquet file ({exc}). It was damaged after writing (lrp-lightning "
        f"writes files atomically). {_repair_advice(path)}"
    )


class _Parquet:
    """An open Parquet file; open handles survive concurrent renames and deletes (POSIX)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # FileNotFoundError propagates (a concurrent commit); NotRegularFileError is a CorruptFileError
        self._source = fileio.open_input_file(path)
        try:
            # pages written with a checksum (format 1.1) are verified when read: a flipped bit is an error
            self.file = pq.ParquetFile(self._source, page_checksum_verification=True)
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

    @property
    def nbytes(self) -> int:
        """Size of the open file in bytes."""
        return self._source.size()

    def blake2b(self, digest_size: int) -> str:
        """BLAKE2b digest (hex) of the whole open file; reads it once, in 8 MiB blocks."""
        digest = hashlib.blake2b(digest_size=digest_size)
        size, offset, block = self.nbytes, 0, 8 * 2**20
        try:
            while offset < size:
                chunk = self._source.read_at(min(block, size - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
        except (pa.ArrowException, OSError) as exc:
            raise _corrupt(self.path, exc) from exc
        return digest.hexdigest()

    def close(self) -> None:
        self.file.close()
        self._source.close()


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    handle = _Parquet(path)
    try:
        return handle.read(columns)
    finally:
        handle.close()


# --------------------------------------------------------------------------------------------------
# Analysis tables: checked against the contract's schemas on read
# --------------------------------------------------------------------------------------------------


def _type_fits(found: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column of type ``found`` holds what a column of ``expected`` holds (a safe cast may follow)."""
    if found == expected:
        return True
    families = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    )
    for family in families:
        if family(expected):
            return bool(family(found)) or (pa.types.is_floating(expected) and pa.types.is_integer(found))
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        listed = pa.types.is_list(found) or pa.types.is_large_list(found) or pa.types.is_fixed_size_list(found)
        return listed and _type_fits(found.value_type, expected.value_type)
    return False


def _analysis_schema_problems(schema: pa.Schema, name: str) -> list[str]:
    """What is wrong with the columns of analysis table ``name`` (empty: fits the contract, or an unknown table)."""
    expected = ANALYSIS_SCHEMAS.get(name)
    if expected is None:
        return []
    problems = []
    missing = [field.name for field in expected if field.name not in schema.names]
    if missing:
        problems.append(f"it lacks column(s) {missing}")
    for field in expected:
        if field.name in schema.names:
            found = schema.field(field.name).type
            if not (_type_fits(found, field.type) or (pa.types.is_null(found) and field.nullable)):
                problems.append(f"column {field.name!r} has type {found}, expected {field.type}")
    if name == POINTS_TABLE:
        for field in schema:
            if field.name.startswith(CLUSTER_COLUMN_PREFIX) and not (
                pa.types.is_integer(field.type) or pa.types.is_null(field.type)
            ):
                problems.append(f"clustering column {field.name!r} has type {field.type}, expected int32")
            if field.name.startswith(EMBEDDING_COLUMN_PREFIX) and not _type_fits(field.type, pa.float32()):
                problems.append(f"embedding column {field.name!r} has type {field.type}, expected float32")
    return problems


def _bad_analysis_table(path: Path, name: str, problems: Sequence[str]) -> CorruptFileError:
    return CorruptFileError(
        f"{path} is not a valid {name!r} analysis table: {'; '.join(problems)} "
        f"(see {name.upper()}_SCHEMA in lrp_lightning.store). {_repair_advice(path)}"
    )


def _conform_analysis_table(table: pa.Table, name: str, path: Path) -> pa.Table:
    """Check a read analysis table against the contract and cast its required columns to the contract's types.

    Raises
    ------
    CorruptFileError
        If a required column is missing, of another kind, or null where the contract allows no nulls.
    """
    expected = ANALYSIS_SCHEMAS.get(name)
    if expected is None:
        return table
    problems = _analysis_schema_problems(table.schema, name)
    if problems:
        raise _bad_analysis_table(path, name, problems)
    for field in expected:
        index = table.schema.get_field_index(field.name)
        column = table.column(index)
        if column.null_count and not field.nullable:
            problems.append(f"column {field.name!r} holds {column.null_count} nulls")
            continue
        if column.type != field.type:
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                problems.append(f"column {field.name!r} does not fit type {field.type} ({exc})")
                continue
            table = table.set_column(index, pa.field(field.name, field.type, field.nullable), column)
    if problems:
        raise _bad_analysis_table(path, name, problems)
    return table


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
        raise SchemaError(f"relevance maps must have shape (N, height, width), got shape {array.shape}.{hint}")
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
            pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(block.reshape(-1))])
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
        offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)[chunk.offset : chunk.offset + count + 1]
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
    token_relevance: Sequence[Any] | None = None,
    method: str | None = None,
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
    token_relevance : sequence of 1-D array_like, optional
        Token runs: each sample's relevance per token (padding removed), stored as
        :data:`~lrp_lightning.store.TOKEN_RELEVANCE`; ``relevance`` is then its :func:`token_maps`.
        ``relevance_sum`` defaults to its sums. Default: none (other modalities).
    method : str, optional
        The attribution method of every row, stored as :data:`~lrp_lightning.store.METHOD` (runs with
        several methods). Default: no column (the rows are the store's first method).

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
    tokens = None if token_relevance is None else _token_relevance_column(token_relevance, n)
    if relevance_sum is None and tokens is not None:
        sums = np.array([np.sum(v, dtype=np.float64) for v in tokens.to_numpy(zero_copy_only=False)], np.float32)
    elif relevance_sum is None:
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
    if tokens is not None:
        arrays.append(tokens)
        fields.append(TOKEN_RELEVANCE_FIELD)
    if method is not None:
        if not isinstance(method, str) or not method:
            raise SchemaError(f"method must be a non-empty str, got {method!r}")
        arrays.append(pa.array([method] * n, pa.string()))
        fields.append(METHOD_FIELD)
    shape = json.dumps(list(maps.shape[1:])).encode()
    schema = pa.schema(fields, metadata={META_HEATMAP_SHAPE: shape})
    return pa.Table.from_arrays([_as_arrow(a) for a in arrays], schema=schema)


def _ragged(values: Sequence[Any], name: str, length: int, kind: str, dtype: Any) -> list[np.ndarray]:
    """One 1-D array per sample, of ``dtype``; the values' numpy kind must be in ``kind``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise SchemaError(f"{name} must be a sequence of 1-D arrays, one per sample, got {type(values).__name__}")
    if len(values) != length:
        raise SchemaError(f"{name} must hold one array per sample ({length}), got {len(values)}")
    arrays = []
    for row, value in enumerate(values):
        array = np.asarray(value)
        if array.ndim != 1 or (array.size and array.dtype.kind not in kind):
            raise SchemaError(
                f"{name} of row {row} must be a 1-D array of {'integers' if kind == 'iu' else 'numbers'}, got "
                f"dtype {array.dtype} of shape {array.shape}"
            )
        arrays.append(array.astype(dtype))
    return arrays


def _list_array(arrays: Sequence[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.empty(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=value_type))


def _token_relevance_column(values: Sequence[Any], length: int) -> pa.ListArray:
    return _list_array(_ragged(values, TOKEN_RELEVANCE, length, "fiu", np.float32), pa.float32())


def token_maps(token_relevance: Sequence[Any], max_tokens: int) -> np.ndarray:
    """The fixed-shape maps of a token run: each sample's relevance per token, zero-padded or cut to
    ``max_tokens``, as ``float32`` of shape ``(N, 1, max_tokens)`` (the ``relevance`` column's maps).

    Parameters
    ----------
    token_relevance : sequence of 1-D array_like
        Relevance per token of each sample (padding removed).
    max_tokens : int
        The run's map width (:attr:`RunStore.max_tokens`).
    """
    max_tokens = _check_index(max_tokens, "max_tokens", minimum=1)
    rows = _ragged(token_relevance, TOKEN_RELEVANCE, len(token_relevance), "fiu", np.float32)
    maps = np.zeros((len(rows), 1, max_tokens), np.float32)
    for row, values in enumerate(rows):
        kept = values[:max_tokens]
        maps[row, 0, : kept.size] = kept
    return maps


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
    token_ids: Sequence[Any] | None = None,
    tokens: Sequence[Sequence[str] | None] | None = None,
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
    token_ids : sequence of 1-D array_like of int, optional
        Token runs: each sample's token ids, padding removed (:data:`~lrp_lightning.store.TOKEN_IDS`).
    tokens : sequence of (sequence of str or None), optional
        Token runs: each sample's token strings, as many as its token ids
        (:data:`~lrp_lightning.store.TOKENS`). Default: none (null). Needs ``token_ids``.

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
    if tokens is not None and token_ids is None:
        raise SchemaError("tokens (token strings) need token_ids: pass the token ids of each sample too")
    if token_ids is not None:
        ids_column, strings = _token_columns(token_ids, tokens, n)
        arrays += [ids_column, strings]
        fields += [TOKEN_ID_FIELD, TOKEN_STRING_FIELD]
    for name, values in (metadata or {}).items():
        if name in PROBE_COLUMNS or name in (TOKEN_IDS, TOKENS):
            raise SchemaError(f"metadata column {name!r} clashes with a required probe column")
        column = pa.array(values)
        if len(column) != n:
            raise SchemaError(f"metadata column {name!r} must hold one value per sample ({n})")
        arrays.append(column)
        fields.append(pa.field(name, column.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _token_columns(token_ids: Sequence[Any], tokens: Sequence[Any] | None, n: int) -> tuple[pa.Array, pa.Array]:
    ids = _ragged(token_ids, TOKEN_IDS, n, "iu", np.int64)
    for row, values in enumerate(ids):
        if values.size and (values.min() < 0 or values.max() > np.iinfo(np.int32).max):
            raise SchemaError(f"token ids of row {row} must be in [0, 2**31 - 1], got {values.min()}..{values.max()}")
    ids_column = _list_array([v.astype(np.int32) for v in ids], pa.int32())
    if tokens is None:
        return ids_column, pa.nulls(n, TOKEN_STRING_FIELD.type)
    if len(tokens) != n:
        raise SchemaError(f"tokens must hold one list of token strings per sample ({n}), got {len(tokens)}")
    rows = []
    for row, (strings, values) in enumerate(zip(tokens, ids)):
        if strings is not None:
            strings = list(strings)
            if len(strings) != values.size or not all(isinstance(t, str) for t in strings):
                raise SchemaError(
                    f"tokens of row {row} must be {values.size} strings, one per token id, got {strings[:5]!r}"
                    f"{'...' if len(strings) > 5 else ''} ({len(strings)} items)"
                )
        rows.append(strings)
    return ids_column, pa.array(rows, type=TOKEN_STRING_FIELD.type)


def _conform_required(table: pa.Table, schema: pa.Schema, what: str, builder: str) -> list[Any]:
    if not isinstance(table, pa.Table):
        raise SchemaError(f"{what} must be a pyarrow.Table, got {type(table).__name__}; build it with {builder}")
    if len(set(table.column_names)) != len(table.column_names):
        raise SchemaError(f"{what} has duplicate column names: {table.column_names}")
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; build it with {builder}")
    return [_conform_column(table.column(field.name), field, what) for field in schema]


def _conform_column(column: pa.ChunkedArray, field: pa.Field, what: str) -> pa.ChunkedArray:
    if column.null_count and not field.nullable:
        raise SchemaError(f"column {field.name!r} of the {what} has {column.null_count} null values")
    if column.type != field.type:
        try:
            column = column.cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"column {field.name!r} of the {what} has type {column.type}, expected {field.type} ({exc})"
            ) from exc
    return column


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
        if name in (TOKEN_RELEVANCE, METHOD):
            field = TOKEN_RELEVANCE_FIELD if name == TOKEN_RELEVANCE else METHOD_FIELD
            columns.append(_conform_column(column, field, "attribution table"))
            fields.append(field)
            continue
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            raise SchemaError(
                f"extra attribution column {name!r} has type {kind}; extra columns must be numeric or bool "
                "(store other results in analysis tables)"
            )
        columns.append(column)
        fields.append(pa.field(name, kind))
    height, width = heatmap_shape
    declared = (table.schema.metadata or {}).get(META_HEATMAP_SHAPE)
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
            raise SchemaError(f"column {name!r} holds {sorted(set(values.tolist()))[:5]}, expected only {expected}")
    metadata = {
        META_FORMAT: FORMAT_VERSION.encode(),
        META_HEATMAP_SHAPE: json.dumps([height, width]).encode(),
    }
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))


def _conform_probe_table(table: pa.Table) -> pa.Table:
    if isinstance(table, pa.Table) and THUMBNAIL not in table.column_names:
        table = table.append_column(pa.field(THUMBNAIL, pa.binary()), pa.nulls(table.num_rows, pa.binary()))
    columns = _conform_required(table, PROBE_SCHEMA, "probe table", "make_probe_table(...)")
    fields = list(PROBE_SCHEMA)
    for name in table.column_names:
        if name not in PROBE_COLUMNS:
            field = {TOKEN_IDS: TOKEN_ID_FIELD, TOKENS: TOKEN_STRING_FIELD}.get(name)
            column = table.column(name)
            columns.append(column if field is None else _conform_column(column, field, "probe table"))
            fields.append(table.schema.field(name) if field is None else field)
    ids = columns[0].to_numpy()
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise SchemaError(f"probe sample ids must be unique; repeated: {unique[counts > 1][:10].tolist()}")
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata={META_FORMAT: FORMAT_VERSION.encode()}))


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


def _conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
