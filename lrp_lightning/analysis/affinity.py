"""Sparse k-nearest-neighbour graphs: exact (blocked BLAS) or approximate (NN-descent).

Never builds an N x N matrix: exact search works on blocks of rows, so memory stays
``O(block * N + N * k)``; above ``exact_max_samples`` samples, pynndescent's approximate search
(the one UMAP uses) takes over.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validation import check_choice, check_int, check_random_state
from .base import Step

__all__ = ["KNNGraph", "Neighbors", "nearest_neighbors"]

ALGORITHMS = ("auto", "exact", "approximate")
_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest neighbours of every sample, the sample itself excluded.

    Attributes
    ----------
    indices : numpy.ndarray of int64, shape (N, k)
        Neighbour indices, nearest first.
    distances : numpy.ndarray of float32, shape (N, k)
        Euclidean distances, ascending per row.
    """

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        """Number of neighbours per sample."""
        return int(self.indices.shape[1])

    def first(self, k: int) -> Neighbors:
        """The ``k`` nearest of these neighbours."""
        return Neighbors(self.indices[:, :k], self.distances[:, :k])


def _exact_neighbors(data: np.ndarray, k: int) -> Neighbors:
    n = data.shape[0]
    data = np.ascontiguousarray(data, dtype=np.float32)
    squared = np.einsum("ij,ij->i", data, data, dtype=np.float64).astype(np.float32)
    block = max(1, min(n, _BLOCK_BYTES // max(1, 4 * n)))
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        d2 = data[start:stop] @ data.T
        d2 *= -2.0
        d2 += squared[start:stop, None]
        d2 += squared[None, :]
        rows = np.arange(stop - start)
        d2[rows, rows + start] = np.inf  # a sample is not its own neighbour
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d2, axis=1)[:, :k]
        picked = np.take_along_axis(d2, part, axis=1)
        # order by distance, ties by index, so results do not depend on the partition's internals
        order = np.lexsort((part, picked), axis=1)
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        distances[start:stop] = np.sqrt(np.maximum(np.take_along_axis(picked, order, axis=1), 0.0))
    return Neighbors(indices, distances)


def _approximate_neighbors(data: np.ndarray, k: int, random_state: int) -> Neighbors:
    import pynndescent  # deferred: numba compiles on first import

    index = pynndescent.NNDescent(
        np.ascontiguousarray(data, dtype=np.float32),
        n_neighbors=k + 1,
        metric="euclidean",
        random_state=random_state,
        low_memory=True,
        compressed=True,
        n_jobs=-1,
    )
    indices, distances = index.neighbor_graph
    indices = indices.astype(np.int64)
    distances = distances.astype(np.float32)
    # NN-descent usually returns the sample itself first; drop it wherever it is
    own = indices == np.arange(len(indices))[:, None]
    keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k + 1)[None, :] < k)
    return Neighbors(indices[keep].reshape(-1, k), distances[keep].reshape(-1, k))


def nearest_neighbors(
    data: np.ndarray, k: int, *, algorithm: str = "auto", exact_max_samples: int = 20_000, random_state: int = 0
) -> Neighbors:
    """Find the ``k`` nearest neighbours (Euclidean) of every row of ``data``.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D)
        Feature vectors; ``N > k``.
    k : int
        Neighbours per sample.
    algorithm : {"auto", "exact", "approximate"}, default "auto"
        ``"auto"`` is exact up to ``exact_max_samples`` samples and approximate above.
    exact_max_samples : int, default 20000
        Threshold of ``"auto"``.
    random_state : int, default 0
        Seed of the approximate search.

    Returns
    -------
    Neighbors
    """
    n = data.shape[0]
    if not 0 < k < n:
        raise ValueError(f"need 0 < k < number of samples, got k={k} for {n} samples")
    if algorithm == "exact" or (algorithm == "auto" and n <= exact_max_samples):
        return _exact_neighbors(data, k)
    return _approximate_neighbors(data, k, random_state)


class KNNGraph(Step):
    """Symmetric k-nearest-neighbour connectivity graph (CoRelAy's ``SparseKNN`` affinity).

    Edge weight 1 where one sample is among the other's ``n_neighbors`` nearest, averaged with the
    transpose (so mutual neighbours weigh 1, one-sided ones 0.5).

    Parameters
    ----------
    n_neighbors : int, default 10
        Neighbours per sample. Clamped, with a warning, to ``N - 1`` for categories with fewer
        samples.
    algorithm : {"auto", "exact", "approximate"}, default "auto"
        Neighbour search, see :func:`nearest_neighbors`.
    exact_max_samples : int, default 20000
        Largest category searched exactly when ``algorithm="auto"``.
    random_state : int, default 0
        Seed of the approximate search.
    """

    def __init__(
        self,
        n_neighbors: int = 10,
        algorithm: str = "auto",
        exact_max_samples: int = 20_000,
        random_state: int = 0,
    ) -> None:
        owner = "KNNGraph"
        self.n_neighbors = check_int(n_neighbors, "n_neighbors", owner, 1)
        self.algorithm = check_choice(algorithm, "algorithm", owner, ALGORITHMS)
        self.exact_max_samples = check_int(exact_max_samples, "exact_max_samples", owner, 0)
        self.random_state = check_random_state(random_state, owner)

    def effective_neighbors(self, n_samples: int, what: str = "the category") -> int:
        """``n_neighbors`` clamped to ``n_samples - 1`` (warns when clamping)."""
        if self.n_neighbors >= n_samples:
            clamped = max(1, n_samples - 1)
            warnings.warn(
                f"{what} has {n_samples} samples: n_neighbors={self.n_neighbors} clamped to {clamped}",
                RuntimeWarning,
                stacklevel=2,
            )
            return clamped
        return self.n_neighbors

    def neighbors(self, data: np.ndarray, k: int) -> Neighbors:
        """Search ``k`` neighbours with this step's algorithm (``k`` may exceed ``n_neighbors``)."""
        return nearest_neighbors(
            data,
            k,
            algorithm=self.algorithm,
            exact_max_samples=self.exact_max_samples,
            random_state=self.random_state,
        )

    def graph(self, neighbors: Neighbors, n_neighbors: int | None = None) -> sp.csr_matrix:
        """Build the symmetric connectivity graph from (at least ``n_neighbors``) neighbours.

        Returns
        -------
        scipy.sparse.csr_matrix of float64, shape (N, N)
        """
        k = neighbors.k if n_neighbors is None else n_neighbors
        indices = neighbors.indices[:, :k]
        n = indices.shape[0]
        rows = np.repeat(np.arange(n), k)
        adjacency = sp.csr_matrix((np.ones(n * k), (rows, indices.ravel())), shape=(n, n))
        return ((adjacency + adjacency.T) * 0.5).tocsr()
