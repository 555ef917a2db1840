"""Committed epochs: staging each rank's part, the commit, recovery after a crash, consistent reads.

This module implements the store's crash protocol; :class:`~lrp_lightning.store.RunStore` calls it
(``write_part``, ``commit_epoch``, ``create`` on an existing store, and every read of an epoch).

Writing an epoch (one writer process per rank, rank 0 commits)
---------------------------------------------------------------
1. Every rank calls :meth:`RunStore.write_part`, which writes
   ``attributions/.staging-epoch_000003-step_<global_step>/part-<rank>.parquet`` through a temp file,
   ``fsync`` and ``os.replace``. Every rank knows the global step, so they agree on the directory
   without communicating. A rank without samples still writes an (empty) part.
2. The caller synchronises the ranks (a barrier).
3. Rank 0 calls :meth:`RunStore.commit_epoch`, which

   a. checks that parts ``0 .. world_size - 1`` exist and are readable Parquet with compatible
      schemas, removes other files from the staging directory, and counts the unique sample ids;
   b. writes ``_commit.json`` into the staging directory (atomically) with a fresh random commit id;
   c. if ``epoch_000003/`` exists (a re-run after resuming), renames it to
      ``.replaced-epoch_000003-<its commit id>/``;
   d. renames the staging directory to ``epoch_000003/``;
   e. rewrites ``manifest.json`` atomically (temp file in the same directory, ``fsync``,
      ``os.replace``, ``fsync`` of the directory) with the epoch's entry, which names the commit id;
   f. deletes the moved-aside previous version and stale staging directories of this epoch.

Why readers never see a partial epoch or a mix
----------------------------------------------
Readers look only at epochs listed in the manifest, and an entry names a commit id. The files of
commit ``c`` are read from ``epoch_NNNNNN/`` if its ``_commit.json`` says ``c``, otherwise from
``.replaced-epoch_NNNNNN-c/``. A directory is only ever created complete (by a rename, after its
parts and marker were written and synced) and is never modified afterwards, only renamed or deleted;
commit ids are never reused, and a version that left ``epoch_NNNNNN/`` never comes back. Crash
points:

* during 1-b: only the staging directory is touched; the manifest still lists the previous version
  (or nothing) in ``epoch_NNNNNN/``. Leftover staging directories and temp files start with ``.``
  and are ignored by readers (and by ``pyarrow.dataset``); the next commit of that epoch removes
  them. A re-run with the same global step overwrites each rank's part; parts of ranks beyond the
  current ``world_size`` are removed in 3-a.
* between c and d: ``epoch_NNNNNN/`` is missing, the manifest names the old commit, which is read
  from ``.replaced-epoch_NNNNNN-<old>/``.
* between d and e: ``epoch_NNNNNN/`` holds the new version, whose marker does not match the
  manifest, so readers still read the old version from its moved-aside directory.
* between e and f: the manifest names the new version in ``epoch_NNNNNN/``; the moved-aside
  directory is unreferenced garbage, deleted by the next commit of that epoch or by
  :meth:`RunStore.create`.

:meth:`RunStore.create` on an existing store (a resumed run) finishes an interrupted commit: an
``epoch_NNNNNN/`` directory whose marker differs from the manifest is complete (it was renamed into
place after step b), so its entry is written to the manifest (roll forward) before unreferenced
moved-aside directories are deleted.

Stale staging directories (of attempts that died before their commit) are deleted when that epoch
is committed again (step f), when a later epoch is committed (staging directories of earlier epochs
in which nothing changed since that commit began), and by :meth:`RunStore.create` (those in which
nothing changed since the last commit, i.e. the manifest's modification time). A live writer's
staging directory is always newer than the last commit, so none of these rules touches it; a second
training writing into the same store at the same time is the writer lock's to refuse.

A reader opens all part files of a version before reading any, and checks the marker again after
opening them: an open file stays readable after a concurrent rename or delete (POSIX), so a read
either sees one version completely or retries with a fresh manifest.

Migrating a format 1.x store in place (:meth:`RunStore.migrate`)
----------------------------------------------------------------
Format 1.x named the folders hive-style (``epoch=NNNNNN``), which Parquet readers take for a
partition that clashes with the integer ``epoch`` column. ``lrp-analyze`` and :meth:`RunStore.create`
(resuming) migrate such a store before writing into it; the manifest's ``format_version`` says
whether it is done:

1. each ``attributions/epoch=NNNNNN/`` is renamed to ``epoch_NNNNNN/`` and each
   ``.replaced-epoch=NNNNNN-<commit>/`` to ``.replaced-epoch_NNNNNN-<commit>/`` (one atomic rename per
   directory; a directory's content, marker included, is never touched);
2. each analysis table ``analysis/epoch=NNNNNN/<name>.parquet`` is written (temp file, ``fsync``,
   ``os.replace``) to ``analysis/<name>/epoch_NNNNNN.parquet`` with an ``epoch`` column added and its
   metadata (config hash, source commit) kept, and only then deleted; an unreadable table is left
   where it is (derived data: ``lrp-analyze`` recomputes it);
3. last, ``manifest.json`` is rewritten atomically with format version 2.0 and the new file paths.

Readers look for an epoch's version under both names (new first), so every crash point reads
consistently: before 3 the manifest names the same commits, found in ``epoch_NNNNNN/`` once renamed
and in ``epoch=NNNNNN/`` before; a reader racing a rename retries with the manifest like for a
concurrent commit. A table found at both places (a crash inside 2) is taken from the new place.
Re-running the migration after a crash finishes it: every step skips what is done. Legacy staging
directories (``.staging-epoch=...``) are left to the next commit of their epoch, which removes them.
Migration runs under the same assumption as any write: no other writer is active in the store.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import fileio
from .contract import (
    ATTRIBUTIONS_DIR,
    COMMIT_MARKER,
    COMPRESSION,
    EPOCH,
    GLOBAL_STEP,
    MANIFEST_FILE,
    META_HEATMAP_SHAPE,
    METHOD,
    PART_HASH_BYTES,
    PART_HASHES_KEY,
    PART_SIZES_KEY,
    RELEVANCE,
    REPLACED_PREFIX,
    SAMPLE_ID,
    STAGING_PREFIX,
    STORE_SUBDIR,
    epoch_dirname,
    legacy_epoch_dirname,
    legacy_replaced_dirname,
    parse_epoch_dirname,
    parse_legacy_epoch_dirname,
    parse_replaced_dirname,
    part_filename,
    replaced_dirname,
    staging_dirname,
)
from .errors import (
    CorruptFileError,
    LinkOutsideRunError,
    SchemaError,
    StoreError,
    _check_heatmap_shape,
    _check_index,
)
from .methods import _method_groups
from .tables import (
    _conform_attribution_table,
    _conform_to,
    _first_occurrences,
    _Parquet,
    _rows_per_group,
    decode_relevance,
)

__all__ = ["EpochInfo", "PartWriter"]

_OPEN_RETRIES = 20


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
    sizes : tuple of int or None
        Size in bytes of each part, in the order of ``files``; None in stores of format 1.0.
    hashes : tuple of str or None
        BLAKE2b digest (hex) of each part, in the order of ``files``; None in stores of format 1.0.
    """

    epoch: int
    global_step: int
    rows: int
    files: tuple[str, ...]
    commit: str
    sizes: tuple[int, ...] | None = None
    hashes: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the manifest entry of this epoch."""
        entry: dict[str, Any] = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rows": self.rows,
            "files": list(self.files),
            "commit": self.commit,
        }
        if self.sizes is not None:
            entry[PART_SIZES_KEY] = list(self.sizes)
        if self.hashes is not None:
            entry[PART_HASHES_KEY] = list(self.hashes)
        return entry


# --------------------------------------------------------------------------------------------------
# Manifest entries and commit markers
# --------------------------------------------------------------------------------------------------


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(fileio.read_regular(directory / COMMIT_MARKER).decode("utf-8"))
        _entry_from_json(data, directory / COMMIT_MARKER)
    except LinkOutsideRunError:
        raise  # not a missing version: a link out of the run, which the reader must name
    except (OSError, ValueError, StoreError):
        return None
    return data


def _entry_from_json(data: Any, source: Path) -> EpochInfo:
    try:
        files = data["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError("files must be a list of str")
        sizes, hashes = data.get(PART_SIZES_KEY), data.get(PART_HASHES_KEY)
        if sizes is not None:
            if not isinstance(sizes, list) or len(sizes) != len(files):
                raise TypeError(f"{PART_SIZES_KEY} must be a list of one size per file")
            sizes = tuple(_check_index(size, PART_SIZES_KEY) for size in sizes)
        if hashes is not None:
            if not isinstance(hashes, list) or len(hashes) != len(files) or not all(isinstance(h, str) for h in hashes):
                raise TypeError(f"{PART_HASHES_KEY} must be a list of one hex digest per file")
            hashes = tuple(hashes)
        info = EpochInfo(
            epoch=_check_index(data["epoch"], "epoch"),
            global_step=_check_index(data["global_step"], "global_step"),
            rows=_check_index(data["rows"], "rows"),
            files=tuple(files),
            commit=str(data["commit"]),
            sizes=sizes,
            hashes=hashes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"{source} has a malformed epoch entry {data!r} ({exc}); the file was edited by hand or is damaged."
        ) from exc
    return info


# --------------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------------


def _store_dir_for_create(path: Path) -> Path:
    """The ``plugins/lrp`` directory of a store to create at ``path`` (a run directory or that directory)."""
    if (path / MANIFEST_FILE).exists() or path.parts[-2:] == STORE_SUBDIR.parts:
        return path
    return path / STORE_SUBDIR


def _epoch_dir(store_dir: Path, epoch: int) -> Path:
    """Directory of an epoch's committed parts."""
    return store_dir / ATTRIBUTIONS_DIR / epoch_dirname(epoch)


