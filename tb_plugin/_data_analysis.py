"""Analysis views of the plugin's data layer: the :class:`~lrp_lightning.tb_plugin.data.PluginData` methods.

An epoch's current analysis (the configuration its ``spectrum`` table, written last, names), its
per-category summary, 2-D embeddings as binary columns, clusters with their indicators, cluster
prototypes as PNG, and the lineage of a clustering over the analysed epochs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lrp_lightning import image as lrp_image
from lrp_lightning import store as lrp_store
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
    PROTOTYPE,
    PURITY,
    SAMPLE_ID,
    SELECTED_CLUSTERING,
    SIZE,
    SOURCES,
    SPECTRAL,
    SPECTRUM_TABLE,
    STATUS,
    TRACK,
    TYPICAL,
    EpochInfo,
    RunStore,
    StoreError,
    cluster_column,
    embedding_columns,
)

from ._data_common import (
    _SAFE_INTEGER,
    SPECTRAL_EMBEDDING,
    BadArgument,
    NotFound,
    Payload,
    _Analysis,
    _finite_or_none,
    _Tables,
    compact_int,
    encode_columns,
)

__all__: list[str] = []

MAX_LISTED_SAMPLES = 16
"""How many typical/atypical sample ids of a cluster go to the frontend."""

_FLOAT_INDICATORS = (PURITY, ACCURACY, CONCENTRATION, BORDER_SHARE, CORNER_SHARE, COMPACTNESS, EIGENGAP, MATCH_JACCARD)


class _AnalysisViews:
    """Mixin of :class:`~lrp_lightning.tb_plugin.data.PluginData`: the analysis tables of an epoch."""

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

    def prototype_png(self, run: str, epoch: int, category: str, clustering: str, cluster: int, cmap: str) -> bytes:
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
            raise NotFound(f"no analysed epoch of run {run!r} has clustering {clustering!r} for category {category!r}")
        return {"run": run, "category": category, "clustering": clustering, "epochs": epochs, "missing": missing}
