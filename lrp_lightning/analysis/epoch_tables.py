"""The outputs of one epoch's analysis, built from the SpRAy results: its tables, scalars and flags.

* :func:`points_table`, :func:`clusters_tables` and :func:`spectrum_table` build the ``points``,
  ``clusters``, ``lineage`` and ``spectrum`` tables (:data:`~lrp_lightning.store.ANALYSIS_TABLES`);
  :func:`with_metadata` stamps each with the analysis config and the heatmap grid, and
  :func:`write_tables` writes them all or none.
* :func:`indicator_scalars` are the TensorBoard scalars of an epoch, :func:`flags` the flagged
  clusters worth reporting (:func:`stored_flags` the same, read back from stored tables).

:mod:`~lrp_lightning.analysis.pipeline` runs the analysis and calls these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lrp_lightning import store as S

from . import findings as F
from .spray import CategoryResult, PreparedMaps

# ------------------------------------------------------------------------------------------------ tables


@dataclass
class EpochData:
    """An epoch's samples as the analysis read them: ids, labels, predictions, targets, prepared maps."""

    sample_ids: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    targets: np.ndarray
    prepared: PreparedMaps
    dropped: np.ndarray


def list_array(rows: Iterable[np.ndarray], value_type: pa.DataType) -> pa.Array:
    rows = list(rows)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(rows) if rows else np.empty(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def points_table(results: dict[str, CategoryResult], data: EpochData, stability: np.ndarray) -> pa.Table:
    position = {int(s): i for i, s in enumerate(data.sample_ids)}
    clusterings = list(dict.fromkeys(name for r in results.values() for name in r.clustering.labelings))
    methods = list(dict.fromkeys(m for r in results.values() for m in r.embeddings))
    chunks = []
    for category, result in results.items():
        rows = np.array([position[int(s)] for s in result.sample_ids], dtype=np.int64)
        n = len(rows)
        arrays = {
            S.CATEGORY: pa.array([category] * n, pa.string()),
            S.SAMPLE_ID: pa.array(result.sample_ids, pa.int64()),
            S.LABEL: pa.array(data.labels[rows], pa.int64()),
            S.PREDICTION: pa.array(data.predictions[rows], pa.int64()),
            S.TARGET: pa.array(data.targets[rows], pa.int64()),
            S.SPECTRAL: list_array(result.spectrum.eigenvectors.astype(np.float32), pa.float32()),
            S.STABILITY: pa.array(stability[rows], pa.float32(), from_pandas=True),
        }
        for name in clusterings:
            labels = result.clustering.labelings.get(name)
            arrays[S.cluster_column(name)] = (
                pa.array(labels, pa.int32()) if labels is not None else pa.nulls(n, pa.int32())
            )
        for method in methods:
            xy = result.embeddings.get(method)
            for axis, column in enumerate(S.embedding_columns(method)):
                arrays[column] = pa.array(xy[:, axis], pa.float32()) if xy is not None else pa.nulls(n, pa.float32())
        chunks.append(pa.table(arrays))
    if not chunks:
        return S.POINTS_SCHEMA.empty_table()
    fields = list(S.POINTS_SCHEMA) + [
        pa.field(name, chunks[0].schema.field(name).type) for name in chunks[0].column_names[len(S.POINTS_SCHEMA) :]
    ]
    return pa.concat_tables([c.cast(pa.schema(fields)) for c in chunks])


def clusters_tables(results: dict[str, CategoryResult]) -> tuple[pa.Table, pa.Table]:
    rows: dict[str, list] = {name: [] for name in S.CLUSTERS_SCHEMA.names}
    lineage: dict[str, list] = {name: [] for name in S.LINEAGE_SCHEMA.names}
    for category, result in results.items():
        for clustering, summaries in result.summaries.items():
            matches = result.lineage[clustering].matches
            for s in summaries:
                match = matches[s.cluster]
                values = {
                    S.CATEGORY: category,
                    S.CLUSTERING: clustering,
                    S.CLUSTER: s.cluster,
                    S.SIZE: s.size,
                    S.PURITY: s.purity,
                    S.MAJORITY_LABEL: s.majority_label,
                    S.ACCURACY: s.accuracy,
                    S.PROTOTYPE: s.prototype,
                    S.TYPICAL: s.typical,
                    S.ATYPICAL: s.atypical,
                    S.CONCENTRATION: s.concentration,
                    S.BORDER_SHARE: s.border_share,
                    S.CORNER_SHARE: s.corner_share,
                    S.COMPACTNESS: s.compactness,
                    S.EIGENGAP: result.clustering.eigengap,
                    S.FLAGGED: s.flagged,
                    S.FLAG_REGION: s.flag_region,
                    S.FLAG_REASON: s.flag_reason,
                    S.TRACK: match.track,
                    S.PREVIOUS_CLUSTER: match.previous_cluster,
                    S.MATCH_JACCARD: match.jaccard,
                    S.EVENT: match.event,
                }
                for name, value in values.items():
                    rows[name].append(value)
                for name, value in (
                    (S.CATEGORY, category),
                    (S.CLUSTERING, clustering),
                    (S.CLUSTER, s.cluster),
                    (S.TRACK, match.track),
                    (S.EVENT, match.event),
                    (S.PREVIOUS_CLUSTER, match.previous_cluster),
                    (S.SOURCES, list(match.sources)),
                    (S.MATCH_JACCARD, match.jaccard),
                ):
                    lineage[name].append(value)
            for previous_cluster, track in result.lineage[clustering].vanished:
                for name, value in (
                    (S.CATEGORY, category),
                    (S.CLUSTERING, clustering),
                    (S.CLUSTER, None),
                    (S.TRACK, track),
                    (S.EVENT, "vanished"),
                    (S.PREVIOUS_CLUSTER, previous_cluster),
                    (S.SOURCES, []),
                    (S.MATCH_JACCARD, None),
                ):
                    lineage[name].append(value)
    for name in (S.PROTOTYPE, S.TYPICAL, S.ATYPICAL):
        field_type = S.CLUSTERS_SCHEMA.field(name).type.value_type
        rows[name] = list_array([np.asarray(v) for v in rows[name]], field_type)
    clusters = pa.table(
        {
            name: rows[name]
            if isinstance(rows[name], pa.Array)
            else pa.array(rows[name], S.CLUSTERS_SCHEMA.field(name).type)
            for name in S.CLUSTERS_SCHEMA.names
        },
        schema=S.CLUSTERS_SCHEMA,
    )
    return clusters, pa.table(lineage, schema=S.LINEAGE_SCHEMA)


def spectrum_table(
    results: dict[str, CategoryResult], skipped: dict[str, str], sizes: dict[str, int], class_names: list | None
) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in S.SPECTRUM_SCHEMA.names}
    for category in sizes:
        result = results.get(category)
        index = int(category.split("_", 1)[1]) if category.startswith("class_") else None
        name = None
        if index is not None and class_names and 0 <= index < len(class_names):
            name = str(class_names[index])
        values = {
            S.CATEGORY: category,
            S.CLASS_INDEX: index,
            S.CLASS_NAME: name,
            S.STATUS: "ok" if result is not None else "skipped",
            S.MESSAGE: "; ".join(result.warnings) or None if result is not None else skipped.get(category),
            S.N_SAMPLES: sizes[category],
            S.N_NEIGHBORS: result.n_neighbors if result is not None else 0,
            S.EIGENVALUES: result.spectrum.eigenvalues.tolist() if result is not None else [],
            S.EIGENGAP_K: result.clustering.eigengap_k if result is not None else 0,
            S.EIGENGAP: result.clustering.eigengap if result is not None else float("nan"),
            S.SELECTED_CLUSTERING: result.selected if result is not None else None,
        }
        for key, value in values.items():
            rows[key].append(value)
    return pa.table(rows, schema=S.SPECTRUM_SCHEMA)


