"""Analysing the epochs of a run: read through the store, run SpRAy per category, write the tables.

An epoch's analysis is cached on disk under one key, the config hash of its tables:

* the pipeline's full configuration (:meth:`SpRAy.get_config`) and the categories analysed,
* the input fingerprint: the epoch's commit id (which changes whenever the epoch is written again),
* the previous complete epoch's commit and analysis key (tracking and warm-started layouts depend on
  them), and
* the versions of lrp-lightning, NumPy, SciPy, scikit-learn, umap-learn and pynndescent.

:func:`analyze_epoch` recomputes when any of these differ from the tables on disk, and otherwise
returns at once. The tables (findings, points, clusters, lineage, spectrum;
:data:`~lrp_lightning.store.ANALYSIS_TABLES`) are each written atomically; they count as one analysis
only when all carry the same key, so a crash between two writes leaves an analysis that is seen as stale, never a mix.

Findings (:mod:`~lrp_lightning.analysis.findings`) are made over all categories of an epoch after
SpRAy: flagged clusters are tested (permutation test, Benjamini-Hochberg), merged into findings and
linked to the previous epoch's findings; they are written as the ``findings`` table, first, under the
same key.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from lrp_lightning import store as S
from lrp_lightning._validation import check_choice

from . import epoch_tables as T
from . import findings as F
from .base import AnalysisError, cache_key, library_versions
from .epoch_tables import EpochData as _EpochData
from .regions import indicator_regions
from .spray import CategoryResult, PreparedMaps, SpRAy, prepare_batch
from .tokens import TokenMaps
from .tracking import heatmap_stability

__all__ = [
    "EpochOutcome",
    "RunOutcome",
    "analysis_key",
    "analyze_epoch",
    "analyze_run",
    "current_analysis_key",
    "load_analysis",
    "load_findings",
]

NONFINITE = ("error", "drop")


@dataclass
class EpochOutcome:
    """What :func:`analyze_epoch` did for one epoch.

    Attributes
    ----------
    epoch, global_step : int
    config_hash : str
        Key of the analysis (the tables' config hash).
    computed : bool
        False when a current analysis was found and nothing was recomputed.
    categories : dict of str to CategoryResult
        Results per category (empty when ``computed`` is False).
    skipped : dict of str to str
        Categories that could not be analysed, with the reason (e.g. one sample).
    findings : list of Finding
        The epoch's findings (one per artifact or strategy, see :mod:`.findings`).
    flags : list of (str, str, str)
        ``(category, region, reason)`` of the flagged clusters per category (of the selected
        clustering, or the nearest one that flags some): the per-clustering flags behind findings.
    scalars : dict of str to float
        Indicator scalars (TensorBoard tags to values).
    messages : list of str
        Warnings worth showing (clamped parameters, dropped maps).
    """

    epoch: int
    global_step: int
    config_hash: str
    computed: bool
    categories: dict[str, CategoryResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    findings: list[F.Finding] = field(default_factory=list)
    flags: list[tuple[str, str, str]] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """What :func:`analyze_run` did for one run.

    Attributes
    ----------
    run_dir : str
    epochs : list of EpochOutcome
        Epochs analysed or found current.
    failures : list of (str, str)
        ``(item, message)`` for each epoch that failed.
    """

    run_dir: str
    epochs: list[EpochOutcome] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def findings(self) -> list[F.Finding]:
        """Distinct findings over all epochs, each as seen in its last epoch, in order of first epoch."""
        latest: dict[str, F.Finding] = {}
        for epoch in self.epochs:
            for finding in epoch.findings:
                latest[finding.finding_id] = finding
        return sorted(latest.values(), key=lambda f: (f.first_epoch, f.finding_id))


# ------------------------------------------------------------------------------------------------ keys


def _categories_spec(classes: Sequence[int] | None, include_all: bool, category_by: str, nonfinite: str) -> dict:
    return {
        "classes": None if classes is None else sorted(int(c) for c in classes),
        "include_all": include_all,
        "category_by": category_by,
        "nonfinite": nonfinite,
    }


def _previous_epoch(store: S.RunStore, epoch: int) -> S.EpochInfo | None:
    earlier = [info for info in store.epochs() if info.epoch < epoch]
    return earlier[-1] if earlier else None


# the findings table is written first, so a crash before the others leaves a stale analysis
TABLES: tuple[str, ...] = S.ANALYSIS_TABLES


def current_analysis_key(store: S.RunStore, epoch: int) -> str | None:
    """The key of the epoch's complete, current analysis, or None (missing, stale or half-written)."""
    tables = store.analysis_tables(epoch)
    hashes = {tables.get(name) for name in TABLES}
    if len(hashes) == 1 and None not in hashes:
        return hashes.pop()
    return None


def analysis_key(
    store: S.RunStore,
    epoch: int,
    spray: SpRAy,
    *,
    classes: Sequence[int] | None = None,
    include_all: bool = True,
    category_by: str = "target",
    nonfinite: str = "error",
) -> str:
    """The cache key an analysis of ``epoch`` with these settings gets (see the module docstring)."""
    info = store.epoch_info(epoch)
    previous = _previous_epoch(store, epoch)
    previous_part = None
    if previous is not None:
        previous_part = {
            "epoch": previous.epoch,
            "commit": previous.commit,
            "analysis": current_analysis_key(store, previous.epoch),
        }
    return cache_key(
        {
            "analysis_format": S.ANALYSIS_FORMAT_VERSION,
            "versions": library_versions(),
            "config": spray.get_config(),
            "categories": _categories_spec(classes, include_all, category_by, nonfinite),
            "input": {"epoch": info.epoch, "commit": info.commit, "heatmap_shape": list(store.heatmap_shape)},
            "previous": previous_part,
        }
    )


# ------------------------------------------------------------------------------------------------ reading


def _read_epoch(store: S.RunStore, epoch: int, spray: SpRAy, nonfinite: str) -> _EpochData:
    """Stream an epoch by row groups into prepared maps (raw maps are never all in memory)."""
    columns = [S.SAMPLE_ID, S.LABEL, S.PREDICTION, S.TARGET, S.RELEVANCE]
    shape = store.heatmap_shape
    grid = spray.preprocess.grid_shape(shape)
    rows = store.epoch_info(epoch).rows
    # filled batch by batch: the raw maps of an epoch are never all in memory, the outputs never copied
    features, absolute, signed = (np.empty((rows, grid[0] * grid[1]), np.float32) for _ in range(3))
    ids, labels, predictions, targets = (np.empty(rows, np.int64) for _ in range(4))
    dropped = []
    filled = 0
    for batch in store.iter_batches(epoch, columns, batch_size=4096):
        maps = S.decode_relevance(batch.column(4), shape)
        batch_ids = batch.column(0).to_numpy()
        finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
        if not finite.all():
            if nonfinite == "error":
                bad = batch_ids[~finite]
                raise AnalysisError(
                    f"epoch {epoch}: relevance maps of sample id(s) {bad[:10].tolist()} hold NaN or infinity; "
                    "fix the attribution (e.g. a larger epsilon) or analyse with nonfinite='drop' "
                    '(config key "nonfinite")'
                )
            dropped.append(batch_ids[~finite])
        count = int(finite.sum())
        if count == 0:
            continue
        if filled + count > rows:
            raise AnalysisError(f"epoch {epoch} holds more rows than its manifest entry ({rows}); re-run the epoch")
        part = prepare_batch(spray.preprocess, maps[finite])
        span = slice(filled, filled + count)
        features[span], absolute[span], signed[span] = part.features, part.absolute, part.signed
        ids[span] = batch_ids[finite]
        labels[span] = batch.column(1).to_numpy()[finite]
        predictions[span] = batch.column(2).to_numpy()[finite]
        targets[span] = batch.column(3).to_numpy()[finite]
        filled += count
    keep = slice(0, filled)
    return _EpochData(
        ids[keep],
        labels[keep],
        predictions[keep],
        targets[keep],
        PreparedMaps(features[keep], absolute[keep], signed[keep], grid),
        np.concatenate(dropped) if dropped else np.empty(0, np.int64),
    )


def _read_token_epoch(store: S.RunStore, epoch: int, spray: SpRAy, nonfinite: str) -> tuple[_EpochData, TokenMaps]:
    """A token run's epoch in the fixed-length form of :class:`~.tokens.TokenForm` (see :mod:`.tokens`).

    The relevance per token (variable length) and the token ids of the epoch's samples are read whole:
    a probe set's tokens fit in memory, unlike a dataset-wide run's image maps.
    """
    columns = [S.SAMPLE_ID, S.LABEL, S.PREDICTION, S.TARGET]
    parts = [batch for batch in store.iter_batches(epoch, columns, batch_size=4096)]
    ids, labels, predictions, targets = (
        np.concatenate([b.column(k).to_numpy() for b in parts]).astype(np.int64) if parts else np.empty(0, np.int64)
        for k in range(4)
    )
    relevance = store.token_relevance(epoch, ids)
    token_ids = store.token_ids(ids)
    finite = np.array([bool(np.isfinite(relevance[int(i)]).all()) for i in ids], dtype=bool)
    if not finite.all() and nonfinite == "error":
        raise AnalysisError(
            f"epoch {epoch}: token relevance of sample id(s) {ids[~finite][:10].tolist()} holds NaN or infinity; "
            "fix the attribution (e.g. a larger epsilon) or analyse with nonfinite='drop' "
            '(config key "nonfinite")'
        )
    dropped = ids[~finite]
    ids, labels, predictions, targets = ids[finite], labels[finite], predictions[finite], targets[finite]
    strings = store.tokens(ids) or {}
    names = {int(t): str(w) for i in ids for t, w in zip(token_ids[int(i)], strings.get(int(i)) or [])}
    prepared, form = spray.prepare_tokens(
        [token_ids[int(i)] for i in ids], [relevance[int(i)] for i in ids], names=names, max_tokens=store.max_tokens
    )
    return _EpochData(ids, labels, predictions, targets, prepared, dropped), form


def _read_features(store: S.RunStore, epoch: int, spray: SpRAy) -> tuple[np.ndarray, np.ndarray]:
    ids, rows = [], []
    for batch_ids, maps in store.iter_heatmaps(epoch, batch_size=4096):
        finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
        ids.append(batch_ids[finite])
        rows.append(spray.preprocess.transform(maps[finite]))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return np.concatenate(ids), np.concatenate(rows)


def load_analysis(store: S.RunStore, epoch: int) -> dict[str, pa.Table]:
    """Read the current analysis tables of an epoch, all of one analysis.

    Returns
    -------
    dict of str to pyarrow.Table
        ``findings``, ``points``, ``clusters``, ``lineage`` and ``spectrum``.

    Raises
    ------
    lrp_lightning.store.AnalysisNotFoundError
        If the analysis is missing, stale, or its tables come from different analyses.
    """
    key = current_analysis_key(store, epoch)
    if key is None:
        raise S.AnalysisNotFoundError(
            f"epoch {epoch} of {store.run_dir} has no complete current analysis; run lrp-analyze {store.run_dir}"
        )
    return {name: store.read_analysis_table(epoch, name, config_hash=key) for name in TABLES}


def load_findings(store: S.RunStore | str | os.PathLike[str]) -> pa.Table:
    """The findings of a run over all epochs with a current analysis: the lineage of every finding.

    Returns
    -------
    pyarrow.Table
        The epochs' ``findings`` tables (:data:`~lrp_lightning.analysis.findings.FINDINGS_SCHEMA`)
        one after the other, with the epoch in front (column ``epoch``); rows of one finding share
        its ``finding_id``. Epochs without a current analysis are left out.
    """
    store = store if isinstance(store, S.RunStore) else S.RunStore(store)
    parts = []
    for info in store.epochs():
        key = current_analysis_key(store, info.epoch)
        if key is None:
            continue
        table = store.read_analysis_table(info.epoch, F.FINDINGS_TABLE, config_hash=key)
        table = table.select(F.FINDINGS_SCHEMA.names).cast(F.FINDINGS_SCHEMA)
        parts.append(table.add_column(0, S.EPOCH, pa.array([info.epoch] * table.num_rows, pa.int64())))
    if not parts:
        empty = F.FINDINGS_SCHEMA.empty_table()
        return empty.add_column(0, S.EPOCH, pa.array([], pa.int64()))
    return pa.concat_tables(parts)


def _previous_state(
    store: S.RunStore, previous: S.EpochInfo | None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, tuple]]]:
    """Previous epoch's layouts and labellings per category (empty without a current analysis)."""
    if previous is None or current_analysis_key(store, previous.epoch) is None:
        return {}, {}
    try:
        tables = load_analysis(store, previous.epoch)
    except (S.StoreError, OSError):
        return {}, {}
    points = tables[S.POINTS_TABLE]
    clusters = tables[S.CLUSTERS_TABLE]
    categories = points.column(S.CATEGORY).to_numpy(zero_copy_only=False)
    ids = points.column(S.SAMPLE_ID).to_numpy()
    layouts: dict[str, dict[str, np.ndarray]] = {}
    labellings: dict[str, dict[str, tuple]] = {}
    track_rows = {
        (c, g, int(k)): t
        for c, g, k, t in zip(
            clusters.column(S.CATEGORY).to_pylist(),
            clusters.column(S.CLUSTERING).to_pylist(),
            clusters.column(S.CLUSTER).to_pylist(),
            clusters.column(S.TRACK).to_pylist(),
        )
    }
    for category in np.unique(categories):
        rows = np.flatnonzero(categories == category)
        layouts[category] = {"sample_ids": ids[rows]}
        labellings[category] = {}
        for name in points.column_names:
            if name.startswith(S.EMBEDDING_COLUMN_PREFIX) and name.endswith(".x"):
                method = name[len(S.EMBEDDING_COLUMN_PREFIX) : -2]
                x_col, y_col = S.embedding_columns(method)
                xy = np.stack(
                    [
                        points.column(x_col).to_numpy(zero_copy_only=False)[rows],
                        points.column(y_col).to_numpy(zero_copy_only=False)[rows],
                    ],
                    axis=1,
                ).astype(np.float64)
                if np.isfinite(xy).all():
                    layouts[category][method] = xy
            elif name.startswith(S.CLUSTER_COLUMN_PREFIX):
                clustering = name[len(S.CLUSTER_COLUMN_PREFIX) :]
                column = points.column(name)
                if column.null_count == len(column) or column.filter(pa.array(categories == category)).null_count:
                    continue
                labels = column.to_numpy(zero_copy_only=False)[rows].astype(np.int64)
                tracks = {k: t for (c, g, k), t in track_rows.items() if c == category and g == clustering}
                labellings[category][clustering] = (ids[rows], labels, tracks)
    return layouts, labellings


