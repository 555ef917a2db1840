"""Heatmap rendering for relevance maps, and the colour maps it uses.

Colour maps (:class:`ColorMap`, :data:`COLOR_MAPS` with Zennit's names and palettes,
:func:`register_cmap`, :func:`get_cmap`) live in :mod:`lrp_lightning._colormaps` and are re-exported
here, so that this stays the one import path for pictures.

Rendering goes in two steps: :func:`normalize` scales relevance into ``[0, 1]`` (symmetric around 0
by default, per sample for batches), and :func:`heatmap` looks the scaled values up in a palette and
returns a Pillow image. :func:`overlay` blends a heatmap over the input, :func:`grid` tiles images,
:func:`to_png_bytes` encodes one, and :func:`imgify` keeps ``zennit.image.imgify``'s behaviour for
code being ported from Zennit.

Examples
--------
>>> import numpy as np
>>> from lrp_lightning.image import heatmap, to_png_bytes
>>> relevance = np.array([[-1.0, 0.0], [0.5, 1.0]])
>>> image = heatmap(relevance, cmap="coldnhot")
>>> image.getpixel((1, 0))  # zero relevance is the centre colour of the map: black for coldnhot
(0, 0, 0)
>>> to_png_bytes(image)[:4]
b'\\x89PNG'

The colour-map specification language is described in :mod:`lrp_lightning._colormaps`.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ._colormaps import COLOR_MAPS, PALETTE_SIZE, ColorMap, LazyColorMapCache, get_cmap, register_cmap
from ._validation import argument_error, check_int, check_type

if TYPE_CHECKING:
    import torch

    from ._colormaps import CmapLike

    ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]

__all__ = [
    "COLOR_MAPS",
    "ColorMap",
    "LazyColorMapCache",
    "get_cmap",
    "grid",
    "gridify",
    "heatmap",
    "heatmap_batch",
    "imgify",
    "imsave",
    "interval_norm_bounds",
    "normalize",
    "overlay",
    "palette",
    "register_cmap",
    "to_png_bytes",
]


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------


def _as_numpy(obj: ArrayLike, what: str) -> np.ndarray:
    """A numpy view of a torch tensor (any device, bfloat16 included), numpy array or nested sequence."""
    torch_module = sys.modules.get("torch")
    if torch_module is not None and isinstance(obj, torch_module.Tensor):
        tensor = obj.detach().cpu()
        if tensor.dtype == torch_module.bfloat16:
            tensor = tensor.float()
        return tensor.numpy()
    array = np.asarray(obj)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a real numeric array or tensor, not an array of dtype {array.dtype}")
    return array


def _check_finite(array: np.ndarray, what: str) -> None:
    if array.size == 0:
        raise ValueError(f"{what} is empty (shape {array.shape}); there is nothing to render")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(
            f"{what} holds {nan} NaN and {inf} infinite value(s) (first at index {first}); they cannot "
            "be scaled to colours. Find where the attribution breaks (e.g. an epsilon of 0 divides by "
            "zero), or replace them with torch.nan_to_num / numpy.nan_to_num before rendering"
        )


def _working_float(array: np.ndarray) -> np.ndarray:
    # float16 (how the store keeps maps) loses too much precision in max and division; float32 is enough.
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)


def _data_bounds(array: np.ndarray, symmetric: bool, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if symmetric:
        high = np.abs(array).max(axis=axes, keepdims=True)
        return -high, high
    return array.min(axis=axes, keepdims=True), array.max(axis=axes, keepdims=True)


def _user_bound(value: Any, array: np.ndarray, batched: bool, name: str, dtype: Any) -> np.ndarray:
    bound = np.asarray(value, dtype=dtype)
    if batched and bound.ndim == 1 and bound.shape[0] == array.shape[0]:
        bound = bound.reshape((-1,) + (1,) * (array.ndim - 1))
    try:
        broadcast = np.broadcast_shapes(bound.shape, array.shape)
    except ValueError:
        broadcast = None
    if broadcast != array.shape:
        raise ValueError(
            f"{name} of shape {bound.shape} does not fit relevance of shape {array.shape}; pass a number, "
            "one value per sample, or an array that broadcasts to the relevance"
        )
    if not np.isfinite(bound).all():
        raise argument_error(None, name, "finite", value)
    return bound


def _scale(array: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(array - low) / (high - low)`` clipped to [0, 1]; where ``low == high`` every value is 0.5."""
    span = high - low
    if (span < 0).any():
        raise ValueError(
            f"the upper bound is below the lower bound (lower: {low.ravel()[:4].tolist()}, upper: "
            f"{high.ravel()[:4].tolist()}, from vmin/vmax where given, else the data); pass vmin < vmax"
        )
    flat = span == 0
    scaled = (array - low) / np.where(flat, 1, span)
    # A map of one value (all-zero relevance, a constant input) has no range; the centre is its honest colour.
    return np.clip(np.where(flat, 0.5, scaled), 0.0, 1.0).astype(scaled.dtype, copy=False)


