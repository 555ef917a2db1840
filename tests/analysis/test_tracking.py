"""Cluster lineage across epochs and per-sample heatmap stability."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_lightning.analysis import Tracking, heatmap_stability


def previous(ids, labels, epoch=0):
    labels = np.asarray(labels)
    return np.asarray(ids), labels, {int(c): f"{epoch}:{int(c)}" for c in np.unique(labels[labels >= 0])}


def test_first_epoch_clusters_are_born():
    lineage = Tracking().match(3, np.arange(4), np.array([0, 0, 1, -1]), None)
    assert {c: (m.event, m.track) for c, m in lineage.matches.items()} == {0: ("born", "3:0"), 1: ("born", "3:1")}


def test_relabelled_clusters_keep_their_tracks():
    ids = np.arange(9)
    old = previous(ids, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # same groups, new label numbers, samples in another order
    order = np.array([8, 7, 6, 5, 4, 3, 2, 1, 0])
    new_labels = np.array([1, 1, 1, 2, 2, 2, 0, 0, 0])
    lineage = Tracking().match(1, ids[order], new_labels, old)
    tracks = {c: m.track for c, m in lineage.matches.items()}
    assert tracks == {1: "0:2", 2: "0:1", 0: "0:0"}
    assert all(m.event == "continued" and m.jaccard == 1.0 for m in lineage.matches.values())
    assert lineage.vanished == []


def test_split_merge_and_birth_are_named():
    # previous: A = 0..19, B = 20..29, C = 30..39
    old = previous(np.arange(40), [0] * 20 + [1] * 10 + [2] * 10)
    # now: A splits into 0..9 and 10..19; B and C merge; the new samples 40..49 form a cluster
    now = np.array([0] * 10 + [1] * 10 + [2] * 20 + [3] * 10)
    m = Tracking().match(5, np.arange(50), now, old).matches
    assert m[0].event == "split" and m[1].event == "split"
    assert sorted([m[0].track, m[1].track])[0] == "0:0"  # one half keeps A's identity
    assert {m[0].track, m[1].track} - {"0:0"} <= {"5:0", "5:1"}
    assert m[2].event == "merged" and m[2].sources == (1, 2)
    assert m[2].jaccard == pytest.approx(0.5) and m[2].track in {"0:1", "0:2"}
    assert m[3].event == "born" and m[3].track == "5:3" and m[3].previous_cluster is None


def test_vanished_cluster_is_reported():
    old = previous(np.arange(32), [0] * 10 + [1] * 10 + [2] * 12)
    # cluster 2's twelve members spread over four clusters, a quarter each (below the 30% share)
    now_ids = np.concatenate([np.r_[0:10, 20:23], np.r_[10:20, 23:26], np.r_[26:29, 40:50], np.r_[29:32, 50:60]])
    now = np.repeat([0, 1, 2, 3], [13, 13, 13, 13])
    lineage = Tracking().match(2, now_ids, now, old)
    m = lineage.matches
    assert (m[0].track, m[0].event, m[1].track, m[1].event) == ("0:0", "continued", "0:1", "continued")
    assert m[0].jaccard == pytest.approx(10 / 13)
    assert (m[2].event, m[2].track) == ("born", "2:2")
    assert lineage.vanished == [(2, "0:2")]


def test_heatmap_stability_is_the_cosine_to_the_previous_epoch():
    rows = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    previous_rows = np.array([[0.0, -3.0], [5.0, 0.0], [-1.0, -1.0]])
    stability = heatmap_stability(np.array([7, 8, 9, 10]), rows, np.array([8, 7, 9]), previous_rows)
    np.testing.assert_allclose(stability[:3], [1.0, -1.0, -1.0])
    assert np.isnan(stability[3])  # not in the previous epoch