def _staging_dir(store_dir: Path, epoch: int, global_step: int) -> Path:
    """Directory in which the ranks stage an epoch's parts (step 1 of the protocol)."""
    return store_dir / ATTRIBUTIONS_DIR / staging_dirname(epoch, global_step)


def _aside_dir(store_dir: Path, epoch: int, commit: str) -> Path:
    """Directory that the version ``commit`` of an epoch is moved aside to while it is replaced."""
    return store_dir / ATTRIBUTIONS_DIR / replaced_dirname(epoch, commit)


def _version_dirs(store_dir: Path, epoch: int, commit: str) -> tuple[Path, ...]:
    """Where the version ``commit`` of an epoch may be, in the order to look: this format's names, then
    format 1.x's (a store not migrated yet, or being migrated)."""
    root = store_dir / ATTRIBUTIONS_DIR
    return (
        root / epoch_dirname(epoch),
        root / replaced_dirname(epoch, commit),
        root / legacy_epoch_dirname(epoch),
        root / legacy_replaced_dirname(epoch, commit),
    )


def _migrate_attributions(store_dir: Path) -> None:
    """Step 1 of the migration (module doc): rename format 1.x epoch and moved-aside directories."""
    root = store_dir / ATTRIBUTIONS_DIR
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        epoch = parse_legacy_epoch_dirname(child.name)
        aside = parse_replaced_dirname(child.name)
        if epoch is not None:
            target = root / epoch_dirname(epoch)
        elif aside is not None and child.name == legacy_replaced_dirname(*aside):
            target = root / replaced_dirname(*aside)
        else:
            continue
        if target.exists():
            raise StoreError(
                f"cannot migrate {child}: {target} exists too, so the store was written by two versions of "
                "lrp-lightning at once. Keep the one the manifest's commit id names (its _commit.json) and "
                "move the other out of the store, then run the migration again."
            )
        fileio.move_dir(child, target)


