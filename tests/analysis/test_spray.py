"""SpRAy on synthetic maps with planted structure: recovery, flags, determinism, step caching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score
from spray_helpers import fast_spray

from lrp_lightning.analysis import (
    AnalysisError,
    Clusterings,
    Embeddings,
    Indicators,
    KNNGraph,
    SpRAy,
    add_corner_artifact,
    cache_info,
    clear_cache,
    planted_maps,
)


def test_planted_groups_are_recovered_and_eigengap_counts_them():
    maps, groups = planted_maps(n_samples=300, n_groups=5, shape=(32, 32), noise=4.0, random_state=0)
    spray = fast_spray(clusterings=Clusterings(k_range=(2, 10), methods=("kmeans", "components")))
    result = spray.fit(maps)
    # the kNN graph is connected: the groups are not trivially separate components
    n_components, _ = connected_components(
        spray.affinity.graph(spray.affinity.neighbors(spray.prepare(maps).features, 10))
    )
    assert n_components == 1
    assert result.clustering.eigengap_k == 5
    assert result.selected == "kmeans_5"
    assert adjusted_rand_score(groups, result.labels) >= 0.95
    # every labelling of the sweep is kept
    assert [f"kmeans_{k}" for k in range(2, 11)] == [n for n in result.clustering.labelings if n.startswith("kmeans")]
    assert result.flagged() == []  # spread patterns are no Clever-Hans candidates


def test_corner_artifact_cluster_is_flagged_with_a_reason_naming_the_corner():
    maps, groups = planted_maps(n_samples=150, n_groups=3, shape=(16, 16), noise=1.0, random_state=1)
    artifact = np.flatnonzero(groups == 0)[:20]
    maps = add_corner_artifact(maps, artifact, "bottom-right", share=0.5)
    result = fast_spray().fit(maps, category="class 7")
    selected = result.summaries[result.selected]
    flagged = [s for s in selected if s.flagged]
    assert len(flagged) == 1
    cluster = flagged[0]
    members = np.flatnonzero(result.labels == cluster.cluster)
    np.testing.assert_array_equal(np.sort(members), np.sort(artifact))
    assert cluster.flag_region == "bottom-right corner"
    assert "bottom-right corner" in cluster.flag_reason and "class 7" in cluster.flag_reason
    assert "20 of 20 samples" in cluster.flag_reason
    assert cluster.corner_share == pytest.approx(0.5, abs=0.05)
    assert all(not s.flagged for s in selected if s.cluster != cluster.cluster)


def test_a_cluster_holding_most_of_the_class_is_still_flagged():
    maps, _ = planted_maps(n_samples=90, n_groups=1, shape=(16, 16), noise=1.0, random_state=2)
    artifact = np.arange(60)  # two thirds of the class
    maps = add_corner_artifact(maps, artifact, "top-right", share=0.6)
    result = fast_spray(clusterings=Clusterings(k_range=(2, 4), methods=("kmeans",))).fit(maps)
    assert result.selected == "kmeans_2"
    big = [s for s in result.summaries["kmeans_2"] if s.size == 60]
    assert len(big) == 1 and big[0].flagged and big[0].flag_region == "top-right corner"
    assert "(67% of all)" in big[0].flag_reason


def test_an_artifact_split_over_several_clusters_is_flagged_in_each():
    maps, groups = planted_maps(n_samples=90, n_groups=2, shape=(16, 16), noise=1.0, random_state=2)
    with_artifact = np.flatnonzero(groups == 0)[:30].tolist() + np.flatnonzero(groups == 1)[:30].tolist()
    maps = add_corner_artifact(maps, with_artifact, "top-right", share=0.6)
    result = fast_spray(clusterings=Clusterings(k_range=(4, 4), methods=("kmeans",))).fit(maps)
    flagged = [s for s in result.summaries["kmeans_4"] if s.flagged]
    assert sorted(s.size for s in flagged) == [30, 30]
    assert all("30 more samples in 1 other cluster(s) share the pattern" in s.flag_reason for s in flagged)


def test_border_band_and_fixed_patch_are_named():
    maps, _ = planted_maps(n_samples=80, n_groups=2, shape=(16, 16), noise=1.0, random_state=3)
    band = maps.copy()
    total = np.abs(band[:20]).sum(axis=(1, 2))
    band[:20, :, :2] = (total / (16 * 2))[:, None, None]  # the left band gets as much as the rest
    result = fast_spray(clusterings=Clusterings(k_range=(2, 4), methods=("kmeans",))).fit(band)
    regions = {s.flag_region for _, s in result.flagged()}
    assert "left border band" in regions
    patch = maps.copy()
    patch[:20, 6:10, 6:10] = (np.abs(patch[:20]).sum(axis=(1, 2)) / 8)[:, None, None]
    result = fast_spray(clusterings=Clusterings(k_range=(2, 4), methods=("kmeans",))).fit(patch)
    reasons = [s.flag_reason for _, s in result.flagged()]
    assert reasons and all("fixed patch" in r for r in reasons)


def test_indicator_values_on_a_hand_made_case():
    grid = (10, 10)
    absolute = np.zeros((4, 100))
    absolute[:2, 0] = 1.0  # two samples: everything in pixel (0, 0), a corner
    absolute[2:, 55] = 1.0  # two samples: everything in the centre
    signed = absolute.copy()
    signed[2:, 55] = -1.0
    coords = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    summaries = Indicators(n_typical=1).summarize(
        np.array([0, 0, 1, 1]),
        coordinates=coords,
        absolute=absolute,
        signed=signed,
        grid=grid,
        sample_ids=np.array([10, 11, 12, 13]),
        true_labels=np.array([1, 1, 1, 2]),
        predictions=np.array([1, 0, 1, 2]),
    )
    corner, centre = summaries
    assert (corner.size, corner.purity, corner.accuracy) == (2, 1.0, 0.5)
    assert (centre.purity, centre.majority_label, centre.accuracy) == (0.5, 1, 1.0)
    assert corner.corner_share == 1.0 and corner.border_share == 1.0 and corner.concentration == 1.0
    assert centre.corner_share == 0.0 and centre.border_share == 0.0
    assert corner.compactness == 1.0  # members coincide
    assert corner.flagged and corner.flag_region == "top-left corner"
    assert centre.flagged and centre.flag_region == "fixed patch"
    assert centre.prototype[55] == -1.0 and corner.prototype[0] == 1.0
    assert corner.typical.tolist() == [10] and corner.atypical.tolist() == [11]


def test_small_categories_clamp_or_skip_with_messages():
    maps, _ = planted_maps(n_samples=6, n_groups=2, shape=(8, 8), random_state=4)
    result = fast_spray().fit(maps, category="class 5")
    assert result.n_neighbors == 5
    assert any("class 5 has 6 samples: n_neighbors=10 clamped to 5" in m for m in result.warnings)
    assert (
        set(result.clustering.labelings) >= {"kmeans_2", "kmeans_5"} and "kmeans_6" not in result.clustering.labelings
    )
    with pytest.raises(AnalysisError, match="class 9 has 1 sample; SpRAy needs at least 3"):
        fast_spray().fit(maps[:1], category="class 9")
    bad = maps.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(AnalysisError, match=r"NaN or infinity \(rows \[2\]\)"):
        fast_spray().fit(bad)


@pytest.mark.slow  # the whole pipeline twice
def test_two_runs_give_identical_results_and_steps_are_memoised():
    maps, _ = planted_maps(n_samples=60, n_groups=3, shape=(8, 8), random_state=5)
    spray = SpRAy(
        clusterings=Clusterings(k_range=(2, 4)),
        embeddings=Embeddings(methods=("tsne", "umap", "pca"), tsne_max_iter=250),
    )
    clear_cache()
    first = spray.fit(maps)
    clear_cache()
    second = spray.fit(maps)
    for method in ("tsne", "umap", "pca"):
        np.testing.assert_array_equal(first.embeddings[method], second.embeddings[method])
    for name, labels in first.clustering.labelings.items():
        np.testing.assert_array_equal(labels, second.clustering.labelings[name])
    np.testing.assert_array_equal(first.spectrum.eigenvectors, second.spectrum.eigenvectors)
    # same config again: nothing recomputed
    spray.fit(maps)
    assert cache_info()["hits"]["embeddings"] == 1 and cache_info()["misses"]["spectral"] == 1
    # another k-means seed: clusterings recomputed, the spectrum reused
    spray.set_params(clusterings=Clusterings(k_range=(2, 4), random_state=1)).fit(maps)
    info = cache_info()
    assert info["misses"]["clusterings"] == 2 and info["misses"]["spectral"] == 1
    # another neighbourhood: everything after the kNN search recomputed
    spray.set_params(affinity=KNNGraph(n_neighbors=5)).fit(maps)
    assert cache_info()["misses"]["spectral"] == 2


def test_warm_start_keeps_the_previous_layout():
    maps, _ = planted_maps(n_samples=80, n_groups=3, shape=(8, 8), random_state=6)
    # scope="all": a category without a flagged cluster gets its t-SNE layout too
    embeddings = Embeddings(methods=("tsne",), scope="all", tsne_max_iter=500, warm_max_iter=250)
    spray = fast_spray(embeddings=embeddings)
    prepared = spray.prepare(maps)
    ids = np.arange(80)
    common = {"sample_ids": ids, "labels": np.zeros(80, int), "predictions": np.zeros(80, int)}
    cold = spray.analyze(prepared, **common)
    previous = cold.embeddings["tsne"]
    warm = spray.analyze(prepared, **common, init={"tsne": previous})
    layout = warm.embeddings["tsne"]
    assert not np.array_equal(layout, previous)
    # same maps, warm-started: every point stays near where it was (relative to the layout's size)
    a = (previous - previous.mean(0)) / previous.std()
    b = (layout - layout.mean(0)) / layout.std()
    assert np.median(np.linalg.norm(a - b, axis=1)) < 0.5


def test_config_round_trip_and_unknown_keys():
    spray = SpRAy(clusterings=Clusterings(k_range=(2, 5)), random_state=3)
    assert spray.clusterings.random_state == 3 and spray.embeddings.random_state == 3
    rebuilt = SpRAy.from_config(spray.get_config())
    assert rebuilt.get_config() == spray.get_config()
    assert SpRAy.from_config({"embeddings": {"perplexity": 10}}).embeddings.perplexity == 10.0
    with pytest.raises(ValueError, match=r"unknown analysis config key\(s\) \['embedding'\]"):
        SpRAy.from_config({"embedding": {}})
    with pytest.raises(ValueError, match=r"'embeddings'.*no parameter\(s\) \['perplex'\]"):
        SpRAy.from_config({"embeddings": {"perplex": 10}})
    with pytest.raises(TypeError, match="clusterings must be a Clusterings"):
        SpRAy(clusterings=Embeddings())


def test_replacing_a_step_keeps_the_other_seeds():
    spray = SpRAy(random_state=3)
    changed = spray.set_params(clusterings=Clusterings(random_state=1))
    assert changed.clusterings.random_state == 1 and changed.embeddings.random_state == 3
    assert spray.set_params(random_state=4).clusterings.random_state == 4


def test_identical_maps_give_a_collapsed_layout_not_a_crash():
    maps = np.zeros((30, 8, 8), np.float32)  # e.g. a dead model early in training
    embeddings = Embeddings(methods=("tsne", "pca"), scope="all")  # analyze() below lays out a plain category
    spray = SpRAy(clusterings=Clusterings(k_range=(2, 3)), embeddings=embeddings)
    result = spray.fit(maps)
    np.testing.assert_array_equal(result.embeddings["tsne"], 0.0)
    assert result.flagged() == [] and set(result.clustering.labelings) >= {"kmeans_2", "components"}
    # a collapsed previous layout is not used as a warm start (the Barnes-Hut tree needs distinct points)
    varied, _ = planted_maps(n_samples=30, n_groups=2, shape=(8, 8), random_state=7)
    prepared = spray.prepare(varied)
    ids = np.arange(30)
    warm = spray.analyze(
        prepared, sample_ids=ids, labels=ids * 0, predictions=ids * 0, init={"tsne": np.zeros((30, 2))}
    )
    assert np.ptp(warm.embeddings["tsne"], axis=0).min() > 0
