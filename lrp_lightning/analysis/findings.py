"""Findings: one per artifact or strategy, merged over clusterings, categories and epochs.

SpRAy clusters every category many ways (k-means for several k, DBSCAN, ...), and the
:class:`~lrp_lightning.analysis.indicators.Indicators` flag each clustering's clusters on their own, so
one watermark shows up as a flag in many clusterings, in its class and in "all samples", in every
epoch. A *finding* is what a person wants instead: one artifact, with a stable id.

Evidence
--------
A cluster of a category (``n`` samples) is *tested* when it has at least
``max(min_size, ceil(min_fraction * n))`` members and a region (an image's corner, border band or
patch; a signal's window of time steps; a tabular feature) where

(a) the members put at least ``min_share`` of their absolute relevance, and at least ``contrast``
    times the share the rest of the category puts there (the region differs from where the rest of
    the category puts relevance);
(b) the members' *inputs* are nearly the same: their mean squared deviation from the members' mean
    pattern in the region (weighted by where their relevance lies) is at most ``max_input_spread``
    times the rest of the category's mean squared deviation from that pattern. A watermark, tag or
    ruler gives about 0; a cluster of similar strokes or of one predictive feature's range gives
    much more, since their inputs vary. The inputs are the probe thumbnails of ``probe.parquet``
    (PNG, grayscale, resized to the analysis grid). When a run holds no thumbnails (a
    prediction-writer run without them, a store written by hand) evidence (b) cannot be measured:
    the finding then rests on (a) and (c), its ``input_spread`` is null and its reason says the
    inputs were not checked.

(c) Significance: a permutation test against ``n_permutations`` random subsets of the category of
the same size, in the same region: the relevance share (the statistic of (a)) and, with inputs, the
input spread (of (b)). The conjunction is tested as an intersection-union test, so the cluster's p
value is the larger of the two. Where fewer than 10 random subsets reach the cluster's statistic the
tail is approximated by a normal fit to the random subsets' statistics (as permutation tools do with
tail approximations), so p values are not floored at ``1 / (n_permutations + 1)``. The p values of
every tested cluster of the epoch (all categories, all clusterings) are adjusted with
Benjamini-Hochberg; a cluster with ``q <= alpha`` that meets (a) and (b) is *significant*.

Merging
-------
Significant clusters whose regions overlap and whose members overlap (at least ``min_overlap`` of
the smaller one) form one finding; its members are the samples in at least half of its clusters.
A finding continues a finding of the previous epoch with overlapping region and members (same
overlap rule), keeping its id; otherwise its id is new: ``<category>/<region>@<epoch>``, from its
category, region and first epoch, so analysing the same run again gives the same ids.

Words follow the modality: images name corners, border bands and patches; signals "time steps a-b";
tabular data "feature <name>" and the finding's kind is "feature concentration", never an artifact
or shortcut: a model that reads one feature for a group of samples may be right to.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.stats import norm

from .base import Step, check_float, check_int
from .indicators import regions

__all__ = [
    "FINDINGS_SCHEMA",
    "FINDINGS_TABLE",
    "Finding",
    "Findings",
    "Region",
    "benjamini_hochberg",
    "findings_from_table",
    "findings_table",
    "input_grid",
    "modality_of",
    "permutation_pvalue",
    "region_set",
]

# --------------------------------------------------------------------------------------------------
# --- findings table: schema and column names ---
# TO MOVE INTO THE STORE CONTRACT (lrp_lightning.store) AT MERGE. Written per epoch with
# RunStore.write_analysis_table(epoch, FINDINGS_TABLE, ...) under the epoch's analysis key; one row per
# finding seen in that epoch. The run's findings with their lineage are the union over the epochs'
# tables (their epoch column gives the epoch; finding_id links the rows of one finding).
# --------------------------------------------------------------------------------------------------

FINDINGS_TABLE = "findings"
FINDING_ID = "finding_id"
CATEGORY = "category"  # same name and meaning as lrp_lightning.store.CATEGORY
KIND = "kind"
REGION = "region"
REGION_DETAIL = "region_detail"
REGION_CELLS = "region_cells"
FIRST_EPOCH = "first_epoch"
EPOCHS_SEEN = "epochs_seen"
MEMBER_IDS = "member_ids"
N_MEMBERS = "n_members"
SHARE = "share"
REST_SHARE = "rest_share"
STRENGTH = "strength"
INPUT_SPREAD = "input_spread"
P_VALUE = "p_value"
Q_VALUE = "q_value"
CLUSTERS = "clusters"
REASON = "reason"

KIND_ARTIFACT = "artifact"
KIND_FEATURE = "feature concentration"

FINDINGS_SCHEMA = pa.schema(
    [
        pa.field(FINDING_ID, pa.string(), nullable=False),
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(KIND, pa.string(), nullable=False),
        pa.field(REGION, pa.string(), nullable=False),
        pa.field(REGION_DETAIL, pa.string()),
        pa.field(REGION_CELLS, pa.list_(pa.int32()), nullable=False),
        pa.field(FIRST_EPOCH, pa.int64(), nullable=False),
        pa.field(EPOCHS_SEEN, pa.list_(pa.int64()), nullable=False),
        pa.field(MEMBER_IDS, pa.list_(pa.int64()), nullable=False),
        pa.field(N_MEMBERS, pa.int64(), nullable=False),
        pa.field(SHARE, pa.float64(), nullable=False),
        pa.field(REST_SHARE, pa.float64(), nullable=False),
        pa.field(STRENGTH, pa.float64(), nullable=False),
        pa.field(INPUT_SPREAD, pa.float64()),
        pa.field(P_VALUE, pa.float64(), nullable=False),
        pa.field(Q_VALUE, pa.float64(), nullable=False),
        pa.field(CLUSTERS, pa.list_(pa.string()), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
    ]
)
"""Columns of the ``findings`` analysis table.