def with_metadata(
    table: pa.Table, config: dict, grid: tuple[int, int], vocabulary: np.ndarray | None = None
) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[S.META_ANALYSIS_CONFIG] = json.dumps(config, sort_keys=True).encode()
    metadata[S.META_GRID_SHAPE] = json.dumps(list(grid)).encode()
    if vocabulary is not None:
        metadata[S.META_TOKEN_VOCABULARY] = json.dumps([int(t) for t in vocabulary]).encode()
    return table.replace_schema_metadata(metadata)


def write_tables(store: S.RunStore, epoch: int, tables: dict[str, pa.Table], key: str, commit: str) -> None:
    written = []
    try:
        for name in S.ANALYSIS_TABLES:
            written.append(store.write_analysis_table(epoch, name, tables[name], key, source_commit=commit))
    except BaseException:
        for path in written:  # leave no partial analysis behind (it would read as stale anyway)
            path.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ scalars


def category_label(category: str, class_names: list | None) -> str:
    if category == S.CATEGORY_ALL:
        return "all samples"
    index = int(category.split("_", 1)[1])
    if class_names and 0 <= index < len(class_names) and str(class_names[index]) != str(index):
        return f"class {index} ({class_names[index]})"
    return f"class {index}"


def indicator_scalars(
    results: dict[str, CategoryResult],
    flags: list[tuple[str, str, str]],
    findings: list[F.Finding],
    stability: np.ndarray,
) -> dict:
    scalars: dict[str, float] = {}
    for category, result in results.items():
        selected = result.summaries.get(result.selected, [])
        prefix = S.category_tag(category, "")
        scalars[prefix + "eigengap"] = result.clustering.eigengap
        scalars[prefix + "eigengap_k"] = float(result.clustering.eigengap_k)
        scalars[prefix + "flagged_clusters"] = float(sum(1 for c, _, _ in flags if c == category))
        scalars[prefix + "findings"] = float(sum(1 for f in findings if f.category == category))
        if selected:
            scalars[prefix + "max_concentration"] = max(s.concentration for s in selected)
            scalars[prefix + "max_border_share"] = max(s.border_share for s in selected)
            scalars[prefix + "max_corner_share"] = max(s.corner_share for s in selected)
            scalars[prefix + "min_compactness"] = min(s.compactness for s in selected)
    finite = stability[np.isfinite(stability)]
    if finite.size:
        scalars[S.MEAN_STABILITY_TAG] = float(finite.mean())
    return scalars


