"""The run store: :class:`RunStore` reads and writes the lrp-lightning files of one run.

The callback writes through it; analysis, the CLI and the TensorBoard plugin read through it. What
the files are called and hold is in :mod:`lrp_lightning.store.contract`; how an epoch is committed
without ever showing readers a partial epoch (the crash protocol) is in
:mod:`lrp_lightning.store.epochs`. This module adds the manifest (run metadata, the list of complete
epochs, format versions) and the probe set; the analysis tables' methods come from
:mod:`lrp_lightning.store.analysis_tables`. Like the whole store, it imports
only the standard library, NumPy and PyArrow, so reading a run is cheap (no torch, no Lightning).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import epochs as _epochs
from . import fileio
from . import migration as _migration
from .analysis_tables import _AnalysisTables
from .contract import (
    EPOCHS_KEY,
    FEATURE_NAMES_KEY,
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    HEATMAP_SHAPE_KEY,
    LIBRARY_VERSION_KEY,
    MANIFEST_FILE,
    MAX_TOKENS_KEY,
    METHODS_KEY,
    MODALITIES,
    MODALITY_KEY,
    MODALITY_TOKENS,
    PROBE_FILE,
    RELEVANCE,
    REVISION_RECORD_KEYS,
    REVISIONS_KEY,
    RUN_ID_KEY,
    RUN_METADATA_KEYS,
    SAMPLE_ID,
    STORE_SUBDIR,
    part_filename,
)
from .epochs import EpochInfo, _EpochSnapshot, _store_dir_for_create
from .errors import (
    CorruptFileError,
    EpochNotFoundError,
    IncompatibleRunError,
    SampleNotFoundError,
    SchemaError,
    StoreError,
    StoreNotFoundError,
    _check_heatmap_shape,
    _check_index,
)
from .lock import check_run_id
from .manifest import (
    _check_writable,
    _library_version,
    _manifest_heatmap_shape,
    _needs_migration,
    _normalise_json,
    _read_manifest,
    _resolve_store_dir,
    find_runs,
)
from .methods import _check_methods, _method_groups, _Methods
from .modalities import _Modalities
from .tables import (
    _conform_attribution_table,
    _conform_probe_table,
    _conform_to,
    _read_parquet,
    _rows_per_group,
    decode_relevance,
)

__all__ = ["RunStore"]


def _modality_keys(
    modality: Any, feature_names: Any, max_tokens: Any, heatmap_shape: Sequence[int], input_shape: Any
) -> dict[str, Any]:
    """The manifest's modality keys, checked against each other and the shapes."""
    if modality is not None and modality not in MODALITIES:
        raise SchemaError(f"modality must be one of {list(MODALITIES)} or None, got {modality!r}")
    names = None
    if feature_names is not None:
        if isinstance(feature_names, str) or not isinstance(feature_names, Sequence):
            raise SchemaError(f"feature_names must be a list of str, one per feature, got {feature_names!r}")
        names = [str(name) for name in feature_names]
        if input_shape is not None and len(input_shape) == 1 and len(names) != int(input_shape[0]):
            raise SchemaError(
                f"feature_names has {len(names)} names, but the inputs hold {int(input_shape[0])} features"
            )
    if modality == MODALITY_TOKENS:
        max_tokens = _check_index(max_tokens, "max_tokens", minimum=1)
        if tuple(heatmap_shape) != (1, max_tokens):
            raise SchemaError(
                f"a token run's heatmap_shape must be (1, max_tokens) = (1, {max_tokens}), got {tuple(heatmap_shape)}"
            )
    elif max_tokens is not None:
        raise SchemaError(f"max_tokens belongs to token runs (modality='tokens'), got modality {modality!r}")
    return {MODALITY_KEY: modality, FEATURE_NAMES_KEY: names, MAX_TOKENS_KEY: max_tokens}


