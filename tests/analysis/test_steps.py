"""Unit tests of the analysis steps, each against a slow formula or a hand-made case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from lrp_lightning.analysis import (
    Clusterings,
    Embeddings,
    KNNGraph,
    Preprocess,
    SpectralEmbedding,
    Spectrum,
    Step,
    cache_key,
    eigengap,
    fingerprint,
    nearest_neighbors,
)
from lrp_lightning.analysis.clustering import _relabel_by_size, connect_components, spectral_coordinates
from lrp_lightning.analysis.preprocessing import sum_pool


def test_sum_pool_preserves_totals_and_matches_loops():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 28, 30))
    pooled = sum_pool(maps, (8, 7))
    assert pooled.shape == (3, 8, 7)
    np.testing.assert_allclose(pooled.sum(axis=(1, 2)), maps.sum(axis=(1, 2)))
    rows = np.floor(np.arange(9) * 28 / 8).astype(int)
    rows[-1] = 28
    cols = np.floor(np.arange(8) * 30 / 7).astype(int)
    cols[-1] = 30
    expected = np.array(
        [
            [[maps[n, rows[i] : rows[i + 1], cols[j] : cols[j + 1]].sum() for j in range(7)] for i in range(8)]
            for n in range(3)
        ]
    )
    np.testing.assert_allclose(pooled, expected)


def test_preprocess_sign_pool_and_normalisation():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, :2, :2] = -1.0
    maps[0, 2:, 2:] = 3.0
    maps[1] = 0.0  # an all-zero map stays zero, no NaN
    original = maps.copy()
    signed = Preprocess(pool_size=(2, 2), normalize="l1").transform(maps)
    np.testing.assert_allclose(signed[0], [-0.25, 0, 0, 0.75])
    np.testing.assert_array_equal(signed[1], 0.0)
    absolute = Preprocess(sign="absolute", pool_size=(2, 2), normalize="max").transform(maps)
    np.testing.assert_allclose(absolute[0], [4 / 12, 0, 0, 1])
    positive = Preprocess(sign="positive", pool_size=(2, 2), normalize="l2").transform(maps)
    np.testing.assert_allclose(positive[0], [0, 0, 0, 1])
    raw = Preprocess(pool_size=(32, 32), normalize="none").transform(maps)
    assert raw.shape == (2, 16)  # never upsampled
    np.testing.assert_array_equal(raw[0], maps[0].ravel())
    Preprocess(pool_size=(32, 32)).transform(maps)
    np.testing.assert_array_equal(maps, original)  # the caller's maps are never scaled in place


def test_preprocess_rejects_bad_parameters_by_name():
    with pytest.raises(ValueError, match=r"Preprocess: sign must be one of \['signed', .*\], got 'abs'"):
        Preprocess(sign="abs")
    with pytest.raises(ValueError, match=r"pool_size must be \(height, width\), two ints >= 1, got tuple \(32,\)"):
        Preprocess(pool_size=(32,))
    with pytest.raises(ValueError, match=r"got tuple \(32, 0\)"):
        Preprocess(pool_size=(32, 0))
    assert Preprocess(pool_size=[np.int64(8), 4]).pool_size == (8, 4)


def test_exact_neighbors_match_brute_force():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(150, 7)).astype(np.float32)
    found = nearest_neighbors(data, 5, algorithm="exact")
    distances = np.linalg.norm(data[:, None, :] - data[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    expected = np.argsort(distances, axis=1)[:, :5]
    np.testing.assert_array_equal(found.indices, expected)
    np.testing.assert_allclose(found.distances, np.sort(distances, axis=1)[:, :5], rtol=1e-4)
    assert not np.any(found.indices == np.arange(150)[:, None])


def test_knn_graph_is_symmetric_connectivity():
    data = np.array([[0.0], [1.0], [3.0], [10.0]], np.float32)
    step = KNNGraph(n_neighbors=1)
    graph = step.graph(step.neighbors(data, 1)).toarray()
    # 0<->1 mutual (1), 2->1 one-sided (0.5), 3->2 one-sided (0.5)
    expected = np.array([[0, 1, 0, 0], [1, 0, 0.5, 0], [0, 0.5, 0, 0.5], [0, 0, 0.5, 0]])
    np.testing.assert_array_equal(graph, expected)


def test_knn_clamps_neighbours_of_small_categories_with_a_warning():
    with pytest.warns(RuntimeWarning, match="has 6 samples: n_neighbors=10 clamped to 5"):
        assert KNNGraph(n_neighbors=10).effective_neighbors(6) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert KNNGraph(n_neighbors=10).effective_neighbors(11) == 10


def _components_graph(sizes, rng):
    blocks = []
    for size in sizes:
        block = (rng.uniform(size=(size, size)) < 0.5).astype(float)
        block = np.triu(block, 1)
        block = block + block.T + np.diag(np.ones(size - 1), 1) + np.diag(np.ones(size - 1), -1)
        blocks.append(np.minimum(block, 1.0))
    return sp.csr_matrix(sp.block_diag(blocks))


def test_spectrum_counts_components_and_solvers_agree():
    rng = np.random.default_rng(3)
    graph = _components_graph([40, 50, 60], rng)
    dense = SpectralEmbedding(n_eigval=8, solver="dense").fit(graph)
    sparse = SpectralEmbedding(n_eigval=8, solver="arpack", tol=1e-10).fit(graph)
    np.testing.assert_allclose(dense.eigenvalues[:3], 0.0, atol=1e-8)
    assert dense.eigenvalues[3] > 0.1
    np.testing.assert_allclose(sparse.eigenvalues, dense.eigenvalues, atol=1e-7)
    assert eigengap(dense.eigenvalues)[0] == 3
    # eigenvectors of L: L v = lambda v
    affinity = graph.toarray()
    d = 1 / np.sqrt(affinity.sum(1))
    laplacian = np.eye(150) - d[:, None] * affinity * d[None, :]
    vectors = dense.eigenvectors.astype(np.float64)
    np.testing.assert_allclose(laplacian @ vectors, vectors * dense.eigenvalues, atol=1e-5)


def test_eigengap_picks_the_largest_gap():
    assert eigengap(np.array([0.0, 0.01, 0.02, 0.5, 0.55])) == (3, pytest.approx(0.48))
    assert eigengap(np.array([0.0, 0.9, 0.95]))[0] == 1
    assert eigengap(np.array([0.0, 0.01, 0.02, 0.5, 0.55, 1.5]), max_k=4)[0] == 3
    assert eigengap(np.array([0.0])) == (1, 0.0)


def test_relabel_by_size_orders_clusters_and_keeps_noise():
    labels = _relabel_by_size(np.array([5, 5, 2, 2, 2, -1, 7]))
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0, -1, 2])


def test_clusterings_names_selection_and_skips():
    rng = np.random.default_rng(4)
    graph = _components_graph([30, 30, 30], rng)
    spectrum = SpectralEmbedding(n_eigval=10).fit(graph)
    result = Clusterings(k_range=(2, 5)).fit(spectrum, graph)
    assert result.eigengap_k == 3 and result.selected == "kmeans_3"
    assert set(result.labelings) == {
        "kmeans_2",
        "kmeans_3",
        "kmeans_4",
        "kmeans_5",
        "dbscan",
        "hdbscan",
        "agglomerative",
        "components",
    }
    truth = np.repeat([0, 1, 2], 30)
    for name in ("kmeans_3", "agglomerative", "components"):
        assert _same_partition(result.labelings[name], truth), name
    small = Spectrum(np.array([0.0, 0.5, 0.7]), rng.normal(size=(4, 3)).astype(np.float32))
    few = Clusterings(k_range=(2, 6), methods=("kmeans",)).fit(small, sp.identity(4, format="csr"))
    assert set(few.labelings) == {"kmeans_2", "kmeans_3"}
    assert "kmeans_4" in few.skipped


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_steps_follow_estimator_conventions():
    step = Clusterings(k_range=[3, 4], methods=["kmeans"], random_state=2)
    assert step.get_params()["k_range"] == (3, 4)
    changed = step.set_params(random_state=5)
    assert changed.random_state == 5 and step.random_state == 2
    assert changed != step and step == Clusterings(k_range=(3, 4), methods=("kmeans",), random_state=2)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['seed'\]"):
        step.set_params(seed=1)
    reproducible = r"Embeddings: random_state must be an int >= 0 \(results must be reproducible\), got None"
    with pytest.raises(ValueError, match=reproducible):
        Embeddings(random_state=None)
    assert isinstance(step, Step) and "Clusterings(k_range=(3, 4)" in repr(step)


def test_cache_keys_are_exact():
    assert cache_key(Embeddings(), "x") == cache_key(Embeddings(), "x")
    assert cache_key(Embeddings(random_state=1), "x") != cache_key(Embeddings(), "x")
    # no rounding: values that agree to 15 digits still differ
    assert cache_key(Embeddings(perplexity=30.0), "x") != cache_key(Embeddings(perplexity=30.000000000000004), "x")
    assert cache_key(Embeddings(), "x") != cache_key(Embeddings(), "y")
    a = np.arange(6, dtype=np.float32)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    b = a.copy()
    b[5] = np.nextafter(b[5], np.float32(10))
    assert fingerprint(a) != fingerprint(b)


def test_docstring_examples_run():
    import doctest

    from lrp_lightning.analysis import preprocessing, spray

    for module in (preprocessing, spray):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_the_checks_importable_from_analysis_base_keep_their_earlier_signatures():
    from lrp_lightning.analysis import base

    assert base.check_choice("all", "scope", ("flagged", "all"), "Embeddings") == "all"  # (value, name, choices, owner)
    with pytest.raises(ValueError, match=r"Embeddings: scope must be one of \['flagged', 'all'\], got 'some'"):
        base.check_choice("some", "scope", ("flagged", "all"), "Embeddings")
    assert base.check_int(0, "n", "Owner") == 0
    with pytest.raises(ValueError, match="Owner: n must be an int >= 0, got -1"):  # minimum=0 by default
        base.check_int(-1, "n", "Owner")
    assert base.check_float(0.5, "share", "Owner", 0.0, 1.0) == 0.5


def test_connecting_components_gives_scikit_learn_s_own_ward_clustering():
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering

    from lrp_lightning.analysis import planted_maps

    maps, _ = planted_maps(n_samples=150, n_groups=5, shape=(8, 8), noise=0.3, random_state=4)
    maps[:30] = 0.0  # identical maps: exact ties between candidate edges
    features = Preprocess(pool_size=(8, 8)).transform(maps)
    graph = KNNGraph(n_neighbors=3).graph(nearest_neighbors(features, 3))
    assert connected_components(graph)[0] > 3  # the case being tested: a graph of several components
    coordinates = spectral_coordinates(SpectralEmbedding(n_eigval=16).fit(graph).eigenvectors, 5)
    connected = connect_components(coordinates, graph)
    assert connected_components(connected)[0] == 1
    assert (abs(connected - connected.T) > 0).nnz == 0  # symmetric
    assert (graph.astype(bool) > connected.astype(bool)).nnz == 0  # every edge of the graph is kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that it completes the graph
        for k in (2, 5, 9):
            theirs = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=graph)
            ours = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=connected)
            np.testing.assert_array_equal(ours.fit_predict(coordinates), theirs.fit_predict(coordinates))