def _aligned_init(layout: dict[str, np.ndarray] | None, sample_ids: np.ndarray, features: np.ndarray) -> dict:
    """Previous layouts reordered to ``sample_ids``; new samples start at their nearest old neighbour."""
    if not layout:
        return {}
    previous_ids = layout["sample_ids"]
    _, here, there = np.intersect1d(sample_ids, previous_ids, assume_unique=True, return_indices=True)
    if here.size < max(4, 0.5 * len(sample_ids)):
        return {}  # too little in common: a cold start is better
    missing = np.setdiff1d(np.arange(len(sample_ids)), here)
    nearest = None
    if missing.size:
        from sklearn.neighbors import NearestNeighbors  # chunked: never a missing x known matrix at once

        index = NearestNeighbors(n_neighbors=1).fit(features[here])
        nearest = here[index.kneighbors(features[missing], return_distance=False)[:, 0]]
    init = {}
    for method, xy in layout.items():
        if method == "sample_ids":
            continue
        out = np.zeros((len(sample_ids), 2))
        out[here] = xy[there]
        if nearest is not None:
            out[missing] = out[nearest]
        init[method] = out
    return init


def _stored_outcome(store: S.RunStore, info: S.EpochInfo, key: str) -> EpochOutcome:
    """Outcome of an epoch whose analysis is current (read back, nothing recomputed)."""
    outcome = EpochOutcome(info.epoch, info.global_step, key, computed=False)
    try:
        clusters = store.read_analysis_table(info.epoch, S.CLUSTERS_TABLE, config_hash=key)
        spectrum = store.read_analysis_table(info.epoch, S.SPECTRUM_TABLE, config_hash=key)
        findings = store.read_analysis_table(info.epoch, F.FINDINGS_TABLE, config_hash=key)
    except S.StoreError:
        return outcome
    outcome.flags.extend(T.stored_flags(clusters, spectrum))
    class_names = store.manifest.get("class_names")
    labels = {c: T.category_label(c, class_names) for c in spectrum.column(S.CATEGORY).to_pylist()}
    outcome.findings.extend(F.findings_from_table(findings, labels))
    for c, status, message in zip(
        spectrum.column(S.CATEGORY).to_pylist(),
        spectrum.column(S.STATUS).to_pylist(),
        spectrum.column(S.MESSAGE).to_pylist(),
    ):
        if status != "ok":
            outcome.skipped[c] = message or status
    return outcome


