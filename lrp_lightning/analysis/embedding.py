"""2-D embeddings for viewing a category: t-SNE, UMAP and PCA, seeded, optionally warm-started.

t-SNE and UMAP cost most of an epoch's analysis, so by default (``scope="flagged"``) only the
overview (all samples) and the categories with a flagged cluster get them; the other categories get
a PCA layout, which costs next to nothing. ``scope="all"`` (``lrp-analyze --embeddings all``) lays
out every category with every method.

UMAP is compiled by numba on first use. :func:`enable_numba_cache` makes that compilation happen once
per installation instead of once per process (see its docstring for where the cache lives).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .._validation import check_bool, check_choice, check_float, check_int, check_random_state, check_subset
from .affinity import Neighbors
from .base import Step

__all__ = ["Embeddings", "enable_numba_cache"]

METHODS = ("tsne", "umap", "pca")
SCOPES = ("flagged", "all")
LIGHT_METHODS = ("pca",)
"""What the categories outside the scope get (``scope="flagged"``)."""
_UMAP_JITTED = {
    # the numba functions UMAP compiles for a fit with a precomputed kNN graph and the Euclidean metric;
    # umap-learn does not cache them on disk itself (pynndescent does)
    "umap.umap_": ("smooth_knn_dist", "compute_membership_strengths"),
    "umap.layouts": ("clip", "_nb_optimize_layout_euclidean_single_epoch"),
}  # (umap.utils' tau_rand functions have explicit signatures: numba compiles them at import, quickly)
_numba_cache_enabled = False


def enable_numba_cache() -> list[str]:
    """Cache UMAP's numba-compiled functions on disk, so later processes load instead of compile them.

    Compiling them takes 5 to 15 s per process; loading the cache takes a fraction of a second. The
    cache is numba's own: next to umap-learn's source files (``umap/__pycache__``) when that folder
    is writable, else numba's per-user cache folder; the environment variable ``NUMBA_CACHE_DIR``,
    set before the process starts, moves it anywhere (e.g. a writable scratch disk). pynndescent
    caches its own functions the same way. Deleting the folder's ``*.nbi``/``*.nbc`` files only
    costs one more compilation. Called by :class:`Embeddings` before the first UMAP; idempotent.

    Returns
    -------
    list of str
        The functions whose caching this call switched on (empty when already on or not found).
    """
    global _numba_cache_enabled
    if _numba_cache_enabled:
        return []
    import importlib

    enabled = []
    for module_name, names in _UMAP_JITTED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            function = getattr(module, name, None)
            # a dispatcher that is already compiled keeps its code; only an uncompiled one is switched
            if hasattr(function, "enable_caching") and not getattr(function, "signatures", None):
                try:
                    function.enable_caching()
                except Exception:  # an uncachable function (e.g. a future umap's closure): compile as before
                    continue
                enabled.append(f"{module_name}.{name}")
    _numba_cache_enabled = True
    return enabled


def _scaled_init(init: np.ndarray, spread: float) -> np.ndarray:
    """Centre and scale an initial layout so its first axis has standard deviation ``spread``."""
    init = np.asarray(init, dtype=np.float64)
    init = init - init.mean(axis=0)
    std = float(init[:, 0].std())
    return init * (spread / std) if std > 0 else init


class Embeddings(Step):
    """Compute 2-D embeddings of the preprocessed maps of one category.

    Parameters
    ----------
    methods : sequence of str, default ("tsne", "umap", "pca")
        Which embeddings to compute.
    pca_dims : int, default 50
        t-SNE runs on the first ``pca_dims`` principal components of the maps (the usual t-SNE
        practice; it makes the neighbour search cheap and drops pixel noise).
    perplexity : float, default 30.0
        t-SNE's perplexity (clamped to ``(N - 1) / 3`` for small categories).
    scope : {"flagged", "all"}, default "flagged"
        Which categories get every method of ``methods``. ``"flagged"``: the overview (all samples)
        and the categories with a flagged cluster; every other category gets a PCA layout only
        (t-SNE and UMAP of eleven categories cost about four times the rest of an epoch's
        analysis). ``"all"``: every category gets every method (``lrp-analyze --embeddings all``).
    tsne_max_iter : int, default 400
        t-SNE iterations from a cold start, the 250 of early exaggeration (factor 12) included (PCA
        initialisation converges sooner than CoRelAy's random one, which needs 1000). Measured on
        three sets of 1000 maps: 400 iterations reach the trustworthiness of 500 and 750 (within
        0.001) in about half the time of 750.
    tsne_angle : float, default 0.8
        Barnes-Hut accuracy/speed trade-off (scikit-learn's default is 0.5). Measured on 4000 maps:
        0.8 is 40% faster with the same trustworthiness.
    warm_max_iter : int, default 250
        t-SNE iterations when warm-started from the previous epoch's layout (no early exaggeration:
        the layout is already organised; 250 is scikit-learn's least, and as trustworthy as 500).
    umap_n_neighbors : int, default 15
        UMAP's neighbourhood size (clamped to ``N - 1``).
    umap_min_dist : float, default 0.1
        UMAP's ``min_dist``.
    umap_n_epochs : int, default 200
        UMAP's optimisation epochs (umap-learn uses 500 below 10,000 samples; measured on 1000 maps,
        200 keep the trustworthiness, 0.921, at 40% of the time). A cold start begins at the PCA
        layout when PCA or t-SNE is computed as well, else at UMAP's spectral initialisation.
    warm_start : bool, default True
        Initialise t-SNE and UMAP from the previous epoch's layout when one is given: faster, and
        points stay where they were unless their maps changed.
    random_state : int, default 0
        Seed of every embedding (two runs give identical layouts).
    """

    def __init__(
        self,
        methods: Sequence[str] = METHODS,
        scope: str = "flagged",
        pca_dims: int = 50,
        perplexity: float = 30.0,
        tsne_max_iter: int = 400,
        tsne_angle: float = 0.8,
        warm_max_iter: int = 250,
        umap_n_neighbors: int = 15,
        umap_min_dist: float = 0.1,
        umap_n_epochs: int = 200,
        warm_start: bool = True,
        random_state: int = 0,
    ) -> None:
        owner = "Embeddings"
        self.methods = check_subset(methods, "methods", owner, METHODS)
        self.scope = check_choice(scope, "scope", owner, SCOPES)
        self.pca_dims = check_int(pca_dims, "pca_dims", owner, 2)
        self.perplexity = check_float(perplexity, "perplexity", owner, 1.0)
        self.tsne_max_iter = check_int(tsne_max_iter, "tsne_max_iter", owner, 250)
        self.tsne_angle = check_float(tsne_angle, "tsne_angle", owner, 0.0, 1.0)
        self.warm_max_iter = check_int(warm_max_iter, "warm_max_iter", owner, 250)
        self.umap_n_neighbors = check_int(umap_n_neighbors, "umap_n_neighbors", owner, 2)
        self.umap_min_dist = check_float(umap_min_dist, "umap_min_dist", owner, 0.0)
        self.umap_n_epochs = check_int(umap_n_epochs, "umap_n_epochs", owner, 1)
        self.warm_start = check_bool(warm_start, "warm_start", owner)
        self.random_state = check_random_state(random_state, owner)

    def for_category(self, *, overview: bool, flagged: bool) -> Embeddings:
        """The embeddings one category gets: this step, or PCA only outside the scope.

        Parameters
        ----------
        overview : bool
            The category holds all samples.
        flagged : bool
            The category has a flagged cluster (in any clustering).
        """
        if self.scope == "all" or overview or flagged or set(self.methods) <= set(LIGHT_METHODS):
            return self
        return self.set_params(methods=LIGHT_METHODS, scope="all")  # type: ignore[return-value]

    def neighbors_needed(self) -> int:
        """Neighbours UMAP reuses from the kNN search (0 when UMAP is not computed)."""
        return self.umap_n_neighbors if "umap" in self.methods else 0

    def fit_transform(
        self,
        data: np.ndarray,
        *,
        neighbors: Neighbors | None = None,
        init: Mapping[str, np.ndarray | None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Embed the rows of ``data`` in 2-D with every configured method.

        Parameters
        ----------
        data : numpy.ndarray, shape (N, D)
            Preprocessed maps.
        neighbors : Neighbors, optional
            Precomputed neighbours of ``data`` (at least ``umap_n_neighbors``); UMAP reuses them
            instead of searching again.
        init : mapping of str to array of shape (N, 2), optional
            Previous layout per method (used when ``warm_start``); None entries mean cold start.

        Returns
        -------
        dict of str to numpy.ndarray of float32, shape (N, 2)
            Methods that need more samples than given (t-SNE and UMAP need 4) are left out.
        """
        n = data.shape[0]
        init = dict(init or {}) if self.warm_start else {}
        # a collapsed previous layout is no start (the Barnes-Hut tree needs distinct points)
        init = {m: v for m, v in init.items() if v is not None and np.ptp(np.asarray(v), axis=0).max() > 0}
        out: dict[str, np.ndarray] = {}
        reduced = None
        if n < 2:
            return out
        if float(np.ptp(data, axis=0).max(initial=0.0)) == 0.0:
            # every map identical (e.g. all zero early in training): one point, nothing to lay out
            return {method: np.zeros((n, 2), np.float32) for method in self.methods}
        if "pca" in self.methods or "tsne" in self.methods:
            from sklearn.decomposition import PCA

            dims = min(self.pca_dims, n, data.shape[1])
            pca = PCA(n_components=dims, svd_solver="auto", random_state=self.random_state)
            reduced = pca.fit_transform(np.asarray(data, dtype=np.float32))
            if reduced.shape[1] < 2:
                reduced = np.pad(reduced, ((0, 0), (0, 2 - reduced.shape[1])))
            if "pca" in self.methods:
                out["pca"] = reduced[:, :2].astype(np.float32)
        if "tsne" in self.methods and n >= 4:
            out["tsne"] = self._tsne(reduced, init.get("tsne"))
        if "umap" in self.methods and n >= 4:
            out["umap"] = self._umap(data, neighbors, init.get("umap"), reduced)
        return {method: out[method] for method in self.methods if method in out}

    def _tsne(self, reduced: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        from sklearn.manifold import TSNE

        n = reduced.shape[0]
        perplexity = min(self.perplexity, (n - 1) / 3.0)
        if previous is not None:
            # a converged layout: keep its scale, so optimisation only refines it
            init = np.asarray(previous, dtype=np.float64) - np.mean(previous, axis=0)
            options = {"early_exaggeration": 1.0, "max_iter": self.warm_max_iter}
        else:
            init, options = "pca", {"max_iter": self.tsne_max_iter}
        model = TSNE(n_components=2, perplexity=perplexity, init=init, random_state=self.random_state, **options)
        return model.fit_transform(reduced).astype(np.float32)

    def _umap(
        self, data: np.ndarray, neighbors: Neighbors | None, previous: np.ndarray | None, reduced: np.ndarray | None
    ) -> np.ndarray:
        import umap  # deferred: numba compiles on first use

        enable_numba_cache()

        n = data.shape[0]
        k = min(self.umap_n_neighbors, n - 1)
        options: dict = {}
        if neighbors is not None and neighbors.k >= k - 1 and n > 2 * k:
            # UMAP's neighbour lists start with the sample itself
            own = np.arange(n)[:, None]
            indices = np.hstack([own, neighbors.indices[:, : k - 1]])
            distances = np.hstack([np.zeros((n, 1), np.float32), neighbors.distances[:, : k - 1]])
            options["precomputed_knn"] = (indices, distances, None)
        if previous is not None:
            init = _scaled_init(previous, 1.0)
        elif reduced is not None and np.ptp(reduced[:, :2], axis=0).min() > 0:
            # the PCA layout computed anyway: as trustworthy a start as UMAP's spectral one (0.919 against
            # 0.921 on 1000 maps), which costs 0.3 s when the kNN graph has many components
            init = np.asarray(reduced[:, :2], dtype=np.float64)
        elif n <= k + 2:
            init = "random"  # spectral initialisation needs a few more samples than neighbours
        else:
            init = "spectral"
        model = umap.UMAP(
            n_neighbors=k,
            min_dist=self.umap_min_dist,
            init=init,
            n_epochs=self.umap_n_epochs,
            random_state=self.random_state,
            n_jobs=1,
            **options,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap warns about n_jobs with a random_state, and small data
            return np.asarray(model.fit_transform(np.asarray(data, dtype=np.float32)), dtype=np.float32)
