"""SpRAy speed: lrp-lightning's analysis against CoRelAy 1.0.0's spectral pipeline, in one process.

**An epoch** (the default section; issue 15's budget: <= 3 s for 1,000 samples in 10 classes on 2 cores,
numba compilation excluded): a run with two epochs of 1,000 maps of 32x32 in 10 classes (planted
groups per class, a corner artifact on a quarter of class 3; the second epoch's maps changed a little)
is written through the store, then, interleaved, ``--epoch-repeats`` times each:

* ours: ``analyze_epoch(store, epoch, force=True)`` with the default ``SpRAy()``, on epoch 0 (cold
  t-SNE) and on epoch 1 (warm-started from epoch 0): reading the Parquet epoch, SpRAy on all samples
  and on each class (kNN graph, eigendecomposition, k-means 2..10, DBSCAN, HDBSCAN, agglomerative,
  components, indicators, tracking, t-SNE and UMAP of all samples and of the flagged classes, PCA of
  the others) and writing the four tables. The step memo is cleared before each run.
* CoRelAy (the oracle), on the same preprocessed maps of epoch 0, per category: ``SciPyPDist`` ->
  ``SparseKNN(n_neighbors=10)`` -> ``SymmetricNormalLaplacian`` -> ``EigenDecomposition(n_eigval=32)``
  -> ``KMeans(k)`` for k = 2..10, ``DBSCAN`` and ``AgglomerativeClustering`` on the eigenvectors
  (``HDBSCAN`` needs the ``hdbscan`` package, not installed: left out), and ``TSNEEmbedding`` plus
  ``UMAPEmbedding`` of the eigenvectors for the categories where ours computes them, ``PCAEmbedding``
  for the others. No file I/O, no indicators.

Reported per side: the median wall time with its spread (min-max) and the median CPU seconds of the
process (``time.process_time``: all its threads; less sensitive to other load on the machine than
wall time). Before timing, one untimed run of each side compiles numba (UMAP) and warms caches. Then
a fresh Python process analyses epoch 0 of the same run (numba's disk cache warm): its wall time from
start to finish, imports included (the first epoch of a new process, budget 15 s).

Both get the same preprocessed maps (N maps of 32x32, planted groups plus noise, unit L2 norm) and
the same task: a 32-nearest-neighbour graph, the 32 smallest eigenpairs of its normalised Laplacian,
k-means for k = 2..10, and a 2-D t-SNE.

* CoRelAy (the oracle): ``SciPyPDist`` (an N x N distance matrix) -> ``SparseKNN(n_neighbors=32)`` ->
  ``SymmetricNormalLaplacian`` -> ``EigenDecomposition(n_eigval=32)`` -> ``KMeans(k)`` on all 32
  eigenvectors, and ``TSNEEmbedding()`` of the eigenvectors, as in CoRelAy's SpRAy example. corelay
  comes with the ``bench`` extra (``pip install -e '.[test,bench]'``).
* Ours: ``KNNGraph(n_neighbors=32)`` -> ``SpectralEmbedding(n_eigval=32)`` -> ``Clusterings(k_range=(2, 10),
  methods=("kmeans",))`` and ``Embeddings(methods=("tsne",))``; then the same t-SNE warm-started from
  the previous epoch's layout (slightly changed maps), as the analysis does from the second epoch on.

The comparison runs with one BLAS/OpenMP thread on both sides by default (``--threads``): on a shared
machine, multi-threaded timings of either library vary by a factor of five from run to run.

Reported: wall time of the spectral part (graph, eigendecomposition, k-means sweep) and of t-SNE,
the peak of NumPy memory (tracemalloc) per part, the adjusted Rand index of the k-means labelling
with the planted number of groups, and t-SNE's trustworthiness (scikit-learn, 10 neighbours, measured
in the preprocessed-map space, the same for both).

``--large N`` runs only ours on N maps (e.g. 100000) in a child process, streaming generation and
preprocessing in batches, and reports the time of spectral embedding + k-means sweep + UMAP and the
child's peak resident memory.

**Parts** (``--parts``): the spectral part and t-SNE alone, on N maps (below).

Usage::

    python benchmarks/spray_speed.py                   # an epoch of 1000 maps in 10 classes, CoRelAy vs ours
    python benchmarks/spray_speed.py --parts           # + the parts on N=4000 maps
    python benchmarks/spray_speed.py --large 100000    # + the large run (ours only)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

GROUPS = 8
NOISE = 3.0
SHAPE = (32, 32)


def make_features(n: int, seed: int = 0, batch: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Planted maps, generated and preprocessed batch by batch (as the analysis streams row groups)."""
    from lrp_lightning.analysis import Preprocess
    from lrp_lightning.analysis.synthetic import planted_patterns

    patterns = planted_patterns(GROUPS, SHAPE, random_state=seed)
    rng = np.random.default_rng(seed + 1)
    groups = rng.integers(0, GROUPS, size=n)
    envelope_max = 1.0
    features = np.empty((n, SHAPE[0] * SHAPE[1]), np.float32)
    step = Preprocess(pool_size=SHAPE, normalize="l2")
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        maps = patterns[groups[start:stop]] * rng.uniform(0.5, 1.5, size=(stop - start, 1, 1)).astype(np.float32)
        maps += (NOISE * envelope_max) * rng.standard_normal(size=maps.shape, dtype=np.float32)
        features[start:stop] = step.transform(maps)
    return features, groups