# ------------------------------------------------------------------------------------------------ findings


def _drop_small_flags(results: dict[str, CategoryResult], findings: F.Findings) -> None:
    """Clusters below the findings' minimum size are not flagged (a 1-sample cluster is no evidence)."""
    for result in results.values():
        least = findings.min_cluster_size(len(result.sample_ids))
        for name, summaries in result.summaries.items():
            result.summaries[name] = [
                replace(s, flagged=False, flag_region=None, flag_reason=None) if s.flagged and s.size < least else s
                for s in summaries
            ]


def _read_inputs(store: S.RunStore, sample_ids: np.ndarray, grid: tuple[int, int]) -> np.ndarray | None:
    """The probe inputs (thumbnails) of ``sample_ids`` on the analysis grid, or None when not stored."""
    try:
        probe = store.probe_table([S.SAMPLE_ID, S.THUMBNAIL])
    except (S.StoreError, OSError, KeyError):
        return None
    position = {int(i): k for k, i in enumerate(probe.column(S.SAMPLE_ID).to_pylist())}
    thumbnails = probe.column(S.THUMBNAIL).to_pylist()
    if any(int(i) not in position for i in sample_ids):
        return None
    try:
        return F.input_grid([thumbnails[position[int(i)]] for i in sample_ids], grid)
    except (OSError, ValueError):  # an unreadable PNG: evidence (b) is not available
        return None


