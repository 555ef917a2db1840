"""The base of every explanation metric, and the helpers its subclasses share.

:class:`ExplanationMetric` is the :class:`torchmetrics.Metric` every metric of
:mod:`lrp_lightning.metrics` derives from: it accumulates per-sample values as sums (so that DDP
reduces them with ``"sum"``) and gives the keyword interface described there. The helpers check and
convert relevance maps, masks, targets and sample ids, derive per-sample seeds and rank values;
:func:`boxes_to_masks` turns bounding boxes into masks.

The public names are re-exported by :mod:`lrp_lightning.metrics`; import them from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torchmetrics import Metric

from .attribution import Target, output_weights

Tensor = torch.Tensor

__all__ = ["ExplanationMetric", "boxes_to_masks"]


# --------------------------------------------------------------------------------------------------------------
# shared helpers


def _float(tensor: Tensor) -> Tensor:
    """float64 for exact per-sample values, except on devices without it."""
    return tensor.detach().to(torch.float32 if tensor.device.type == "mps" else torch.float64)


def _maps(relevance: Tensor, owner: str) -> Tensor:
    """``(N, H, W)`` maps: ``(N, C, H, W)`` is summed over channels, ``(N, F)`` becomes ``(N, 1, F)``."""
    if not isinstance(relevance, Tensor):
        raise TypeError(f"{owner}: relevance must be a torch.Tensor, not {type(relevance).__name__}")
    if relevance.ndim == 4:
        return _float(relevance).sum(dim=1)
    if relevance.ndim == 3:
        return _float(relevance)
    if relevance.ndim == 2:
        return _float(relevance)[:, None, :]
    raise ValueError(
        f"{owner}: relevance must be (N, C, H, W) attributions or (N, H, W) maps, got shape {tuple(relevance.shape)}"
    )


def _check_batch(owner: str, size: int, **tensors: Any) -> None:
    for label, tensor in tensors.items():
        if isinstance(tensor, Tensor) and tensor.ndim > 0 and tensor.shape[0] != size:
            raise ValueError(f"{owner}: {label} holds {tensor.shape[0]} samples, but relevance holds {size}")


def _target_weights(owner: str, output: Tensor, targets: Target) -> Tensor:
    if targets is None:
        raise ValueError(
            f"{owner} needs targets: the explained class per sample (indices, 'prediction', a weight tensor "
            "shaped like the output or a callable on the output)"
        )
    return output_weights(output, targets)


def _masks(masks: Tensor, shape: tuple[int, ...], owner: str) -> Tensor:
    """Boolean ``(N, H, W)`` masks, checked against the maps' shape."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"{owner}: masks must be a torch.Tensor, not {type(masks).__name__}")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dtype != torch.bool:
        if not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError(f"{owner}: masks must be boolean (or hold only 0 and 1); soft masks are not supported")
        masks = masks != 0
    if tuple(masks.shape) != tuple(shape):
        raise ValueError(
            f"{owner}: masks of shape {tuple(masks.shape)} do not fit the relevance maps {tuple(shape)}; give one "
            "(H, W) mask per sample at the maps' resolution (boxes_to_masks(boxes, size=(H, W)) converts boxes)"
        )
    return masks


def _sample_ids(sample_ids: Any, size: int, owner: str) -> list[int] | None:
    """``sample_ids`` as a list of ``size`` Python ints (None stays None)."""
    if sample_ids is None:
        return None
    if isinstance(sample_ids, Tensor):
        if sample_ids.is_floating_point() or sample_ids.is_complex() or sample_ids.dtype == torch.bool:
            raise TypeError(f"{owner}: sample_ids must be integers, got a {sample_ids.dtype} tensor")
        ids = sample_ids.detach().reshape(-1).tolist()
    else:
        dtype = getattr(sample_ids, "dtype", None)  # numpy arrays
        if dtype is not None and getattr(dtype, "kind", "i") not in "iu":
            raise TypeError(f"{owner}: sample_ids must be integers, got an array of dtype {dtype}")
        try:
            ids = [int(i) for i in (sample_ids.reshape(-1).tolist() if dtype is not None else sample_ids)]
        except TypeError as exc:
            raise TypeError(f"{owner}: sample_ids must be a sequence of ints, not {type(sample_ids).__name__}") from exc
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise TypeError(f"{owner}: sample_ids must be integers")
    if len(ids) != size:
        raise ValueError(f"{owner}: sample_ids holds {len(ids)} ids, but relevance holds {size} samples")
    return ids


