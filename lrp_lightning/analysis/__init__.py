"""Dataset-wide analysis of relevance maps: Spectral Relevance Analysis (SpRAy), attached to training.

The analysis plays CoRelAy's role for lrp-lightning runs. Small scikit-learn-style steps make the
pipeline (:class:`SpRAy`): :class:`Preprocess` → :class:`KNNGraph` → :class:`SpectralEmbedding` →
:class:`Clusterings` → :class:`Embeddings` → :class:`Indicators`, with :class:`Tracking` across epochs.
:func:`analyze_run` and :func:`analyze_epoch` run it on a run's store and write the analysis tables
next to each epoch (the ``lrp-analyze`` command calls them).

It needs NumPy, SciPy, scikit-learn and umap-learn only; neither torch nor CoRelAy.

Examples
--------
>>> from lrp_lightning.analysis import SpRAy, analyze_run
>>> outcome = analyze_run("runs/mnist/version_0")                  # doctest: +SKIP
>>> result = SpRAy(random_state=1).fit(maps, labels=labels)        # doctest: +SKIP
>>> result.clustering.eigengap_k, result.selected                  # doctest: +SKIP
(4, 'kmeans_4')
"""

from __future__ import annotations

from .affinity import KNNGraph, Neighbors, nearest_neighbors
from .base import AnalysisError, Step, cache_key, fingerprint, library_versions
from .clustering import ClusteringResult, Clusterings, spectral_coordinates
from .config import load_config
from .embedding import Embeddings
from .findings import Finding, Findings
from .indicators import ClusterSummary, Indicators
from .pipeline import (
    EpochOutcome,
    RunOutcome,
    analysis_key,
    analyze_epoch,
    analyze_run,
    current_analysis_key,
    load_analysis,
    load_findings,
)
from .preprocessing import Preprocess
from .spectral import SpectralEmbedding, Spectrum, eigengap
from .spray import CategoryResult, PreparedMaps, SpRAy, cache_info, clear_cache
from .synthetic import add_corner_artifact, planted_maps, planted_tokens
from .tokens import TokenForm, TokenMaps
from .tracking import Lineage, Tracking, heatmap_stability

__all__ = [
    "AnalysisError",
    "CategoryResult",
    "ClusterSummary",
    "ClusteringResult",
    "Clusterings",
    "Embeddings",
    "Finding",
    "Findings",
    "EpochOutcome",
    "Indicators",
    "KNNGraph",
    "Lineage",
    "Neighbors",
    "PreparedMaps",
    "Preprocess",
    "RunOutcome",
    "SpRAy",
    "SpectralEmbedding",
    "Spectrum",
    "Step",
    "TokenForm",
    "TokenMaps",
    "Tracking",
    "add_corner_artifact",
    "analysis_key",
    "analyze_epoch",
    "analyze_run",
    "cache_info",
    "cache_key",
    "clear_cache",
    "current_analysis_key",
    "eigengap",
    "fingerprint",
    "heatmap_stability",
    "library_versions",
    "load_analysis",
    "load_config",
    "load_findings",
    "nearest_neighbors",
    "planted_maps",
    "planted_tokens",
    "spectral_coordinates",
]