class RunStore(_AnalysisTables, _Modalities, _Methods):
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
        self._verified: set[str] = set()  # commits whose parts matched their committed digests
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
        run_id: str | None = None,
        adopt_unowned: bool = False,
        modality: str | None = None,
        feature_names: Sequence[str] | None = None,
        max_tokens: int | None = None,
        methods: Sequence[Mapping[str, Any]] | None = None,
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
        run_id : str, optional
            The writing training (:func:`new_run_id`); an existing store must hold the same id (a
            resume). Default: none, not tied to a training (e.g. dataset-wide attributions).
        adopt_unowned : bool, default False
            Give ``run_id`` to an existing store without one (format 1.0), on a resume of that version.
        modality : str, optional
            What a sample is, one of :data:`MODALITIES`. Default: not recorded (readers infer it from
            ``input_shape``).
        feature_names : sequence of str, optional
            Name of each feature of a tabular run (as many as ``input_shape`` says, when given).
        max_tokens : int, optional
            Token runs (required there): the width of the maps, ``heatmap_shape == (1, max_tokens)``.
        methods : sequence of dict, optional
            The attribution methods, in order, each a dict with a ``"name"`` (letters, digits, ``_.-``) and
            any JSON description; the first is the default of every read. Default: not recorded (one
            method, named by ``composite``).

        Returns
        -------
        RunStore

        Raises
        ------
        IncompatibleRunError
            If the directory holds a store of another training or with other metadata. Nothing is deleted.
        UnsupportedFormatError
            If the existing store has another major format version or a newer minor one.
        """
        store_dir = _store_dir_for_create(Path(path))
        modality_keys = _modality_keys(modality, feature_names, max_tokens, heatmap_shape, input_shape)
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
            **modality_keys,
            METHODS_KEY: _check_methods(methods),
        }
        run = {key: _normalise_json(value, key) for key, value in run.items()}
        manifest_path = store_dir / MANIFEST_FILE
        if manifest_path.exists():  # never written over, even if it is not a regular file
            store = cls(store_dir)
            existing = store._manifest_data()
            if not _needs_migration(existing, manifest_path):  # an older layout is migrated below
                _check_writable(existing, manifest_path)
            adopt = check_run_id(existing, run_id, store_dir, adopt=adopt_unowned)
            # keys of a newer minor version than the store's are not compared: the resume adds them
            added = (*modality_keys, METHODS_KEY)
            compared = [key for key in RUN_METADATA_KEYS if key in existing or key not in added]
            differences = [key for key in compared if existing.get(key) != run[key]]
            if differences:
                details = "; ".join(f"{key} is {existing.get(key)!r} there but {run[key]!r} now" for key in differences)
                raise IncompatibleRunError(
                    f"{store_dir} already holds the lrp-lightning store of a different run ({details}). "
                    "Existing data is never replaced: write to another directory (e.g. a new logger "
                    "version or another dirpath), or restore the previous settings to resume this run."
                )
            store.migrate()
            store._recover()
            upgrade = {key: run[key] for key in added if key not in existing}
            if adopt or upgrade:  # after _recover, so that the manifest read here is the final one
                manifest = {**store.manifest, **upgrade, **({RUN_ID_KEY: run_id} if adopt else {})}
                if upgrade:  # an older minor version gains this version's keys (additive: old readers read it)
                    manifest[FORMAT_VERSION_KEY] = FORMAT_VERSION
                fileio.atomic_write_json(manifest_path, manifest)
            return store
        store_dir.mkdir(parents=True, exist_ok=True)
        manifest = {
            FORMAT_VERSION_KEY: FORMAT_VERSION,
            LIBRARY_VERSION_KEY: _library_version(),
            **({} if run_id is None else {RUN_ID_KEY: str(run_id)}),
            **run,
            EPOCHS_KEY: [],
        }
        fileio.atomic_write_json(manifest_path, manifest)
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
        return _epochs._epoch_dir(self._store_dir, _check_index(epoch, "epoch"))

    def analysis_path(self, epoch: int, name: str) -> Path:
        """Path of an epoch's analysis table, ``analysis/<name>/epoch_NNNNNN.parquet`` (may not exist)."""
        return _migration._analysis_path(self._store_dir, _check_index(epoch, "epoch"), name, self._analysis_root)

    def analysis_files(self, epoch: int) -> dict[str, Path]:
        """The analysis table files of an epoch that exist, name → path (current or stale alike)."""
        return _migration._analysis_files(self._store_dir, _check_index(epoch, "epoch"), self._analysis_root)

    @property
    def probe_path(self) -> Path:
        """Path of ``probe.parquet`` (may not exist yet: the probe set is written at the first validation)."""
        return self._store_dir / PROBE_FILE

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
            data = _read_manifest(path)
            self._manifest, self._manifest_signature = data, signature
        return self._manifest

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of ``manifest.json`` (re-read when it changed on disk)."""
        return copy.deepcopy({key: value for key, value in self._manifest_data().items() if not key.startswith("_")})

    @property
    def heatmap_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the stored relevance maps."""
        return _manifest_heatmap_shape(self._manifest_data().get(HEATMAP_SHAPE_KEY), self._store_dir / MANIFEST_FILE)

    @property
    def format_version(self) -> str:
        """Format version of this store, ``"major.minor"``."""
        return str(self._manifest_data()[FORMAT_VERSION_KEY])

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
        parsed, bad = self._manifest_data()["_parsed_epochs"], self._manifest_data()["_bad_epochs"]
        if epoch in bad:
            raise CorruptFileError(str(bad[epoch][1]))  # a malformed entry fails its epoch only
        if epoch not in parsed:
            available = ", ".join(str(e) for e in sorted(parsed)) or "none yet"
            raise EpochNotFoundError(
                f"epoch {epoch} is not a complete epoch of {self._store_dir}; complete epochs: {available}"
            )
        return parsed[epoch]

    def _write_manifest(self, epochs: Mapping[int, EpochInfo]) -> None:
        data = self.manifest
        data[LIBRARY_VERSION_KEY] = _library_version()
        kept = [raw for key, (raw, _) in self._manifest_data()["_bad_epochs"].items() if key not in epochs]
        data[EPOCHS_KEY] = [epochs[e].to_json() for e in sorted(epochs)] + kept
        fileio.atomic_write_json(self._store_dir / MANIFEST_FILE, data)

    def revisions(self) -> list[dict[str, Any]]:
        """The revision records of the run (:data:`REVISIONS_KEY`; empty when nothing was revised)."""
        value = self._manifest_data().get(REVISIONS_KEY) or []
        return copy.deepcopy([dict(r) for r in value if isinstance(r, Mapping)])

    def record_revisions(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Replace the revision records in ``manifest.json`` (atomically; the writer of the store only).

        Parameters
        ----------
        records : sequence of mapping
            JSON-serialisable records with the keys of :data:`REVISION_RECORD_KEYS`.
        """
        self._require_writable()
        records = [dict(r) for r in records]
        for record in records:
            unknown = sorted(set(record) - set(REVISION_RECORD_KEYS))
            if unknown:
                raise ValueError(
                    f"record_revisions: unknown revision record keys {unknown}; "
                    f"the keys are {list(REVISION_RECORD_KEYS)}"
                )
        data = self.manifest
        data[REVISIONS_KEY] = _normalise_json(records, REVISIONS_KEY)
        data[LIBRARY_VERSION_KEY] = _library_version()
        fileio.atomic_write_json(self._store_dir / MANIFEST_FILE, data)

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
        path = self.probe_path
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
        fileio.atomic_write_parquet(table, path, use_dictionary=False)
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
        path = self.probe_path
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
        self._check_token_rows(table)
        staging = _epochs._staging_dir(self._store_dir, epoch, global_step)
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / part_filename(rank)
        small = [name for name in table.column_names if name != RELEVANCE]
        fileio.atomic_write_parquet_groups(  # a row group per method: see _method_groups
            _method_groups(table),
            path,
            row_group_size=row_group_size or _rows_per_group(self.heatmap_shape),
            use_dictionary=small,
            write_statistics=small,
        )
        return path

    def commit_epoch(self, epoch: int, global_step: int, *, world_size: int = 1) -> EpochInfo:
        """Publish the staged parts of an epoch (rank 0, after all ranks wrote their part).

        Replaces a previous version of the epoch completely. See :mod:`lrp_lightning.store.epochs`
        for the crash-safety argument.

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

        def publish(info: EpochInfo) -> None:
            epochs = dict(self._manifest_data()["_parsed_epochs"])
            epochs[epoch] = info
            self._write_manifest(epochs)

        return _epochs._commit(self._store_dir, epoch, global_step, world_size, publish)

    def write_epoch(self, epoch: int, global_step: int, table: pa.Table) -> EpochInfo:
        """Write and commit an epoch from one process (``write_part`` + ``commit_epoch``)."""
        self.write_part(epoch, global_step, table, rank=0)
        return self.commit_epoch(epoch, global_step, world_size=1)

    def _recover(self) -> None:
        """Finish an interrupted commit and drop unreferenced moved-aside versions (see epochs)."""
        _epochs._recover(self._store_dir, self._manifest_data()["_parsed_epochs"], self._write_manifest)

    # ---------------------------------------------------------------------------------- reading

    def _open_epoch(self, epoch: int, *, verify: bool = False, method: str | None = None) -> _EpochSnapshot:
        """Open the committed version of an epoch (sizes and rows checked), reading the rows of ``method``
        (default: :attr:`method`); with ``verify``, also its parts' digests, once per version and store object."""
        epoch = _check_index(epoch, "epoch")
        key = self._method_key(method)
        snapshot = _epochs._open_epoch(self._store_dir, epoch, self.epoch_info, self.heatmap_shape, key)
        if verify and snapshot.info.commit not in self._verified:
            try:
                snapshot.verify_hashes()
            except BaseException:
                snapshot.__exit__()
                raise
            self._verified.add(snapshot.info.commit)
        return snapshot

    def verify(self, epoch: int, *, digests: bool = True) -> EpochInfo:
        """Check that a complete epoch's parts are byte for byte the ones committed.

        Every read checks each part's size, that its rows belong to the epoch, and the checksum of
        every page it reads. This also reads every part whole and compares its BLAKE2b digest with the
        manifest's (format 1.1), as :meth:`iter_batches` does on its first read of each version. With
        ``digests=False`` only the cheap checks run (files present, sizes, rows' epoch; no data read).

        Returns
        -------
        EpochInfo
            The verified epoch's entry.

        Raises
        ------
        CorruptFileError
            If a part differs from the committed one; the message names the file.
        """
        if digests:
            self._verified.discard(self.epoch_info(epoch).commit)
        with self._open_epoch(epoch, verify=digests) as snapshot:
            return snapshot.info

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

    def attributions(self, epoch: int, columns: Sequence[str] | None = None, *, method: str | None = None) -> pa.Table:
        """Read all rows of a complete epoch of one attribution method, all ranks' parts concatenated.

        Parameters
        ----------
        epoch : int
            A complete epoch (see :meth:`epochs`).
        columns : sequence of str, optional
            Columns to read. Default: all (see :data:`ATTRIBUTION_COLUMNS`, plus extra columns).
        method : str, optional
            One of :attr:`methods`. Default: :attr:`method` (the run's first method unless selected).

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
        with self._open_epoch(epoch, method=method) as snapshot:
            columns = self._check_columns(snapshot, columns)
            schema = snapshot.unified_schema()
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            tables = []
            for part, keep in zip(snapshot.parts, snapshot.keep_masks()):
                present = [c for c in schema.names if c in part.names]
                groups = part.file.metadata
                bounds = np.cumsum([0] + [groups.row_group(i).num_rows for i in range(groups.num_row_groups)])
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):  # only the row groups holding kept
                    if keep is None or keep[a:b].any():  # rows: other methods' maps are not read
                        table = part.read_row_group(i, present)
                        tables.append(_conform_to(table if keep is None else table.filter(pa.array(keep[a:b])), schema))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def iter_batches(
        self,
        epoch: int,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        *,
        method: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream a complete epoch by row groups, duplicates removed, for memory-bounded analysis.

        The epoch's files are opened when iteration starts; a concurrent commit of the same epoch
        does not affect a running iteration. The first streaming read of each version of an epoch
        also verifies its parts' digests (see :meth:`verify`): a whole-epoch read can afford it.

        Parameters
        ----------
        epoch : int
            A complete epoch.
        columns : sequence of str, optional
            Columns to read. Default: all.
        batch_size : int, optional
            Maximum rows per batch. Default: one batch per row group.
        method : str, optional
            One of :attr:`methods`. Default: :attr:`method`.

        Yields
        ------
        pyarrow.RecordBatch
            Batches with identical schemas; together they hold the rows of :meth:`attributions`.
        """
        snapshot = self._open_epoch(epoch, verify=True, method=method)  # errors surface here, not at next()
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
        self, epoch: int, batch_size: int | None = None, *, method: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``(sample_ids, maps)`` of a complete epoch, as :meth:`iter_batches` does rows.

        Yields
        ------
        sample_ids : numpy.ndarray of int64, shape (B,)
        maps : numpy.ndarray of float32, shape (B, H, W)
        """
        shape = self.heatmap_shape
        for batch in self.iter_batches(epoch, [SAMPLE_ID, RELEVANCE], batch_size, method=method):
            yield batch.column(0).to_numpy(), decode_relevance(batch.column(1), shape)

    def heatmaps(
        self, epoch: int, sample_ids: Sequence[int] | np.ndarray | None = None, *, method: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read relevance maps of a complete epoch, of one attribution method.

        Parameters
        ----------
        epoch : int
            A complete epoch.
        sample_ids : sequence of int, optional
            Samples to read, returned in this order. Default: all, in stored order.
        method : str, optional
            One of :attr:`methods`. Default: :attr:`method` (the run's first method unless selected).

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
            table = self.attributions(epoch, [SAMPLE_ID, RELEVANCE], method=method)
            return table.column(0).to_numpy(), decode_relevance(table.column(1), self.heatmap_shape)
        wanted = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        with self._open_epoch(epoch, method=method) as snapshot:
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

    def sample_heatmaps(self, sample_id: int, *, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read one sample's relevance map (of ``method``, default :attr:`method`) in every complete epoch.

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
            with self._open_epoch(info.epoch, method=method) as snapshot:
                _, maps = snapshot.select(np.array([sample_id], dtype=np.int64))
            if len(maps):
                found_epochs.append(info.epoch)
                found_maps.append(maps[0])
        if not found_epochs:
            raise SampleNotFoundError(
                f"sample id {sample_id} is in no complete epoch of {self._store_dir}; the probe set is in probe_table()"
            )
        return np.asarray(found_epochs, dtype=np.int64), np.stack(found_maps)

    # ---------------------------------------------------------------------------------- migration

    def migrate(self) -> bool:
        """Migrate a store of format 1.x in place to this library's format; a no-op for a current store.

        Crash-safe; a second call finishes an interrupted one (:mod:`lrp_lightning.store.epochs`).
        ``lrp-analyze`` and :meth:`create` (resuming) call it. Returns whether the store was migrated.
        """
        data = self._manifest_data()
        if not _needs_migration(data, self._store_dir / MANIFEST_FILE):
            return False
        _migration._migrate(self._store_dir, data)
        return True
