"""Measures of a revision: where the relevance lies, how much the artifact still sways predictions.

* :func:`region_share`: each sample's share of absolute relevance in a finding's region (on the
  analysis grid, as the findings measure it).
* :func:`artifact_sensitivity`: the share of clean samples of other classes whose prediction flips to
  the artifact's class when the artifact is pasted in (the digits demo's "shortcut check").
* :func:`accuracy`: accuracy on given (clean) samples.
* :class:`ArtifactPaste`: paste an artifact into inputs, learnt from a finding's samples (their mean
  input in the finding's region) or given as a function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._validation import argument_error

__all__ = ["ArtifactPaste", "accuracy", "artifact_sensitivity", "predict", "region_share"]


def _pool(maps: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    from ..analysis.preprocessing import sum_pool

    return sum_pool(maps, grid)


def region_share(maps: np.ndarray, cells: Sequence[int] | np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """Each map's share of its absolute relevance in ``cells`` of the analysis grid.

    Parameters
    ----------
    maps : array of shape (N, H, W)
        Relevance maps as stored (:meth:`lrp_lightning.store.RunStore.heatmaps`).
    cells : sequence of int
        Flat (row-major) indices of the region's cells on the grid (a finding's ``region_cells``).
    grid : (h, w)
        The analysis grid the maps are sum-pooled to (the findings table's ``lrp.grid_shape``).

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
        In [0, 1]; 0 for an all-zero map.
    """
    maps = np.abs(np.asarray(maps, dtype=np.float64))
    if maps.ndim != 3:
        raise argument_error("region_share", "maps", "an array of shape (N, H, W)", maps.shape)
    pooled = _pool(maps, grid).reshape(len(maps), -1)
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size and (cells.min() < 0 or cells.max() >= pooled.shape[1]):
        raise argument_error("region_share", "cells", f"indices into the {tuple(grid)} grid", cells.max())
    total = pooled.sum(axis=1)
    inside = pooled[:, cells].sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (argmax of the output) of ``inputs``, in the model's current mode."""
    out = [model(inputs[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``inputs`` predicted as ``labels`` (NaN without samples)."""
    if len(inputs) == 0:
        return float("nan")
    return float((predict(model, inputs) == labels.cpu()).float().mean())


def artifact_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    artifact_class: int,
    paste: Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """Share of ``inputs`` (clean samples of other classes) that flip to ``artifact_class`` with the artifact.

    A sample counts when it is not predicted as ``artifact_class`` as it is and is predicted so once
    ``paste`` put the artifact in; the share is taken over the samples not predicted as the class as
    they are (NaN when there are none).
    """
    before = predict(model, inputs)
    after = predict(model, paste(inputs))
    eligible = before != artifact_class
    if not bool(eligible.any()):
        return float("nan")
    return float((after[eligible] == artifact_class).float().mean())


class ArtifactPaste:
    """Paste an artifact into inputs: inside a mask, the inputs are replaced by a fixed pattern.

    Parameters
    ----------
    mask : tensor of bool, the shape of one input
        Where the artifact lies.
    pattern : tensor, the shape of one input
        The artifact's values (used inside ``mask`` only).
    """

    def __init__(self, mask: torch.Tensor, pattern: torch.Tensor) -> None:
        if mask.shape != pattern.shape:
            raise argument_error("ArtifactPaste", "mask", f"the shape of pattern {tuple(pattern.shape)}", mask.shape)
        self.mask = mask.bool()
        self.pattern = pattern

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(inputs.device)
        return torch.where(mask, self.pattern.to(device=inputs.device, dtype=inputs.dtype), inputs)

    def state(self) -> dict:
        """The mask and the pattern as plain Python values; :meth:`from_state` inverts it (exactly)."""
        return {
            "shape": [int(s) for s in self.pattern.shape],
            "mask": [bool(v) for v in self.mask.reshape(-1).tolist()],
            "pattern": [float(v) for v in self.pattern.float().reshape(-1).tolist()],
        }

    @classmethod
    def from_state(cls, state: dict) -> ArtifactPaste:
        """The paste that :meth:`state` described."""
        shape = tuple(int(s) for s in state["shape"])
        mask = torch.tensor(state["mask"], dtype=torch.bool).view(shape)
        return cls(mask, torch.tensor(state["pattern"], dtype=torch.float32).view(shape))

    @classmethod
    def from_finding(
        cls, member_inputs: torch.Tensor, cells: Sequence[int] | np.ndarray, grid: Sequence[int]
    ) -> ArtifactPaste:
        """The artifact as a finding shows it: its members' mean input inside its region.

        The region's cells on the analysis grid ``(h, w)`` are mapped to the inputs' last two axes
        (images ``(C, H, W)``: rows and columns; signals ``(C, L)`` and tabular ``(F,)``: the grid's
        columns along the last axis), with the same bins as the analysis's sum pooling.
        """
        if member_inputs.dim() < 2 or len(member_inputs) == 0:
            raise argument_error("ArtifactPaste.from_finding", "member_inputs", "a non-empty batch (N, ...)", None)
        h, w = int(grid[0]), int(grid[1])
        cell_mask = np.zeros(h * w, dtype=bool)
        cell_mask[np.asarray(cells, dtype=np.int64)] = True
        cell_mask = cell_mask.reshape(h, w)
        sample_shape = tuple(member_inputs.shape[1:])
        if len(sample_shape) >= 3:
            rows, cols = sample_shape[-2], sample_shape[-1]
            row_bin = _bins(rows, h)
            col_bin = _bins(cols, w)
            plane = cell_mask[row_bin][:, col_bin]
        else:
            cols = sample_shape[-1]
            plane = cell_mask.any(axis=0)[_bins(cols, w)][None, :]
        mask = _broadcast(plane, sample_shape)
        pattern = member_inputs.float().mean(0)
        return cls(mask, pattern)


def _bins(length: int, bins: int) -> np.ndarray:
    """For each of ``length`` positions, its bin among ``bins`` (the bins of the analysis's sum pooling)."""
    bins = min(bins, length)
    starts = np.floor(np.arange(bins) * (length / bins)).astype(np.intp)
    return np.searchsorted(starts, np.arange(length), side="right") - 1


def _broadcast(plane: np.ndarray, sample_shape: tuple[int, ...]) -> torch.Tensor:
    if len(sample_shape) == 1:
        return torch.from_numpy(plane.reshape(-1).copy())
    return torch.from_numpy(np.broadcast_to(plane, sample_shape).copy())
