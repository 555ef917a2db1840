"""Findings: one per artifact or strategy, merged over clusterings, categories and epochs.

SpRAy clusters every category many ways (k-means for several k, DBSCAN, ...), and the
:class:`~lrp_lightning.analysis.indicators.Indicators` flag each clustering's clusters on their own, so
one watermark shows up as a flag in many clusterings, in its class and in "all samples", in every
epoch. A *finding* is what a person wants instead: one artifact, with a stable id.

Evidence
--------
Clusters are tested within each class's category: a class's own signal is where the whole class
looks, so the subgroup that looks elsewhere is what stands out. In "all samples" every class would be
such a subgroup, so that category is tested only when no class is analysed on its own.

A cluster of a category (``n`` samples) is *tested* when it has at least
``max(min_size, ceil(min_fraction * n))`` members and a region (an image's corner, border band or
patch; a signal's window of time steps; a tabular feature; a token id) where

(a) the members put at least ``min_share`` of their absolute relevance, and at least ``contrast``
    times the share the rest of the category puts there (the rest leaves out the clusters of the same
    clustering that concentrate in that region too: a group that the clustering split in parts is
    measured against the samples outside it, in (a) and (b)) (the region differs from where the rest of
    the category puts relevance; 0.2 rather than the indicators' 0.3, since (b) and (c) guard
    against chance: a watermark on 10% of a class held 24% of its samples' relevance);
(b) the members' *inputs* are nearly the same: their mean squared deviation from the members' mean
    pattern in the region (weighted by where their relevance lies) is at most ``max_input_spread``
    times the rest of the category's mean squared deviation from that pattern. A watermark, tag or
    ruler gives about 0 (at most 0.009 for the digits watermark on 10% to 50% of a class and 0.003
    for a planted pulse in a signal, in ``benchmarks/findings_quality.py``); clusters of similar
    strokes, of a jittered signal feature or of one predictive feature's range gave 0.02 and more
    (0.02 to 0.25), since their inputs vary. The default 0.015 lies between. The inputs are the probe
    thumbnails of ``probe.parquet`` (PNG, grayscale, resized to the analysis grid). Thumbnails are
    scaled per sample to its minimum and maximum, so for tabular data a feature that is most of the
    members' extreme value (shown as 0 or 1 whatever it is) does not count as "the same".
    For tokens (regions are token ids, :mod:`~lrp_lightning.analysis.tokens`), (a) also asks the token
    to be the most relevant token of at least ``min_token_top`` (0.8) of the members, and (b) is that
    the members share that token id: at least ``min_token_presence`` (0.9) of them hold it (the
    finding's ``input_spread`` is the share without it), and the cluster holds at least
    ``min_token_coverage`` (0.8) of the category's samples that hold it. A class keyword is a token
    too, and a group that reads one strong keyword ("bland") passes (a) and (b) like a shortcut tag,
    so tokens need a fourth piece of evidence:
(d) for tokens, *confinement beyond the class's own evidence*: the share of the samples holding
    the token that belong to the class is larger than the same share pooled over the tokens the rest
    of the class relies on (a one-sided binomial test, joined to (c)). A keyword is no cleaner a
    label than the class's other words; a shortcut tag is. The criterion, its figures and its limit
    are in :func:`~lrp_lightning.analysis.tokens.confinement_test`.
    When a run holds no thumbnails (a
    prediction-writer run without them, a store written by hand) evidence (b) cannot be measured:
    the finding then rests on (a) and (c), its ``input_spread`` is null and its reason says the
    inputs were not checked.

(c) Significance: a permutation test against ``n_permutations`` random subsets of the category of
the same size, in the same region: the relevance share (the statistic of (a)) and, with inputs, the
input spread (of (b); for tokens the share of members that hold the token, and the binomial test of
(d)). The conjunction is
tested as an intersection-union test, so the cluster's p value is the larger of the two. Where fewer
than 10 random subsets reach the cluster's statistic the tail is approximated by a normal fit to the
random subsets' statistics (as permutation tools do with tail approximations), so p values are not
floored at ``1 / (n_permutations + 1)``. The p values of every tested cluster of the epoch (all
categories, all clusterings) are adjusted with Benjamini-Hochberg; a cluster with ``q <= alpha``
that meets (a) and (b) is *significant*.

Merging
-------
Significant clusters whose regions overlap and whose members overlap (at least ``min_overlap`` of
the smaller one), or which are parts of one clustering of the same category (a group split in two),
form one finding; its members are the samples in at least half of its clusters.
A finding continues a finding of the previous epoch with overlapping region and members (same
overlap rule), keeping its id; otherwise its id is new: ``<category>/<region>@<epoch>``, from its
category, region and first epoch, so analysing the same run again gives the same ids. Only the
previous epoch's findings are matched: a finding that vanishes for an epoch and comes back gets a
new id.

Words follow the modality (:mod:`~lrp_lightning.analysis.regions`): images name corners, border bands and
patches; tokens a vocabulary item: 'token "[X]" carries 40% of the relevance in this cluster against 1%
in the rest of the class'; signals "time steps a–b"
(windows of 1/8 and 1/4 of the length: finer ones split a class's jittered feature into position
groups whose inputs agree by construction);
tabular data "feature <name>" and the finding's kind is "feature concentration", never an artifact
or shortcut: a model that reads one feature for a group of samples may be right to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import store as S
from .base import Step, check_float, check_int
from .regions import (
    MODALITIES,
    Region,
    feature_names_of,
    input_grid,
    modality_of,
    region_set,
    token_regions,
)
from .statistics import benjamini_hochberg, permutation_pvalue
from .tokens import confinement_test

__all__ = [
    "FINDINGS_SCHEMA",
    "FINDINGS_TABLE",
    "MODALITIES",
    "Finding",
    "Findings",
    "Region",
    "benjamini_hochberg",
    "feature_names_of",
    "findings_from_table",
    "findings_table",
    "input_grid",
    "modality_of",
    "permutation_pvalue",
    "region_set",
    "token_regions",
]

# The findings table's schema and column names are the store contract's (lrp_lightning.store).
FINDINGS_TABLE = S.FINDINGS_TABLE
FINDING_ID = S.FINDING_ID
CATEGORY = S.CATEGORY
KIND = S.FINDING_KIND
REGION = S.FINDING_REGION
REGION_DETAIL = S.FINDING_REGION_DETAIL
REGION_CELLS = S.FINDING_REGION_CELLS
FIRST_EPOCH = S.FIRST_EPOCH
EPOCHS_SEEN = S.EPOCHS_SEEN
MEMBER_IDS = S.MEMBER_IDS
N_MEMBERS = S.N_MEMBERS
SHARE = S.FINDING_SHARE
REST_SHARE = S.REST_SHARE
STRENGTH = S.FINDING_STRENGTH
INPUT_SPREAD = S.INPUT_SPREAD
P_VALUE = S.P_VALUE
Q_VALUE = S.Q_VALUE
CLUSTERS = S.FINDING_CLUSTERS
REASON = S.FINDING_REASON
KIND_ARTIFACT = S.FINDING_KIND_ARTIFACT
KIND_FEATURE = S.FINDING_KIND_FEATURE
FINDINGS_SCHEMA = S.FINDINGS_SCHEMA


# ------------------------------------------------------------------------------------------------ statistics


def _random_subsets(n: int, m: int, count: int, seed: Sequence[int]) -> np.ndarray:
    """``count`` random subsets of size ``m`` of ``range(n)`` as a boolean matrix (count, n)."""
    rng = np.random.default_rng(list(seed))
    keys = rng.random((count, n))
    chosen = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (count, 1))
    out = np.zeros((count, n), dtype=bool)
    np.put_along_axis(out, chosen, True, axis=1)
    return out


def _spread(
    selected: np.ndarray, x: np.ndarray, x2: np.ndarray, weights: np.ndarray, rest: np.ndarray | None = None
) -> np.ndarray:
    """Input spread of subsets (rows of ``selected``, boolean (B, n)) in a region, weighted.

    Members' mean squared deviation from their mean pattern ``c``, over the rest's mean squared
    deviation from ``c``; both weighted over the region's cells by ``weights`` (summing to 1). The
    rest is every other sample, or the samples of the boolean mask ``rest`` (one subset only).
    """
    sel = selected.astype(np.float64)
    m = sel.sum(axis=1, keepdims=True)
    sum1 = sel @ x
    sum2 = sel @ x2
    c = sum1 / m
    within = sum2 / m - c**2
    if rest is None:
        total1, total2 = x.sum(axis=0), x2.sum(axis=0)
        r1, r2 = total1 - sum1, total2 - sum2
        count = x.shape[0] - m
    else:
        r1, r2 = x[rest].sum(axis=0), x2[rest].sum(axis=0)
        count = np.full_like(m, float(rest.sum()))
    far = (r2 - 2 * c * r1) / np.maximum(count, 1) + c**2
    within_w = np.clip(within, 0, None) @ weights
    far_w = np.clip(far, 0, None) @ weights
    # inputs that are the same for the whole category there (e.g. blank background) are no pattern
    return np.where(far_w > 1e-6, within_w / np.maximum(far_w, 1e-12), 1.0)


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
    clustering: str  # "name/cluster" of every clustering that made this cluster, comma-separated
    cluster: int
    members: np.ndarray  # sample ids
    region: Region
    share: float
    rest_share: float
    spread: float | None
    p_value: float
    q_value: float = 1.0
    input_std: float | None = None
    category_size: int = 0
    presence: tuple[float, float] | None = None  # tokens: share of members, and of the rest, holding the token
    top_share: float | None = None  # tokens: share of members whose most relevant token it is
    confinement: tuple[float, float] | None = None  # tokens: share of holders in the class; same for its evidence


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


def _clusterings(tested: _Tested) -> set[str]:
    """The clusterings (``"kmeans_3"``) that made a tested cluster."""
    return {name.split("/")[0] for name in tested.clustering.split(",")}


def _concentrating(
    shares: np.ndarray, labels: np.ndarray, clusters: np.ndarray, min_share: float, contrast: float
) -> np.ndarray:
    """Per sample and region, whether the sample's cluster concentrates there, against the other samples.

    A cluster concentrates in a region when its members' mean share there is at least ``min_share`` and
    ``contrast`` times the share of the samples outside it and outside every cluster found to
    concentrate there so far; repeated until nothing changes, so the smaller part of a group that a
    clustering split unevenly (49 and 26 samples of one shortcut) is measured against the samples
    without the pattern, not against the larger part.
    """
    n, r = shares.shape
    concentrating = np.zeros((n, r), dtype=bool)
    members = [labels == cluster for cluster in clusters]
    members = [member for member in members if not member.all()]
    own = [shares[member].mean(axis=0) for member in members]
    for _ in range(len(members)):
        base = ~concentrating
        weighted = shares * base
        total, count = weighted.sum(axis=0), base.sum(axis=0)
        changed = False
        for member, mean in zip(members, own):
            rest_count = count - base[member].sum(axis=0)
            rest = (total - weighted[member].sum(axis=0)) / np.maximum(rest_count, 1)
            flag = (mean >= min_share) & (mean >= contrast * rest) & (rest_count > 0)
            grown = flag & ~concentrating[np.argmax(member)]  # a cluster's members share their flags
            if grown.any():
                concentrating[np.ix_(member, grown)] = True
                changed = True
        if not changed:
            break
    return concentrating


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
    min_share : float, default 0.2
        Evidence (a): least share of the members' absolute relevance in the region.
    contrast : float, default 3.0
        Evidence (a): least ratio of that share to the rest of the category's share there.
    max_input_spread : float, default 0.015
        Evidence (b): most input spread (members' deviation from their mean pattern in the region over
        the rest's deviation from it) of "nearly the same inputs".
    min_token_top : float, default 0.8
        Evidence (a) for tokens: least share of the members whose most relevant token is the region's
        (a group that reads one of several class keywords spreads its relevance over them: in
        :func:`~.synthetic.planted_tokens` such groups reached 0.35 to 0.68, the shortcut 1.0).
    min_token_coverage : float, default 0.8
        Evidence (b) for tokens: least share of the category's samples holding the token that are in the
        cluster (outside the clusters that concentrate there too). A class keyword is held by samples
        that rely on other keywords as well (0.4 to 0.6 in :func:`~.synthetic.planted_tokens`); a
        shortcut's holders rely on it (1.0).
    min_token_presence : float, default 0.9
        Evidence (b) for tokens: least share of the members that hold the token (the share of members
        without it is the finding's ``input_spread``).
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
        min_share: float = 0.2,
        contrast: float = 3.0,
        max_input_spread: float = 0.015,
        min_token_top: float = 0.8,
        min_token_presence: float = 0.9,
        min_token_coverage: float = 0.8,
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
        self.min_token_top = check_float(min_token_top, "min_token_top", owner, 0.0, 1.0)
        self.min_token_presence = check_float(min_token_presence, "min_token_presence", owner, 0.0, 1.0)
        self.min_token_coverage = check_float(min_token_coverage, "min_token_coverage", owner, 0.0, 1.0)
        self.n_permutations = check_int(n_permutations, "n_permutations", owner, 19)
        self.min_overlap = check_float(min_overlap, "min_overlap", owner, 0.0, 1.0)
        self.random_state = check_int(random_state, "random_state", owner, 0)

    def min_cluster_size(self, category_size: int) -> int:
        """Least tested cluster size in a category of ``category_size`` samples."""
        return max(self.min_size, int(math.ceil(self.min_fraction * category_size)))

    # ---------------------------------------------------------------------------------- testing

    def _test_category(
        self,
        category: str,
        data: CategoryInput,
        region_list: list[Region],
        modality: str = "image",
        held_all: np.ndarray | None = None,
        prior: float = 0.0,
    ) -> list[_Tested]:
        n = len(data.sample_ids)
        least = self.min_cluster_size(n)
        if n < 2 * least or not region_list:
            return []
        masks = np.stack([r.cells for r in region_list], axis=1).astype(np.float64)  # (G, R)
        shares = np.asarray(data.absolute, dtype=np.float64) @ masks  # per sample and region (rows sum to 1)
        # tokens: each sample's most relevant vocabulary item (regions are single tokens)
        top = shares.argmax(axis=1) if modality == "tokens" else None
        x = x2 = None
        if data.inputs is not None:
            x = np.asarray(data.inputs, dtype=np.float64)
            x2 = x**2
        seen: dict[tuple, _Tested] = {}
        subsets_by_size: dict[int, np.ndarray] = {}
        for clustering, labels in data.labelings.items():
            clusters = np.unique(labels[labels >= 0])
            # per region, the samples of this clustering's clusters that concentrate there: a group that
            # the clustering split in parts (two halves of one watermark) is not "the rest" of each part
            concentrating = _concentrating(shares, labels, clusters, self.min_share, self.contrast)
            for cluster in clusters:
                member = labels == cluster
                m = int(member.sum())
                if m < least or n - m < least:
                    continue
                share = shares[member].mean(axis=0)
                outside = ~concentrating & ~member[:, None]  # (n, R): the rest, per region
                counts = outside.sum(axis=0)
                rest = np.where(counts > 0, (shares * outside).sum(axis=0) / np.maximum(counts, 1), np.inf)
                ok = (share >= self.min_share) & (share >= self.contrast * rest) & (counts >= least)
                if top is not None:
                    # tokens: the relevance concentrates on one token id when it is most members' top token
                    # (a group reading one of several class keywords spreads its relevance over them)
                    ok &= np.bincount(top[member], minlength=len(region_list)) >= self.min_token_top * m
                if not ok.any():
                    continue
                candidates = np.flatnonzero(ok)
                ranks = np.array([region_list[i].rank for i in candidates])
                best = candidates[np.lexsort((-(share[candidates] - rest[candidates]), ranks))][0]
                key = (tuple(np.flatnonzero(member)), int(best))
                if key in seen:  # the same cluster from another clustering: tested once
                    seen[key].clustering += f",{clustering}/{cluster}"
                    continue
                subsets = subsets_by_size.get(m)
                if subsets is None:
                    subsets = _random_subsets(n, m, self.n_permutations, (self.random_state, n, m))
                    subsets_by_size[m] = subsets
                null_share = (subsets.astype(np.float64) @ shares[:, best]) / m
                p = permutation_pvalue(float(share[best]), null_share)
                spread = input_std = presence = None
                if x is not None and modality == "tokens":
                    # evidence (b) for tokens: the members hold the token; its statistic is the share of
                    # members that hold it, tested like the relevance share against random subsets
                    column = int(np.flatnonzero(region_list[best].cells)[0])
                    held = x[:, column]
                    presence = (float(held[member].mean()), float(held[outside[:, best]].mean()))
                    holders = float(held[member].sum() + held[outside[:, best]].sum())
                    coverage = float(held[member].sum()) / holders if holders > 0 else 0.0
                    # the share of members without the token; a token that the rest of the class holds too
                    # (without relying on it) is one of the class's words, not the group's pattern
                    spread = 1.0 - presence[0] if coverage >= self.min_token_coverage else 1.0
                    null_presence = (subsets.astype(np.float64) @ held) / m
                    p = max(p, permutation_pvalue(presence[0], null_presence))
                    if held_all is not None:  # evidence (d): more confined to the class than its own evidence
                        columns = [int(np.flatnonzero(r.cells)[0]) for r in region_list]
                        in_class = x[:, columns].sum(axis=0)
                        rest_top = top[~member & outside[:, best]]
                        *confinement, p_confined = confinement_test(in_class, held_all, rest_top, best, 1, prior)
                        p = max(p, p_confined)
                elif x is not None:
                    cells = region_list[best].cells
                    weights = np.asarray(data.absolute, dtype=np.float64)[member][:, cells].mean(axis=0)
                    weights = weights / weights.sum() if weights.sum() > 0 else np.full(cells.sum(), 1 / cells.sum())
                    xs, x2s = x[:, cells], x2[:, cells]
                    spread = float(_spread(member[None], xs, x2s, weights, rest=outside[:, best])[0])
                    within = np.clip(x2s[member].mean(axis=0) - xs[member].mean(axis=0) ** 2, 0, None)
                    input_std = float(np.sqrt(within @ weights))
                    if modality == "tabular" and np.mean((xs[member] <= 1 / 255) | (xs[member] >= 254 / 255)) >= 0.5:
                        # thumbnails are scaled per sample to its minimum and maximum: a feature that is
                        # the sample's extreme shows as 0 or 1 whatever its value, so equal values there
                        # say nothing (an image's pattern has a shape over several cells; a feature not)
                        spread = 1.0
                    null_spread = _spread(subsets, xs, x2s, weights)
                    p = max(p, permutation_pvalue(spread, null_spread, greater=False))
                seen[key] = _Tested(
                    category, f"{clustering}/{cluster}", int(cluster), data.sample_ids[member], region_list[best],
                    float(share[best]), float(rest[best]), spread, p, category_size=n, input_std=input_std,
                    presence=presence, confinement=None if held_all is None else tuple(confinement),
                    top_share=None if top is None else float(np.mean(top[member] == best)),
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
        modality : {"image", "signal", "tabular", "tokens"}
            Decides the words, the kind and, for tokens, evidence (b) (``inputs`` are then the presence
            of each vocabulary column's token in each sample, :class:`~.tokens.TokenMaps`).
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
        held_all, total = None, sum(len(categories[c].sample_ids) for c in classes)
        if modality == "tokens" and len(classes) > 1 and all(categories[c].inputs is not None for c in classes):
            columns = [int(np.flatnonzero(r.cells)[0]) for r in region_list]
            held_all = sum(np.asarray(categories[c].inputs, np.float64)[:, columns].sum(axis=0) for c in classes)
        tested = [
            t
            for c in classes
            for t in self._test_category(
                c, categories[c], region_list, modality, held_all, len(categories[c].sample_ids) / max(total, 1)
            )
        ]
        q = benjamini_hochberg([t.p_value for t in tested])
        for t, value in zip(tested, q):
            t.q_value = float(value)
        most_spread = 1.0 - self.min_token_presence if modality == "tokens" else self.max_input_spread
        significant = [t for t in tested if t.q_value <= self.alpha and (t.spread is None or t.spread <= most_spread)]
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
                if not (a.region.cells & b.region.cells).any():
                    continue
                # parts of one group that a clustering split (disjoint by construction) are one finding
                parts = a.category == b.category and bool(_clusterings(a) & _clusterings(b))
                if parts or _overlap(a.members, b.members) >= self.min_overlap:
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
                votes.setdefault(sample, set()).update(n.split("/")[0] for n in c.clustering.split(","))
        voters = {name.split("/")[0] for c in own for name in c.clustering.split(",")}
        members = np.array([s for s, names in votes.items() if 2 * len(names) >= len(voters)], dtype=np.int64)
        kind = KIND_FEATURE if modality == "tabular" else KIND_ARTIFACT
        finding = Finding(
            finding_id="",
            category=category,
            kind=kind,
            region=common,
            region_detail=best.region.detail,
            region_cells=(
                np.array([best.region.token_id], dtype=np.int32)
                if best.region.token_id is not None
                else np.flatnonzero(best.region.cells).astype(np.int32)
            ),
            first_epoch=epoch,
            epochs_seen=[epoch],
            member_ids=np.sort(members).astype(np.int64),
            share=best.share,
            rest_share=best.rest_share,
            input_spread=best.spread,
            p_value=min(c.p_value for c in group),
            q_value=min(c.q_value for c in group),
            clusters=sorted(f"{c.category}/{name}" for c in group for name in c.clustering.split(",")),
            category_label=labels.get(category, category),
        )
        finding.reason = self._reason(finding, best, labels.get(best.category, best.category), modality)
        return finding

    def _reason(self, finding: Finding, best: _Tested, label: str, modality: str) -> str:
        if modality == "tokens":
            return self._token_reason(finding, best, label)
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
        clusterings = len({c.split("/")[1] for c in finding.clusters})
        text += (
            f"; not chance: permutation test against random same-size subsets, FDR-adjusted q = {finding.q_value:.2g}; "
            f"merged from {len(finding.clusters)} flagged cluster(s) of {clusterings} clustering(s)"
        )
        if modality == "tabular":
            text += "; a feature concentration, which may be legitimate: check that the feature may be used"
        return text

    def _token_reason(self, finding: Finding, best: _Tested, label: str) -> str:
        rest = "the rest of the class" if best.category != S.CATEGORY_ALL else "the other samples"
        text = (
            f"{finding.region} carries {best.share:.0%} of the relevance in this cluster against "
            f"{best.rest_share:.0%} in {rest} ({len(best.members)} of {best.category_size} samples of {label}"
            + (f"; the most relevant token of {best.top_share:.0%} of them)" if best.top_share is not None else ")")
        )
        if best.presence is None:
            text += "; the token ids were not stored, so it was not checked that the samples hold the token"
        else:
            held = int(round(best.presence[0] * len(best.members)))
            text += (
                f"; {held} of its {len(best.members)} samples hold the token, against {best.presence[1]:.0%} of {rest}"
            )
        if best.confinement is not None:
            text += (
                f"; {best.confinement[0]:.0%} of the texts holding it are of this class, against "
                f"{best.confinement[1]:.0%} for the tokens the rest of the class relies on"
            )
        clusterings = len({c.split("/")[1] for c in finding.clusters})
        return text + (
            f"; not chance: permutation test against random same-size subsets, FDR-adjusted q = {finding.q_value:.2g}; "
            f"merged from {len(finding.clusters)} flagged cluster(s) of {clusterings} clustering(s); "
            "a token that labels the class more cleanly than its words do: check that the model may rely on it"
        )

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
