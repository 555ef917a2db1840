"""The analysis tables of a run: the :class:`RunStore` methods that write and read them.

An analysis table (``points``, ``clusters``, ``lineage``, ``spectrum``, ``findings``; schemas in
:data:`~lrp_lightning.store.contract.ANALYSIS_SCHEMAS`) is derived data: one Parquet file per table and
epoch (``analysis/<table>/epoch_NNNNNN.parquet``), written atomically, tagged with the configuration
hash that made it and the commit of the attributions it was made from. A damaged or stale table counts
as absent, so ``lrp-analyze`` recomputes it; it never touches the attributions.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from . import fileio
from . import migration as _migration
from .contract import FORMAT_VERSION, META_CONFIG_HASH, META_FORMAT, META_SOURCE_COMMIT
from .errors import AnalysisNotFoundError, CorruptFileError, SchemaError, _check_index
from .tables import _analysis_schema_problems, _conform_analysis_table, _Parquet, _read_parquet

__all__: list[str] = []


class _AnalysisTables:
    """Mixin of :class:`~lrp_lightning.store.RunStore`: its analysis-table methods."""

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
            Any columns. The file gets an ``int32`` column ``epoch`` appended (so that the table's folder
            reads as one table of all epochs), which :meth:`read_analysis_table` leaves out again.
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
        path = self.analysis_path(epoch, name)
        commit = source_commit or self.epoch_info(epoch).commit
        self._require_writable()
        table = _migration._with_epoch_column(table, epoch, f"analysis table {name!r}")
        metadata = dict(table.schema.metadata or {})
        metadata.update(
            {
                META_FORMAT: FORMAT_VERSION.encode(),
                META_CONFIG_HASH: config_hash.encode(),
                META_SOURCE_COMMIT: commit.encode(),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_parquet(table.replace_schema_metadata(metadata), path)
        return path

    def _analysis_tags(self, path: Path, name: str) -> tuple[str, str] | None:
        # a damaged table (unreadable, or columns unlike the contract's) counts as absent: recomputed
        try:
            handle = _Parquet(path)
        except (FileNotFoundError, CorruptFileError):
            return None
        try:
            schema = handle.file.schema_arrow
        finally:
            handle.close()
        if _analysis_schema_problems(schema, name):
            return None
        metadata = schema.metadata or {}
        return (
            metadata.get(META_CONFIG_HASH, b"").decode(),
            metadata.get(META_SOURCE_COMMIT, b"").decode(),
        )

    def analysis_tables(self, epoch: int) -> dict[str, str]:
        """Current analysis tables of an epoch: name → config hash (stale tables left out)."""
        commit = self.epoch_info(epoch).commit
        tables: dict[str, str] = {}
        for name, path in self.analysis_files(epoch).items():
            tags = self._analysis_tags(path, name)
            if tags is not None and tags[1] == commit:
                tables[name] = tags[0]
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
        CorruptFileError
            If the file is damaged or does not fit its schema in :data:`ANALYSIS_SCHEMAS` (message: the fix).
        """
        path = _migration._readable_analysis_path(
            self._store_dir, _check_index(epoch, "epoch"), name, self._analysis_root
        )
        commit = self.epoch_info(epoch).commit
        try:
            table = _read_parquet(path)
        except FileNotFoundError:
            raise AnalysisNotFoundError(
                f"no analysis table {name!r} for epoch {epoch} ({path}); run the analysis (lrp-analyze)"
            ) from None
        table = _conform_analysis_table(table, name, path)
        metadata = table.schema.metadata or {}
        found_hash = metadata.get(META_CONFIG_HASH, b"").decode()
        if metadata.get(META_SOURCE_COMMIT, b"").decode() != commit:
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
        return _migration._without_epoch_column(table, epoch, path)
