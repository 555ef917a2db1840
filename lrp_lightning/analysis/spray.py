"""SpRAy: spectral relevance analysis of one category of relevance maps.

:class:`SpRAy` chains the steps — :class:`Preprocess` → :class:`KNNGraph` → :class:`SpectralEmbedding`
→ :class:`Clusterings` → :class:`Embeddings` → :class:`Indicators` (and :class:`Tracking` across
epochs). The pipeline is data: :meth:`SpRAy.get_config` is its complete configuration, and every
intermediate result is memoised under the key of its step's configuration, its input's key and the
library versions, so changing, say, the t-SNE perplexity recomputes only the embeddings.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .._validation import check_int, check_type
from .affinity import KNNGraph, Neighbors
from .base import AnalysisError, Step, cache_key, fingerprint
from .clustering import ClusteringResult, Clusterings, spectral_coordinates
from .embedding import Embeddings
from .findings import Findings
from .indicators import ClusterSummary, Indicators
from .preprocessing import Preprocess, normalize_rows
from .regions import indicator_regions
from .spectral import SpectralEmbedding, Spectrum
from .tokens import TokenForm, TokenMaps
from .tracking import Lineage, Tracking

__all__ = ["CategoryResult", "PreparedMaps", "SpRAy", "cache_info", "clear_cache"]

STEPS = (
    "preprocess",
    "tokens",
    "affinity",
    "spectral",
    "clusterings",
    "embeddings",
    "indicators",
    "tracking",
    "findings",
)
SINGLE_THREAD_MAX_SAMPLES = 2000
"""Categories up to this size are analysed with one thread (BLAS and OpenMP)."""
_STEP_TYPES: dict[str, type[Step]] = {
    "preprocess": Preprocess,
    "tokens": TokenForm,
    "affinity": KNNGraph,
    "spectral": SpectralEmbedding,
    "clusterings": Clusterings,
    "embeddings": Embeddings,
    "indicators": Indicators,
    "tracking": Tracking,
    "findings": Findings,
}


class _Memo:
    """A small LRU of step results keyed by cache key, with hit and miss counts per step."""

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def get(self, step: str, key: str, compute: Any) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            self.hits[step] = self.hits.get(step, 0) + 1
            return self.items[key]
        self.misses[step] = self.misses.get(step, 0) + 1
        value = compute()
        self.items[key] = value
        while len(self.items) > self.maxsize:
            self.items.popitem(last=False)
        return value


_MEMO = _Memo()


def clear_cache() -> None:
    """Forget every memoised step result (and reset the counts of :func:`cache_info`)."""
    _MEMO.items.clear()
    _MEMO.hits.clear()
    _MEMO.misses.clear()


def cache_info() -> dict[str, dict[str, int]]:
    """Memo statistics: ``{"hits": {step: n}, "misses": {step: n}}`` since the last :func:`clear_cache`."""
    return {"hits": dict(_MEMO.hits), "misses": dict(_MEMO.misses)}


@dataclass
class PreparedMaps:
    """Maps of one category in the forms the steps use.

    Attributes
    ----------
    features : numpy.ndarray of float32, shape (N, h * w)
        Output of :class:`Preprocess` (what neighbours, spectra and embeddings compare).
    absolute : numpy.ndarray of float32, shape (N, h * w)
        Absolute relevance pooled to the grid, each row summing to 1 (indicators).
    signed : numpy.ndarray of float32, shape (N, h * w)
        Signed relevance pooled to the grid, unit L1 norm per row (prototypes).
    grid : (int, int)
        The analysis grid ``(h, w)``.
    key : str
        Fingerprint of ``features`` (the input key of the first cached step).
    regions : list of indicators.Region, optional
        Where the indicators look, in the modality's words (:func:`~.regions.indicator_regions`);
        None for images (corners, border bands, patches).
    """

    features: np.ndarray
    absolute: np.ndarray
    signed: np.ndarray
    grid: tuple[int, int]
    key: str = ""
    regions: list | None = None

    def __post_init__(self) -> None:
        if not self.key:
            self.key = fingerprint(self.features)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, index: np.ndarray) -> PreparedMaps:
        """The rows ``index`` (a new fingerprint); all rows in order give ``self`` without copying."""
        index = np.asarray(index)
        if index.dtype != bool and index.shape == (len(self),) and np.array_equal(index, np.arange(len(self))):
            return self
        return PreparedMaps(
            self.features[index], self.absolute[index], self.signed[index], self.grid, regions=self.regions
        )


@dataclass
class CategoryResult:
    """Everything SpRAy computed for one category.

    Attributes
    ----------
    sample_ids : numpy.ndarray of int64, shape (N,)
    n_neighbors : int
        Neighbours actually used (``n_neighbors`` clamped for small categories).
    spectrum : Spectrum
        Eigenvalues and eigenvectors of the normalised Laplacian.
    clustering : ClusteringResult
        Every labelling, the selected one and the eigengap.
    embeddings : dict of str to numpy.ndarray, shape (N, 2)
        2-D layouts by method.
    summaries : dict of str to list of ClusterSummary
        Per labelling, a summary per cluster.
    lineage : dict of str to Lineage
        Per labelling, how its clusters relate to the previous epoch's.
    warnings : list of str
        Messages about this category (e.g. clamped parameters).
    """

    sample_ids: np.ndarray
    n_neighbors: int
    spectrum: Spectrum
    clustering: ClusteringResult
    embeddings: dict[str, np.ndarray]
    summaries: dict[str, list[ClusterSummary]]
    lineage: dict[str, Lineage] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def selected(self) -> str:
        """Name of the labelling the eigengap selects."""
        return self.clustering.selected

    @property
    def labels(self) -> np.ndarray:
        """Labels of the selected labelling."""
        return self.clustering.labelings[self.clustering.selected]

    def flagged(self) -> list[tuple[str, ClusterSummary]]:
        """``(labelling, summary)`` of every flagged cluster."""
        return [(name, s) for name, summaries in self.summaries.items() for s in summaries if s.flagged]


class SpRAy(Step):
    """Spectral Relevance Analysis of relevance maps, with cluster summaries and Clever-Hans flags.

    Every step has sane defaults; pass a step object to change it. ``random_state``, when given,
    replaces the ``random_state`` of every step that has one.

    Parameters
    ----------
    preprocess : Preprocess, optional
        Default ``Preprocess()``: signed maps, sum-pooled to 32x32, unit L2 norm.
    tokens : TokenForm, optional
        Default ``TokenForm()``: how token runs become fixed-length (bag of tokens over the epoch's
        256 most relevant token ids, plus 16 position bins at a quarter weight); see :mod:`.tokens`.
    affinity : KNNGraph, optional
        Default ``KNNGraph()``: symmetric 10-nearest-neighbour graph.
    spectral : SpectralEmbedding, optional
        Default ``SpectralEmbedding()``: 32 smallest eigenpairs of the normalised Laplacian.
    clusterings : Clusterings, optional
        Default ``Clusterings()``: k-means for k = 2..10, DBSCAN, HDBSCAN, agglomerative, components.
    embeddings : Embeddings, optional
        Default ``Embeddings()``: t-SNE, UMAP and PCA of the overview (all samples) and of the
        categories with a flagged cluster, PCA of the others.
    indicators : Indicators, optional
        Default ``Indicators()``.
    tracking : Tracking, optional
        Default ``Tracking()``.
    findings : Findings, optional
        Default ``Findings()``: how flagged clusters become findings (tests, FDR ``alpha``, minimum
        size); applied over all categories of an epoch by :func:`~lrp_lightning.analysis.analyze_epoch`.
    min_category_size : int, default 3
        Categories with fewer samples are skipped with a message.
    random_state : int, optional
        Seed for every step. Default: keep each step's own (0 unless set).

    Examples
    --------
    >>> from lrp_lightning.analysis import SpRAy, planted_maps
    >>> maps, groups = planted_maps(n_samples=200, n_groups=4, shape=(16, 16), random_state=0)
    >>> result = SpRAy(embeddings=Embeddings(methods=("pca",))).fit(maps)
    >>> result.clustering.eigengap_k
    4
    """

    def __init__(
        self,
        preprocess: Preprocess | None = None,
        tokens: TokenForm | None = None,
        affinity: KNNGraph | None = None,
        spectral: SpectralEmbedding | None = None,
        clusterings: Clusterings | None = None,
        embeddings: Embeddings | None = None,
        indicators: Indicators | None = None,
        tracking: Tracking | None = None,
        findings: Findings | None = None,
        min_category_size: int = 3,
        random_state: int | None = None,
    ) -> None:
        given = {
            "preprocess": preprocess,
            "tokens": tokens,
            "affinity": affinity,
            "spectral": spectral,
            "clusterings": clusterings,
            "embeddings": embeddings,
            "indicators": indicators,
            "tracking": tracking,
            "findings": findings,
        }
        for name, step in given.items():
            if step is None:
                step = _STEP_TYPES[name]()
            else:
                kind = _STEP_TYPES[name].__name__
                check_type(step, name, "SpRAy", _STEP_TYPES[name], f"a {kind}", allow_none=True, note=f"e.g. {kind}()")
            if random_state is not None and "random_state" in step.get_params():
                step = step.set_params(random_state=random_state)
            setattr(self, name, step)
        self.min_category_size = check_int(min_category_size, "min_category_size", "SpRAy", 3)
        self.random_state = random_state

    def set_params(self, **params: Any) -> SpRAy:
        """Return a copy with some steps or parameters replaced.

        The copy's steps keep the seeds they have; ``random_state`` reseeds every step only when
        passed here.
        """
        params.setdefault("random_state", None)
        return super().set_params(**params)  # type: ignore[return-value]

    def get_config(self) -> dict[str, Any]:
        """The whole pipeline's configuration (each step's full config); JSON-able, the cache key's core."""
        config: dict[str, Any] = {name: getattr(self, name).get_config() for name in STEPS}
        config["min_category_size"] = self.min_category_size
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SpRAy:
        """Build a pipeline from a mapping like ``{"clusterings": {"k_range": [2, 6]}, "random_state": 1}``.

        Each step's entry holds constructor keywords of that step, either directly or, as written by
        :meth:`get_config`, under ``"params"``. Unknown names raise ``ValueError`` naming the valid ones.
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"an analysis config must be a mapping (JSON object / TOML table), got {config!r}")
        valid = {*STEPS, "min_category_size", "random_state"}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ValueError(f"unknown analysis config key(s) {unknown}; valid keys: {sorted(valid)}")
        kwargs: dict[str, Any] = {}
        for name in STEPS:
            entry = config.get(name)
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                raise ValueError(f"analysis config {name!r} must be a table of parameters, got {entry!r}")
            params = entry.get("params", entry) if "step" in entry else entry
            defaults = _STEP_TYPES[name]()
            try:
                kwargs[name] = defaults.set_params(**dict(params))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"analysis config {name!r}: {exc}") from exc
        for name in ("min_category_size", "random_state"):
            if name in config:
                kwargs[name] = config[name]
        return cls(**kwargs)

    # ---------------------------------------------------------------------------------- work

    def prepare(self, maps: Any) -> PreparedMaps:
        """Preprocess raw maps ``(N, H, W)`` for :meth:`analyze` (see :class:`PreparedMaps`).

        Raises
        ------
        AnalysisError
            If a map holds NaN or infinity.
        """
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim != 3:
            raise AnalysisError(f"relevance maps must have shape (N, H, W), got {maps.shape}")
        bad = np.flatnonzero(~np.isfinite(maps).reshape(len(maps), -1).all(axis=1))
        if bad.size:
            raise AnalysisError(
                f"{bad.size} relevance map(s) hold NaN or infinity (rows {bad[:10].tolist()}); "
                "drop them or fix the attribution (e.g. a larger epsilon stabilizer)"
            )
        return prepare_batch(self.preprocess, maps)

    def prepare_tokens(
        self,
        token_ids: Any,
        relevance: Any,
        *,
        names: Mapping[int, str] | None = None,
        max_tokens: int | None = None,
    ) -> tuple[PreparedMaps, TokenMaps]:
        """Prepare token relevance of variable length for :meth:`analyze` (the :class:`TokenForm` step).

        Parameters
        ----------
        token_ids, relevance : sequence of arrays
            Per sample, its token ids and one relevance value per token (padding removed).
        names : mapping of int to str, optional
            Token strings by id (the regions' names).
        max_tokens : int, optional
            Length the position bins cover (default: the longest sample).

        Returns
        -------
        (PreparedMaps, TokenMaps)
            The maps SpRAy analyses (bag block for the indicators, both blocks as features, the
            tokens as regions) and the token form itself (vocabulary, presence: the findings' inputs).
        """
        form = self.tokens.transform(token_ids, relevance, names=names, max_tokens=max_tokens)
        prepared = PreparedMaps(
            form.features, form.absolute, form.signed, form.grid, regions=indicator_regions("tokens", form.regions)
        )
        return prepared, form

    def fit(
        self,
        maps: Any,
        *,
        sample_ids: Any = None,
        labels: Any = None,
        predictions: Any = None,
        category: str = "all",
    ) -> CategoryResult:
        """Analyse one category of relevance maps (an overview: it gets every embedding method).

        Parameters
        ----------
        maps : array_like, shape (N, H, W)
            Channel-summed relevance maps.
        sample_ids : array_like of int, shape (N,), optional
            Default: ``0 .. N-1``.
        labels, predictions : array_like of int, shape (N,), optional
            True labels and predictions (purity, accuracy). Default: all zero.
        category : str, default "all"
            Name used in messages and flag reasons.

        Returns
        -------
        CategoryResult
        """
        prepared = self.prepare(maps)
        n = len(prepared)
        ids = np.arange(n, dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        true = np.zeros(n, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        predicted = true if predictions is None else np.asarray(predictions, dtype=np.int64)
        # maps given on their own are an overview: they get every embedding method
        return self.analyze(
            prepared, sample_ids=ids, labels=true, predictions=predicted, category=category, overview=True
        )

    def analyze(
        self,
        prepared: PreparedMaps,
        *,
        sample_ids: np.ndarray,
        labels: np.ndarray,
        predictions: np.ndarray,
        category: str = "all",
        epoch: int = 0,
        init: Mapping[str, np.ndarray] | None = None,
        previous: Mapping[str, tuple[np.ndarray, np.ndarray, dict[int, str]]] | None = None,
        overview: bool = False,
    ) -> CategoryResult:
        """Analyse prepared maps of one category (the steps after preprocessing).

        Parameters
        ----------
        prepared : PreparedMaps
            From :meth:`prepare` (or :func:`prepare_batch`).
        sample_ids, labels, predictions : numpy.ndarray, shape (N,)
            Per sample.
        category : str
            Name used in messages.
        epoch : int, default 0
            Names tracks born in this epoch.
        init : mapping of str to array (N, 2), optional
            Previous epoch's layouts, aligned with ``sample_ids`` (warm start).
        previous : mapping of str to (sample_ids, labels, tracks), optional
            Previous epoch's labelling per clustering name (tracking).
        overview : bool, default False
            The category holds all samples: it gets every embedding method whatever the
            embeddings' ``scope`` (see :meth:`Embeddings.for_category`).

        Raises
        ------
        AnalysisError
            If the category has fewer than ``min_category_size`` samples.
        """
        n = len(prepared)
        if n < self.min_category_size:
            raise AnalysisError(
                f"{category} has {n} sample{'s' if n != 1 else ''}; SpRAy needs at least "
                f"{self.min_category_size} (min_category_size): skipped"
            )
        # small categories run single-threaded: thread start-up costs more than it saves there
        limits = threadpool_limits(1) if n <= SINGLE_THREAD_MAX_SAMPLES else contextlib.nullcontext()
        # scikit-learn re-validates its inputs and parameters in every call (a hundred k-means fits per
        # category); ours are validated once and finite, and skipping that changes no result
        from sklearn import config_context

        with limits, config_context(assume_finite=True, skip_parameter_validation=True):
            return self._analyze(prepared, sample_ids, labels, predictions, category, epoch, init, previous, overview)

    def _analyze(
        self,
        prepared: PreparedMaps,
        sample_ids: np.ndarray,
        labels: np.ndarray,
        predictions: np.ndarray,
        category: str,
        epoch: int,
        init: Mapping[str, np.ndarray] | None,
        previous: Mapping[str, tuple[np.ndarray, np.ndarray, dict[int, str]]] | None,
        overview: bool,
    ) -> CategoryResult:
        n = len(prepared)
        messages: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            k = self.affinity.effective_neighbors(n, category)
        messages.extend(str(w.message) for w in caught)
        k_search = min(max(k, self.embeddings.neighbors_needed()), n - 1)
        knn_key = cache_key("neighbors", self.affinity, prepared.key, k_search)
        neighbors: Neighbors = _MEMO.get(
            "affinity", knn_key, lambda: self.affinity.neighbors(prepared.features, k_search)
        )
        graph_key = cache_key("graph", knn_key, k)
        graph: sp.csr_matrix = _MEMO.get("graph", graph_key, lambda: self.affinity.graph(neighbors, k))
        spectral_key = self.spectral.cache_key(graph_key)
        spectrum: Spectrum = _MEMO.get("spectral", spectral_key, lambda: self.spectral.fit(graph))
        clustering_key = self.clusterings.cache_key(spectral_key)
        clustering: ClusteringResult = _MEMO.get(
            "clusterings", clustering_key, lambda: self.clusterings.fit(spectrum, graph)
        )
        summaries: dict[str, list[ClusterSummary]] = {}
        lineage: dict[str, Lineage] = {}
        for name, labelling in clustering.labelings.items():
            dims = int(name.split("_")[1]) if name.startswith("kmeans_") else clustering.dimensions
            summaries[name] = self.indicators.summarize(
                labelling,
                coordinates=spectral_coordinates(spectrum.eigenvectors, max(dims, 1)),
                absolute=prepared.absolute,
                signed=prepared.signed,
                grid=prepared.grid,
                sample_ids=sample_ids,
                true_labels=labels,
                predictions=predictions,
                category=category,
                clustering=name,
                regions=prepared.regions,
            )
            lineage[name] = self.tracking.match(epoch, sample_ids, labelling, (previous or {}).get(name))
        # the layouts come last: which methods a category gets depends on whether it has a flagged cluster
        embedder = self.embeddings.for_category(
            overview=overview, flagged=any(s.flagged for group in summaries.values() for s in group)
        )
        init = {m: v for m, v in (init or {}).items() if v is not None and len(v) == n and m in embedder.methods}
        embed_key = embedder.cache_key(cache_key(prepared.key, knn_key, {m: fingerprint(v) for m, v in init.items()}))
        embeddings: dict[str, np.ndarray] = _MEMO.get(
            "embeddings",
            embed_key,
            lambda: embedder.fit_transform(prepared.features, neighbors=neighbors, init=init),
        )
        skipped_k = [name for name in clustering.skipped if name.startswith("kmeans_")]
        if skipped_k:
            messages.append(
                f"{category}: {', '.join(skipped_k)} not computed (k-means needs more samples and eigenvectors than k)"
            )
        for name, reason in clustering.skipped.items():
            if name not in skipped_k:
                messages.append(f"{category}: {name} not computed ({reason})")
        return CategoryResult(
            sample_ids=np.asarray(sample_ids, dtype=np.int64),
            n_neighbors=k,
            spectrum=spectrum,
            clustering=clustering,
            embeddings=embeddings,
            summaries=summaries,
            lineage=lineage,
            warnings=messages,
        )


def prepare_batch(preprocess: Preprocess, maps: np.ndarray) -> PreparedMaps:
    """Compute :class:`PreparedMaps` of a batch of finite maps (the pipeline streams batches through it)."""
    features = preprocess.transform(maps)
    grid = preprocess.grid_shape(maps.shape[1:])
    signed_step = Preprocess(sign="signed", pool_size=preprocess.pool_size, normalize="none")
    signed = normalize_rows(signed_step.transform(maps), "l1")
    absolute = np.abs(signed)
    return PreparedMaps(features, absolute, signed, grid)
