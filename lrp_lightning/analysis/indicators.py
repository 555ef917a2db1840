"""Cluster summaries and Clever-Hans indicators.

A Clever-Hans cluster is a group of samples whose relevance sits where the rest of their category has
little: a corner (a watermark, a logo), a border band (a frame, padding), or a fixed patch (a tag).
For every cluster, :class:`Indicators` measures how concentrated and where its relevance is, and
flags it — with a reason in words — when some region holds at least ``min_share`` of the members'
absolute relevance, at least ``contrast`` times the share the rest of the category puts there, and
at least ``agreement`` of the members show it individually. Cluster size does not matter: a cluster
of three samples and one holding most of the class are judged alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from .._validation import check_float, check_int
from .base import Step

__all__ = ["ClusterSummary", "Indicators", "Region", "regions"]


@dataclass(frozen=True)
class Region:
    """A named set of pixels of the analysis grid."""

    name: str
    kind: str  # images: "corner", "border", "patch"; else "window", "feature", "token"
    mask: np.ndarray  # bool, shape (h * w,)
    description: str

    @property
    def where(self) -> str:
        """The region after a preposition: "in the top-left corner", "in time steps 0–15", 'on token "X"'."""
        if self.kind in IMAGE_KINDS:
            return f"in the {self.name}"
        return f"on {self.name}" if self.kind == "token" else f"in {self.name}"


IMAGE_KINDS = {"corner": 0, "border": 1, "patch": 2}
"""The kinds of image regions, by rank (corners name an artifact best)."""


def _box(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[rows, cols] = True
    return mask.reshape(-1)


def regions(grid: tuple[int, int], border_width: float, corner_size: float, patch_size: float) -> list[Region]:
    """Corners, border bands and all square patches of an ``(h, w)`` grid.

    Sizes are fractions of ``min(h, w)`` (at least one pixel). Patches that touch two borders at a
    corner are named after that corner, patches that touch one border after that border.
    """
    h, w = grid
    side = min(h, w)
    b = max(1, int(round(border_width * side)))
    c = max(1, int(round(corner_size * side)))
    p = max(1, int(round(patch_size * side)))
    out = []
    for vertical, rows in (("top", slice(0, c)), ("bottom", slice(h - c, h))):
        for horizontal, cols in (("left", slice(0, c)), ("right", slice(w - c, w))):
            out.append(Region(f"{vertical}-{horizontal} corner", "corner", _box(h, w, rows, cols), f"{c}x{c} px"))
    bands = {
        "top": (slice(0, b), slice(0, w)),
        "bottom": (slice(h - b, h), slice(0, w)),
        "left": (slice(0, h), slice(0, b)),
        "right": (slice(0, h), slice(w - b, w)),
    }
    for name, (rows, cols) in bands.items():
        out.append(Region(f"{name} border band", "border", _box(h, w, rows, cols), f"{b} px wide"))
    if p < side:
        for top in range(0, h - p + 1):
            for left in range(0, w - p + 1):
                touches = [
                    name
                    for name, hit in (
                        ("top", top == 0),
                        ("bottom", top + p == h),
                        ("left", left == 0),
                        ("right", left + p == w),
                    )
                    if hit
                ]
                where = f"rows {top}-{top + p - 1}, columns {left}-{left + p - 1}"
                if len(touches) == 2:
                    name = f"{touches[0]}-{touches[1]} corner"
                elif len(touches) == 1:
                    name = f"patch at the {touches[0]} border"
                else:
                    name = "fixed patch"
                out.append(Region(name, "patch", _box(h, w, slice(top, top + p), slice(left, left + p)), where))
    return out


@dataclass(frozen=True)
class ClusterSummary:
    """Summary and indicators of one cluster (see :data:`lrp_lightning.store.CLUSTERS_SCHEMA`)."""

    cluster: int
    size: int
    purity: float
    majority_label: int
    accuracy: float
    prototype: np.ndarray
    typical: np.ndarray
    atypical: np.ndarray
    concentration: float
    border_share: float
    corner_share: float
    compactness: float
    flagged: bool
    flag_region: str | None
    flag_reason: str | None


@lru_cache(maxsize=8)
def _region_masks(
    grid: tuple[int, int], border_width: float, corner_size: float, patch_size: float
) -> tuple[list[Region], np.ndarray, np.ndarray, np.ndarray]:
    """:func:`regions` with its mask matrix ``(h * w, R)`` and the corner and border unions, read-only.

    Cached: every clustering of every category of an epoch uses the same regions, and building them
    took a fifth of an epoch's analysis.
    """
    masks = regions(grid, border_width, corner_size, patch_size)
    mask_matrix = np.stack([r.mask for r in masks], axis=1).astype(np.float64)
    corner_mask = np.any([r.mask for r in masks if r.kind == "corner"], axis=0)
    border_mask = np.any([r.mask for r in masks if r.kind == "border"], axis=0)
    for array in (mask_matrix, corner_mask, border_mask, *(r.mask for r in masks)):
        array.setflags(write=False)
    return masks, mask_matrix, corner_mask, border_mask


def _given_masks(given: list[Region]) -> tuple[list[Region], np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_region_masks` of regions given by the caller (a signal's windows, a token run's tokens)."""
    mask_matrix = np.stack([r.mask for r in given], axis=1).astype(np.float64)
    corner_mask = np.any([r.mask for r in given if r.kind == "corner"] or [np.zeros(len(mask_matrix), bool)], axis=0)
    border_mask = np.any([r.mask for r in given if r.kind == "border"] or [np.zeros(len(mask_matrix), bool)], axis=0)
    return given, mask_matrix, corner_mask, border_mask


