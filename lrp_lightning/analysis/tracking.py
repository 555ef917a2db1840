"""Following clusters and samples from one epoch to the next.

Clusters of consecutive epochs are matched one-to-one by the Hungarian algorithm on the Jaccard
overlap of their members (samples present in both epochs). A matched cluster keeps its track
(identity); the overlaps also name what happened: a cluster ``continued``, was ``born``, ``split``
off a previous one, ``merged`` several, or a previous one ``vanished``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from .._validation import check_float
from .base import Step

__all__ = ["ClusterMatch", "Lineage", "Tracking", "heatmap_stability", "track_name"]


def track_name(epoch: int, cluster: int) -> str:
    """Identity of a track born in ``epoch`` as ``cluster``, e.g. ``"3:1"``."""
    return f"{epoch}:{cluster}"


@dataclass(frozen=True)
class ClusterMatch:
    """How one current cluster relates to the previous epoch's clusters."""

    cluster: int
    track: str
    event: str
    previous_cluster: int | None
    jaccard: float | None
    sources: tuple[int, ...]


@dataclass(frozen=True)
class Lineage:
    """Matches of every current cluster, and the previous clusters that vanished."""

    matches: dict[int, ClusterMatch]
    vanished: list[tuple[int, str]] = field(default_factory=list)  # (previous cluster, its track)


class Tracking(Step):
    """Match clusters across epochs.

    Parameters
    ----------
    min_jaccard : float, default 0.3
        Least Jaccard overlap for a Hungarian match to keep the track (a weaker best match is
        treated as no match).
    share : float, default 0.3
        A previous cluster is a *source* of a current one when at least this fraction of its members
        (present in both epochs) went there. Several sources: ``merged``; a previous cluster that is
        the source of several current ones: ``split``.
    """

    def __init__(self, min_jaccard: float = 0.3, share: float = 0.3) -> None:
        self.min_jaccard = check_float(min_jaccard, "min_jaccard", "Tracking", 0.0, 1.0)
        self.share = check_float(share, "share", "Tracking", 0.0, 1.0)

    def match(
        self,
        epoch: int,
        sample_ids: np.ndarray,
        labels: np.ndarray,
        previous: tuple[np.ndarray, np.ndarray, dict[int, str]] | None,
    ) -> Lineage:
        """Relate the clusters of one labelling to the previous epoch's.

        Parameters
        ----------
        epoch : int
            The current epoch (names new tracks).
        sample_ids, labels : numpy.ndarray, shape (N,)
            Current samples and their clusters (-1: noise, ignored).
        previous : (sample_ids, labels, tracks) or None
            The previous epoch's samples, labels and the track of each of its clusters; None at the
            first epoch (every cluster is ``born``).

        Returns
        -------
        Lineage
        """
        clusters = [int(c) for c in np.unique(labels[labels >= 0])]
        if previous is None:
            return Lineage({c: ClusterMatch(c, track_name(epoch, c), "born", None, None, ()) for c in clusters})
        prev_ids, prev_labels, prev_tracks = previous
        prev_clusters = [int(c) for c in np.unique(prev_labels[prev_labels >= 0])]
        common, here, there = np.intersect1d(sample_ids, prev_ids, assume_unique=True, return_indices=True)
        cur = labels[here]
        old = prev_labels[there]
        valid = (cur >= 0) & (old >= 0)
        size_cur = max(clusters, default=-1) + 1
        size_old = max(prev_clusters, default=-1) + 1
        overlap = sp.coo_matrix(
            (np.ones(int(valid.sum())), (old[valid], cur[valid])), shape=(size_old, size_cur)
        ).toarray()
        n_old = np.bincount(old[old >= 0], minlength=size_old).astype(np.float64)
        n_cur = np.bincount(cur[cur >= 0], minlength=size_cur).astype(np.float64)
        union = n_old[:, None] + n_cur[None, :] - overlap
        jaccard = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
        rows, cols = linear_sum_assignment(-jaccard) if jaccard.size else (np.empty(0, int), np.empty(0, int))
        matched = {
            int(c): int(r) for r, c in zip(rows, cols) if jaccard[r, c] >= self.min_jaccard and jaccard[r, c] > 0
        }
        gone_to = np.divide(overlap, n_old[:, None], out=np.zeros_like(overlap), where=n_old[:, None] > 0)
        is_source = gone_to >= self.share
        children = is_source.sum(axis=1)
        matches = {}
        for c in clusters:
            sources = tuple(int(r) for r in np.flatnonzero(is_source[:, c])) if c < size_cur else ()
            previous_cluster = matched.get(c)
            if len(sources) >= 2:
                event = "merged"
            elif any(children[r] >= 2 for r in sources):
                event = "split"
            elif previous_cluster is not None:
                event = "continued"
            else:
                event = "born"
            if previous_cluster is not None and previous_cluster in prev_tracks:
                track = prev_tracks[previous_cluster]
            else:
                track = track_name(epoch, c)
            j = float(jaccard[previous_cluster, c]) if previous_cluster is not None else None
            matches[c] = ClusterMatch(c, track, event, previous_cluster, j, sources)
        kept = set(matched.values())
        vanished = [(r, prev_tracks.get(r, "")) for r in prev_clusters if r not in kept and children[r] == 0]
        return Lineage(matches, vanished)


def heatmap_stability(
    sample_ids: np.ndarray, rows: np.ndarray, previous_ids: np.ndarray, previous_rows: np.ndarray
) -> np.ndarray:
    """Cosine similarity of each sample's preprocessed map to its map in the previous epoch.

    Returns
    -------
    numpy.ndarray of float32, shape (N,)
        NaN for samples absent from the previous epoch or with an all-zero map.
    """
    out = np.full(len(sample_ids), np.nan, dtype=np.float32)
    _, here, there = np.intersect1d(sample_ids, previous_ids, assume_unique=True, return_indices=True)
    if here.size == 0:
        return out
    a = rows[here].astype(np.float64)
    b = previous_rows[there].astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    out[here] = np.divide(dots, norms, out=np.full_like(dots, np.nan), where=norms > 0)
    return out