# --------------------------------------------------------------------------------------------------
# Writing: staged parts
# --------------------------------------------------------------------------------------------------


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
        self.path = _staging_dir(_store_dir_for_create(Path(path)), self.epoch, self.global_step) / part_filename(
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
            self._tmp = fileio.temp_path(self.path)
            small = [name for name in table.column_names if name != RELEVANCE]
            self._writer = pq.ParquetWriter(
                self._tmp,
                table.schema,
                compression=COMPRESSION,
                use_dictionary=small,
                write_statistics=small,
                write_page_checksum=True,
            )
        elif not table.schema.equals(self._writer.schema, check_metadata=False):
            raise SchemaError(
                f"rows for {self.path} have columns {table.schema.names} of other types than the rows "
                f"written before ({self._writer.schema.names})"
            )
        for group in _method_groups(table):  # no row group mixes methods (see _method_groups)
            self._writer.write_table(group, row_group_size=self.row_group_size)
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
                fileio.fsync_file(self._tmp)
                os.replace(self._tmp, self.path)
            except BaseException:
                self._tmp.unlink(missing_ok=True)
                raise
            fileio.fsync_dir(self.path.parent)
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
# Commit and recovery
# --------------------------------------------------------------------------------------------------


def _commit(
    store_dir: Path, epoch: int, global_step: int, world_size: int, publish: Callable[[EpochInfo], None]
) -> EpochInfo:
    """Commit the staged parts of an epoch: steps 3-a to 3-f of the protocol above.

    ``publish(info)`` is step e: it must rewrite the manifest atomically with the new entry.
    """
    staging = _staging_dir(store_dir, epoch, global_step)
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
            fileio.remove_tree(child)
        else:
            child.unlink(missing_ok=True)
    parts = [_Parquet(staging / name) for name in names]
    try:
        try:
            pa.unify_schemas([part.file.schema_arrow for part in parts])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"the parts in {staging} have conflicting column types: {exc}") from exc
        ids = np.concatenate([part.read([SAMPLE_ID]).column(0).to_numpy() for part in parts])
        sizes = tuple(part.nbytes for part in parts)
        hashes = tuple(part.blake2b(PART_HASH_BYTES) for part in parts)  # one read of each part, just written
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
        sizes=sizes,
        hashes=hashes,
    )
    fileio.atomic_write_json(staging / COMMIT_MARKER, info.to_json())
    final = _epoch_dir(store_dir, epoch)
    if final.exists():
        previous = _read_marker(final)
        commit = previous["commit"] if previous else f"unknown{uuid.uuid4().hex}"
        fileio.move_dir(final, _aside_dir(store_dir, epoch, commit))
    fileio.move_dir(staging, final)
    publish(info)
    _remove_leftovers(store_dir, epoch)
    return info