def timed(function: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """Run ``function`` ``repeats`` times; return the last result and the median wall seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def traced_peak(function: Callable[[], Any]) -> float:
    """Peak NumPy/Python memory (tracemalloc, MB) of one more run (separate from timing: tracing slows)."""
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


# ---------------------------------------------------------------------------------------------- CoRelAy


def corelay_pipeline() -> tuple[str, Callable, Callable]:
    """CoRelAy's processors (corelay is a peer: installed by the ``bench`` extra, never by the library)."""
    try:
        from corelay.processor.affinity import SparseKNN
        from corelay.processor.clustering import KMeans
        from corelay.processor.distance import SciPyPDist
        from corelay.processor.embedding import EigenDecomposition, TSNEEmbedding
        from corelay.processor.laplacian import SymmetricNormalLaplacian
        from corelay.version import __version__ as version

        def spectral(data: np.ndarray) -> dict[int, np.ndarray]:
            distances = SciPyPDist(metric="euclidean")(data)
            affinity = SparseKNN(n_neighbors=32, symmetric=True)(distances)
            laplacian = SymmetricNormalLaplacian()(affinity)
            _, eigenvectors = EigenDecomposition(n_eigval=32)(laplacian)
            spectral.eigenvectors = eigenvectors
            return {k: KMeans(n_clusters=k)(eigenvectors) for k in range(2, 11)}

        def tsne(eigenvectors: np.ndarray) -> np.ndarray:
            return TSNEEmbedding()(eigenvectors)

        return f"corelay {version}", spectral, tsne
    except ImportError as error:
        raise SystemExit(
            "benchmarks/spray_speed.py compares against corelay 1.0.0, which is not installed: "
            "pip install -e '.[test,bench]' (or run with --large N only)"
        ) from error


# ---------------------------------------------------------------------------------------------- ours


def ours() -> tuple[Callable, Callable]:
    from lrp_lightning.analysis import Clusterings, Embeddings, KNNGraph, SpectralEmbedding

    affinity = KNNGraph(n_neighbors=32)
    spectral_step = SpectralEmbedding(n_eigval=32)
    clusterings = Clusterings(k_range=(2, 10), methods=("kmeans",))
    embeddings = Embeddings(methods=("tsne",))

    def spectral(data: np.ndarray) -> dict[int, np.ndarray]:
        neighbors = affinity.neighbors(data, 32)
        graph = affinity.graph(neighbors)
        spectrum = spectral_step.fit(graph)
        result = clusterings.fit(spectrum, graph)
        spectral.eigengap_k = result.eigengap_k
        return {int(name.split("_")[1]): labels for name, labels in result.labelings.items()}

    def tsne(data: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        return embeddings.fit_transform(data, init={"tsne": init})["tsne"]

    return spectral, tsne


def compare(n: int, repeats: int = 3, tsne_repeats: int = 2) -> dict[str, Any]:
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import adjusted_rand_score

    data, groups = make_features(n)
    # the next epoch: the same samples, their maps changed a little
    rng = np.random.default_rng(7)
    changed = data + 0.3 * data.std() * rng.standard_normal(size=data.shape, dtype=np.float32)
    changed /= np.linalg.norm(changed, axis=1, keepdims=True)
    name, their_spectral, their_tsne = corelay_pipeline()
    our_spectral, our_tsne = ours()
    report: dict[str, Any] = {"n": n, "oracle": name}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # interleaved, median of `repeats` runs each: the machine's load hits both alike
        their_times, our_times = [], []
        for _ in range(repeats):
            their_labels, seconds = timed(lambda: their_spectral(data))
            their_times.append(seconds)
            our_labels, seconds = timed(lambda: our_spectral(data))
            our_times.append(seconds)
        report["corelay_spectral_s"], report["ours_spectral_s"] = np.median(their_times), np.median(our_times)
        report["corelay_spectral_mb"] = traced_peak(lambda: their_spectral(data))
        report["ours_spectral_mb"] = traced_peak(lambda: our_spectral(data))
        report["corelay_ari"] = adjusted_rand_score(groups, their_labels[GROUPS])
        report["ours_ari"] = adjusted_rand_score(groups, our_labels[GROUPS])
        report["ours_eigengap_k"] = our_spectral.eigengap_k

        their_times, our_times, warm_times = [], [], []
        for _ in range(tsne_repeats):  # interleaved as well
            their_layout, seconds = timed(lambda: their_tsne(their_spectral.eigenvectors))
            their_times.append(seconds)
            layout, seconds = timed(lambda: our_tsne(data))
            our_times.append(seconds)
            warm, seconds = timed(lambda start=layout: our_tsne(changed, start))
            warm_times.append(seconds)
        report["corelay_tsne_s"], report["ours_tsne_s"] = np.median(their_times), np.median(our_times)
        report["ours_tsne_warm_s"] = np.median(warm_times)
        report["corelay_trustworthiness"] = trustworthiness(data, their_layout, n_neighbors=10)
        report["ours_trustworthiness"] = trustworthiness(data, layout, n_neighbors=10)
        report["ours_trustworthiness_warm"] = trustworthiness(changed, warm, n_neighbors=10)
        cold = our_tsne(changed)  # the reference for the warm start: a cold start on the same maps
        report["ours_trustworthiness_warm_reference"] = trustworthiness(changed, cold, n_neighbors=10)
    report["spectral_speedup"] = report["corelay_spectral_s"] / report["ours_spectral_s"]
    report["tsne_speedup"] = report["corelay_tsne_s"] / report["ours_tsne_s"]
    report["tsne_warm_speedup"] = report["corelay_tsne_s"] / report["ours_tsne_warm_s"]
    return report


# ---------------------------------------------------------------------------------------------- an epoch

EPOCH_CLASSES = 10
ARTIFACT_CLASS = 3


def write_epoch_run(path: str, n: int, seed: int = 0) -> None:
    """A run of two epochs of ``n`` maps in 10 classes (a corner artifact on a quarter of class 3)."""
    from lrp_lightning.analysis import add_corner_artifact, planted_maps
    from lrp_lightning.store import RunStore, make_attribution_table

    store = RunStore.create(path, heatmap_shape=SHAPE, class_names=[f"c{i}" for i in range(EPOCH_CLASSES)])
    per_class = n // EPOCH_CLASSES
    maps, labels = [], []
    for label in range(EPOCH_CLASSES):
        class_maps, _ = planted_maps(per_class, 4, SHAPE, noise=1.0, random_state=100 * label + seed)
        if label == ARTIFACT_CLASS:
            class_maps = add_corner_artifact(class_maps, np.arange(per_class // 4), "top-left", share=0.5)
        maps.append(class_maps)
        labels.append(np.full(per_class, label))
    maps, labels = np.concatenate(maps), np.concatenate(labels)
    rng = np.random.default_rng(seed + 1)
    for epoch in (0, 1):
        if epoch:  # the next epoch: the same samples, their maps changed a little
            maps = maps + 0.2 * maps.std() * rng.standard_normal(maps.shape).astype(np.float32)
        rows = len(maps)
        table = make_attribution_table(
            epoch=epoch,
            global_step=100 * (epoch + 1),
            sample_id=np.arange(rows),
            label=labels,
            prediction=labels,
            target=labels,
            score=np.ones(rows),
            probability=np.full(rows, 0.9),
            relevance=maps,
        )
        store.write_epoch(epoch, 100 * (epoch + 1), table)


def corelay_epoch(features: np.ndarray, labels: np.ndarray, embedded: set[str]) -> Callable[[], None]:
    """CoRelAy's processors over the same categories as ours (see the module docstring)."""
    try:
        from corelay.processor.affinity import SparseKNN
        from corelay.processor.clustering import DBSCAN, AgglomerativeClustering, KMeans
        from corelay.processor.distance import SciPyPDist
        from corelay.processor.embedding import EigenDecomposition, PCAEmbedding, TSNEEmbedding, UMAPEmbedding
        from corelay.processor.laplacian import SymmetricNormalLaplacian
    except ImportError as error:
        raise SystemExit(
            "benchmarks/spray_speed.py compares against corelay 1.0.0, which is not installed: "
            "pip install -e '.[test,bench]'"
        ) from error
    from lrp_lightning.analysis.spectral import eigengap

    categories = {"all": np.arange(len(labels))}
    categories.update({f"class_{c}": np.flatnonzero(labels == c) for c in np.unique(labels)})

    def run() -> None:
        for name, rows in categories.items():
            data = features[rows]
            distances = SciPyPDist(metric="euclidean")(data)
            affinity = SparseKNN(n_neighbors=10, symmetric=True)(distances)
            laplacian = SymmetricNormalLaplacian()(affinity)
            values, vectors = EigenDecomposition(n_eigval=32)(laplacian)
            for k in range(2, 11):
                KMeans(n_clusters=k)(vectors)
            DBSCAN()(vectors)
            k = int(np.clip(eigengap(np.sort(np.asarray(values)))[0], 2, 10))
            AgglomerativeClustering(n_clusters=k)(vectors)
            if name in embedded:
                TSNEEmbedding()(vectors)
                UMAPEmbedding(metric="euclidean")(vectors)
            else:
                PCAEmbedding(n_components=2)(data)

    return run


def first_epoch_in_new_process(path: str) -> float:
    """Wall seconds of a fresh interpreter that imports the analysis and analyses epoch 0 (forced)."""
    script = f"from lrp_lightning.analysis import analyze_epoch\nanalyze_epoch({path!r}, 0, force=True)\n"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return time.perf_counter() - start


def compare_epoch(n: int, repeats: int) -> dict[str, Any]:
    import tempfile

    from lrp_lightning import store as S
    from lrp_lightning.analysis import SpRAy, analyze_epoch, clear_cache, load_analysis
    from lrp_lightning.store import RunStore

    def timed_cpu(function: Callable[[], Any]) -> tuple[Any, float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        result = function()
        return result, time.perf_counter() - start, time.process_time() - cpu

    report: dict[str, Any] = {"n": n, "repeats": repeats}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run")
        write_epoch_run(path, n)
        store = RunStore(path)
        spray = SpRAy()

        def ours(epoch: int) -> Callable[[], Any]:
            def run() -> Any:
                clear_cache()  # no step results carried over from the previous repeat
                return analyze_epoch(store, epoch, spray, force=True)

            return run

        ours(0)()  # untimed: compiles numba (UMAP), warms the caches; epoch 1 then warm-starts from it
        ours(1)()
        points = load_analysis(store, 0)["points"]
        x_tsne = points.column(S.embedding_columns("tsne")[0])
        embedded = set(points.filter(x_tsne.is_valid()).column(S.CATEGORY).to_pylist())
        report["embedded"] = sorted(embedded)
        labels, features = [], []
        for batch in store.iter_batches(0, [S.TARGET, S.RELEVANCE], batch_size=4096):
            labels.append(batch.column(0).to_numpy())
            features.append(spray.preprocess.transform(S.decode_relevance(batch.column(1), store.heatmap_shape)))
        labels, features = np.concatenate(labels), np.concatenate(features)
        theirs = corelay_epoch(features, labels, embedded)
        theirs()  # untimed: CoRelAy's UMAP compiles too
        times: dict[str, list[tuple[float, float]]] = {"ours_cold": [], "ours_warm": [], "corelay": []}
        for _ in range(repeats):  # interleaved: the machine's load hits every side alike
            for key, function in (("ours_cold", ours(0)), ("ours_warm", ours(1)), ("corelay", theirs)):
                _, wall, cpu = timed_cpu(function)
                times[key].append((wall, cpu))
        for key, values in times.items():
            walls, cpus = np.array(values).T
            report[key] = {
                "wall_median": float(np.median(walls)),
                "wall_min": float(walls.min()),
                "wall_max": float(walls.max()),
                "cpu_median": float(np.median(cpus)),
            }
        report["first_epoch_new_process_s"] = first_epoch_in_new_process(path)
    return report


def print_epoch(r: dict[str, Any], threads: int) -> None:
    print(
        f"An epoch: {r['n']} maps of 32x32 in {EPOCH_CLASSES} classes, {threads} thread(s), {r['repeats']} interleaved "
        f"runs each; t-SNE and UMAP of: {', '.join(r['embedded'])} (PCA for the other classes)"
    )
    print(f"{'':<40}{'wall median':>12}{'wall min-max':>16}{'CPU median':>12}")
    rows = [
        ("ours, epoch 0 (cold t-SNE)", r["ours_cold"]),
        ("ours, epoch 1 (warm-started)", r["ours_warm"]),
        ("CoRelAy 1.0.0 processors, epoch 0", r["corelay"]),
    ]
    for label, t in rows:
        spread = f"{t['wall_min']:.2f}-{t['wall_max']:.2f} s"
        print(f"{label:<40}{t['wall_median']:>10.2f} s{spread:>16}{t['cpu_median']:>10.2f} s")
    print(f"first epoch of a new process (imports included, numba cache warm): {r['first_epoch_new_process_s']:.1f} s")


# ---------------------------------------------------------------------------------------------- large


def large_child(n: int) -> dict[str, Any]:
    """Ours only, on n maps: spectral embedding + k-means sweep + UMAP reusing the kNN graph."""
    from sklearn.metrics import adjusted_rand_score

    from lrp_lightning.analysis import Clusterings, Embeddings, KNNGraph, SpectralEmbedding

    timings: dict[str, float] = {}
    start = time.perf_counter()
    data, groups = make_features(n)
    timings["generate_and_preprocess_s"] = time.perf_counter() - start
    affinity = KNNGraph(n_neighbors=10)
    embeddings = Embeddings(methods=("umap",))
    t0 = time.perf_counter()
    neighbors = affinity.neighbors(data, max(10, embeddings.neighbors_needed()))
    graph = affinity.graph(neighbors, 10)
    t1 = time.perf_counter()
    spectrum = SpectralEmbedding(n_eigval=32).fit(graph)
    t2 = time.perf_counter()
    result = Clusterings(k_range=(2, 10), methods=("kmeans",)).fit(spectrum, graph)
    t3 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embeddings.fit_transform(data, neighbors=neighbors)
    t4 = time.perf_counter()
    timings.update(
        knn_graph_s=t1 - t0,
        eigendecomposition_s=t2 - t1,
        kmeans_sweep_s=t3 - t2,
        umap_s=t4 - t3,
        total_s=t4 - t0,
    )
    return {
        "n": n,
        **timings,
        "eigengap_k": result.eigengap_k,
        "ari_planted": adjusted_rand_score(groups, result.labelings[f"kmeans_{GROUPS}"]),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def large(n: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="maps in the parts' comparison (default 4000)")
    parser.add_argument("--large", type=int, default=0, help="also run ours alone on this many maps, e.g. 100000")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/OpenMP threads in the comparison, both sides (default 1)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of the spectral part, median (default 3)")
    parser.add_argument("--tsne-repeats", type=int, default=2, help="runs of each t-SNE, median (default 2)")
    parser.add_argument("--large-only", action="store_true", help="skip the comparisons")
    parser.add_argument("--epoch-samples", type=int, default=1000, help="maps of the epoch (default 1000)")
    parser.add_argument(
        "--epoch-repeats", type=int, default=5, help="interleaved runs of each side on the epoch (default 5)"
    )
    parser.add_argument("--parts", action="store_true", help="also compare the spectral part and t-SNE on --n maps")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(large_child(args.child)))
        return
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
        f"comparison with {args.threads} thread(s) on both sides"
    )
    if not args.large_only:
        import sklearn.cluster  # noqa: F401 - load OpenMP and BLAS before limiting their threads
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads):
            r = compare_epoch(args.epoch_samples, args.epoch_repeats)
        print_epoch(r, args.threads)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.parts and not args.large_only:
        with threadpool_limits(args.threads):
            r = compare(args.n, args.repeats, args.tsne_repeats)
        print(
            f"SpRAy on N={r['n']} maps of 32x32 (kNN 32, 32 eigenvalues, k-means 2..10, t-SNE); oracle: {r['oracle']}"
        )
        print(f"{'part':<34}{'oracle':>12}{'ours':>12}{'speed-up':>10}")
        rows = [
            ("spectral (graph, eigen, k-means)", r["corelay_spectral_s"], r["ours_spectral_s"], "s"),
            ("t-SNE, cold start", r["corelay_tsne_s"], r["ours_tsne_s"], "s"),
            ("t-SNE, warm start (next epoch)", r["corelay_tsne_s"], r["ours_tsne_warm_s"], "s"),
        ]
        for label, theirs, our, unit in rows:
            print(f"{label:<34}{theirs:>11.2f}{unit}{our:>11.2f}{unit}{theirs / our:>9.1f}x")
        print(
            f"{'  peak NumPy memory, spectral':<34}{r['corelay_spectral_mb']:>10.0f}MB{r['ours_spectral_mb']:>10.0f}MB"
        )
        trust = (r["corelay_trustworthiness"], r["ours_trustworthiness"], r["ours_trustworthiness_warm"])
        print(f"{'t-SNE trustworthiness (10 nn)':<34}{trust[0]:>12.4f}{trust[1]:>12.4f}")
        reference = r["ours_trustworthiness_warm_reference"]
        print(f"{'  next epoch: warm vs cold start':<34}{'':>12}{trust[2]:>12.4f}   cold: {reference:.4f}")
        ari = f"ARI of k-means_{GROUPS} vs planted"
        print(f"{ari:<34}{r['corelay_ari']:>12.3f}{r['ours_ari']:>12.3f}   our eigengap: k={r['ours_eigengap_k']}")
    if args.large:
        r = large(args.large)
        print(
            f"\nours alone, N={r['n']}: spectral embedding + k-means sweep + UMAP in {r['total_s']:.1f} s "
            f"(kNN graph {r['knn_graph_s']:.1f} s, eigendecomposition {r['eigendecomposition_s']:.1f} s, "
            f"k-means 2..10 {r['kmeans_sweep_s']:.1f} s, UMAP {r['umap_s']:.1f} s); peak RSS {r['peak_rss_gb']:.2f} GB "
            f"(including generating the maps, {r['generate_and_preprocess_s']:.1f} s); eigengap k={r['eigengap_k']}, "
            f"ARI of k-means_{GROUPS} {r['ari_planted']:.3f}"
        )


if __name__ == "__main__":
    main()