def flags(results: dict[str, CategoryResult]) -> list[tuple[str, str, str]]:
    """Flagged clusters worth reporting: per category, those of the selected clustering or, where it
    flags none, of the nearest clustering of the sweep (then the others) that flags some; so one
    artifact seen by several clusterings is reported once."""
    found = []
    for category, result in results.items():
        selected = result.selected
        names = list(result.summaries)
        sweep = [n for n in names if n.startswith("kmeans_")]
        k = int(selected.split("_")[1]) if selected in sweep else 0
        order = [selected] + sorted((n for n in sweep if n != selected), key=lambda n: abs(int(n.split("_")[1]) - k))
        order += [n for n in names if n not in order]
        for name in order:
            flagged = [s for s in result.summaries[name] if s.flagged]
            if flagged:
                found.extend((category, s.flag_region, s.flag_reason) for s in flagged)
                break
    return found


def stored_flags(clusters: pa.Table, spectrum: pa.Table) -> list[tuple[str, str, str]]:
    """:func:`flags` of stored tables."""
    selected = dict(zip(spectrum.column(S.CATEGORY).to_pylist(), spectrum.column(S.SELECTED_CLUSTERING).to_pylist()))
    flagged = clusters.filter(clusters.column(S.FLAGGED)).to_pylist()
    found = []
    for category, chosen in selected.items():
        rows = [r for r in flagged if r[S.CATEGORY] == category]
        if not rows or chosen is None:
            continue
        k = int(chosen.split("_")[1]) if chosen.startswith("kmeans_") else 0

        def rank(name: str, chosen: str = chosen, k: int = k) -> tuple[int, int]:
            if name == chosen:
                return (0, 0)
            if name.startswith("kmeans_"):
                return (1, abs(int(name.split("_")[1]) - k))
            return (2, 0)

        best = min((r[S.CLUSTERING] for r in rows), key=rank)
        found.extend((category, r[S.FLAG_REGION], r[S.FLAG_REASON]) for r in rows if r[S.CLUSTERING] == best)
    return found
