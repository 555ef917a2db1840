"""The layout of analysis tables, and migrating a store of format 1.x in place.

Format 1.x named the folders hive-style (``attributions/epoch=000003/``,
``analysis/epoch=000003/<name>.parquet``), which Parquet readers (pandas, pyarrow.dataset, DuckDB,
Polars) take for a partition whose string or dictionary ``epoch`` clashes with the integer column of
the files. Format 2.0 names them ``epoch_000003`` and keeps one folder per analysis table
(``analysis/<name>/epoch_000003.parquet``), each file with an ``epoch`` column. The steps of
:func:`_migrate` and why every crash point reads consistently are in :mod:`lrp_lightning.store.epochs`,
next to the commit protocol they build on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from . import epochs as _epochs
from . import fileio
from .contract import (
    ANALYSIS_DIR,
    ATTRIBUTIONS_DIR,
    EPOCH,
    EPOCHS_KEY,
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    LIBRARY_VERSION_KEY,
    MANIFEST_FILE,
    analysis_filename,
    epoch_dirname,
    legacy_epoch_dirname,
    parse_legacy_epoch_dirname,
)
from .errors import CorruptFileError, SchemaError, StoreError
from .manifest import _library_version
from .tables import _read_parquet

__all__: list[str] = []

_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Valid analysis table names (no ``=``, so a table's folder is never taken for a partition)."""


def _with_epoch_column(table: pa.Table, epoch: int, what: str) -> pa.Table:
    """``table`` with an ``int32`` column ``epoch`` (appended) that says ``epoch`` in every row.

    A table that has the column already must say ``epoch`` in every row (a file never contradicts
    the name it is stored under).
    """
    if EPOCH not in table.column_names:
        column = pa.array(np.full(table.num_rows, epoch, np.int32))
        return table.append_column(pa.field(EPOCH, pa.int32(), nullable=False), column)
    column = table.column(EPOCH)
    if not pa.types.is_integer(column.type) or column.null_count or set(column.to_pylist()) - {epoch}:
        raise SchemaError(
            f"{what} has a column {EPOCH!r} that does not hold epoch {epoch} in every row; leave it out "
            "(the store adds it) or fill it with the epoch the table belongs to"
        )
    return table


def _without_epoch_column(table: pa.Table, epoch: int, path: Path) -> pa.Table:
    """``table`` read from ``path`` without its ``epoch`` column, which must say ``epoch`` in every row."""
    if EPOCH not in table.column_names:
        return table  # written before format 2.0 and not migrated
    column = table.column(EPOCH)
    if not pa.types.is_integer(column.type) or column.null_count or set(column.to_pylist()) - {epoch}:
        raise CorruptFileError(
            f"{path} holds rows of another epoch than {epoch} in its {EPOCH!r} column: a file of another "
            "epoch was copied over it. Delete it and run the analysis again (lrp-analyze --force)."
        )
    return table.drop_columns([EPOCH])


def _analysis_path(store_dir: Path, epoch: int, name: str, root: str = ANALYSIS_DIR) -> Path:
    """Where table ``name`` of ``epoch`` is written: ``<root>/<name>/epoch_NNNNNN.parquet``, ``root`` being
    ``analysis`` or a named analysis' folder (:func:`~lrp_lightning.store.contract.analysis_dirname`)."""
    if not isinstance(name, str) or not _TABLE_NAME_RE.fullmatch(name):
        raise ValueError(
            f"analysis table name {name!r} must start with a letter or digit and hold only letters, "
            "digits, '_', '.' and '-' (e.g. 'points' or 'clusters')"
        )
    return store_dir / root / name / analysis_filename(epoch)


def _readable_analysis_path(store_dir: Path, epoch: int, name: str, root: str = ANALYSIS_DIR) -> Path:
    """Where to read table ``name`` of ``epoch``: its place, or in a format 1.x store its old place."""
    path = _analysis_path(store_dir, epoch, name, root)
    if root == ANALYSIS_DIR and not os.path.lexists(path):
        legacy = store_dir / ANALYSIS_DIR / legacy_epoch_dirname(epoch) / f"{name}.parquet"
        if os.path.lexists(legacy):
            return legacy
    return path


def _analysis_files(store_dir: Path, epoch: int, root: str = ANALYSIS_DIR) -> dict[str, Path]:
    """The analysis table files of an epoch that exist, name → path; format 1.x places included.

    A table found at both places (a migration interrupted between writing and deleting) is taken from
    its new place.
    """
    legacy = store_dir / root / legacy_epoch_dirname(epoch) if root == ANALYSIS_DIR else None
    root = store_dir / root
    found: dict[str, Path] = {}
    for path in sorted(legacy.glob("*.parquet")) if legacy is not None and legacy.is_dir() else []:
        if _TABLE_NAME_RE.fullmatch(path.stem):
            found[path.stem] = path
    try:
        names = [entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        names = []
    for name in names:
        if _TABLE_NAME_RE.fullmatch(name) and parse_legacy_epoch_dirname(name) is None:
            path = root / name / analysis_filename(epoch)
            if os.path.lexists(path):
                found[name] = path
    return dict(sorted(found.items()))


def _migrate(store_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Migrate a format 1.x store in place (the protocol in :mod:`lrp_lightning.store.epochs`).

    ``manifest`` is the parsed manifest (``_parsed_epochs`` included).
    """
    _epochs._migrate_attributions(store_dir)  # step 1
    _migrate_analysis(store_dir)  # step 2
    epochs = {
        epoch: replace(
            info,
            files=tuple(f"{ATTRIBUTIONS_DIR}/{epoch_dirname(epoch)}/{PurePosixPath(f).name}" for f in info.files),
        )
        for epoch, info in manifest["_parsed_epochs"].items()
    }
    data = {key: value for key, value in manifest.items() if key != "_parsed_epochs"}
    data[FORMAT_VERSION_KEY] = FORMAT_VERSION
    data[LIBRARY_VERSION_KEY] = _library_version()
    data[EPOCHS_KEY] = [epochs[e].to_json() for e in sorted(epochs)]
    fileio.atomic_write_json(store_dir / MANIFEST_FILE, data)  # step 3, last


def _migrate_analysis(store_dir: Path) -> None:
    """Step 2: move each format 1.x analysis table to its folder, with an ``epoch`` column."""
    root = store_dir / ANALYSIS_DIR
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        epoch = parse_legacy_epoch_dirname(directory.name)
        if epoch is None or directory.is_symlink() or not directory.is_dir():
            continue
        for legacy in sorted(directory.glob("*.parquet")):
            if not _TABLE_NAME_RE.fullmatch(legacy.stem):
                continue
            target = _analysis_path(store_dir, epoch, legacy.stem)
            if not os.path.lexists(target):
                try:
                    table = _with_epoch_column(_read_parquet(legacy), epoch, str(legacy))
                except (OSError, StoreError, pa.ArrowException):
                    continue  # unreadable derived data stays where it is; lrp-analyze recomputes it
                target.parent.mkdir(parents=True, exist_ok=True)
                fileio.atomic_write_parquet(table, target)
            legacy.unlink()
        fileio.fsync_dir(directory)
        try:
            directory.rmdir()
        except OSError:
            pass  # an unreadable table or a foreign file is left in it