``region_cells``: flat indices of the region's cells on the analysis grid (row-major);
``epochs_seen``: the epochs up to this one in which the finding was seen; ``share`` and ``rest_share``:
the members' and the rest of the category's share of absolute relevance in the region;
``strength``: ``share - rest_share``; ``input_spread``: evidence (b), null without stored inputs;
``p_value``/``q_value``: permutation p value and its Benjamini-Hochberg adjustment; ``clusters``:
the merged clusters as ``"<category>/<clustering>/<cluster>"``.
"""

MODALITIES = ("image", "signal", "tabular")


# ------------------------------------------------------------------------------------------------ statistics


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (q values); ``q <= alpha`` controls the FDR at ``alpha``.

    Parameters
    ----------
    p_values : array_like of float, shape (m,)

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
        ``q_i = min_{j: p_j >= p_i} min(1, p_j * m / rank_j)``, in the input's order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def permutation_pvalue(observed: float, null: np.ndarray, *, greater: bool = True) -> float:
    """One-sided p value of ``observed`` against the statistics of random subsets ``null``.

    ``(1 + #{null at least as extreme}) / (1 + len(null))``; when fewer than 10 draws are at least as
    extreme, the tail is approximated by a normal fit to ``null`` (never above the count-based value),
    so strong effects are told apart beyond ``1 / (len(null) + 1)``.
    """
    null = np.asarray(null, dtype=np.float64)
    extreme = int(np.count_nonzero(null >= observed)) if greater else int(np.count_nonzero(null <= observed))
    counted = (1 + extreme) / (1 + null.size)
    if extreme >= 10:
        return counted
    sd = float(null.std())
    if sd <= 0:
        return counted if extreme else 1.0 / (1 + null.size) ** 2
    z = (observed - float(null.mean())) / sd
    tail = float(norm.sf(z if greater else -z))
    return min(counted, max(tail, 1e-300))


def _random_subsets(n: int, m: int, count: int, seed: Sequence[int]) -> np.ndarray:
    """``count`` random subsets of size ``m`` of ``range(n)`` as a boolean matrix (count, n)."""
    rng = np.random.default_rng(list(seed))
    keys = rng.random((count, n))
    chosen = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (count, 1))
    out = np.zeros((count, n), dtype=bool)
    np.put_along_axis(out, chosen, True, axis=1)
    return out


def _spread(selected: np.ndarray, x: np.ndarray, x2: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Input spread of subsets (rows of ``selected``, boolean (B, n)) in a region, weighted.

    Members' mean squared deviation from their mean pattern ``c``, over the rest's mean squared
    deviation from ``c``; both weighted over the region's cells by ``weights`` (summing to 1).
    """
    sel = selected.astype(np.float64)
    m = sel.sum(axis=1, keepdims=True)
    rest = x.shape[0] - m
    sum1 = sel @ x
    sum2 = sel @ x2
    c = sum1 / m
    within = sum2 / m - c**2
    total1, total2 = x.sum(axis=0), x2.sum(axis=0)
    r1, r2 = total1 - sum1, total2 - sum2
    far = (r2 - 2 * c * r1) / np.maximum(rest, 1) + c**2
    within_w = np.clip(within, 0, None) @ weights
    far_w = np.clip(far, 0, None) @ weights
    # inputs that are the same for the whole category there (e.g. blank background) are no pattern
    return np.where(far_w > 1e-6, within_w / np.maximum(far_w, 1e-12), 1.0)


# ------------------------------------------------------------------------------------------------ regions


@dataclass(frozen=True)
class Region:
    """A set of analysis-grid cells, named in the modality's words."""

    name: str
    detail: str
    cells: np.ndarray  # bool, (h * w,)
    rank: int = 0  # lower ranks name an artifact best (corners before bands before patches)


def modality_of(manifest: Mapping[str, Any]) -> str:
    """The modality of a run: ``manifest["modality"]`` when recorded, else inferred from its shapes.

    Heatmaps with more than one row are images; single-row heatmaps are tabular when the input is a
    vector ``(F,)`` and signals otherwise (``(C, L)``, or an unknown input shape).
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
                out.append(Region(f"features {low}-{high}", f"feature indices {low}-{high}", mask))
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
            out.append(Region(f"time steps {low}-{high}", f"{high - low + 1} of {length} steps", mask.reshape(-1)))
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


# ------------------------------------------------------------------------------------------------ findings


@dataclass
class Finding:
    """One artifact or strategy (see the module docstring); the fields are the table's columns."""

    finding_id: str
    category: str
    kind: str
    region: str
    region_detail: str
    region_cells: np.ndarray
    first_epoch: int
    epochs_seen: list[int]
    member_ids: np.ndarray
    share: float
    rest_share: float
    input_spread: float | None
    p_value: float
    q_value: float
    clusters: list[str]
    reason: str = ""
    category_label: str = ""

    @property
    def n_members(self) -> int:
        return int(len(self.member_ids))

    @property
    def strength(self) -> float:
        return float(self.share - self.rest_share)

    def summary(self) -> str:
        """One line, e.g. ``"class 3: top-left corner, 28 samples, since epoch 0"``."""
        label = self.category_label or self.category
        kind = "" if self.kind == KIND_ARTIFACT else f" ({self.kind})"
        return f"{label}: {self.region}{kind}, {self.n_members} samples, since epoch {self.first_epoch}"


@dataclass
class _Tested:
    category: str
    clustering: str
    cluster: int
    members: np.ndarray  # sample ids
    region: Region
    share: float
    rest_share: float
    spread: float | None
    p_value: float
    q_value: float = 1.0
    category_size: int = 0


@dataclass
class CategoryInput:
    """What :meth:`Findings.detect` needs of one analysed category."""

    label: str  # in words, e.g. "class 3 (cat)"
    sample_ids: np.ndarray
    absolute: np.ndarray  # (N, G), rows summing to 1
    labelings: Mapping[str, np.ndarray]
    inputs: np.ndarray | None = None  # (N, G) in [0, 1]
    true_labels: np.ndarray | None = None


@dataclass
class Detection:
    """Result of :meth:`Findings.detect`: the epoch's findings and every tested cluster."""

    findings: list[Finding]
    tested: list[_Tested] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return len(np.intersect1d(a, b)) / min(len(a), len(b))


class Findings(Step):
    """Turn flagged clusters into findings: test them, control the FDR, merge them, keep their ids.

    Parameters
    ----------
    alpha : float, default 0.05
        False-discovery rate controlled (Benjamini-Hochberg) over every tested cluster of an epoch.
    min_size : int, default 5
        Least cluster size tested; the least size is the larger of this and ``min_fraction`` of the
        category.
    min_fraction : float, default 0.02
        See ``min_size``.
    min_share : float, default 0.3
        Evidence (a): least share of the members' absolute relevance in the region.
    contrast : float, default 3.0
        Evidence (a): least ratio of that share to the rest of the category's share there.
    max_input_spread : float, default 0.05
        Evidence (b): most input spread (members' deviation from their mean pattern in the region over
        the rest's deviation from it) of "nearly the same inputs".
    n_permutations : int, default 999
        Random same-size subsets per tested cluster (evidence (c)).
    min_overlap : float, default 0.5
        Least member overlap (of the smaller set) for two clusters, or a finding and its previous
        epoch's, to be the same finding.
    random_state : int, default 0
        Seed of the random subsets.
    """

    def __init__(
        self,
        alpha: float = 0.05,
        min_size: int = 5,
        min_fraction: float = 0.02,
        min_share: float = 0.3,
        contrast: float = 3.0,
        max_input_spread: float = 0.05,
        n_permutations: int = 999,
        min_overlap: float = 0.5,
        random_state: int = 0,
    ) -> None:
        owner = "Findings"
        self.alpha = check_float(alpha, "alpha", owner, 0.0, 1.0)
        self.min_size = check_int(min_size, "min_size", owner, 1)
        self.min_fraction = check_float(min_fraction, "min_fraction", owner, 0.0, 1.0)
        self.min_share = check_float(min_share, "min_share", owner, 0.0, 1.0)
        self.contrast = check_float(contrast, "contrast", owner, 1.0)
        self.max_input_spread = check_float(max_input_spread, "max_input_spread", owner, 0.0)
        self.n_permutations = check_int(n_permutations, "n_permutations", owner, 19)
        self.min_overlap = check_float(min_overlap, "min_overlap", owner, 0.0, 1.0)
        self.random_state = check_int(random_state, "random_state", owner, 0)

    def min_cluster_size(self, category_size: int) -> int:
        """Least tested cluster size in a category of ``category_size`` samples."""
        return max(self.min_size, int(math.ceil(self.min_fraction * category_size)))

    # ---------------------------------------------------------------------------------- testing

    def _test_category(
        self, category: str, data: CategoryInput, region_list: list[Region], modality: str = "image"
    ) -> list[_Tested]:
        n = len(data.sample_ids)
        least = self.min_cluster_size(n)
        if n < 2 * least or not region_list:
            return []
        masks = np.stack([r.cells for r in region_list], axis=1).astype(np.float64)  # (G, R)
        shares = np.asarray(data.absolute, dtype=np.float64) @ masks  # per sample and region (rows sum to 1)
        totals = shares.sum(axis=0)
        x = x2 = None
        if data.inputs is not None:
            x = np.asarray(data.inputs, dtype=np.float64)
            x2 = x**2
        seen: dict[tuple, _Tested] = {}
        subsets_by_size: dict[int, np.ndarray] = {}
        for clustering, labels in data.labelings.items():
            for cluster in np.unique(labels[labels >= 0]):
                member = labels == cluster
                m = int(member.sum())
                if m < least or n - m < least:
                    continue
                share = shares[member].mean(axis=0)
                rest = (totals - shares[member].sum(axis=0)) / (n - m)
                ok = (share >= self.min_share) & (share >= self.contrast * rest)
                if not ok.any():
                    continue
                candidates = np.flatnonzero(ok)
                ranks = np.array([region_list[i].rank for i in candidates])
                best = candidates[np.lexsort((-(share[candidates] - rest[candidates]), ranks))][0]
                key = (tuple(np.flatnonzero(member)), int(best))
                if key in seen:  # the same cluster from another clustering: tested once
                    seen[key].clustering += f",{clustering}"
                    continue
                subsets = subsets_by_size.get(m)
                if subsets is None:
                    subsets = _random_subsets(n, m, self.n_permutations, (self.random_state, n, m))
                    subsets_by_size[m] = subsets
                null_share = (subsets.astype(np.float64) @ shares[:, best]) / m
                p = permutation_pvalue(float(share[best]), null_share)
                spread = None
                if x is not None:
                    cells = region_list[best].cells
                    weights = np.asarray(data.absolute, dtype=np.float64)[member][:, cells].mean(axis=0)
                    weights = weights / weights.sum() if weights.sum() > 0 else np.full(cells.sum(), 1 / cells.sum())
                    xs, x2s = x[:, cells], x2[:, cells]
                    spread = float(_spread(member[None], xs, x2s, weights)[0])
                    if modality == "tabular" and np.mean((xs[member] <= 1 / 255) | (xs[member] >= 254 / 255)) >= 0.5:
                        # thumbnails are scaled per sample to its minimum and maximum: a feature that is
                        # the sample's extreme shows as 0 or 1 whatever its value, so equal values there
                        # say nothing (an image's pattern has a shape over several cells; a feature not)
                        spread = 1.0
                    null_spread = _spread(subsets, xs, x2s, weights)
                    p = max(p, permutation_pvalue(spread, null_spread, greater=False))
                seen[key] = _Tested(
                    category, clustering, int(cluster), data.sample_ids[member], region_list[best],
                    float(share[best]), float(rest[best]), spread, p, category_size=n,
                )  # fmt: skip
        return list(seen.values())

    # ---------------------------------------------------------------------------------- merging

    def detect(
        self,
        epoch: int,
        categories: Mapping[str, CategoryInput],
        region_list: list[Region],
        *,
        modality: str = "image",
        previous: Sequence[Finding] = (),
    ) -> Detection:
        """Test every cluster of every category, keep the significant ones and merge them into findings.

        Parameters
        ----------
        epoch : int
            The analysed epoch (names new findings).
        categories : mapping of str to CategoryInput
            Per category (``"all"``, ``"class_3"``, ...): its maps, labelings and inputs.
        region_list : list of Region
            Candidate regions (:func:`region_set`).
        modality : {"image", "signal", "tabular"}
            Decides the words and the kind.
        previous : sequence of Finding
            The previous epoch's findings (ids and first epochs carry over).

        Returns
        -------
        Detection
        """
        # within a class: a class's own signal is where all of the class looks, so the subgroup that
        # looks elsewhere stands out; in "all samples" every class is such a subgroup, so it is tested
        # only when no class is analysed on its own
        classes = [c for c in categories if c != "all"] or list(categories)
        tested = [t for c in classes for t in self._test_category(c, categories[c], region_list, modality)]
        q = benjamini_hochberg([t.p_value for t in tested])
        for t, value in zip(tested, q):
            t.q_value = float(value)
        significant = [
            t for t in tested if t.q_value <= self.alpha and (t.spread is None or t.spread <= self.max_input_spread)
        ]
        groups = self._group(significant)
        labels = {c: d.label for c, d in categories.items()}
        findings = [self._finding(epoch, group, labels, modality) for group in groups]
        self._carry_ids(epoch, findings, previous)
        return Detection(findings, tested)

    def _group(self, clusters: list[_Tested]) -> list[list[_Tested]]:
        parent = list(range(len(clusters)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, a in enumerate(clusters):
            for j in range(i + 1, len(clusters)):
                b = clusters[j]
                if (a.region.cells & b.region.cells).any() and _overlap(a.members, b.members) >= self.min_overlap:
                    parent[root(j)] = root(i)
        groups: dict[int, list[_Tested]] = {}
        for i, c in enumerate(clusters):
            groups.setdefault(root(i), []).append(c)
        return list(groups.values())

    def _finding(self, epoch: int, group: list[_Tested], labels: Mapping[str, str], modality: str) -> Finding:
        names = [c.region.name for c in group]
        # sorted first: ties are broken the same way in every process (set order depends on the hash seed)
        common = max(
            sorted(set(names)), key=lambda r: (names.count(r), -min(c.region.rank for c in group if c.region.name == r))
        )
        classes = [c.category for c in group if c.category != "all"]
        category = max(sorted(set(classes)), key=classes.count) if classes else "all"
        chosen = [c for c in group if c.region.name == common]
        best = min(chosen, key=lambda c: (c.category != category, c.q_value, -len(c.members)))
        # members: the samples that at least half of the clusterings contributing to the finding (in its
        # own category) put into one of its clusters; robust to a clustering that splits the group
        own = [c for c in group if c.category == best.category]
        votes: dict[int, set[str]] = {}
        for c in own:
            for sample in c.members.tolist():
                votes.setdefault(sample, set()).update(c.clustering.split(","))
        voters = {name for c in own for name in c.clustering.split(",")}
        members = np.array([s for s, names in votes.items() if 2 * len(names) >= len(voters)], dtype=np.int64)
        kind = KIND_FEATURE if modality == "tabular" else KIND_ARTIFACT
        finding = Finding(
            finding_id="",
            category=category,
            kind=kind,
            region=common,
            region_detail=best.region.detail,
            region_cells=np.flatnonzero(best.region.cells).astype(np.int32),
            first_epoch=epoch,
            epochs_seen=[epoch],
            member_ids=np.sort(members).astype(np.int64),
            share=best.share,
            rest_share=best.rest_share,
            input_spread=best.spread,
            p_value=min(c.p_value for c in group),
            q_value=min(c.q_value for c in group),
            clusters=sorted(f"{c.category}/{name}/{c.cluster}" for c in group for name in c.clustering.split(",")),
            category_label=labels.get(category, category),
        )
        finding.reason = self._reason(finding, best, labels.get(best.category, best.category), modality)
        return finding

    def _reason(self, finding: Finding, best: _Tested, label: str, modality: str) -> str:
        where = f"the {finding.region}" if modality == "image" else finding.region
        text = (
            f"{len(best.members)} of {best.category_size} samples of {label} put {best.share:.0%} of their absolute "
            f"relevance in {where} ({finding.region_detail}), where the rest of {label} puts {best.rest_share:.0%}"
        )
        if best.spread is None:
            text += "; the inputs were not stored, so it was not checked that they are the same there"
        elif modality == "tabular":
            text += f"; their values of it are nearly the same (spread {best.spread:.2f} of the rest's)"
        else:
            text += f"; their inputs there are nearly the same (spread {best.spread:.2f} of the rest's)"
        text += f"; permutation test q = {finding.q_value:.2g} over {len(finding.clusters)} cluster(s)"
        if modality == "tabular":
            text += "; a feature concentration, which may be legitimate: check that the feature may be used"
        return text

    def _carry_ids(self, epoch: int, findings: list[Finding], previous: Sequence[Finding]) -> None:
        taken: set[str] = set()
        pairs = []
        for i, f in enumerate(findings):
            for j, p in enumerate(previous):
                if len(np.intersect1d(f.region_cells, p.region_cells)) == 0:
                    continue
                score = _overlap(f.member_ids, p.member_ids)
                if score >= self.min_overlap:
                    pairs.append((-score, i, j))
        used_f: set[int] = set()
        used_p: set[int] = set()
        for _, i, j in sorted(pairs):
            if i in used_f or j in used_p:
                continue
            used_f.add(i)
            used_p.add(j)
            f, p = findings[i], previous[j]
            f.finding_id, f.first_epoch = p.finding_id, p.first_epoch
            f.epochs_seen = sorted(set(p.epochs_seen) | {epoch})
            taken.add(f.finding_id)
        taken |= {p.finding_id for p in previous}
        for f in sorted(findings, key=lambda f: (f.category, f.region, -f.n_members)):
            if f.finding_id:
                continue
            base = f"{f.category}/{_slug(f.region)}@{epoch}"
            candidate, k = base, 2
            while candidate in taken:
                candidate, k = f"{base}-{k}", k + 1
            f.finding_id = candidate
            taken.add(candidate)


# ------------------------------------------------------------------------------------------------ table


def findings_table(findings: Sequence[Finding]) -> pa.Table:
    """The ``findings`` table (:data:`FINDINGS_SCHEMA`) of one epoch's findings."""
    columns: dict[str, list] = {name: [] for name in FINDINGS_SCHEMA.names}
    for f in findings:
        values = {
            FINDING_ID: f.finding_id,
            CATEGORY: f.category,
            KIND: f.kind,
            REGION: f.region,
            REGION_DETAIL: f.region_detail,
            REGION_CELLS: [int(c) for c in f.region_cells],
            FIRST_EPOCH: f.first_epoch,
            EPOCHS_SEEN: list(f.epochs_seen),
            MEMBER_IDS: [int(i) for i in f.member_ids],
            N_MEMBERS: f.n_members,
            SHARE: f.share,
            REST_SHARE: f.rest_share,
            STRENGTH: f.strength,
            INPUT_SPREAD: f.input_spread,
            P_VALUE: f.p_value,
            Q_VALUE: f.q_value,
            CLUSTERS: list(f.clusters),
            REASON: f.reason,
        }
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=FINDINGS_SCHEMA)


def findings_from_table(table: pa.Table, labels: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings read back from a ``findings`` table (``labels``: category → words, for summaries)."""
    out = []
    for row in table.to_pylist():
        out.append(
            Finding(
                finding_id=row[FINDING_ID],
                category=row[CATEGORY],
                kind=row[KIND],
                region=row[REGION],
                region_detail=row[REGION_DETAIL] or "",
                region_cells=np.asarray(row[REGION_CELLS], dtype=np.int32),
                first_epoch=int(row[FIRST_EPOCH]),
                epochs_seen=[int(e) for e in row[EPOCHS_SEEN]],
                member_ids=np.asarray(row[MEMBER_IDS], dtype=np.int64),
                share=float(row[SHARE]),
                rest_share=float(row[REST_SHARE]),
                input_spread=row[INPUT_SPREAD],
                p_value=float(row[P_VALUE]),
                q_value=float(row[Q_VALUE]),
                clusters=list(row[CLUSTERS]),
                reason=row[REASON],
                category_label=(labels or {}).get(row[CATEGORY], row[CATEGORY]),
            )
        )
    return out
