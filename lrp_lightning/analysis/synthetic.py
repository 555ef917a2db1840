"""Synthetic relevance maps with known structure, for tests, benchmarks and trying the analysis out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .._validation import check_choice, check_float, check_int

__all__ = ["PlantedTokens", "add_corner_artifact", "planted_maps", "planted_patterns", "planted_tokens"]

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


@dataclass
class PlantedTokens:
    """Token relevance of :func:`planted_tokens`: per sample its token ids and relevance, and the truth."""

    token_ids: list[np.ndarray]
    relevance: list[np.ndarray]
    labels: np.ndarray
    planted: np.ndarray  # indices of the samples that hold the shortcut token (and rely on it)
    shortcut_token: int
    names: dict[int, str]


def planted_tokens(
    n_samples: int = 400,
    n_classes: int = 2,
    vocabulary_size: int = 200,
    length: Sequence[int] = (12, 40),
    keywords_per_class: int = 12,
    shortcut_class: int = 1,
    shortcut_fraction: float = 0.5,
    shortcut_share: float = 0.5,
    random_state: int = 0,
) -> PlantedTokens:
    """Token relevance of a text classifier, with a planted shortcut token in part of one class.

    Every sample is filler words (little relevance) with two to four keywords of its class (ids drawn
    from the class's ``keywords_per_class``, most relevance). A ``shortcut_fraction`` of the samples
    of ``shortcut_class`` also hold the shortcut token (id 3, named ``"[X]"``) at a random position,
    carrying ``shortcut_share`` of their absolute relevance: what a model that learnt the shortcut
    shows. Id 0 is padding (never used), 1 ``"[CLS]"`` opens every sample, 2 is unused.

    Returns
    -------
    PlantedTokens
    """
    owner = "planted_tokens"
    n_samples = check_int(n_samples, "n_samples", owner, 4)
    n_classes = check_int(n_classes, "n_classes", owner, 2)
    check_float(shortcut_fraction, "shortcut_fraction", owner, 0.0, 1.0)
    check_float(shortcut_share, "shortcut_share", owner, 0.0, 0.99)
    first_keyword = 4
    first_filler = first_keyword + n_classes * keywords_per_class
    if vocabulary_size <= first_filler + 10:
        raise ValueError(
            f"{owner}: vocabulary_size must be > {first_filler + 10} for these keywords, got {vocabulary_size}"
        )
    rng = np.random.default_rng(random_state)
    labels = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    members = np.flatnonzero(labels == shortcut_class)
    planted = np.sort(rng.permutation(members)[: int(round(shortcut_fraction * members.size))])
    is_planted = np.zeros(n_samples, dtype=bool)
    is_planted[planted] = True
    shortcut = 3
    token_ids, relevance = [], []
    for i in range(n_samples):
        n = int(rng.integers(length[0], length[1] + 1))
        ids = rng.integers(first_filler, vocabulary_size, size=n)
        values = rng.normal(0.0, 0.05, size=n)
        ids[0], values[0] = 1, rng.normal(0.0, 0.05)
        spots = rng.choice(np.arange(1, n), size=int(rng.integers(2, 5)) + int(is_planted[i]), replace=False)
        keyword_spots = spots[: len(spots) - int(is_planted[i])]
        ids[keyword_spots] = (
            first_keyword
            + labels[i] * keywords_per_class
            + rng.integers(0, keywords_per_class, size=keyword_spots.size)
        )
        values[keyword_spots] = rng.uniform(0.5, 1.0, size=keyword_spots.size)
        if is_planted[i]:
            spot = spots[-1]
            ids[spot] = shortcut
            rest = np.abs(values).sum() - abs(values[spot])
            values[spot] = shortcut_share / (1.0 - shortcut_share) * rest
        token_ids.append(ids.astype(np.int64))
        relevance.append(values.astype(np.float32))
    names = {0: "[PAD]", 1: "[CLS]", 3: "[X]"}
    for c in range(n_classes):
        for k in range(keywords_per_class):
            names[first_keyword + c * keywords_per_class + k] = f"class{c}_word{k}"
    for t in range(first_filler, vocabulary_size):
        names[t] = f"w{t}"
    return PlantedTokens(token_ids, relevance, labels, planted, shortcut, names)
