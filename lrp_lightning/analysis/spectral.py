"""Spectral embedding: the smallest eigenpairs of the symmetric normalised graph Laplacian."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from .._validation import check_choice, check_float, check_int, check_random_state
from .base import Step

__all__ = ["Spectrum", "SpectralEmbedding", "eigengap", "normalized_affinity"]

SOLVERS = ("auto", "arpack", "dense")


@dataclass(frozen=True)
class Spectrum:
    """Eigenpairs of ``L = I - D^-1/2 A D^-1/2``.

    Attributes
    ----------
    eigenvalues : numpy.ndarray of float64, shape (m,)
        Smallest eigenvalues, ascending (0 for each connected component of the graph).
    eigenvectors : numpy.ndarray of float32, shape (N, m)
        Matching eigenvectors, one column each.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray


def normalized_affinity(graph: sp.spmatrix) -> sp.csr_matrix:
    """Return ``D^-1/2 A D^-1/2`` of a symmetric affinity ``A`` (its spectrum is ``1 - spectrum(L)``)."""
    graph = sp.csr_matrix(graph, dtype=np.float64)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    scaling = sp.diags(scale)
    return (scaling @ graph @ scaling).tocsr()


def eigengap(eigenvalues: np.ndarray, max_k: int | None = None) -> tuple[int, float]:
    """Number of clusters suggested by the largest gap between consecutive eigenvalues.

    Parameters
    ----------
    eigenvalues : numpy.ndarray, shape (m,)
        Laplacian eigenvalues, ascending.
    max_k : int, optional
        Largest number of clusters to consider. Default: ``m - 1``.

    Returns
    -------
    k : int
        ``argmax_k (lambda_{k+1} - lambda_k)`` over ``1 <= k <= max_k`` (1-based), i.e. the number of
        eigenvalues below the largest gap; 1 when fewer than two eigenvalues are given.
    gap : float
        The size of that gap.
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.size < 2:
        return 1, 0.0
    gaps = np.diff(values)
    limit = gaps.size if max_k is None else max(1, min(int(max_k), gaps.size))
    k = int(np.argmax(gaps[:limit])) + 1
    return k, float(gaps[k - 1])


class SpectralEmbedding(Step):
    """Smallest eigenvalues and eigenvectors of the symmetric normalised Laplacian of a graph.

    Parameters
    ----------
    n_eigval : int, default 32
        Number of eigenpairs; clamped to ``N - 1`` for small categories.
    solver : {"auto", "arpack", "dense"}, default "auto"
        ``"arpack"``: :func:`scipy.sparse.linalg.eigsh` on the sparse matrix (largest algebraic
        eigenvalues of ``D^-1/2 A D^-1/2``). ``"dense"``: :func:`scipy.linalg.eigh`, exact, for small
        graphs only. ``"auto"`` uses dense up to ``dense_max_samples`` samples.
    tol : float, default 1e-6
        Relative accuracy of the ARPACK eigenvalues.
    dense_max_samples : int, default 1000
        Largest graph solved densely with ``solver="auto"`` (8 MB at 1000).
    random_state : int, default 0
        Seed of ARPACK's start vector.
    """

    def __init__(
        self,
        n_eigval: int = 32,
        solver: str = "auto",
        tol: float = 1e-6,
        dense_max_samples: int = 1000,
        random_state: int = 0,
    ) -> None:
        owner = "SpectralEmbedding"
        self.n_eigval = check_int(n_eigval, "n_eigval", owner, 2)
        self.solver = check_choice(solver, "solver", owner, SOLVERS)
        self.tol = check_float(tol, "tol", owner, 0.0, 1.0)
        self.dense_max_samples = check_int(dense_max_samples, "dense_max_samples", owner, 0)
        self.random_state = check_random_state(random_state, owner)

    def fit(self, graph: sp.spmatrix) -> Spectrum:
        """Compute the spectrum of a symmetric affinity graph.

        Parameters
        ----------
        graph : scipy.sparse matrix, shape (N, N)
            Symmetric non-negative affinities, e.g. from :meth:`KNNGraph.graph`.

        Returns
        -------
        Spectrum
        """
        n = graph.shape[0]
        m = min(self.n_eigval, n - 1) if n > 1 else 1
        affinity = normalized_affinity(graph)
        dense = self.solver == "dense" or (self.solver == "auto" and n <= self.dense_max_samples) or n < 3
        if not dense and m >= n - 1:
            dense = True  # ARPACK needs m < N - 1
        if dense:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="blas"):  # small: threads cost more than they give
                values, vectors = scipy.linalg.eigh(affinity.toarray(), subset_by_index=(n - m, n - 1))
        else:
            rng = np.random.default_rng(self.random_state)
            start = rng.uniform(-1.0, 1.0, n)
            ncv = min(n, max(2 * m + 1, 64))
            try:
                values, vectors = eigsh(affinity, k=m, which="LA", v0=start, tol=self.tol, ncv=ncv)
            except ArpackNoConvergence as exc:  # keep what converged only if it is all we asked for
                if len(exc.eigenvalues) < m:
                    raise RuntimeError(
                        f"ARPACK did not converge for {m} eigenpairs of a graph with {n} samples; "
                        "pass a larger tol or SpectralEmbedding(solver='dense') for small categories"
                    ) from exc
                values, vectors = exc.eigenvalues, exc.eigenvectors
        order = np.argsort(-values, kind="stable")
        eigenvalues = np.clip(1.0 - values[order], 0.0, 2.0)
        vectors = vectors[:, order]
        # fix each eigenvector's sign (largest absolute entry positive) so results are reproducible
        pivot = np.argmax(np.abs(vectors), axis=0)
        signs = np.sign(vectors[pivot, np.arange(vectors.shape[1])])
        signs[signs == 0] = 1.0
        return Spectrum(eigenvalues=eigenvalues, eigenvectors=(vectors * signs).astype(np.float32))