_SEED_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: seed -> seed * multiplier is a bijection modulo 2**64


def _sample_seed(seed: int, sample_id: int) -> int:
    """The seed of one sample's generator: a deterministic function of ``(seed, sample_id)`` alone."""
    return (seed * _SEED_MULTIPLIER + sample_id) % (1 << 64)


def _nan_where(values: Tensor, condition: Tensor) -> Tensor:
    return torch.where(condition, torch.full_like(values, math.nan), values)


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks ``1..P`` along dim 1; tied values get their mean rank (``scipy.stats.rankdata``'s default)."""
    rows, size = values.shape
    sorted_values, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(sorted_values, dtype=torch.bool)
    starts[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    groups = starts.cumsum(dim=1) - 1 + size * torch.arange(rows, device=values.device)[:, None]
    positions = torch.arange(1, size + 1, dtype=values.dtype, device=values.device).expand(rows, size)
    flat_groups = groups.flatten()
    sums = torch.zeros(rows * size, dtype=values.dtype, device=values.device)
    sums.scatter_add_(0, flat_groups, positions.flatten())
    counts = torch.zeros_like(sums).scatter_add_(0, flat_groups, torch.ones_like(sums))
    mean_ranks = (sums / counts.clamp(min=1))[groups]
    return torch.empty_like(mean_ranks).scatter_(1, order, mean_ranks)


def boxes_to_masks(boxes: Tensor | Sequence[Any], size: tuple[int, int]) -> Tensor:
    """Boolean ``(N, H, W)`` masks from bounding boxes ``(x1, y1, x2, y2)`` in pixel coordinates.

    A box covers the pixels in columns ``floor(x1) <= x < ceil(x2)`` and rows ``floor(y1) <= y < ceil(y2)``
    (torchvision's ``xyxy`` convention; clipped to the image), so ``(0, 0, 2, 2)`` is the top-left 2×2 square.

    Parameters
    ----------
    boxes : torch.Tensor or sequence
        ``(N, 4)``, one box per sample, or a sequence of ``N`` items of shape ``(K_i, 4)`` (several boxes
        per sample, their union is the mask; ``K_i`` may be 0, which gives an empty mask).
    size : tuple of int
        ``(H, W)`` of the masks: the relevance maps' size.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` bool.
    """
    height, width = (int(s) for s in size)
    if isinstance(boxes, Tensor) and boxes.ndim == 2:
        if boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) as (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
        per_sample = [box[None] for box in boxes]
    else:
        per_sample = []
        for index, item in enumerate(boxes):
            sample_boxes = torch.as_tensor(item, dtype=torch.float64)
            if sample_boxes.numel() % 4 or (sample_boxes.ndim > 1 and sample_boxes.shape[-1] != 4):
                raise ValueError(
                    f"the boxes of sample {index} must be (K, 4) as (x1, y1, x2, y2), got shape "
                    f"{tuple(sample_boxes.shape)}"
                )
            per_sample.append(sample_boxes.reshape(-1, 4))
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    masks = torch.zeros((len(per_sample), height, width), dtype=torch.bool)
    for index, sample_boxes in enumerate(per_sample):
        for x1, y1, x2, y2 in sample_boxes.tolist():
            if x2 < x1 or y2 < y1:
                raise ValueError(f"box {(x1, y1, x2, y2)} of sample {index} is not (x1, y1, x2, y2) with x1 <= x2")
            inside = (cols >= math.floor(x1)) & (cols < math.ceil(x2)) & (rows >= math.floor(y1))
            masks[index] |= inside & (rows < math.ceil(y2))
    return masks


# --------------------------------------------------------------------------------------------------------------
# base class


class ExplanationMetric(Metric):
    """Base class: a per-sample score of relevance maps, averaged over batches and DDP ranks.

    Subclasses implement :meth:`_per_sample`. ``torchmetrics_kwargs`` (e.g. ``sync_on_compute``,
    ``compute_on_cpu``) go to :class:`torchmetrics.Metric`.

    Attributes
    ----------
    name : str
        The registry name (a column or scalar name for callers).
    needs_model, needs_outputs, needs_masks, needs_previous : bool
        What :meth:`update` needs besides ``relevance`` (and ``targets`` where the metric scores a class):
        the model and its inputs, the model's outputs, ground-truth masks, the previous epoch's maps. A
        caller without masks should drop the metrics that need them (:func:`check_requirements`); one
        without previous maps (the first epoch) should skip the metrics that need them.
    """

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False
    needs_outputs: ClassVar[bool] = False
    needs_masks: ClassVar[bool] = False
    needs_previous: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool | None] = None
    full_state_update: ClassVar[bool] = False

    total: Tensor
    count: Tensor

    def __init__(self, **torchmetrics_kwargs: Any) -> None:
        super().__init__(**torchmetrics_kwargs)
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def per_sample(
        self,
        relevance: Tensor,
        *,
        model: nn.Module | None = None,
        inputs: Tensor | None = None,
        targets: Target = None,
        outputs: Tensor | None = None,
        masks: Tensor | None = None,
        previous: Tensor | None = None,
        sample_ids: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """The metric of each sample in the batch, a ``(N,)`` float tensor; the state is not touched.

        The arguments are described in the module docstring; a metric ignores those it does not need. Pure
        except for a faithfulness metric given a ``torch.Generator`` as ``seed``, which advances it.
        ``sample_ids`` (optional, one int per sample) make a faithfulness metric's random orders (int
        ``seed``) depend on each sample's id only, not on its batch; without them, nothing changes.
        """
        owner = f"metric {self.name}"
        maps = _maps(relevance, owner)
        _check_batch(owner, maps.shape[0], inputs=inputs, outputs=outputs, masks=masks, previous=previous)
        if self.needs_model and (model is None or inputs is None):
            raise ValueError(f"{owner} needs the model and its inputs: pass model=... and inputs=...")
        if self.needs_outputs and outputs is None:
            raise ValueError(f"{owner} needs the model's outputs for the explained inputs: pass outputs=...")
        if self.needs_masks and masks is None:
            raise ValueError(f"{owner} needs masks: pass masks=... (boolean (N, H, W); boxes_to_masks converts boxes)")
        if self.needs_previous and previous is None:
            raise ValueError(f"{owner} needs the previous epoch's maps of the same samples: pass previous=...")
        ids = _sample_ids(sample_ids, maps.shape[0], owner)
        return self._per_sample(
            maps,
            relevance=relevance,
            model=model,
            inputs=inputs,
            targets=targets,
            outputs=outputs,
            masks=masks,
            previous=previous,
            sample_ids=ids,
        )

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        raise NotImplementedError

    def update(self, relevance: Tensor | None = None, *, values: Tensor | None = None, **batch: Any) -> None:
        """Accumulate a batch of samples.

        ``update(relevance, **batch)`` computes :meth:`per_sample` first; ``update(values=...)`` accumulates
        per-sample values computed already, so that a caller who stores them does not compute them twice.
        """
        if values is None:
            if relevance is None:
                raise TypeError(f"metric {self.name}: update needs relevance (or per-sample values=...)")
            values = self.per_sample(relevance, **batch)
        elif relevance is not None or any(value is not None for value in batch.values()):
            raise TypeError(f"metric {self.name}: pass either relevance and its batch, or values=..., not both")
        values = values.detach().reshape(-1)
        finite = torch.isfinite(values)
        self.total += values[finite].sum().to(self.total)
        self.count += finite.sum().to(self.count)

    def compute(self) -> Tensor:
        """The mean of the finite per-sample values seen so far (NaN if there are none)."""
        if self.count == 0:
            return torch.tensor(math.nan, device=self.total.device)
        return self.total / self.count
