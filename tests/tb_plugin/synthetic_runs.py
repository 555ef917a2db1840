"""Synthetic lrp-lightning runs for the plugin's tests and benchmark (NumPy only, deterministic).

A run holds ``classes`` classes of ``size x size`` images whose class is a bright quadrant; a fifth
of class 0 also carries a watermark in the top-left corner (a Clever-Hans feature). Relevance maps
follow the quadrant, or the watermark for those samples, and sharpen over the epochs while the
predictions get better. Analysis tables (``points``, ``clusters``, ``lineage``, ``spectrum`` and,
unless ``findings=False``, ``findings``: see :func:`synthetic_findings`) are written with
:meth:`RunStore.write_analysis_table` in the schemas that :mod:`lrp_lightning.store` defines (the
findings table with the analysis's own :func:`~lrp_lightning.analysis.findings.findings_table`), so
the plugin is tested against the contract, not against one analysis implementation.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from lrp_lightning.analysis.findings import FINDINGS_TABLE, KIND_ARTIFACT, Finding, findings_table
from lrp_lightning.store import (
    CATEGORY_ALL,
    CLUSTERS_SCHEMA,
    LINEAGE_SCHEMA,
    META_ANALYSIS_CONFIG,
    META_GRID_SHAPE,
    POINTS_SCHEMA,
    SPECTRUM_SCHEMA,
    RunStore,
    class_category,
    cluster_column,
    embedding_columns,
    make_attribution_table,
    make_probe_table,
)

CONFIG_HASH = "synthetic-analysis-v1"
CLUSTERING = "kmeans"
EXTRA_CLUSTERING = "halves"
EMBEDDING_CONFIG = {"perplexity": 30.0, "umap_n_neighbors": 15, "umap_min_dist": 0.1}
"""Parameters of the embeddings step that the points table's analysis config names (as the pipeline writes it)."""
EMBEDDINGS = ("tsne", "umap")
SPECTRAL_DIMS = 4
REGIONS = ("bottom-right corner", "top edge", "left edge", "bottom edge")
"""Regions of the flagged clusters that ``build_run(flags=...)`` adds to the watermark's."""


METHOD_NAMES = ("epsilon_gamma_box", "gradient", "input_x_gradient", "integrated_gradients")


