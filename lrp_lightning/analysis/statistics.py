"""The statistics behind a finding: permutation p values against random same-size subsets, and the
Benjamini-Hochberg control of the false-discovery rate over every tested cluster (see
:mod:`lrp_lightning.analysis.findings`, evidence (c))."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

__all__ = ["benjamini_hochberg", "permutation_pvalue"]


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (q values); ``q <= alpha`` controls the FDR at ``alpha``.

    Parameters
    ----------
    p_values : array_like of float, shape (m,)

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
        ``q_i = min_{j: p_j >= p_i} min(1, p_j * m / rank_j)``, in the input's order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def permutation_pvalue(observed: float, null: np.ndarray, *, greater: bool = True) -> float:
    """One-sided p value of ``observed`` against the statistics of random subsets ``null``.

    ``(1 + #{null at least as extreme}) / (1 + len(null))``; when fewer than 10 draws are at least as
    extreme, the tail is approximated by a normal fit to ``null`` (never above the count-based value),
    so strong effects are told apart beyond ``1 / (len(null) + 1)``.
    """
    null = np.asarray(null, dtype=np.float64)
    extreme = int(np.count_nonzero(null >= observed)) if greater else int(np.count_nonzero(null <= observed))
    counted = (1 + extreme) / (1 + null.size)
    if extreme >= 10:
        return counted
    sd = float(null.std())
    if sd <= 0:
        return counted if extreme else 1.0 / (1 + null.size) ** 2
    z = (observed - float(null.mean())) / sd
    tail = float(norm.sf(z if greater else -z))
    return min(counted, max(tail, 1e-300))