def _regions(store: S.RunStore, spray: SpRAy, modality: str, grid: tuple[int, int]) -> list[F.Region]:
    """The candidate regions of an image, signal or tabular run, in its words (:func:`~.regions.region_set`)."""
    ind = spray.indicators
    return F.region_set(
        modality,
        grid,
        store.heatmap_shape,
        feature_names=F.feature_names_of(store.manifest),
        border_width=ind.border_width,
        corner_size=ind.corner_size,
        patch_size=ind.patch_size,
    )


def _previous_findings(store: S.RunStore, previous: S.EpochInfo | None) -> list[F.Finding]:
    if previous is None:
        return []
    key = current_analysis_key(store, previous.epoch)
    if key is None:
        return []
    try:
        return F.findings_from_table(store.read_analysis_table(previous.epoch, F.FINDINGS_TABLE, config_hash=key))
    except (S.StoreError, OSError):
        return []


def _detect_findings(
    store: S.RunStore,
    spray: SpRAy,
    data: _EpochData,
    results: dict[str, CategoryResult],
    members: dict[str, np.ndarray],
    previous: S.EpochInfo | None,
    class_names: list | None,
    epoch: int,
    modality: str,
    region_list: list[F.Region],
    tokens: TokenMaps | None,
) -> list[F.Finding]:
    grid = data.prepared.grid
    inputs = tokens.presence if tokens is not None else _read_inputs(store, data.sample_ids, grid)
    categories = {}
    for category, result in results.items():
        index = members[category]
        categories[category] = F.CategoryInput(
            label=T.category_label(category, class_names),
            sample_ids=data.sample_ids[index],
            absolute=data.prepared.absolute[index],
            labelings=result.clustering.labelings,
            inputs=None if inputs is None else inputs[index],
        )
    detection = spray.findings.detect(
        epoch, categories, region_list, modality=modality, previous=_previous_findings(store, previous)
    )
    return detection.findings