def _normalized(
    array: np.ndarray, symmetric: bool, vmin: Any, vmax: Any, batched: bool, what: str = "relevance"
) -> np.ndarray:
    """Scale to [0, 1] with a single given bound mirrored around 0 in symmetric mode."""
    _check_finite(array, what)
    array = _working_float(array)
    axes = tuple(range(1, array.ndim)) if batched else tuple(range(array.ndim))
    if symmetric and (vmin is None) != (vmax is None):
        # A symmetric scale is centred on 0: one given bound fixes the other.
        vmin, vmax = (-np.asarray(vmax), vmax) if vmin is None else (vmin, -np.asarray(vmin))
    data_low, data_high = (
        (None, None) if vmin is not None and vmax is not None else _data_bounds(array, symmetric, axes)
    )
    low = data_low if vmin is None else _user_bound(vmin, array, batched, "vmin", array.dtype)
    high = data_high if vmax is None else _user_bound(vmax, array, batched, "vmax", array.dtype)
    return _scale(array, low, high)


def _apply_level(values: np.ndarray, level: float) -> np.ndarray:
    level = float(level)
    if not math.isfinite(level):
        raise argument_error(None, "level", "a finite number", level)
    if level == 1.0:
        return values
    return np.clip(0.5 + (values - 0.5) * level, 0.0, 1.0)


def normalize(
    relevance: ArrayLike,
    symmetric: bool = True,
    level: float = 1.0,
    vmin: float | ArrayLike | None = None,
    vmax: float | ArrayLike | None = None,
    *,
    batched: bool | None = None,
) -> np.ndarray:
    """Scale relevance into ``[0, 1]``, per map.

    Parameters
    ----------
    relevance : array-like
        numpy array, torch tensor (any device or dtype) or nested sequence.
    symmetric : bool, optional
        True (default): divide by the largest absolute value, so 0 maps to 0.5, ``-max|r|`` to 0 and
        ``+max|r|`` to 1, and positive and negative evidence keep their proportions. False: min-max,
        the smallest value maps to 0 and the largest to 1.
    level : float, optional
        Contrast around 0.5 (default 1.0): the result is ``clip(0.5 + level * (x - 0.5), 0, 1)``,
        the same transform as ``ColorMap.palette(level)`` and Zennit's ``imgify(level=...)``.
    vmin, vmax : float or array-like, optional
        Fixed bounds instead of the data's (default None), a number or one value per sample. In
        symmetric mode a single given bound fixes the other as its negative.
    batched : bool, optional
        Whether axis 0 indexes samples that are scaled separately. Default None: True for 3 or more
        axes (``(N, H, W)``, ``(N, C, H, W)``), False for 1 or 2.

    Returns
    -------
    numpy.ndarray
        Values in ``[0, 1]`` of the input's shape; float64 for float64 input, float32 otherwise. A map
        whose bounds coincide (e.g. all-zero relevance) becomes 0.5 everywhere.

    Raises
    ------
    ValueError
        If the relevance is empty or holds NaN or infinite values, a bound does not fit, or
        ``vmax < vmin``.
    """
    array = _as_numpy(relevance, "relevance")
    if array.ndim == 0:
        raise argument_error("normalize", "relevance", "a map of at least 1 axis, e.g. shape (H, W)", relevance)
    if batched is None:
        batched = array.ndim >= 3
    return _apply_level(_normalized(array, symmetric, vmin, vmax, batched), level)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _palette_indices(values: np.ndarray) -> np.ndarray:
    # 256 equal bins over [0, 1]: 0.5 (zero relevance in symmetric mode) falls on index 0x80, the
    # centre stop of the diverging maps, and 1.0 on 255.
    return np.minimum(values * PALETTE_SIZE, PALETTE_SIZE - 1).astype(np.uint8)