class Indicators(Step):
    """Summarise clusters and flag Clever-Hans candidates.

    Parameters
    ----------
    border_width : float, default 0.1
        Width of the border bands, as a fraction of the grid's shorter side.
    corner_size : float, default 0.2
        Side of the corner squares, as a fraction of the grid's shorter side.
    patch_size : float, default 0.25
        Side of the square patches searched for a fixed-patch artifact.
    top_fraction : float, default 0.1
        ``concentration`` is the share of relevance in the top ``top_fraction`` of pixels.
    min_share : float, default 0.3
        Least share of the cluster's absolute relevance in a region to flag it.
    contrast : float, default 3.0
        Least ratio of the cluster's share to the rest of the category's share in that region.
    agreement : float, default 0.5
        Least fraction of members whose own share in the region is above the midpoint of the two.
    n_typical : int, default 5
        Number of most typical and most atypical members reported per cluster.
    """

    def __init__(
        self,
        border_width: float = 0.1,
        corner_size: float = 0.2,
        patch_size: float = 0.25,
        top_fraction: float = 0.1,
        min_share: float = 0.3,
        contrast: float = 3.0,
        agreement: float = 0.5,
        n_typical: int = 5,
    ) -> None:
        owner = "Indicators"
        self.border_width = check_float(border_width, "border_width", owner, 0.0, 0.5)
        self.corner_size = check_float(corner_size, "corner_size", owner, 0.0, 0.5)
        self.patch_size = check_float(patch_size, "patch_size", owner, 0.0, 1.0)
        self.top_fraction = check_float(top_fraction, "top_fraction", owner, 0.0, 1.0)
        self.min_share = check_float(min_share, "min_share", owner, 0.0, 1.0)
        self.contrast = check_float(contrast, "contrast", owner, 1.0)
        self.agreement = check_float(agreement, "agreement", owner, 0.0, 1.0)
        self.n_typical = check_int(n_typical, "n_typical", owner, 0)

    def summarize(
        self,
        labels: np.ndarray,
        *,
        coordinates: np.ndarray,
        absolute: np.ndarray,
        signed: np.ndarray,
        grid: tuple[int, int],
        sample_ids: np.ndarray,
        true_labels: np.ndarray,
        predictions: np.ndarray,
        category: str = "the category",
        clustering: str = "",
        regions: list[Region] | None = None,
    ) -> list[ClusterSummary]:
        """Summarise every cluster of one labelling of one category.

        Parameters
        ----------
        labels : numpy.ndarray of int, shape (N,)
            Cluster per sample, -1 for noise (left out).
        coordinates : numpy.ndarray, shape (N, d)
            Where compactness and typicality are measured (row-normalised eigenvectors).
        absolute : numpy.ndarray, shape (N, h * w)
            Absolute maps on the analysis grid, each summing to 1 (0 for all-zero maps).
        signed : numpy.ndarray, shape (N, h * w)
            Signed maps on the grid, each with unit L1 norm; their mean is the prototype.
        grid : (int, int)
            ``(h, w)`` of the analysis grid.
        sample_ids, true_labels, predictions : numpy.ndarray, shape (N,)
            Per sample.
        category, clustering : str
            Used in the flag reasons, e.g. ``"class 3 (cat)"`` and ``"kmeans_4"``.
        regions : list of Region, optional
            The candidate regions in the modality's words (:func:`~.regions.indicator_regions`: a
            signal's windows of time steps, a tabular run's features, a token run's tokens). Default:
            an image's corners, border bands and patches (:func:`regions`).

        Returns
        -------
        list of ClusterSummary
            Ordered by cluster label.
        """
        n = labels.shape[0]
        clusters = np.unique(labels[labels >= 0])
        if clusters.size == 0:
            return []
        member = labels >= 0
        onehot = sp.csr_matrix(
            (np.ones(int(member.sum())), (labels[member], np.flatnonzero(member))), shape=(int(clusters.max()) + 1, n)
        )
        sizes = np.asarray(onehot.sum(axis=1)).ravel()
        cluster_abs = np.asarray(onehot @ absolute, dtype=np.float64)
        cluster_signed = np.asarray(onehot @ signed, dtype=np.float64)
        total_abs = absolute.sum(axis=0, dtype=np.float64)
        if regions:
            masks, mask_matrix, corner_mask, border_mask = _given_masks(list(regions))
        else:
            masks, mask_matrix, corner_mask, border_mask = _region_masks(
                tuple(grid), self.border_width, self.corner_size, self.patch_size
            )
        category_centre = coordinates.mean(axis=0)
        spread = float(np.linalg.norm(coordinates - category_centre, axis=1).mean())
        top = max(1, int(round(self.top_fraction * absolute.shape[1])))
        baseline = self._baselines(cluster_abs, sizes, total_abs, n, mask_matrix)
        summaries = []
        for cluster in clusters:
            index = np.flatnonzero(labels == cluster)
            size = index.size
            mass = cluster_abs[cluster] / max(cluster_abs[cluster].sum(), 1e-300)
            values, counts = np.unique(true_labels[index], return_counts=True)
            centre = coordinates[index].mean(axis=0)
            distance = np.linalg.norm(coordinates[index] - centre, axis=1)
            order = np.argsort(distance, kind="stable")
            compactness = 1.0 - float(distance.mean()) / spread if spread > 0 else 0.0
            flag_region, flag_reason = self._flag(
                int(cluster), mass @ mask_matrix, baseline, mask_matrix, masks, absolute[index], n, category, clustering
            )
            summaries.append(
                ClusterSummary(
                    cluster=int(cluster),
                    size=int(size),
                    purity=float(counts.max() / size),
                    majority_label=int(values[np.argmax(counts)]),
                    accuracy=float(np.mean(predictions[index] == true_labels[index])),
                    prototype=(cluster_signed[cluster] / sizes[cluster]).astype(np.float32),
                    typical=sample_ids[index[order[: self.n_typical]]].astype(np.int64),
                    atypical=sample_ids[index[order[::-1][: self.n_typical]]].astype(np.int64),
                    concentration=float(np.sort(mass)[::-1][:top].sum()),
                    border_share=float(mass[border_mask].sum()),
                    corner_share=float(mass[corner_mask].sum()),
                    compactness=float(np.clip(compactness, -1.0, 1.0)),
                    flagged=flag_region is not None,
                    flag_region=flag_region,
                    flag_reason=flag_reason,
                )
            )
        return summaries

    def _baselines(
        self, cluster_abs: np.ndarray, sizes: np.ndarray, total_abs: np.ndarray, n: int, mask_matrix: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Per region: which clusters concentrate there, and the share the other samples put there.

        The baseline of a region leaves out *every* cluster that concentrates in it, so an artifact
        shared by several clusters (say two thirds of a class, split by pose) is still measured against
        the samples without it; when all clusters concentrate there, the region is typical of the
        category and nothing is flagged.
        """
        cluster_total = cluster_abs.sum(axis=1)  # (C,)
        region_mass = cluster_abs @ mask_matrix  # (C, R)
        share = np.divide(
            region_mass, cluster_total[:, None], out=np.zeros_like(region_mass), where=cluster_total[:, None] > 0
        )
        concentrating = (share >= self.min_share) & (sizes[:, None] > 0)
        base_region = total_abs @ mask_matrix - (region_mass * concentrating).sum(axis=0)
        base_total = total_abs.sum() - (cluster_total[:, None] * concentrating).sum(axis=0)
        base_count = n - (sizes[:, None] * concentrating).sum(axis=0)
        base_share = np.divide(base_region, base_total, out=np.zeros_like(base_region), where=base_total > 0)
        return {
            "share": base_share,
            "count": base_count,
            "concentrating": concentrating,
            "sizes": sizes,
        }

    def _flag(
        self,
        cluster: int,
        share: np.ndarray,
        baseline: dict[str, np.ndarray],
        mask_matrix: np.ndarray,
        masks: list[Region],
        members: np.ndarray,
        n: int,
        category: str,
        clustering: str,
    ) -> tuple[str | None, str | None]:
        size = members.shape[0]
        rest_share = baseline["share"]
        candidates = np.flatnonzero(
            (share >= self.min_share) & (share >= self.contrast * rest_share) & (baseline["count"] > 0)
        )
        if candidates.size == 0:
            return None, None
        # corners and bands first (they name the artifact best), then by the margin over the rest
        kinds = np.array([IMAGE_KINDS.get(masks[i].kind, 0) for i in candidates])
        margin = share[candidates] - rest_share[candidates]
        for i in candidates[np.lexsort((-margin, kinds))]:
            own = members @ mask_matrix[:, i]
            threshold = 0.5 * (share[i] + rest_share[i])
            agreeing = int(np.count_nonzero(own >= threshold))
            if agreeing >= self.agreement * size:
                region = masks[i]
                others = [c for c in np.flatnonzero(baseline["concentrating"][:, i]) if c != cluster]
                also = ""
                if others:
                    count = int(baseline["sizes"][others].sum())
                    also = f"; {count} more samples in {len(others)} other cluster(s) share the pattern"
                reason = (
                    f"{agreeing} of {size} samples of cluster {cluster}"
                    f"{' of ' + clustering if clustering else ''} ({size / n:.0%} of {category}) put "
                    f"{share[i]:.0%} of their absolute relevance {region.where} ({region.description}), "
                    f"where the rest of {category} puts {rest_share[i]:.0%}{also}"
                )
                return region.name, reason
        return None, None