def _remove_leftovers(store_dir: Path, epoch: int) -> None:
    """Delete the staging directories and moved-aside versions of an epoch (step 3-f), and staging
    directories of earlier epochs left by attempts that died before their commit."""
    root = store_dir / ATTRIBUTIONS_DIR
    prefixes = tuple(
        f"{prefix}{name}-"
        for prefix in (STAGING_PREFIX, REPLACED_PREFIX)
        for name in (epoch_dirname(epoch), legacy_epoch_dirname(epoch))
    )
    started = time.time()
    for child in root.iterdir():
        if child.name.startswith(prefixes):
            fileio.remove_tree(child)
        elif (staged := _staged_epoch(child.name)) is not None and staged < epoch:
            _remove_stale_staging(child, started)


def _staged_epoch(name: str) -> int | None:
    """The epoch of a :func:`staging_dirname`, or None for any other name."""
    if not name.startswith(STAGING_PREFIX):
        return None
    return parse_epoch_dirname(name[len(STAGING_PREFIX) :].split("-", 1)[0])


def _remove_stale_staging(directory: Path, older_than: float) -> None:
    """Delete a staging directory if nothing in it changed since ``older_than`` (seconds since the epoch).

    A live writer's staging directory is always newer than the last commit: the ranks stage an epoch
    after the previous one was committed, and every part written touches the directory. So one whose
    newest entry predates the last commit belongs to an attempt that died. (A second training writing
    into the same store at once is refused by the writer lock, not guessed at here.)
    """
    try:
        newest = max([directory.lstat().st_mtime] + [entry.lstat().st_mtime for entry in directory.iterdir()])
    except OSError:
        return  # vanished or unreadable: nothing to clean
    if newest < older_than:
        fileio.remove_tree(directory)