def _single_map(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 3:
        return array.sum(axis=0, dtype=np.float64 if array.dtype == np.float64 else np.float32)
    if array.ndim != 2:
        hint = "; for a batch use heatmap_batch()" if array.ndim == 4 else ""
        raise ValueError(f"{what} has shape {array.shape}; expected (H, W) or (C, H, W){hint}")
    return array


def _render(scaled: np.ndarray, cmap: CmapLike, level: float) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(get_cmap(cmap).palette(level)[_palette_indices(scaled)]))


def heatmap(
    relevance: ArrayLike,
    cmap: CmapLike = "coldnhot",
    symmetric: bool = True,
    level: float = 1.0,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Image.Image:
    """Render one relevance map as an RGB image.

    Parameters
    ----------
    relevance : array-like
        Shape ``(H, W)``, or ``(C, H, W)`` which is summed over channels first; numpy array or torch
        tensor.
    cmap : str, ColorMap or sequence of (float, colour), optional
        Colour map (default ``"coldnhot"``), anything :func:`get_cmap` accepts.
    symmetric, vmin, vmax
        Scaling as in :func:`normalize` (default symmetric around 0, bounds from the map).
    level : float, optional
        Contrast as in :meth:`ColorMap.palette` (default 1.0).

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``, size ``(W, H)``. Scaled values pick palette entry ``min(floor(256 x), 255)``,
        so zero relevance is drawn with entry 128, the centre colour of diverging maps (black for
        coldnhot, white for bwr); an all-zero map is that colour everywhere.

    Raises
    ------
    ValueError
        If the shape is not ``(H, W)`` or ``(C, H, W)``, or the map holds NaN or infinite values.
    """
    array = _single_map(_as_numpy(relevance, "relevance"), "relevance")
    return _render(_normalized(array, symmetric, vmin, vmax, batched=False), cmap, level)


def heatmap_batch(
    relevance: ArrayLike,
    cmap: CmapLike = "coldnhot",
    symmetric: bool = True,
    level: float = 1.0,
    vmin: float | ArrayLike | None = None,
    vmax: float | ArrayLike | None = None,
) -> list[Image.Image]:
    """Render a batch of relevance maps, each scaled on its own, as RGB images.

    Parameters
    ----------
    relevance : array-like
        Shape ``(N, H, W)``, or ``(N, C, H, W)`` which is summed over channels first.
    cmap, symmetric, level
        As in :func:`heatmap`.
    vmin, vmax : float or array-like, optional
        As in :func:`normalize`: a number for all samples or one value per sample.

    Returns
    -------
    list of PIL.Image.Image
        One image per sample; combine them with :func:`grid`.
    """
    array = _as_numpy(relevance, "relevance")
    if array.ndim == 4:
        array = array.sum(axis=1, dtype=np.float64 if array.dtype == np.float64 else np.float32)
    if array.ndim != 3:
        raise ValueError(
            f"relevance has shape {array.shape}; heatmap_batch expects (N, H, W) or (N, C, H, W), "
            "use heatmap() for a single map"
        )
    scaled = _normalized(array, symmetric, vmin, vmax, batched=True)
    return [_render(sample, cmap, level) for sample in scaled]


def grid(
    images: Sequence[Image.Image],
    nrow: int | None = None,
    padding: int = 0,
    fill: int | tuple[int, ...] = 0,
) -> Image.Image:
    """Tile images of one size into a single image, row by row.

    Parameters
    ----------
    images : sequence of PIL.Image.Image
        Images of equal size. If their modes differ, or any is a palette image, all are converted
        to RGB.
    nrow : int, optional
        Images per row (as torchvision's ``make_grid``). Default None: ``ceil(sqrt(len(images)))``.
    padding : int, optional
        Pixels between neighbouring images (default 0).
    fill : int or tuple of int, optional
        Colour of the padding and of empty cells in the last row (default 0, black).

    Returns
    -------
    PIL.Image.Image
    """
    images = list(images)
    if not images:
        raise argument_error("grid", "images", "a non-empty sequence of PIL images", images)
    for position, image in enumerate(images):
        note = "render arrays first with heatmap() or imgify()"
        check_type(image, f"images[{position}]", "grid", Image.Image, "a PIL image", note=note)
    sizes = {image.size for image in images}
    if len(sizes) > 1:
        raise ValueError(f"grid needs images of one size, got sizes (W, H) {sorted(sizes)}; resize them first")
    if nrow is None:
        nrow = math.ceil(math.sqrt(len(images)))
    nrow = check_int(nrow, "nrow", "grid", 1, note="images per row")
    padding = check_int(padding, "padding", "grid", 0, note="pixels")
    modes = {image.mode for image in images}
    mode = modes.pop() if len(modes) == 1 else "RGB"
    if mode in ("P", "PA"):
        mode = "RGB"
    columns = min(nrow, len(images))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    canvas = Image.new(mode, (columns * width + (columns - 1) * padding, rows * height + (rows - 1) * padding), fill)
    for position, image in enumerate(images):
        row, column = divmod(position, columns)
        canvas.paste(image.convert(mode), (column * (width + padding), row * (height + padding)))
    return canvas


def to_png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG.

    Parameters
    ----------
    image : PIL.Image.Image

    Returns
    -------
    bytes
        The PNG file's bytes (lossless: decoding gives the same pixels).
    """
    check_type(image, "image", "to_png_bytes", Image.Image, "a PIL image", note="render arrays first with heatmap()")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _input_rgb(input_image: Image.Image | ArrayLike) -> np.ndarray:
    """The input as an ``(H, W, 3)`` uint8 array."""
    if isinstance(input_image, Image.Image):
        return np.asarray(input_image.convert("RGB"))
    array = _as_numpy(input_image, "input_image")
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    elif array.ndim == 2:
        array = array[:, :, None]
    elif not (array.ndim == 3 and array.shape[2] in (1, 3)):
        raise ValueError(
            f"input_image has shape {array.shape}; expected (C, H, W) or (H, W, C) with 1 or 3 channels, or (H, W)"
        )
    if array.dtype != np.uint8:
        _check_finite(array, "input_image")
        array = _working_float(array)
        low, high = array.min(), array.max()
        if low < 0 or high > 1:
            # Not in [0, 1] (e.g. standardised with the dataset's mean and std): stretch min-max.
            array = _scale(array, low, high)
        array = np.rint(array * 255.0).astype(np.uint8)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def overlay(
    input_image: Image.Image | ArrayLike,
    relevance: ArrayLike,
    alpha: float = 0.5,
    cmap: CmapLike = "coldnhot",
    symmetric: bool = True,
    level: float = 1.0,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Image.Image:
    """Blend a heatmap of ``relevance`` over the input it explains.

    Parameters
    ----------
    input_image : PIL.Image.Image or array-like
        The input: a PIL image, or an array/tensor of shape ``(C, H, W)``, ``(H, W, C)`` (1 or 3
        channels) or ``(H, W)``. uint8 values are used as they are; float values in ``[0, 1]`` are
        used as they are, any other range is stretched min-max to ``[0, 1]``.
    relevance : array-like
        ``(H, W)`` or ``(C, H, W)``, the input's height and width, as for :func:`heatmap`.
    alpha : float, optional
        Weight of the heatmap, from 0 (input only) to 1 (heatmap only); default 0.5.
    cmap, symmetric, level, vmin, vmax
        As in :func:`heatmap`.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``: ``round((1 - alpha) * input + alpha * heatmap)`` per channel.

    Raises
    ------
    ValueError
        If alpha is outside [0, 1], the shapes disagree, or the arrays hold NaN.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise argument_error("overlay", "alpha", "a number in [0, 1]", alpha, "0: input only, 1: heatmap only")
    alpha = float(alpha)
    base = _input_rgb(input_image)
    heat = np.asarray(heatmap(relevance, cmap=cmap, symmetric=symmetric, level=level, vmin=vmin, vmax=vmax))
    if base.shape[:2] != heat.shape[:2]:
        raise ValueError(
            f"input_image is {base.shape[0]}x{base.shape[1]} (H x W) but relevance is "
            f"{heat.shape[0]}x{heat.shape[1]}; pass both at one resolution, e.g. resize the relevance "
            "with torch.nn.functional.interpolate"
        )
    blended = base.astype(np.float64) * (1.0 - alpha) + heat.astype(np.float64) * alpha
    return Image.fromarray(np.rint(blended).astype(np.uint8))


# --------------------------------------------------------------------------------------------------
# Zennit-compatible imgify
# --------------------------------------------------------------------------------------------------


def _channels_last(array: np.ndarray, axis: int, what: str) -> np.ndarray:
    """Move a colour axis of size 1 or 3 from ``axis`` to the end unless the last axis already is one."""
    if array.shape[-1] in (1, 3):
        return array
    if array.shape[axis] in (1, 3):
        return np.moveaxis(array, axis, -1)
    raise argument_error(
        None,
        f"{what}'s colour axis (first or last of an image)",
        "of 1 or 3 channels, or left out",
        array.shape,
    )


def _tile(array: np.ndarray, shape: tuple[int, int] | None, fill: Any) -> np.ndarray:
    """Arrange ``(N, H, W, C)`` into ``(rows * H, columns * W, C)``, row by row."""
    count, height, width, channels = array.shape
    if shape is None:
        columns = max(math.isqrt(count), 1)
        rows = math.ceil(count / columns)
    else:
        rows, columns = (int(n) for n in shape)
    if fill is None:
        fill = array.min(axis=(0, 1, 2))
    cells = np.empty((rows * columns, height, width, channels), dtype=array.dtype)
    cells[...] = np.asarray(fill).astype(array.dtype)
    used = min(count, rows * columns)
    cells[:used] = array[:used]
    return (
        cells.reshape(rows, columns, height, width, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(rows * height, columns * width, channels)
    )


def imgify(
    obj: ArrayLike,
    vmin: float | ArrayLike | None = None,
    vmax: float | ArrayLike | None = None,
    cmap: CmapLike | None = None,
    symmetric: bool = False,
    level: float = 1.0,
    grid: bool | tuple[int, int] = False,
    gridfill: int | ArrayLike | None = None,
) -> Image.Image:
    """Convert an array to an image the way ``zennit.image.imgify`` does, for code ported from Zennit.

    New code should prefer :func:`heatmap`, :func:`heatmap_batch` and :func:`grid`. Differences from
    Zennit: NaN or infinite input raises ``ValueError``, and a map whose bounds coincide is drawn at
    the centre of the palette where Zennit's division by zero leaves the pixels undefined.

    Parameters
    ----------
    obj : array-like
        ``(H, W)``, or an image with a colour axis of 1 or 3 channels first or last; with ``grid``,
        the same with a batch axis in front. uint8 arrays are used as they are, others are scaled.
    vmin, vmax : float or array-like, optional
        Replace the data's minimum and maximum respectively (default None). Unlike
        :func:`normalize`, a single bound is not mirrored in symmetric mode, as in Zennit.
    cmap : str, ColorMap or sequence of (float, colour), optional
        Colour map for single-channel data; default None is Zennit's default, ``"bwr"``.
    symmetric : bool, optional
        Scale by the largest absolute value so 0 maps to the centre (default False: min-max).
    level : float, optional
        Palette contrast as in :meth:`ColorMap.palette` (default 1.0); ignored for RGB data.
    grid : bool or tuple of (int, int), optional
        Treat axis 0 as a batch, scale each sample on its own and tile them: True for a near-square
        grid of ``floor(sqrt(N))`` columns, or ``(rows, columns)``. Default False.
    gridfill : int or array-like, optional
        uint8 value of empty grid cells (default None: each channel's minimum).

    Returns
    -------
    PIL.Image.Image
        Mode ``"P"`` (palette image) for single-channel data, ``"RGB"`` for 3 channels. Scaled
        values ``x`` become index ``floor(255 x)`` as in Zennit, so in symmetric mode 0 lands on
        index 127 (:func:`heatmap` uses 128, the exact centre).
    """
    array = _as_numpy(obj, "obj")
    if not (isinstance(grid, bool) or (isinstance(grid, (tuple, list)) and len(grid) == 2)):
        raise argument_error("imgify", "grid", "True, False or (rows, columns)", grid)
    if grid:
        if array.ndim not in (3, 4):
            raise argument_error("imgify", "obj's shape with grid", "(N, H, W) or (N, C, H, W)", array.shape)
        if array.ndim == 4:
            array = _channels_last(array, 1, "obj")
        batched = True
    else:
        if array.ndim not in (2, 3):
            raise argument_error("imgify", "obj's shape", "(H, W), (C, H, W) or (H, W, C)", array.shape)
        if array.ndim == 3:
            array = _channels_last(array, 0, "obj")
        batched = False

    if array.dtype != np.uint8:
        _check_finite(array, "obj")
        if array.dtype.kind != "f":
            array = array.astype(np.float64)
        axes = tuple(range(1, array.ndim)) if batched else tuple(range(array.ndim))
        data_low, data_high = (
            (None, None) if vmin is not None and vmax is not None else _data_bounds(array, symmetric, axes)
        )
        # np.asarray, not a cast to the data's dtype: Zennit promotes the same way, so pixels match.
        low = data_low if vmin is None else np.asarray(vmin)
        high = data_high if vmax is None else np.asarray(vmax)
        array = (_scale(array, low, high) * 255).astype(np.uint8)

    if batched:
        shape = None if grid is True else tuple(grid)
        array = _tile(array if array.ndim == 4 else array[..., None], shape, gridfill)
    elif array.ndim == 2:
        array = array[:, :, None]

    if array.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(array))
    image = Image.fromarray(np.ascontiguousarray(array[:, :, 0]))
    image.putpalette(get_cmap("bwr" if cmap is None else cmap).palette(level).tobytes())
    return image


def palette(cmap: CmapLike = "bwr", level: float = 1.0) -> np.ndarray:
    """The 256-colour ``uint8`` palette of ``cmap`` (a name, a specification or a ColorMap) at ``level``."""
    return get_cmap(cmap).palette(level=level)


def gridify(obj: ArrayLike, shape: tuple[int, int] | None = None, fill_value: Any = None) -> np.ndarray:
    """Tile a batch ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` into one ``(rows * H, columns * W, C)`` array.

    Parameters
    ----------
    obj : array-like
        A batch of images with 1 or 3 channels (first or last), or without a channel axis.
    shape : (int, int), optional
        ``(rows, columns)``; a near-square grid of ``floor(sqrt(N))`` columns by default.
    fill_value : number or array-like, optional
        Value of empty cells; each channel's minimum by default.

    Returns
    -------
    numpy.ndarray
        The grid, channels last (a channel axis of 1 is added when there was none).
    """
    array = _as_numpy(obj, "obj")
    if array.ndim not in (3, 4):
        raise argument_error("gridify", "obj's shape", "(N, H, W), (N, C, H, W) or (N, H, W, C)", array.shape)
    array = array[..., None] if array.ndim == 3 else _channels_last(array, 1, "obj")
    return _tile(array, shape, fill_value)


def imsave(
    fp: Any,
    obj: ArrayLike,
    vmin: float | ArrayLike | None = None,
    vmax: float | ArrayLike | None = None,
    cmap: CmapLike | None = None,
    level: float = 1.0,
    grid: bool | tuple[int, int] = False,
    format: str | None = None,
    writer_params: dict[str, Any] | None = None,
    symmetric: bool = False,
    gridfill: int | ArrayLike | None = None,
) -> None:
    """Save ``imgify(obj, ...)`` to ``fp`` (a path or a binary file) with PIL, as ``zennit.image.imsave`` does.

    ``format`` and ``writer_params`` go to ``PIL.Image.Image.save``; the other arguments are :func:`imgify`'s.
    """
    image = imgify(obj, vmin=vmin, vmax=vmax, cmap=cmap, symmetric=symmetric, level=level, grid=grid, gridfill=gridfill)
    image.save(fp, format=format, **(writer_params or {}))


def interval_norm_bounds(
    input: ArrayLike, symmetric: bool = False, dim: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The bounds ``(low, high)`` that scale ``input`` to ``[0, 1]`` over ``dim`` (all but axis 0 by default).

    ``symmetric`` uses ``-max|x|`` and ``max|x|``, so that 0 lands on 0.5; otherwise the minimum and maximum.
    """
    array = _as_numpy(input, "input")
    axes = tuple(range(1, array.ndim)) if dim is None else tuple(dim)
    return _data_bounds(array, symmetric, axes)
