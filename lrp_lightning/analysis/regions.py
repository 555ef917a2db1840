"""Regions: the places a finding names, in the words of the run's modality.

A region is a set of cells of the analysis grid (the columns of the maps the findings test) with a
name that fits the data:

* images: corners, border bands and patches (``"top-left corner"``);
* 1-D signals: windows of time steps (``"time steps 120–135"``);
* tabular data: one feature, by its name when the manifest has feature names (``"feature age"``);
* tokens: one vocabulary item (``'token "[X]"'``, or ``"token id 17"`` without a tokenizer), a column
  of the bag-of-tokens form of :mod:`~lrp_lightning.analysis.tokens`.

Nothing here ever calls a part of a non-image a corner.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import indicators
from .indicators import regions

__all__ = [
    "MODALITIES",
    "Region",
    "feature_names_of",
    "indicator_regions",
    "input_grid",
    "modality_of",
    "region_set",
    "token_name",
    "token_regions",
]

MODALITIES = ("image", "signal", "tabular", "tokens")


@dataclass(frozen=True)
class Region:
    """A set of analysis-grid cells, named in the modality's words."""

    name: str
    detail: str
    cells: np.ndarray  # bool, (h * w,)
    rank: int = 0  # lower ranks name an artifact best (corners before bands before patches)
    token_id: int | None = None  # tokens: the vocabulary item (what a finding's region cells hold)


def modality_of(manifest: Mapping[str, Any]) -> str:
    """The modality of a run: ``manifest["modality"]`` when recorded, else inferred from its shapes.

    Heatmaps with more than one row are images; single-row heatmaps are tabular when the input is a
    vector ``(F,)`` and signals otherwise (``(C, L)``, or an unknown input shape). Token runs always
    record their modality (``"tokens"``): their inputs are integer ids of any length.
    """
    recorded = manifest.get("modality") or (manifest.get("metadata") or {}).get("modality")
    if recorded in MODALITIES:
        return str(recorded)
    shape = manifest.get("heatmap_shape") or [1, 1]
    if int(shape[0]) > 1:
        return "image"
    input_shape = manifest.get("input_shape")
    if input_shape is not None and len(input_shape) == 1:
        return "tabular"
    return "signal"


def feature_names_of(manifest: Mapping[str, Any]) -> list[str] | None:
    """Feature names of a tabular run (``manifest["feature_names"]`` or ``metadata.feature_names``)."""
    names = manifest.get("feature_names") or (manifest.get("metadata") or {}).get("feature_names")
    return [str(n) for n in names] if names else None


def region_set(
    modality: str,
    grid: tuple[int, int],
    heatmap_shape: Sequence[int],
    *,
    feature_names: Sequence[str] | None = None,
    border_width: float = 0.1,
    corner_size: float = 0.2,
    patch_size: float = 0.25,
) -> list[Region]:
    """The candidate regions of a modality on the analysis grid ``(h, w)``.

    Images: the :func:`~lrp_lightning.analysis.indicators.regions` (corners, border bands, patches).
    Signals: windows of 1/16, 1/8 and 1/4 of the length, at half-window strides, named by their time
    steps in the stored heatmap's coordinates. Tabular: one region per feature (per grid cell when
    the stored features were pooled).
    """
    h, w = grid
    if modality == "image":
        rank = {"corner": 0, "border": 1, "patch": 2}
        return [
            Region(r.name, r.description, r.mask, rank[r.kind])
            for r in regions(grid, border_width, corner_size, patch_size)
        ]
    length = int(heatmap_shape[-1])
    scale = length / w

    def steps(a: int, b: int) -> tuple[int, int]:
        return int(math.floor(a * scale)), int(math.ceil(b * scale)) - 1

    out = []
    if modality == "tabular":
        for cell in range(w):
            mask = np.zeros(h * w, dtype=bool)
            mask[cell::w] = True
            low, high = steps(cell, cell + 1)
            if low == high:
                name = feature_names[low] if feature_names and low < len(feature_names) else str(low)
                out.append(Region(f"feature {name}", f"feature index {low}", mask))
            else:
                out.append(Region(f"features {low}–{high}", f"feature indices {low}–{high}", mask))
        return out
    seen = set()
    # windows no finer than 1/8 of the signal: a finer window splits a class's own (jittered) feature into
    # position groups whose inputs agree there by construction of the clustering
    for width in sorted({max(1, w // 8), max(1, w // 4)}):
        stride = max(1, width // 2)
        for start in range(0, w - width + 1, stride):
            if (start, width) in seen:
                continue
            seen.add((start, width))
            mask = np.zeros((h, w), dtype=bool)
            mask[:, start : start + width] = True
            low, high = steps(start, start + width)
            out.append(Region(f"time steps {low}–{high}", f"{high - low + 1} of {length} steps", mask.reshape(-1)))
    return out


def input_grid(thumbnails: Sequence[bytes | None], grid: tuple[int, int]) -> np.ndarray | None:
    """Decode PNG thumbnails into grayscale inputs on the analysis grid, values in [0, 1].

    Returns
    -------
    numpy.ndarray of float32, shape (N, h * w), or None
        None when any thumbnail is missing (the inputs are then not available).
    """
    from PIL import Image

    h, w = grid
    out = np.empty((len(thumbnails), h * w), dtype=np.float32)
    for i, png in enumerate(thumbnails):
        if png is None:
            return None
        image = Image.open(io.BytesIO(png)).convert("F")
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BOX)
        out[i] = np.asarray(image, dtype=np.float32).reshape(-1) / 255.0
    return out


def token_name(token_id: int, names: Mapping[int, str] | None = None) -> str:
    """A vocabulary item in words: ``'token "[X]"'`` when its string is known, else ``"token id 17"``."""
    text = (names or {}).get(int(token_id))
    if text is None:
        return f"token id {int(token_id)}"
    return f'token "{text}"'


def token_regions(vocabulary: Sequence[int], names: Mapping[int, str] | None = None) -> list[Region]:
    """One region per vocabulary column of the bag-of-tokens form (:class:`~.tokens.TokenForm`).

    Parameters
    ----------
    vocabulary : sequence of int
        The token ids of the form's columns, in column order; the form has one more column (every other
        token), which is no region: "the rest of the vocabulary" names no shortcut.
    names : mapping of int to str, optional
        Token strings by id (from the run's tokenizer or vocabulary).

    Returns
    -------
    list of Region
        Cells over ``len(vocabulary) + 1`` columns, ``token_id`` set.
    """
    width = len(vocabulary) + 1
    out = []
    for column, token_id in enumerate(vocabulary):
        cells = np.zeros(width, dtype=bool)
        cells[column] = True
        out.append(Region(token_name(token_id, names), f"token id {int(token_id)}", cells, 0, int(token_id)))
    return out


def indicator_regions(modality: str, region_list: Sequence[Region]) -> list[indicators.Region] | None:
    """The regions :class:`~.indicators.Indicators` flags clusters in, for a modality other than images.

    None for images (the indicators' own corners, bands and patches); otherwise ``region_list``
    (:func:`region_set` or :func:`token_regions`) as indicator regions of kind ``"window"``,
    ``"feature"`` or ``"token"``, so a flag says "in time steps 0–15", never "corner".
    """
    if modality == "image" or not region_list:
        return None
    kind = {"signal": "window", "tabular": "feature", "tokens": "token"}[modality]
    return [indicators.Region(r.name, kind, r.cells, r.detail) for r in region_list]