def _recover(
    store_dir: Path,
    epochs: Mapping[int, EpochInfo],
    write_manifest: Callable[[Mapping[int, EpochInfo]], None],
) -> None:
    """Finish an interrupted commit and drop unreferenced moved-aside versions (see the module doc).

    ``epochs`` are the manifest's entries; ``write_manifest`` rewrites the manifest with new ones.
    """
    root = store_dir / ATTRIBUTIONS_DIR
    for child in store_dir.glob(f".{MANIFEST_FILE}.tmp-*"):
        child.unlink(missing_ok=True)
    if not root.is_dir():
        return
    epochs = dict(epochs)
    changed = False
    for child in sorted(root.iterdir()):
        named = parse_epoch_dirname(child.name)
        marker = _read_marker(child) if named is not None and child.is_dir() else None
        if marker is None:
            continue
        info = _entry_from_json(marker, child / COMMIT_MARKER)
        listed = epochs.get(info.epoch)
        complete = all((child / PurePosixPath(f).name).is_file() for f in info.files)
        if complete and info.epoch == named and (listed is None or listed.commit != info.commit):
            epochs[info.epoch] = info  # renamed into place after its marker was written: roll forward
            changed = True
    if changed:
        write_manifest(epochs)
    last_commit = (store_dir / MANIFEST_FILE).stat().st_mtime
    for child in root.iterdir():
        aside = parse_replaced_dirname(child.name)
        if aside is not None:
            listed = epochs.get(aside[0])
            if listed is None or listed.commit != aside[1]:
                fileio.remove_tree(child)
        elif _staged_epoch(child.name) is not None:
            _remove_stale_staging(child, last_commit)


# --------------------------------------------------------------------------------------------------
# Reading: one committed version, opened together
# --------------------------------------------------------------------------------------------------


class _EpochSnapshot:
    """All part files of one committed version of an epoch, opened together."""

    def __init__(
        self,
        info: EpochInfo,
        parts: list[_Parquet],
        heatmap_shape: tuple[int, int],
        method: tuple[str, str] | None = None,
    ) -> None:
        self.info = info
        self.parts = parts
        self.heatmap_shape = heatmap_shape
        self.method = method  # (wanted method, the store's first method): rows of other methods are left out
        self._keep: list[np.ndarray | None] | None = None
        self._ids: list[np.ndarray] | None = None

    def __enter__(self) -> _EpochSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        for part in self.parts:
            part.close()

    def check_committed(self) -> None:
        """Check, without reading data pages, that the parts are the ones the manifest committed.

        Each part's size must be the committed one (format 1.1), and its rows must say this epoch and
        global step (from the Parquet column statistics, or the two small columns where there are
        none), so a part of another epoch copied over this one is an error, in stores of any version.
        """
        info = self.info
        for index, part in enumerate(self.parts):
            # maps of another shape with the same number of values would silently reshape every map
            declared = (part.file.schema_arrow.metadata or {}).get(META_HEATMAP_SHAPE)
            try:
                stored = tuple(json.loads(declared)) if declared is not None else None
            except ValueError:
                stored = None
            if stored is not None and stored != self.heatmap_shape:
                raise CorruptFileError(
                    f"{part.path} holds maps of shape {list(stored)}, but {part.path.parents[2] / MANIFEST_FILE} "
                    f"says heatmap_shape {list(self.heatmap_shape)}: the manifest was edited. Set its "
                    f"heatmap_shape back to {list(stored)}."
                )
            if info.sizes is not None and part.nbytes != info.sizes[index]:
                raise CorruptFileError(
                    f"{part.path} holds {part.nbytes} bytes, but epoch {info.epoch} was committed with "
                    f"{info.sizes[index]} bytes in it: the file was changed or replaced after the commit "
                    "(lrp-lightning never modifies a committed file). Re-run the attribution of this epoch."
                )
            for name, expected in ((EPOCH, info.epoch), (GLOBAL_STEP, info.global_step)):
                found = _column_values(part, name)
                if found and found != {expected}:
                    raise CorruptFileError(
                        f"{part.path} holds rows of {name} {sorted(found)[:5]}, but the manifest lists it "
                        f"as {name} {expected}: a file of another epoch or run was copied over it. Re-run "
                        "the attribution of this epoch."
                    )

    def verify_hashes(self) -> None:
        """Check every part's BLAKE2b digest against the committed one (reads each part once)."""
        if self.info.hashes is None:
            return
        for part, expected in zip(self.parts, self.info.hashes):
            if part.blake2b(PART_HASH_BYTES) != expected:
                raise CorruptFileError(
                    f"{part.path} does not match the BLAKE2b digest committed for it: its content changed "
                    f"after epoch {self.info.epoch} was committed (a damaged disk or an edit). Re-run the "
                    "attribution of this epoch."
                )

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

    def _method_mask(self, part: _Parquet, rows: int) -> np.ndarray | None:
        """Rows of ``part`` of the wanted method (None: all of them). Rows without a method column are
        the first method's (stores before format 2.2)."""
        if self.method is None:
            return None
        wanted, first = self.method
        if METHOD not in part.names:
            return None if wanted == first else np.zeros(rows, dtype=bool)
        column = part.read([METHOD]).column(0)
        mask = np.asarray(pc.fill_null(pc.equal(column, wanted), False).to_numpy(zero_copy_only=False), dtype=bool)
        return None if mask.all() else mask

    def keep_masks(self) -> list[np.ndarray | None]:
        """Per part, the rows to keep (the wanted method's; first occurrence of each sample id in rank order)."""
        if self._keep is None:
            ids = self.sample_ids()
            chosen = [self._method_mask(part, len(i)) for part, i in zip(self.parts, ids)]
            keep = _first_occurrences(np.concatenate(ids)) if ids else None
            if any(mask is not None for mask in chosen):
                wanted = np.concatenate([np.ones(len(i), bool) if m is None else m for i, m in zip(ids, chosen)])
                first = _first_occurrences(np.concatenate(ids)[wanted])
                keep = wanted.copy()
                if first is not None:
                    keep[wanted] = first
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
                stop = start + part.file.metadata.row_group(index).num_rows
                if keep is not None and not keep[start:stop].any():  # another method's row group
                    start = stop
                    continue
                table = part.read_row_group(index, present)
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


