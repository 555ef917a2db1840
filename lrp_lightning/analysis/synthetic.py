"""Synthetic relevance maps with known structure, for tests, benchmarks and trying the analysis out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from .._validation import check_choice

__all__ = ["add_corner_artifact", "planted_maps", "planted_patterns"]

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def planted_maps(
    n_samples: int = 500,
    n_groups: int = 5,
    shape: Sequence[int] = (32, 32),
    noise: float = 0.5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Relevance maps drawn from ``n_groups`` planted spatial patterns plus noise.

    Each group's pattern is a smooth random field (signed, like LRP maps) under a central envelope,
    so relevance spreads over the object and stays off the borders; each sample is its group's
    pattern times a random amplitude plus white noise of relative strength ``noise``.

    Parameters
    ----------
    n_samples : int, default 500
    n_groups : int, default 5
    shape : (int, int), default (32, 32)
    noise : float, default 0.5
        Noise standard deviation relative to the pattern's.
    random_state : int, default 0

    Returns
    -------
    maps : numpy.ndarray of float32, shape (n_samples, H, W)
    groups : numpy.ndarray of int64, shape (n_samples,)
        The planted group of each sample (balanced, shuffled).
    """
    rng = np.random.default_rng(random_state)
    patterns, envelope = _patterns(rng, n_groups, shape)
    groups = rng.permutation(np.arange(n_samples) % n_groups)
    amplitude = rng.uniform(0.5, 1.5, size=n_samples)
    maps = patterns[groups] * amplitude[:, None, None]
    maps += noise * rng.normal(size=maps.shape) * envelope.max()
    return maps.astype(np.float32), groups.astype(np.int64)


def planted_patterns(n_groups: int = 5, shape: Sequence[int] = (32, 32), random_state: int = 0) -> np.ndarray:
    """The group patterns :func:`planted_maps` draws from (same ``random_state``), shape ``(n_groups, H, W)``.

    Useful to generate many maps batch by batch: ``patterns[groups] * amplitude + noise * normal``.
    """
    patterns, _ = _patterns(np.random.default_rng(random_state), n_groups, shape)
    return patterns.astype(np.float32)


def _patterns(rng: np.random.Generator, n_groups: int, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = (int(v) for v in shape)
    rows, cols = np.mgrid[:height, :width]
    envelope = np.exp(
        -(((rows - (height - 1) / 2) / (0.25 * height)) ** 2 + ((cols - (width - 1) / 2) / (0.25 * width)) ** 2)
    )
    patterns = []
    for _ in range(n_groups):
        field = gaussian_filter(rng.normal(size=(height, width)), sigma=max(1.0, min(height, width) / 10))
        field = field * envelope
        patterns.append(field / field.std())
    return np.stack(patterns), envelope


def add_corner_artifact(
    maps: np.ndarray, index: np.ndarray, corner: str = "top-left", share: float = 0.5, size: int | None = None
) -> np.ndarray:
    """Return a copy of ``maps`` where samples ``index`` put ``share`` of their relevance in a corner.

    Mimics a Clever-Hans artifact (a watermark or tag the model learnt to use).

    Parameters
    ----------
    maps : numpy.ndarray, shape (N, H, W)
    index : array of int
        Samples that get the artifact.
    corner : {"top-left", "top-right", "bottom-left", "bottom-right"}, default "top-left"
    share : float, default 0.5
        Fraction of each affected map's absolute relevance that ends up in the corner square.
    size : int, optional
        Side of the corner square. Default: ``min(H, W) // 8`` (at least 1).
    """
    check_choice(corner, "corner", "add_corner_artifact", CORNERS)
    out = np.array(maps, dtype=np.float32, copy=True)
    height, width = out.shape[1:]
    side = size or max(1, min(height, width) // 8)
    rows = slice(0, side) if corner.startswith("top") else slice(height - side, height)
    cols = slice(0, side) if corner.endswith("left") else slice(width - side, width)
    for i in np.asarray(index, dtype=np.int64):
        rest = np.abs(out[i]).sum() - np.abs(out[i][rows, cols]).sum()
        value = share / (1.0 - share) * rest / (side * side)
        out[i][rows, cols] = value
    return out