def _quadrant(label: int, size: int) -> tuple[slice, slice]:
    half = size // 2
    row, column = divmod(label % 4, 2)
    return slice(row * half, (row + 1) * half), slice(column * half, (column + 1) * half)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(array * 255, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _samples(count: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(count, dtype=np.int64) * 3 + 7  # not 0..N-1, so positions and ids cannot be confused
    labels = np.arange(count) % classes
    watermark = (labels == 0) & (rng.random(count) < 0.2)
    return ids, labels, watermark


def build_run(
    run_dir: str | Path,
    *,
    epochs: int = 3,
    samples: int = 60,
    classes: int = 3,
    size: int = 8,
    analysed: Iterable[int] | None = None,
    thumbnails: bool = True,
    seed: int = 0,
    metadata: bool = False,
    findings: bool = True,
    extra_clustering: bool = False,
    pca_only: Iterable[int] = (),
    flags: int = 1,
    methods: int = 1,
) -> RunStore:
    """Write a complete synthetic run and return its store.

    Parameters
    ----------
    run_dir : path
        The run directory (``plugins/lrp`` is created inside).
    epochs, samples, classes, size : int
        Complete epochs 0..epochs-1, probe samples, classes, and the heatmap side.
    analysed : iterable of int, optional
        Epochs that get analysis tables (default: all).
    thumbnails : bool
        Store input thumbnails in the probe set (default True).
    seed : int
        Random seed.
    metadata : bool
        Store probe metadata columns (default False), see :func:`probe_metadata`.
    findings : bool
        Write a ``findings`` table with each analysis (default True; False: an analysis that
        predates findings), see :func:`synthetic_findings`.
    extra_clustering : bool
        A second clustering, the classes' default (default False), see :func:`write_analysis`.
    pca_only : iterable of int
        Classes laid out with PCA only, their t-SNE and UMAP columns null, as
        ``Embeddings(scope="flagged")`` leaves the classes without a flagged cluster (default none).
        When given, every category also gets a PCA layout.
    flags : int
        Flagged clusters of the "all samples" category, side by side in its embeddings (default 1:
        the watermark's), see :func:`write_analysis`.
    methods : int
        Attribution methods (default 1). More than one: the first is ``epsilon_gamma_box``, the others
        (``gradient``, ``input_x_gradient``, ...) hold the first's maps blurred along the rows, more with each;
        the analysis tables are the first method's.
    """
    rng = np.random.default_rng(seed)
    store = RunStore.create(
        run_dir,
        heatmap_shape=(size, size),
        input_shape=(1, size, size),
        model_class="tests.SyntheticNet",
        composite="epsilon_gamma_box",
        canonizers=["SequentialMergeBatchNorm"],
        methods=[{"name": name} for name in METHOD_NAMES[:methods]] if methods > 1 else None,
        class_names=[f"digit {c}" for c in range(classes)],
        target_mode="label",
        probe={"size": samples, "seed": seed},
    )
    ids, labels, watermark = _samples(samples, classes, rng)
    inputs = rng.random((samples, size, size)) * 0.3
    for i, label in enumerate(labels):
        inputs[i][_quadrant(int(label), size)] += 0.6
        if watermark[i]:
            inputs[i, :2, :2] = 1.0
    store.write_probe(
        make_probe_table(
            sample_id=ids,
            dataset_index=ids // 3,
            label=labels,
            thumbnail=[_png(x) for x in inputs] if thumbnails else None,
            metadata=probe_metadata(ids, watermark) if metadata else None,
        )
    )
    analysed = set(range(epochs) if analysed is None else analysed)
    lineage = synthetic_findings(ids, labels, watermark, sorted(analysed), epochs) if findings else {}
    for epoch in range(epochs):
        progress = (epoch + 1) / epochs
        maps = rng.normal(0.0, 0.3 * (1.1 - progress), (samples, size, size)).astype(np.float32)
        for i, label in enumerate(labels):
            if watermark[i]:
                maps[i, :2, :2] += 2.0 * progress
            else:
                maps[i][_quadrant(int(label), size)] += progress
        correct = rng.random(samples) < 0.4 + 0.55 * progress
        predictions = np.where(correct, labels, (labels + 1) % classes)
        scores = rng.normal(2.0 * progress, 0.5, samples).astype(np.float32)
        tables = []
        for index in range(methods):
            variant = maps if index == 0 else np.cumsum(maps, axis=2) / np.arange(1, size + 1) ** (1 / index)
            table = make_attribution_table(
                epoch=epoch,
                global_step=(epoch + 1) * 10,
                sample_id=ids,
                label=labels,
                prediction=predictions,
                target=labels,
                score=scores,
                probability=1.0 / (1.0 + np.exp(-scores)),
                relevance=variant.astype(np.float32),
                method=METHOD_NAMES[index] if methods > 1 else None,
            )
            tables.append(table)
        store.write_epoch(epoch, (epoch + 1) * 10, pa.concat_tables(tables) if methods > 1 else tables[0])
        if epoch in analysed:
            found, extra = lineage.get(epoch), extra_clustering
            write_analysis(
                store,
                epoch,
                ids,
                labels,
                predictions,
                watermark,
                maps,
                classes,
                rng,
                found,
                extra,
                pca_only=pca_only,
                flags=flags,
            )
    return store


WATERMARK_FINDING = "class_0/top-left-corner@{first}"
"""Id of the watermark's finding (``first``: the first analysed epoch)."""
STRAY_FINDING = "class_1/bottom-right-corner@{last}"
"""Id of a second finding, seen in the last analysed epoch only (when there are two or more classes)."""
STRAY_MEMBERS = 4


def synthetic_findings(
    ids: np.ndarray, labels: np.ndarray, watermark: np.ndarray, analysed: list[int], epochs: int
) -> dict[int, pa.Table]:
    """The ``findings`` table of each analysed epoch, written with the analysis's own :func:`findings_table`.

    The watermark is one finding, seen in every analysed epoch (id kept from the first, members the
    watermarked samples, strength growing with training); a second finding of a few class 1 samples
    appears in the last analysed epoch only.
    """
    tables: dict[int, pa.Table] = {}
    if not analysed:
        return tables
    first, last = analysed[0], analysed[-1]
    marked = ids[watermark]
    class_0 = int((labels == 0).sum())
    for epoch in analysed:
        progress = (epoch + 1) / epochs
        seen = [e for e in analysed if e <= epoch]
        share, rest = 0.2 + 0.6 * progress, 0.05
        found = []
        if marked.size:  # a run whose random draw marked no sample has no watermark to find
            found.append(
                Finding(
                    finding_id=WATERMARK_FINDING.format(first=first),
                    category="class_0",
                    kind=KIND_ARTIFACT,
                    region="top-left corner",
                    region_detail="rows 0-1, columns 0-1",
                    region_cells=np.array([0], dtype=np.int32),
                    first_epoch=first,
                    epochs_seen=seen,
                    member_ids=np.sort(marked),
                    share=share,
                    rest_share=rest,
                    input_spread=0.01,
                    p_value=1e-6 / progress,
                    q_value=4e-6 / progress,
                    clusters=["class_0/kmeans/1", "all/kmeans/3"],
                    reason=(
                        f"{marked.size} of {class_0} samples of digit 0 put {share:.0%} of their absolute relevance "
                        f"in the top-left corner (rows 0-1, columns 0-1), where the rest of digit 0 puts {rest:.0%}; "
                        "their inputs there are nearly the same (spread 0.01 of the rest's); permutation test q = "
                        f"{4e-6 / progress:.2g} over 2 cluster(s)"
                    ),
                )
            )
        stray = ids[labels == 1][:STRAY_MEMBERS]
        if epoch == last and stray.size:
            found.append(
                Finding(
                    finding_id=STRAY_FINDING.format(last=last),
                    category="class_1",
                    kind=KIND_ARTIFACT,
                    region="bottom-right corner",
                    region_detail="rows 2-3, columns 2-3",
                    region_cells=np.array([15], dtype=np.int32),
                    first_epoch=last,
                    epochs_seen=[last],
                    member_ids=np.sort(stray),
                    share=0.3,
                    rest_share=0.1,
                    input_spread=0.2,
                    p_value=0.001,
                    q_value=0.02,
                    clusters=["class_1/kmeans/0"],
                    reason=(
                        f"{stray.size} samples of digit 1 put 30% of their absolute relevance in the bottom-right "
                        "corner (rows 2-3, columns 2-3), where the rest of digit 1 puts 10%; permutation test "
                        "q = 0.02 over 1 cluster(s)"
                    ),
                )
            )
        tables[epoch] = findings_table(found)
    return tables


def probe_metadata(ids: np.ndarray, watermark: np.ndarray) -> dict[str, list]:
    """User metadata columns of a probe set, as ``LRPCallback(probe_metadata=...)`` stores them.

    ``watermarked`` (bool: the Clever-Hans feature), ``source`` (str, two values), ``batch`` (int,
    three values), ``brightness`` (float, a distinct value per sample, NaN for the first one).
    """
    brightness = (ids % 97) / 97.0 + ids * 1e-4
    return {
        "watermarked": [bool(w) for w in watermark],
        "source": ["scan" if i % 2 else "photo" for i in ids],
        "batch": [int(i // 3 % 3) for i in ids],
        "brightness": [float("nan") if n == 0 else float(b) for n, b in enumerate(brightness)],
    }


def _clusters_of(labels: np.ndarray, watermark: np.ndarray) -> np.ndarray:
    """Cluster per sample: its class, and one more cluster for the watermarked samples."""
    return np.where(watermark, labels.max() + 1, labels).astype(np.int32)


def write_analysis(
    store: RunStore,
    epoch: int,
    ids: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    watermark: np.ndarray,
    maps: np.ndarray,
    classes: int,
    rng: np.random.Generator,
    findings: pa.Table | None = None,
    extra_clustering: bool = False,
    *,
    pca_only: Iterable[int] = (),
    flags: int = 1,
) -> None:
    """Write the four analysis tables of one epoch in the store's schemas (and its findings table, if given).

    ``extra_clustering``: every category also gets the clustering :data:`EXTRA_CLUSTERING`, which the
    classes select by default (the "all samples" category keeps :data:`CLUSTERING`).
    ``pca_only``: these classes get null t-SNE and UMAP columns; with any, every category gets ``pca``.
    ``flags``: the "all samples" category's watermark cluster and ``flags - 1`` class clusters are
    flagged (each with its own region), their centres a little apart, so that their labels meet.
    """
    size = maps.shape[-1]
    grid = (size // 2, size // 2)
    pooled = maps.reshape(len(maps), grid[0], 2, grid[1], 2).sum(axis=(2, 4))
    pooled /= np.abs(pooled).sum(axis=(1, 2), keepdims=True) + 1e-12
    categories = [(CATEGORY_ALL, np.ones(len(ids), bool))] + [(class_category(c), labels == c) for c in range(classes)]
    points, clusters, lineage, spectrum = [], [], [], []
    for category, members in categories:
        index = np.flatnonzero(members)
        cluster = _clusters_of(labels, watermark)[index]
        if category != CATEGORY_ALL:
            cluster = (cluster != labels[index]).astype(np.int32)  # per class: 0 ordinary, 1 watermark
        count = index.size
        centres = rng.normal(0.0, 1.0, (int(cluster.max()) + 1, 2)) * 4 + epoch * 0.2
        flagged_here = {int(cluster.max())} if category == CATEGORY_ALL else set()
        if category == CATEGORY_ALL and flags > 1:
            flagged_here |= set(range(flags - 1))
            for k, c in enumerate(sorted(flagged_here)):  # side by side: their labels would overlap
                centres[c] = centres[int(cluster.max())] + [0.3 * k, -0.2 * k]
        row = {
            "category": [category] * count,
            "sample_id": ids[index],
            "label": labels[index],
            "prediction": predictions[index],
            "target": labels[index],
            "spectral": [list(v) for v in rng.normal(0, 1, (count, SPECTRAL_DIMS)).astype(np.float32)],
            "stability": None if epoch == 0 else rng.uniform(0.5, 1.0, count).astype(np.float32),
        }
        table = {f.name: row[f.name] for f in POINTS_SCHEMA if row[f.name] is not None}
        table["stability"] = pa.nulls(count, pa.float32()) if row["stability"] is None else row["stability"]
        labelings = {CLUSTERING: cluster}
        if extra_clustering:  # two halves by position: a second clustering, the classes' default
            labelings[EXTRA_CLUSTERING] = (np.arange(count) % 2).astype(np.int32)
        for name, assigned in labelings.items():
            table[cluster_column(name)] = assigned
        light = category != CATEGORY_ALL and int(category.split("_")[1]) in set(pca_only)
        for method in EMBEDDINGS + (("pca",) if pca_only else ()):
            xy = centres[cluster] + rng.normal(0, 0.6, (count, 2))
            x_name, y_name = embedding_columns(method)
            if light and method != "pca":  # the analysis writes nulls for a method it did not run
                table[x_name] = pa.nulls(count, pa.float32())
                table[y_name] = pa.nulls(count, pa.float32())
                continue
            table[x_name] = xy[:, 0].astype(np.float32)
            table[y_name] = xy[:, 1].astype(np.float32)
        points.append(pa.table(table))
        for name, assigned in labelings.items():
            for c in np.unique(assigned):
                inside = index[assigned == c]
                flagged = bool(watermark[inside].mean() > 0.5)
                region = "top-left corner"
                if flags > 1 and name == CLUSTERING and int(c) in flagged_here and not flagged:
                    flagged, region = True, REGIONS[int(c) % len(REGIONS)]
                purity = float(np.bincount(labels[inside]).max() / inside.size)
                clusters.append(
                    {
                        "category": category,
                        "clustering": name,
                        "cluster": int(c),
                        "size": int(inside.size),
                        "purity": purity,
                        "majority_label": int(np.bincount(labels[inside]).argmax()),
                        "accuracy": float((predictions[inside] == labels[inside]).mean()),
                        "prototype": pooled[inside].mean(axis=0).ravel().astype(np.float32).tolist(),
                        "typical": ids[inside][:5].tolist(),
                        "atypical": ids[inside][-3:].tolist(),
                        "concentration": 0.8 if flagged else 0.3,
                        "border_share": 0.2,
                        "corner_share": 0.75 if flagged else 0.05,
                        "compactness": 0.5,
                        "eigengap": 0.3,
                        "flagged": flagged,
                        "flag_region": region if flagged else None,
                        "flag_reason": f"75% of the relevance lies in the {region}" if flagged else None,
                        "track": f"0:{int(c)}",
                        "previous_cluster": None if epoch == 0 else int(c),
                        "match_jaccard": None if epoch == 0 else 0.9,
                        "event": "born" if epoch == 0 else "continued",
                    }
                )
                lineage.append(
                    {
                        "category": category,
                        "clustering": name,
                        "cluster": int(c),
                        "track": f"0:{int(c)}",
                        "event": "born" if epoch == 0 else "continued",
                        "previous_cluster": None if epoch == 0 else int(c),
                        "sources": [] if epoch == 0 else [int(c)],
                        "match_jaccard": None if epoch == 0 else 0.9,
                    }
                )
        k = int(cluster.max()) + 1
        default = EXTRA_CLUSTERING if extra_clustering and category != CATEGORY_ALL else CLUSTERING
        eigenvalues = np.concatenate([np.linspace(0, 0.02, k), np.linspace(0.4, 0.9, 6)])
        spectrum.append(
            {
                "category": category,
                "class_index": None if category == CATEGORY_ALL else int(category.split("_")[1]),
                "class_name": None if category == CATEGORY_ALL else f"digit {category.split('_')[1]}",
                "status": "ok",
                "message": None,
                "n_samples": count,
                "n_neighbors": 10,
                "eigenvalues": eigenvalues.tolist(),
                "eigengap_k": k,
                "eigengap": float(eigenvalues[k] - eigenvalues[k - 1]),
                "selected_clustering": default,
            }
        )
    points_table = pa.concat_tables(points, promote_options="permissive")
    leading = pa.Table.from_arrays(
        [points_table.column(f.name).cast(f.type) for f in POINTS_SCHEMA], schema=POINTS_SCHEMA
    )
    for name in points_table.column_names[len(POINTS_SCHEMA) :]:
        leading = leading.append_column(name, points_table.column(name))
    config = {"pipeline": {"embeddings": {"step": "Embeddings", "params": EMBEDDING_CONFIG}}}
    leading = leading.replace_schema_metadata({META_ANALYSIS_CONFIG: json.dumps(config).encode()})
    store.write_analysis_table(epoch, "points", leading, CONFIG_HASH)
    clusters_table = pa.Table.from_pylist(clusters, schema=CLUSTERS_SCHEMA)
    clusters_table = clusters_table.replace_schema_metadata({META_GRID_SHAPE: json.dumps(list(grid)).encode()})
    store.write_analysis_table(epoch, "clusters", clusters_table, CONFIG_HASH)
    store.write_analysis_table(epoch, "lineage", pa.Table.from_pylist(lineage, schema=LINEAGE_SCHEMA), CONFIG_HASH)
    if findings is not None:
        store.write_analysis_table(epoch, FINDINGS_TABLE, findings, CONFIG_HASH)
    store.write_analysis_table(epoch, "spectrum", pa.Table.from_pylist(spectrum, schema=SPECTRUM_SCHEMA), CONFIG_HASH)


def revision_record(finding_id: str, start_epoch: int, epochs: int, method: str = "rrclarc") -> dict:
    """A ClArCCallback revision record (the manifest's, :data:`lrp_lightning.store.REVISION_RECORD_KEYS`):
    the finding found in ``start_epoch - 1``, measured in every epoch from then on; its share in the region
    falls from 0.8 to 0.1 after the start (rest 0.05), its artifact sensitivity from 0.2 to 0.01."""
    from lrp_lightning import store as S

    measures = []
    for epoch in range(start_epoch - 1, epochs):
        after = epoch >= start_epoch
        measures.append(
            {
                "epoch": epoch,
                "finding_share": 0.1 if after else 0.8,
                "rest_share": 0.05,
                "artifact_sensitivity": 0.01 if after else 0.2,
                "clean_accuracy": 0.9,
                "revising": float(after),
                "penalty": None,
            }
        )
    record = dict.fromkeys(S.REVISION_RECORD_KEYS)
    record.update(
        {
            S.REVISION_FINDING_ID: finding_id,
            S.REVISION_CATEGORY: "class_0",
            S.REVISION_METHOD: method,
            S.REVISION_CAV: {"heldout_auc": 0.97},
            S.REVISION_FOUND_EPOCH: start_epoch - 1,
            S.REVISION_START_EPOCH: start_epoch,
            S.REVISION_EPOCHS: measures,
            S.REVISION_STATUS: S.REVISION_STATUS_ACTIVE,
        }
    )
    return record