def _column_values(part: _Parquet, name: str) -> set[int]:
    """The distinct values of an integer column of a part: from the row groups' statistics if they all
    have them (no data read), else from the column itself."""
    metadata = part.file.metadata
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    if name not in names:
        return set()
    column = names.index(name)
    values: set[int] = set()
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max:
            return {int(v) for v in np.unique(part.read([name]).column(0).to_numpy())}
        values.update((int(stats.min), int(stats.max)))
    return values


def _open_epoch(
    store_dir: Path,
    epoch: int,
    entry: Callable[[int], EpochInfo],
    heatmap_shape: tuple[int, int],
    method: tuple[str, str] | None = None,
) -> _EpochSnapshot:
    """Open every part of the committed version of ``epoch`` that the manifest names.

    ``entry(epoch)`` returns the manifest's current entry (re-reading the manifest when it changed):
    if a concurrent commit replaces the epoch between reading the entry and opening the files, the
    files are looked up again under the new entry.
    """
    looked: list[Path] = []
    missing = ""
    for attempt in range(_OPEN_RETRIES):
        info = entry(epoch)
        for directory in _version_dirs(store_dir, epoch, info.commit):
            marker = _read_marker(directory)
            if marker is None or marker["commit"] != info.commit:
                continue
            parts: list[_Parquet] = []
            try:
                for name in info.files:
                    parts.append(_Parquet(directory / PurePosixPath(name).name))
            except FileNotFoundError as exc:
                missing = f" ({exc.filename} is missing)" if exc.filename else ""
                for part in parts:
                    part.close()
                continue
            except BaseException:
                for part in parts:
                    part.close()
                raise
            marker = _read_marker(directory)
            if marker is not None and marker["commit"] == info.commit:
                snapshot = _EpochSnapshot(info, parts, heatmap_shape, method)
                try:
                    snapshot.check_committed()
                except BaseException:
                    snapshot.__exit__()
                    raise
                return snapshot
            for part in parts:
                part.close()
        looked = list(_version_dirs(store_dir, epoch, info.commit))
        time.sleep(0.002 * (attempt + 1))  # a commit is replacing the epoch; read the new manifest
    raise StoreError(
        f"epoch {epoch} is listed in {store_dir / MANIFEST_FILE}, but its files were found in "
        f"none of {', '.join(str(p) for p in looked)}{missing}; the store was modified outside lrp-lightning. "
        "Re-run the attribution of this epoch."
    )
