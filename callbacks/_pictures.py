"""Pictures: input thumbnails for the probe table and the heatmap grid logged to TensorBoard.

Every modality gets a picture: images keep 1 or 3 channels, other channel counts are averaged to
gray, and 1-D signals and vectors become one-pixel-high strips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from torch import Tensor


def thumbnail_png(sample: Tensor | np.ndarray, max_side: int) -> bytes:
    """PNG of one model input, min-max scaled; images keep 1 or 3 channels, others are averaged to gray."""
    from lrp_lightning.image import to_png_bytes

    array = sample.detach().float().cpu().numpy() if isinstance(sample, Tensor) else np.asarray(sample, np.float32)
    if array.ndim == 1:
        array = array[None, None]
    elif array.ndim == 2:
        array = array.mean(axis=0, keepdims=True)[None]  # (C, L) -> (1, 1, L)
    elif array.ndim != 3:
        array = array.reshape(-1, *array.shape[-2:])
    if array.shape[0] not in (1, 3):
        array = array.mean(axis=0, keepdims=True)
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    pixels = np.round(scaled * 255).astype(np.uint8).transpose(1, 2, 0)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return to_png_bytes(image)


def heatmap_grid(maps: np.ndarray, thumbnails: Sequence[bytes | None], cell: int = 64) -> Image.Image:
    """One image: per sample, its input next to its heatmap (``bwr``: red for the class, blue against)."""
    import io

    from lrp_lightning.image import grid, heatmap

    pairs = []
    for relevance, png in zip(maps, thumbnails):
        height, width = relevance.shape
        scale = max(1, -(-cell // max(height, width)))
        size = (width * scale, height * scale)
        picture = heatmap(np.nan_to_num(relevance, nan=0.0, posinf=0.0, neginf=0.0), cmap="bwr").resize(
            size, Image.Resampling.NEAREST
        )
        pair = Image.new("RGB", (size[0] * 2 + 1, size[1]), (255, 255, 255))
        if png is not None:
            pair.paste(Image.open(io.BytesIO(png)).convert("RGB").resize(size, Image.Resampling.NEAREST), (0, 0))
        pair.paste(picture, (size[0] + 1, 0))
        pairs.append(pair)
    columns = max(1, min(len(pairs), round(np.sqrt(len(pairs) / 2)) or 1))
    return grid(pairs, nrow=columns, padding=3, fill=(255, 255, 255))