# ------------------------------------------------------------------------------------------------ API


def analyze_epoch(
    store: S.RunStore | str | os.PathLike[str],
    epoch: int,
    spray: SpRAy | None = None,
    *,
    classes: Sequence[int] | None = None,
    include_all: bool = True,
    category_by: str = "target",
    nonfinite: str = "error",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EpochOutcome:
    """Analyse one complete epoch of a run and write its analysis tables (unless they are current).

    Parameters
    ----------
    store : RunStore or path
        The run.
    epoch : int
        A complete epoch.
    spray : SpRAy, optional
        The pipeline. Default: ``SpRAy()``.
    classes : sequence of int, optional
        Analyse only these classes (per-class categories). Default: every class present.
    include_all : bool, default True
        Also analyse all samples together (category ``"all"``).
    category_by : {"target", "label"}, default "target"
        Group samples by the explained class (``target``) or by the true label.
    nonfinite : {"error", "drop"}, default "error"
        Maps holding NaN or infinity fail the epoch, or are left out (with a message).
    force : bool, default False
        Recompute even when a current analysis exists.
    progress : callable, optional
        Called with each category's name before it is analysed.

    Returns
    -------
    EpochOutcome

    Raises
    ------
    AnalysisError
        Bad input (non-finite maps, no samples); the message names the epoch and the fix.
    lrp_lightning.store.StoreError
        If the epoch cannot be read (e.g. a corrupt part file).
    """
    store = store if isinstance(store, S.RunStore) else S.RunStore(store)
    spray = SpRAy() if spray is None else spray
    check_choice(category_by, "category_by", "analyze_epoch", ("target", "label"))
    check_choice(nonfinite, "nonfinite", "analyze_epoch", NONFINITE)
    info = store.epoch_info(epoch)
    key = analysis_key(
        store, epoch, spray, classes=classes, include_all=include_all, category_by=category_by, nonfinite=nonfinite
    )
    if not force and current_analysis_key(store, epoch) == key:
        store.verify(epoch, digests=False)  # a deleted or replaced part is an error, not "up to date"
        return _stored_outcome(store, info, key)
    modality = F.modality_of(store.manifest)
    tokens = None
    if modality == "tokens":
        data, tokens = _read_token_epoch(store, epoch, spray, nonfinite)
        region_list = tokens.regions
    else:
        data = _read_epoch(store, epoch, spray, nonfinite)
        region_list = _regions(store, spray, modality, data.prepared.grid)
        data.prepared.regions = indicator_regions(modality, region_list)
    outcome = EpochOutcome(info.epoch, info.global_step, key, computed=True)
    if data.dropped.size:
        outcome.messages.append(
            f"epoch {epoch}: left out {data.dropped.size} map(s) holding NaN or infinity "
            f"(sample ids {data.dropped[:10].tolist()})"
        )
    if len(data.sample_ids) == 0:
        raise AnalysisError(f"epoch {epoch} of {store.run_dir} holds no (finite) relevance maps to analyse")
    class_names = store.manifest.get(S.CLASS_NAMES_KEY)
    groups = data.targets if category_by == "target" else data.labels
    present = np.unique(groups)
    wanted = present if classes is None else np.intersect1d(present, np.asarray(list(classes), dtype=np.int64))
    if classes is not None:
        absent = sorted(set(int(c) for c in classes) - set(present.tolist()))
        if absent:
            outcome.messages.append(f"epoch {epoch}: no samples of class(es) {absent}")
    members = {S.class_category(int(c)): np.flatnonzero(groups == c) for c in wanted}
    if include_all:
        members = {S.CATEGORY_ALL: np.arange(len(data.sample_ids)), **members}
    previous = _previous_epoch(store, epoch)
    layouts, labellings = _previous_state(store, previous)
    stability = np.full(len(data.sample_ids), np.nan, dtype=np.float32)
    if previous is not None:
        try:
            previous_ids, previous_rows = _read_features(store, previous.epoch, spray)
            features = data.prepared.features
            if tokens is not None:  # the stored per-position maps of both epochs: one form for both
                current_ids, current_rows = _read_features(store, epoch, spray)
                position = {int(i): k for k, i in enumerate(current_ids)}
                features = current_rows[[position[int(i)] for i in data.sample_ids]]
            stability = heatmap_stability(data.sample_ids, features, previous_ids, previous_rows)
        except S.StoreError as exc:
            outcome.messages.append(f"epoch {epoch}: no stability (previous epoch unreadable: {exc})")
    results: dict[str, CategoryResult] = {}
    for category, index in members.items():
        if progress is not None:
            progress(category)
        label = T.category_label(category, class_names)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results[category] = spray.analyze(
                    data.prepared.subset(index),
                    sample_ids=data.sample_ids[index],
                    labels=data.labels[index],
                    predictions=data.predictions[index],
                    category=label,
                    epoch=epoch,
                    init=_aligned_init(layouts.get(category), data.sample_ids[index], data.prepared.features[index]),
                    previous=labellings.get(category),
                    overview=category == S.CATEGORY_ALL,
                )
        except AnalysisError as exc:
            outcome.skipped[category] = str(exc)
            continue
        outcome.messages.extend(f"epoch {epoch}: {m}" for m in results[category].warnings)
    _drop_small_flags(results, spray.findings)
    outcome.categories = results
    outcome.flags = T.flags(results)
    outcome.findings = _detect_findings(
        store, spray, data, results, members, previous, class_names, epoch, modality, region_list, tokens
    )
    outcome.scalars = _selection_tags(store, T.indicator_scalars(results, outcome.flags, outcome.findings, stability))
    config = {
        "pipeline": spray.get_config(),
        "categories": _categories_spec(classes, include_all, category_by, nonfinite),
        "versions": library_versions(),
    }
    grid = data.prepared.grid
    clusters, lineage = T.clusters_tables(results)
    tables = {
        F.FINDINGS_TABLE: F.findings_table(outcome.findings),
        S.POINTS_TABLE: T.points_table(results, data, stability),
        S.CLUSTERS_TABLE: clusters,
        S.LINEAGE_TABLE: lineage,
        S.SPECTRUM_TABLE: T.spectrum_table(
            results, outcome.skipped, {c: len(i) for c, i in members.items()}, class_names
        ),
    }
    vocabulary = None if tokens is None else tokens.vocabulary
    tables = {name: T.with_metadata(table, config, grid, vocabulary) for name, table in tables.items()}
    T.write_tables(store, epoch, tables, key, info.commit)
    return outcome


def _selection_tags(store: S.RunStore, scalars: dict[str, float]) -> dict[str, float]:
    """The indicator ``scalars`` under the tags of the store's selected method and named analysis.

    The default analysis of the first method keeps the tags as they are; another method's get
    ``<tag>/<method>``, a named analysis' ``<tag>/<name>/<method>`` (see :func:`~lrp_lightning.store.method_tag`).
    """
    if store.analysis_name == S.DEFAULT_ANALYSIS and store.method == store.methods[0]:
        return scalars
    suffix = store.method if store.analysis_name == S.DEFAULT_ANALYSIS else f"{store.analysis_name}/{store.method}"
    return {S.method_tag(tag, suffix): value for tag, value in scalars.items()}


def analyze_run(
    run: S.RunStore | str | os.PathLike[str],
    spray: SpRAy | None = None,
    *,
    epochs: Sequence[int] | None = None,
    classes: Sequence[int] | None = None,
    include_all: bool = True,
    category_by: str = "target",
    nonfinite: str = "error",
    force: bool = False,
    log_scalars: bool = True,
    on_epoch: Callable[[EpochOutcome | None, str | None], None] | None = None,
    method: str | None = None,
    name: str | None = None,
) -> RunOutcome:
    """Analyse every complete epoch of a run whose analysis is missing or stale, in epoch order.

    The analysis is of one attribution method (default: the store's selected one, at first the run's
    first method) and is written as the named analysis ``name`` (default: the store's selection, at first
    the default analysis), next to the other methods' and analyses' tables (:meth:`RunStore.select`).

    Parameters
    ----------
    run : RunStore or path
        The run directory (or its store).
    spray : SpRAy, optional
        The pipeline. Default: ``SpRAy()``.
    epochs : sequence of int, optional
        Only these epochs. Default: all complete epochs.
    classes, include_all, category_by, nonfinite, force
        As in :func:`analyze_epoch`.
    log_scalars : bool, default True
        Write the indicator scalars of each newly analysed epoch into the run's TensorBoard events, as
        soon as that epoch's analysis is written.
    on_epoch : callable, optional
        Called after each epoch with ``(outcome, None)`` or ``(None, error message)``.
    method : str, optional
        One of the run's methods (:attr:`RunStore.methods`).
    name : str, optional
        The analysis' name, e.g. ``"coarse"`` for an analysis with other settings kept beside the default.

    Returns
    -------
    RunOutcome
        An epoch that fails is recorded in ``failures``; the others are still analysed.

    Examples
    --------
    >>> from lrp_lightning.analysis import analyze_run
    >>> outcome = analyze_run("runs/mnist/version_0")          # doctest: +SKIP
    >>> [(e.epoch, len(e.findings)) for e in outcome.epochs]  # doctest: +SKIP
    [(0, 0), (1, 0), (2, 1)]
    """
    store = run if isinstance(run, S.RunStore) else S.RunStore(run)
    if method is not None or name is not None:
        store = store.select(method=method, analysis=name)
    spray = SpRAy() if spray is None else spray
    outcome = RunOutcome(str(store.run_dir))
    wanted = None if epochs is None else {int(e) for e in epochs}
    for info in store.epochs():
        if wanted is not None and info.epoch not in wanted:
            continue
        try:
            result = analyze_epoch(
                store,
                info.epoch,
                spray,
                classes=classes,
                include_all=include_all,
                category_by=category_by,
                nonfinite=nonfinite,
                force=force,
            )
        except (AnalysisError, S.StoreError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            message = str(exc)
            outcome.failures.append((f"{store.run_dir} epoch {info.epoch}", message))
            if on_epoch is not None:
                on_epoch(None, message)
            continue
        outcome.epochs.append(result)
        if log_scalars and result.computed and result.scalars:
            # right after the epoch's tables are committed: a run killed later keeps this epoch's scalars
            from .scalars import write_scalars

            try:
                write_scalars(store.run_dir, {result.global_step: result.scalars})
            except OSError as exc:
                outcome.failures.append((f"{store.run_dir} epoch {info.epoch} (TensorBoard scalars)", str(exc)))
        if on_epoch is not None:
            on_epoch(result, None)
    return outcome
