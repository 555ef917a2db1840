"""Clusterings of a spectral embedding: a k-means sweep plus density, hierarchical and graph clusterings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .._validation import argument_error, check_float, check_int, check_int_pair, check_random_state, check_subset
from .base import Step
from .spectral import Spectrum, eigengap

__all__ = ["Clusterings", "ClusteringResult", "connect_components", "kmeans_name", "spectral_coordinates"]

METHODS = ("kmeans", "dbscan", "hdbscan", "agglomerative", "components")
KMEANS_SINGLE_THREAD_MAX_SAMPLES = 50_000


def kmeans_name(k: int) -> str:
    """Name of the sweep's labelling with ``k`` clusters, e.g. ``"kmeans_4"``."""
    return f"kmeans_{k}"


def spectral_coordinates(eigenvectors: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` eigenvectors, each row scaled to unit length (Ng, Jordan and Weiss, 2002)."""
    coordinates = np.array(eigenvectors[:, :k], dtype=np.float64)
    norms = np.linalg.norm(coordinates, axis=1, keepdims=True)
    return coordinates / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class ClusteringResult:
    """Every labelling of one category.

    Attributes
    ----------
    labelings : dict of str to numpy.ndarray of int32
        Name (``"kmeans_2"`` ... ``"kmeans_10"``, ``"dbscan"``, ``"hdbscan"``, ``"agglomerative"``,
        ``"components"``) to one label per sample; -1 marks noise (DBSCAN, HDBSCAN).
    selected : str
        The labelling the eigengap points to: ``kmeans_<k>`` with the eigengap's ``k`` clipped to the
        sweep (and to the number of samples and eigenvectors).
    eigengap_k : int
        Number of clusters the largest eigengap suggests (may be 1: no structure).
    eigengap : float
        Size of that gap.
    dimensions : int
        Number of eigenvectors used by the non-k-means clusterings (the clipped eigengap ``k``).
    skipped : dict of str to str
        Clusterings that could not run, with the reason.
    """

    labelings: dict[str, np.ndarray]
    selected: str
    eigengap_k: int
    eigengap: float
    dimensions: int
    skipped: dict[str, str] = field(default_factory=dict)


class Clusterings(Step):
    """Cluster a spectral embedding in several ways, keeping every labelling.

    For each ``k`` of ``k_range``: k-means on the first ``k`` row-normalised eigenvectors (standard
    spectral clustering). DBSCAN, HDBSCAN and agglomerative (Ward, restricted to the kNN graph) cluster
    the first ``d`` row-normalised eigenvectors, ``d`` being the eigengap's ``k`` clipped to
    ``k_range``. ``components`` labels the connected components of the kNN graph.

    Parameters
    ----------
    k_range : (int, int), default (2, 10)
        Smallest and largest ``k`` of the k-means sweep (inclusive).
    methods : sequence of str, default all of ``("kmeans", "dbscan", "hdbscan", "agglomerative", "components")``
        Which clusterings to run.
    n_init : int, default 4
        k-means restarts (k-means++ seeding each time); the best inertia wins.
    dbscan_eps : float or None, default None
        DBSCAN's radius; None: the 90th percentile of the distances to the ``dbscan_min_samples``-th
        neighbour in the clustered coordinates.
    dbscan_min_samples : int, default 5
        DBSCAN's core-point threshold (clamped to the category's size).
    hdbscan_min_cluster_size : int or None, default None
        HDBSCAN's smallest cluster; None: ``max(5, N // 100)``.
    random_state : int, default 0
        Seed of k-means.
    """

    def __init__(
        self,
        k_range: Sequence[int] = (2, 10),
        methods: Sequence[str] = METHODS,
        n_init: int = 4,
        dbscan_eps: float | None = None,
        dbscan_min_samples: int = 5,
        hdbscan_min_cluster_size: int | None = None,
        random_state: int = 0,
    ) -> None:
        owner = "Clusterings"
        low, high = check_int_pair(k_range, "k_range", owner, 2, expected="(smallest k, largest k)")
        if low > high:
            raise argument_error(owner, "k_range", "(smallest k, largest k) with smallest <= largest", k_range)
        self.k_range = (low, high)
        self.methods = check_subset(methods, "methods", owner, METHODS, allow_empty=False)
        self.n_init = check_int(n_init, "n_init", owner, 1)
        self.dbscan_eps = None if dbscan_eps is None else check_float(dbscan_eps, "dbscan_eps", owner, 1e-12)
        self.dbscan_min_samples = check_int(dbscan_min_samples, "dbscan_min_samples", owner, 1)
        self.hdbscan_min_cluster_size = (
            None
            if hdbscan_min_cluster_size is None
            else check_int(hdbscan_min_cluster_size, "hdbscan_min_cluster_size", owner, 2)
        )
        self.random_state = check_random_state(random_state, owner)

    def fit(self, spectrum: Spectrum, graph: sp.spmatrix) -> ClusteringResult:
        """Run every configured clustering.

        Parameters
        ----------
        spectrum : Spectrum
            From :meth:`SpectralEmbedding.fit`.
        graph : scipy.sparse matrix
            The kNN graph the spectrum was computed from.

        Returns
        -------
        ClusteringResult
        """
        from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering

        vectors = spectrum.eigenvectors
        n, m = vectors.shape
        low, high = self.k_range
        gap_k, gap = eigengap(spectrum.eigenvalues)
        largest = min(high, m, n - 1)
        dimensions = int(np.clip(gap_k, min(low, largest), largest)) if largest >= 2 else 1
        labelings: dict[str, np.ndarray] = {}
        skipped: dict[str, str] = {}
        if "kmeans" in self.methods:
            self._kmeans_sweep(vectors, low, high, largest, labelings, skipped)
        coordinates = spectral_coordinates(vectors, max(dimensions, 1))
        if "dbscan" in self.methods:
            min_samples = min(self.dbscan_min_samples, n)
            eps = self.dbscan_eps if self.dbscan_eps is not None else _auto_eps(coordinates, min_samples)
            labelings["dbscan"] = _relabel_by_size(DBSCAN(eps=eps, min_samples=min_samples).fit_predict(coordinates))
        if "hdbscan" in self.methods:
            size = self.hdbscan_min_cluster_size or max(5, n // 100)
            if n <= size:
                skipped["hdbscan"] = f"needs more than min_cluster_size={size} samples"
            else:
                model = HDBSCAN(min_cluster_size=size, copy=True)
                labelings["hdbscan"] = _relabel_by_size(model.fit_predict(coordinates))
        if "agglomerative" in self.methods:
            if dimensions < 2:
                skipped["agglomerative"] = "needs at least 2 clusters"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "the number of connected components ..." is expected
                    connectivity = connect_components(coordinates, graph)
                    model = AgglomerativeClustering(n_clusters=dimensions, linkage="ward", connectivity=connectivity)
                    labelings["agglomerative"] = _relabel_by_size(model.fit_predict(coordinates))
        if "components" in self.methods:
            _, labels = connected_components(graph, directed=False)
            labelings["components"] = _relabel_by_size(labels)
        if kmeans_name(dimensions) in labelings:
            selected = kmeans_name(dimensions)
        else:
            selected = next(iter(labelings))
        return ClusteringResult(labelings, selected, gap_k, gap, dimensions, skipped)

    def _kmeans_sweep(
        self,
        vectors: np.ndarray,
        low: int,
        high: int,
        largest: int,
        labelings: dict[str, np.ndarray],
        skipped: dict[str, str],
    ) -> None:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        # k-means on a few thousand points in <= 10 dimensions finishes before OpenMP threads pay off;
        # on a busy machine they cost ten times the work
        threads = 1 if len(vectors) <= KMEANS_SINGLE_THREAD_MAX_SAMPLES else None
        with threadpool_limits(threads, user_api="openmp"):
            for k in range(low, high + 1):
                if k > largest:
                    skipped[kmeans_name(k)] = f"needs more than {k} samples and {k} eigenvectors"
                    continue
                model = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # fewer distinct points than k: labels still valid
                    labels = model.fit_predict(spectral_coordinates(vectors, k))
                labelings[kmeans_name(k)] = _relabel_by_size(labels)


def connect_components(coordinates: np.ndarray, graph: sp.spmatrix) -> sp.csr_matrix:
    """The symmetrised graph plus, for every two connected components, an edge between their closest points.

    This is exactly how scikit-learn's Ward clustering completes a connectivity graph of several
    components (``sklearn.utils.graph._fix_connected_components``: the same components, visited in
    the same order, the same distance arithmetic, the same first minimum), so the clustering is
    unchanged; it only skips scikit-learn's input validation of each of the O(components²) distance
    blocks, which cost a third of an epoch's clusterings on a kNN graph with a dozen components.
    """
    graph = sp.csr_matrix(graph)
    connectivity = (graph + graph.T).tolil()
    n_components, labels = connected_components(connectivity)
    if n_components == 1:
        return connectivity.tocsr()
    data = np.asarray(coordinates)
    squared = np.einsum("ij,ij->i", data, data)  # scikit-learn's row_norms(X, squared=True)
    members = [np.flatnonzero(labels == i) for i in range(n_components)]
    for i in range(n_components):
        rows = members[i]
        for j in range(i):
            cols = members[j]
            distances = -2 * (data[rows] @ data[cols].T)  # scikit-learn's _euclidean_distances
            distances += squared[rows][:, None]
            distances += squared[cols][None, :]
            np.maximum(distances, 0, out=distances)
            np.sqrt(distances, out=distances)
            ii, jj = np.unravel_index(distances.argmin(axis=None), distances.shape)
            connectivity[rows[ii], cols[jj]] = 1
            connectivity[cols[jj], rows[ii]] = 1
    return connectivity.tocsr()


def _auto_eps(coordinates: np.ndarray, min_samples: int) -> float:
    from sklearn.neighbors import NearestNeighbors

    k = min(min_samples, len(coordinates) - 1)
    if k < 1:
        return 1.0
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(coordinates).kneighbors(coordinates)
    eps = float(np.quantile(distances[:, k], 0.9))
    return max(eps, 1e-9)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties by first occurrence); -1 stays noise."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, -1, dtype=np.int32)
    valid = labels >= 0
    if not valid.any():
        return out
    values, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.empty(values.size, dtype=np.int32)
    mapping[order] = np.arange(values.size, dtype=np.int32)
    out[valid] = mapping[np.searchsorted(values, labels[valid])]
    return out
