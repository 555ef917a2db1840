"""Batches: finding the model input, the labels and the masks in whatever a data loader yields.

* :func:`default_unpack_batch` reads a tensor, a tuple ``(x, y, ...)`` or a dict with common keys; a
  token batch such as ``{"input_ids", "attention_mask", "labels"}`` gives its tensors but the labels
  (and masks) as the model input, which the model gets as keyword arguments.
* :func:`unpack` checks what it (or the user's ``unpack_batch``) returns against the batch size and
  the chosen target; its errors say which ``unpack_batch`` to pass instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from lrp_lightning._model_io import token_ids_of

UnpackBatch = Callable[[Any], tuple[Tensor, Tensor | None] | tuple[Tensor, Tensor | None, Tensor | None]]
"""A user's ``batch -> (inputs, labels)`` or ``batch -> (inputs, labels, masks)``."""

INPUT_KEYS = ("input", "inputs", "x", "image", "images", "img", "pixel_values", "data")
LABEL_KEYS = ("label", "labels", "y", "target", "targets", "class", "cls")
MASK_KEYS = ("mask", "masks")
TOKEN_KEY = "input_ids"
"""A dict batch with this key is a token batch: its other tensors (but labels and masks) are model inputs too."""


def default_unpack_batch(batch: Any) -> tuple[Any, Any]:
    """``(input, labels)`` of a collated batch: a tensor, ``(x, y, ...)`` or a dict with common keys."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0], batch[1] if len(batch) > 1 else None
    if isinstance(batch, Mapping):
        y = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        if TOKEN_KEY in batch:
            left_out = set(LABEL_KEYS) | set(MASK_KEYS)
            return {k: v for k, v in batch.items() if k not in left_out and isinstance(v, Tensor)}, y
        x = next((batch[k] for k in INPUT_KEYS if k in batch), None)
        if x is None:
            raise ValueError(
                f"cannot find the model input in a batch with keys {sorted(batch)} (looked for "
                f"{[*INPUT_KEYS, TOKEN_KEY]}); "
                "pass unpack_batch=lambda batch: (batch['<input key>'], batch['<label key>'])"
            )
        return x, y
    raise ValueError(
        f"cannot unpack a batch of type {type(batch).__name__}; batches must be a tensor, a tuple (x, y) or "
        "a dict, or pass unpack_batch=lambda batch: (inputs, labels)"
    )


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    if isinstance(x, Mapping):
        return "a dict with " + ", ".join(
            f"{k!r}: {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}" for k, v in x.items()
        )
    return type(x).__name__


def unpack(
    batch: Any, unpack_batch: UnpackBatch | None, size: int, need_labels: bool, owner: str, with_masks: bool = False
):
    """Checked ``(x, labels or None)`` of a batch of ``size`` samples; ``(x, labels, masks or None)`` with masks.

    Masks are a dict batch's ``"mask"`` (or ``"masks"``) entry, or the optional third element that
    ``unpack_batch`` returns.
    """
    parts = (unpack_batch or default_unpack_batch)(batch)
    if not isinstance(parts, (tuple, list)) or len(parts) not in (2, 3):
        raise ValueError(
            f"{owner}: unpack_batch must return (inputs, labels) or (inputs, labels, masks), got "
            f"{type(parts).__name__}{f' of {len(parts)} items' if isinstance(parts, (tuple, list)) else ''}"
        )
    x, y = parts[0], parts[1]
    masks = parts[2] if len(parts) == 3 else None
    if masks is None and unpack_batch is None and isinstance(batch, Mapping):
        masks = next((batch[k] for k in MASK_KEYS if k in batch), None)
    if masks is not None and not isinstance(masks, Tensor):
        masks = torch.as_tensor(masks)
    ids = token_ids_of(x)
    if ids is not None:
        fits = ids.ndim == 2 and ids.shape[0] == size
    else:
        fits = isinstance(x, Tensor) and x.is_floating_point() and x.ndim >= 2 and x.shape[0] == size
    if not fits:
        described = _describe(x)
        raise ValueError(
            f"{owner}: the model input of a batch of {size} samples must be a floating point tensor of shape "
            f"({size}, ...), integer token ids ({size}, tokens) or a dict with '{TOKEN_KEY}' of that shape, got "
            f"{described}; pass unpack_batch=lambda batch: (inputs, labels)"
        )
    if y is not None and not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            y = None
    if y is not None and (y.is_floating_point() or y.dtype == torch.bool or y.shape != (size,)):
        if need_labels:
            raise ValueError(
                f"{owner}: target='label' needs one class index per sample, but the batch's labels are a "
                f"{y.dtype} tensor of shape {tuple(y.shape)}; pass unpack_batch=lambda batch: (inputs, "
                "class_indices), or target='prediction'"
            )
        y = None
    if y is None and need_labels:
        raise ValueError(
            f"{owner}: target='label' needs labels, but the batches hold none (the model input alone); "
            "pass target='prediction', or return (inputs, labels) from the dataset, or pass "
            "unpack_batch=lambda batch: (inputs, labels)"
        )
    if with_masks:
        if masks is not None and (masks.ndim < 2 or masks.shape[0] != size):
            raise ValueError(
                f"{owner}: the masks of a batch of {size} samples must be a tensor of shape ({size}, H, W), got "
                f"shape {tuple(masks.shape)}"
            )
        return x, y, masks
    return x, y
