"""Preprocessing of relevance maps: sign handling, sum-pooling to the analysis grid, normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_choice, check_int_pair
from .base import Step

__all__ = ["Preprocess", "pool_shape", "sum_pool"]

SIGN_MODES = ("signed", "absolute", "positive")
NORMALIZATIONS = ("l2", "l1", "max", "none")


def pool_shape(heatmap_shape: Sequence[int], pool_size: Sequence[int]) -> tuple[int, int]:
    """Return the analysis grid of maps of ``heatmap_shape`` pooled to at most ``pool_size``.

    Pooling never upsamples: an axis shorter than the target keeps its length.
    """
    return min(int(heatmap_shape[0]), int(pool_size[0])), min(int(heatmap_shape[1]), int(pool_size[1]))


def _bin_starts(length: int, bins: int) -> np.ndarray:
    return np.floor(np.arange(bins) * (length / bins)).astype(np.intp)


def sum_pool(maps: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Sum-pool maps of shape ``(N, H, W)`` to ``(N, h, w)`` with ``h <= H``, ``w <= W``.

    Bins are contiguous and as equal as possible (``H = 28`` to ``h = 8`` gives bins of 3 and 4 rows);
    the total of each map is preserved.
    """
    maps = np.asarray(maps)
    n, height, width = maps.shape
    h, w = int(shape[0]), int(shape[1])
    out = maps
    if h != height:
        out = np.add.reduceat(out, _bin_starts(height, h), axis=1)
    if w != width:
        out = np.add.reduceat(out, _bin_starts(width, w), axis=2)
    return out


class Preprocess(Step):
    """Turn channel-summed relevance maps into the feature vectors SpRAy compares.

    Parameters
    ----------
    sign : {"signed", "absolute", "positive"}, default "signed"
        Keep the sign, take absolute values, or keep only positive relevance.
    pool_size : (int, int), default (32, 32)
        Sum-pool the maps to at most this grid (an axis that is already shorter is kept).
    normalize : {"l2", "l1", "max", "none"}, default "l2"
        Scale each map to unit L2 norm (Euclidean distances then compare shapes, not magnitudes),
        unit L1 norm, unit maximum absolute value, or not at all. All-zero maps stay zero.

    Examples
    --------
    >>> import numpy as np
    >>> Preprocess(pool_size=(2, 2), normalize="l1").transform(np.ones((1, 4, 4))).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """

    def __init__(self, sign: str = "signed", pool_size: Sequence[int] = (32, 32), normalize: str = "l2") -> None:
        owner = "Preprocess"
        self.sign = check_choice(sign, "sign", owner, SIGN_MODES)
        self.pool_size = check_int_pair(pool_size, "pool_size", owner, 1)
        self.normalize = check_choice(normalize, "normalize", owner, NORMALIZATIONS)

    def grid_shape(self, heatmap_shape: Sequence[int]) -> tuple[int, int]:
        """Shape ``(h, w)`` of the transformed maps for stored maps of ``heatmap_shape``."""
        return pool_shape(heatmap_shape, self.pool_size)

    def transform(self, maps: Any) -> np.ndarray:
        """Preprocess a batch of maps.

        Parameters
        ----------
        maps : array_like of shape (N, H, W)
            Channel-summed relevance maps (finite values).

        Returns
        -------
        numpy.ndarray of float32, shape (N, h * w)
            One row per map, row-major over the analysis grid.
        """
        array = np.asarray(maps, dtype=np.float32)
        if array.ndim != 3:
            raise ValueError(f"Preprocess.transform expects maps of shape (N, H, W), got {array.shape}")
        if self.sign == "absolute":
            array = np.abs(array)
        elif self.sign == "positive":
            array = np.maximum(array, 0.0)
        pooled = sum_pool(array, self.grid_shape(array.shape[1:]))
        rows = np.ascontiguousarray(pooled.reshape(len(pooled), -1), dtype=np.float32)
        if np.shares_memory(rows, maps):  # nothing pooled: never scale the caller's maps in place
            rows = rows.copy()
        return normalize_rows(rows, self.normalize)


def normalize_rows(rows: np.ndarray, normalize: str) -> np.ndarray:
    """Scale rows in place to unit norm (``"l2"``, ``"l1"``, ``"max"``) or leave them (``"none"``)."""
    if normalize == "none":
        return rows
    if normalize == "l2":
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    elif normalize == "l1":
        norms = np.abs(rows).sum(axis=1, dtype=np.float64)
    else:
        norms = np.abs(rows).max(axis=1, initial=0.0).astype(np.float64)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    rows *= scale[:, None].astype(rows.dtype)
    return rows
