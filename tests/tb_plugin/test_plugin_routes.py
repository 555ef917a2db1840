"""Every route of the LRP plugin through TensorBoard's WSGI app: values, validation, damaged files."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from plugin_testing import BROKEN, DAMAGED, FUTURE, GOOD, ODD, PLAIN, PREFIX, make_app, route
from synthetic_runs import (
    CLUSTERING,
    CONFIG_HASH,
    EMBEDDING_CONFIG,
    SPECTRAL_DIMS,
    STRAY_FINDING,
    WATERMARK_FINDING,
    build_run,
)

from lrp_lightning import image as lrp_image
from lrp_lightning.store import (
    CLUSTERS_TABLE,
    POINTS_TABLE,
    RunStore,
    cluster_column,
    decode_relevance,
    embedding_columns,
    make_attribution_table,
    make_probe_table,
)
from lrp_lightning.tb_plugin import discovery
from lrp_lightning.tb_plugin.data import ByteLRU, compact_int, decode_columns, encode_columns


def ok(client, url: str):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True))
    return response


def error(client, url: str, status: int):
    response = client.get(url)
    text = response.get_data(as_text=True)
    assert response.status_code == status, (url, response.status_code, text)
    return text


def png(response) -> np.ndarray:
    assert response.headers["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.data)))


def columns(response) -> tuple[dict[str, np.ndarray], dict]:
    assert response.headers["Content-Type"] == "application/octet-stream"
    return decode_columns(response.data)


# ------------------------------------------------------------------------------------------ wiring


def test_entry_point_names_the_loader_and_tensorboard_lists_the_tab(client):
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="tensorboard_plugins") if e.name == "lrp"]
    assert entry.value == "lrp_lightning.tb_plugin.loader:LRPPluginLoader"
    listing = json.loads(ok(client, "/data/plugins_listing").data)
    assert listing["lrp"]["enabled"] is True
    assert listing["lrp"]["tab_name"] == "LRP"
    assert listing["lrp"]["loading_mechanism"] == {"type": "IFRAME", "module_path": f"{PREFIX}/bundle.js"}


def test_entry_point_module_imports_nothing_heavy_and_works_without_tensorflow(tmp_path):
    build_run(tmp_path / "run", epochs=1, samples=6)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # `import tensorflow` fails, as on a machine without it
        from lrp_lightning.tb_plugin.loader import LRPPluginLoader
        heavy = sorted(m for m in ("torch", "lightning", "numpy", "pyarrow", "PIL", "lrp_lightning.store")
                       if m in sys.modules)
        from tensorboard.plugins import base_plugin
        plugin = LRPPluginLoader().load(base_plugin.TBContext(logdir={str(tmp_path)!r}))
        plugin.index.wait_ready(10)
        print(heavy, plugin.is_active(), "torch" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True", "False"]


def test_loader_returns_no_plugin_when_the_plugin_cannot_be_imported(monkeypatch, caplog):
    from tensorboard.plugins import base_plugin

    from lrp_lightning.tb_plugin.loader import LRPPluginLoader

    monkeypatch.setitem(sys.modules, "lrp_lightning.tb_plugin.plugin", None)
    assert LRPPluginLoader().load(base_plugin.TBContext(logdir="/nonexistent")) is None
    assert "could not be imported" in caplog.text


STATIC = Path(__file__).resolve().parents[2] / "tb_plugin" / "static"
STATIC_FILES = sorted(path for path in STATIC.rglob("*") if path.is_file())


def test_static_frontend_is_served_and_uses_no_inline_script_or_html_parsing(client):
    static = STATIC
    assert (static / "views" / "gallery.js") in STATIC_FILES  # the view modules' folder is served too
    for path in STATIC_FILES:
        response = ok(client, f"{PREFIX}/{path.relative_to(static).as_posix()}")
        assert response.data == path.read_bytes()
    assert ok(client, f"{PREFIX}/index.js").headers["Content-Type"].startswith("text/javascript")
    html = ok(client, f"{PREFIX}/index.html")
    assert "script-src" in html.headers["Content-Security-Policy"]
    text = html.get_data(as_text=True)
    assert text.count("<script") == text.count('<script type="module" src=')  # no inline script
    for path in static.rglob("*.js"):
        source = path.read_text()
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert forbidden not in source, (path.name, forbidden)
        # Nothing from another origin: the only absolute URL is the SVG namespace.
        assert set(re.findall(r"https?://[^\s\"'`]+", source)) <= {"http://www.w3.org/2000/svg"}, path.name


# ------------------------------------------------------------------------------------------ runs


def test_runs_lists_every_store_and_says_why_a_run_cannot_be_read(client, logdir):
    runs = {r["run"]: r for r in json.loads(ok(client, route("runs")).data)["runs"]}
    assert sorted(runs) == sorted([GOOD, PLAIN, DAMAGED, ODD, BROKEN, FUTURE])
    assert runs[GOOD] == {"run": GOOD, "epochs": 4, "error": None}
    assert "not valid JSON" in runs[BROKEN]["error"]
    assert "format 3.0" in runs[FUTURE]["error"] and "Upgrade lrp-lightning" in runs[FUTURE]["error"]
    assert "broken/plugins/lrp/manifest.json" in runs[BROKEN]["error"]
    assert str(logdir) not in json.dumps(runs)  # paths relative to the logdir only


def test_run_info_has_metadata_epochs_analysis_flags_and_colour_maps(client, logdir):
    info = json.loads(ok(client, route("run", run=GOOD)).data)
    store = RunStore(logdir / GOOD)
    assert info["class_names"] == ["digit 0", "digit 1", "digit 2"]
    assert info["heatmap_shape"] == [8, 8]
    assert info["thumbnails"] is True
    assert [e["epoch"] for e in info["epochs"]] == [0, 1, 2, 3]
    assert [e["analysis"] for e in info["epochs"]] == [True, True, False, True]
    assert [e["version"] for e in info["epochs"]] == [e.commit[:12] for e in store.epochs()]
    assert info["colormaps"] == sorted(lrp_image.COLOR_MAPS) and info["default_cmap"] in info["colormaps"]
    assert json.loads(ok(client, route("run", run=PLAIN)).data)["thumbnails"] is False


# ------------------------------------------------------------------------------------------ heatmap views


def test_samples_are_the_stored_values_as_binary_columns(client, logdir):
    response = ok(client, route("samples", run=GOOD, epoch=2))
    values, meta = columns(response)
    table = RunStore(logdir / GOOD).attributions(2)
    for name in ("sample_id", "label", "prediction", "target"):
        np.testing.assert_array_equal(values[name], table.column(name).to_numpy())
    for name in ("score", "probability", "relevance_sum"):
        np.testing.assert_array_equal(values[name], table.column(name).to_numpy())
    assert meta == {"run": GOOD, "epoch": 2, "global_step": 30, "ids_exact": True, "metadata": {}}


def test_samples_carry_the_probe_metadata_of_each_sample_as_json_values(tmp_path):
    build_run(tmp_path / "meta", epochs=2, samples=30, analysed=[], metadata=True)
    build_run(tmp_path / "plain", epochs=1, samples=6, analysed=[])
    odd = RunStore.create(tmp_path / "odd", heatmap_shape=(2, 2))
    odd.write_probe(
        make_probe_table(
            sample_id=[1, 2, 3],
            dataset_index=[1, 2, 3],
            label=[0, 1, 0],
            metadata={
                "kind": pa.array(["cat", "dog", "cat"]).dictionary_encode(),
                "weight": [np.inf, -0.5, None],
                "count": pa.array([None, 2**40, 3], pa.int64()),
                "tags": [[1], [2, 3], []],  # nested: left out
                "raw": [b"x", b"y", b"z"],  # binary: left out
            },
        )
    )
    odd.write_epoch(  # rows in another order than the probe set, and one not in it: values follow the ids
        0, 1, make_attribution_table(
            epoch=0, global_step=1, sample_id=[3, 1, 9], label=[0, 0, 1], prediction=[0, 1, 1], target=[0, 0, 1],
            score=[0.5, 0.1, 0.2], probability=[0.6, 0.5, 0.5], relevance=np.ones((3, 2, 2), np.float32),
        ),
    )  # fmt: skip
    client, _ = make_app(tmp_path)

    values, meta = columns(ok(client, route("samples", run="meta", epoch=1)))
    ids = values["sample_id"].tolist()
    assert sorted(meta["metadata"]) == ["batch", "brightness", "source", "watermarked"]
    assert all(len(column) == len(ids) for column in meta["metadata"].values())
    by_id = {name: dict(zip(ids, column)) for name, column in meta["metadata"].items()}
    stored = {row["sample_id"]: row for row in RunStore(tmp_path / "meta").probe_table().to_pylist()}
    for sample_id in ids:
        assert by_id["watermarked"][sample_id] is stored[sample_id]["watermarked"]
    assert any(by_id["watermarked"].values()) and not all(by_id["watermarked"].values())
    assert by_id["source"][7] == "scan" and by_id["source"][10] == "photo"
    assert [by_id["batch"][sample_id] for sample_id in (7, 10, 13)] == [2, 0, 1]
    assert by_id["brightness"][7] is None  # NaN: null, which JSON.parse reads
    assert by_id["brightness"][10] == pytest.approx(10 / 97 + 10e-4)

    values, meta = columns(ok(client, route("samples", run="odd", epoch=0)))
    assert values["sample_id"].tolist() == [3, 1, 9]
    assert meta["metadata"] == {"kind": ["cat", "cat", None], "weight": [None, None, None], "count": [3, None, None]}

    _, meta = columns(ok(client, route("samples", run="plain", epoch=0)))
    assert meta["metadata"] == {}


def test_binary_responses_are_gzipped_for_clients_that_accept_it(client):
    url = route("samples", run=GOOD, epoch=0)
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == client.get(url).data


@pytest.mark.parametrize("cmap", ["bwr", "coldnhot"])
def test_heatmap_png_is_the_stored_map_rendered_with_the_colour_map(client, logdir, cmap):
    store = RunStore(logdir / GOOD)
    _, maps = store.heatmaps(3, [10])
    pixels = png(ok(client, route("heatmap", run=GOOD, epoch=3, sample=10, cmap=cmap)))
    np.testing.assert_array_equal(pixels, np.asarray(lrp_image.heatmap(maps[0], cmap=cmap)))


def test_overlay_blends_the_heatmap_over_the_stored_input(client, logdir):
    store = RunStore(logdir / GOOD)
    _, maps = store.heatmaps(1, [7])
    thumbnail = store.probe_table().to_pylist()[0]["thumbnail"]
    base = np.asarray(Image.open(io.BytesIO(thumbnail)).convert("RGB"))
    expected = np.asarray(lrp_image.overlay(base, maps[0], alpha=0.5, cmap="bwr"))
    pixels = png(ok(client, route("heatmap", run=GOOD, epoch=1, sample=7, kind="overlay")))
    np.testing.assert_array_equal(pixels, expected)


def test_input_is_the_stored_thumbnail_and_missing_thumbnails_are_404(client, logdir):
    thumbnail = RunStore(logdir / GOOD).probe_table().to_pylist()[1]["thumbnail"]
    assert ok(client, route("input", run=GOOD, sample=10)).data == thumbnail
    assert "no input thumbnail" in error(client, route("input", run=PLAIN, sample=7), 404)
    assert "not a PNG" in error(client, route("input", run=ODD, sample=1), 404)
    assert "no input thumbnail" in error(client, route("heatmap", run=PLAIN, epoch=0, sample=7, kind="overlay"), 404)


def test_non_finite_relevance_is_marked_instead_of_drawn_blank(client):
    from lrp_lightning.tb_plugin.data import NONFINITE_COLORS

    pixels = png(ok(client, route("heatmap", run=ODD, epoch=0, sample=1, cmap="bwr")))
    assert pixels.shape == (4, 4, 3)
    assert tuple(pixels[0, 0]) == NONFINITE_COLORS[0] and tuple(pixels[1, 1]) == NONFINITE_COLORS[0]  # NaN, inf
    assert tuple(pixels[0, 1]) == tuple(lrp_image.COLOR_MAPS["bwr"].palette()[255])  # finite pixels as before


def test_timeline_holds_one_sample_in_every_epoch(client, logdir):
    timeline = json.loads(ok(client, route("timeline", run=GOOD, sample=13)).data)
    store = RunStore(logdir / GOOD)
    assert timeline["epoch"] == [0, 1, 2, 3]
    assert timeline["global_step"] == [10, 20, 30, 40]
    for position, epoch in enumerate(timeline["epoch"]):
        row = [r for r in store.attributions(epoch).to_pylist() if r["sample_id"] == 13][0]
        assert timeline["prediction"][position] == row["prediction"]
        assert timeline["score"][position] == pytest.approx(row["score"], rel=1e-7)
    assert timeline["label"] == 2
    assert "in no complete epoch" in error(client, route("timeline", run=GOOD, sample=8), 404)


def test_epoch_maps_are_cached_and_a_rewritten_epoch_is_never_served_stale(tmp_path):
    store = build_run(tmp_path / "run", epochs=1, samples=6, analysed=[])
    client, plugin = make_app(tmp_path)
    url = route("heatmap", run="run", epoch=0, sample=7)
    first = ok(client, url).data
    hits = plugin.data.cache.hits
    assert ok(client, url).data == first and plugin.data.cache.hits == hits + 1
    table = store.attributions(0)
    maps = -decode_relevance(table.column("relevance"), (8, 8))  # flipped sign: other colours
    rows = {name: table.column(name).to_numpy() for name in ("sample_id", "label", "prediction", "target", "score")}
    store.write_epoch(0, 10, make_attribution_table(epoch=0, global_step=10, probability=0.5, relevance=maps, **rows))
    assert ok(client, url).data != first


def test_new_epochs_appear_at_once_and_new_runs_after_a_rescan(tmp_path):
    build_run(tmp_path / "a", epochs=1, samples=6, analysed=[])
    client, plugin = make_app(tmp_path)
    assert [e["epoch"] for e in json.loads(ok(client, route("run", run="a")).data)["epochs"]] == [0]
    build_run(tmp_path / "a", epochs=2, samples=6, analysed=[])  # the running training commits epoch 1
    assert [e["epoch"] for e in json.loads(ok(client, route("run", run="a")).data)["epochs"]] == [0, 1]
    ok(client, route("heatmap", run="a", epoch=1, sample=7))
    build_run(tmp_path / "b", epochs=1, samples=6, analysed=[])
    error(client, route("run", run="b"), 404)
    plugin.index.scan_now()
    assert [r["run"] for r in json.loads(ok(client, route("runs")).data)["runs"]] == ["a", "b"]


def test_is_active_never_waits_for_a_scan(tmp_path, monkeypatch):
    build_run(tmp_path / "run", epochs=1, samples=6, analysed=[])
    release = threading.Event()
    real = discovery.find_runs

    def slow(root):
        release.wait(10)
        return real(root)

    monkeypatch.setattr(discovery, "find_runs", slow)
    index = discovery.RunIndex(tmp_path)
    started = time.perf_counter()
    assert index.is_active() is False
    assert time.perf_counter() - started < 0.05
    release.set()
    assert index.wait_ready(10) and index.is_active() is True
    assert discovery.RunIndex(None).is_active() is False
    assert discovery.RunIndex("gs://bucket/logs").is_active() is False


# ------------------------------------------------------------------------------------------ analysis views


def test_analysis_summary_lists_categories_spectra_embeddings_and_clusterings(client):
    summary = json.loads(ok(client, route("analysis", run=GOOD, epoch=1)).data)
    assert summary["config_hash"] == CONFIG_HASH
    assert summary["embeddings"] == ["tsne", "umap", "spectral"]
    assert summary["clusterings"] == [CLUSTERING]
    assert summary["grid_shape"] == [4, 4]
    assert summary["embedding_config"] == EMBEDDING_CONFIG  # from the points table's analysis config
    categories = {c["category"]: c for c in summary["categories"]}
    assert sorted(categories) == ["all", "class_0", "class_1", "class_2"]
    assert categories["all"]["eigengap_k"] == 4 and categories["class_1"]["eigengap_k"] == 1
    assert categories["all"]["spectral_dims"] == SPECTRAL_DIMS
    assert categories["class_2"]["class_name"] == "digit 2"
    assert categories["all"]["clusterings"] == [CLUSTERING]
    # every category laid out in every embedding
    assert all(c["embeddings"] == ["tsne", "umap", "spectral"] for c in summary["categories"])
    assert "no analysis yet" in error(client, route("analysis", run=GOOD, epoch=2), 404)
    assert "lrp-analyze" in error(client, route("analysis", run=PLAIN, epoch=0), 404)


def test_each_category_lists_the_embeddings_that_hold_its_points(tmp_path):
    # Embeddings(scope="flagged"): t-SNE and UMAP for all samples and the flagged class 0, PCA for every category.
    build_run(tmp_path / "run", epochs=1, samples=30, pca_only=[1, 2])
    client, _ = make_app(tmp_path)
    summary = json.loads(ok(client, route("analysis", run="run", epoch=0)).data)
    assert summary["embeddings"] == ["tsne", "umap", "pca", "spectral"]
    per_category = {c["category"]: c["embeddings"] for c in summary["categories"]}
    assert per_category == {
        "all": ["tsne", "umap", "pca", "spectral"],
        "class_0": ["tsne", "umap", "pca", "spectral"],
        "class_1": ["pca", "spectral"],
        "class_2": ["pca", "spectral"],
    }
    # Each listed embedding serves the category's points, all of them placed.
    for category, methods in per_category.items():
        for method in methods:
            url = route("embedding", run="run", epoch=0, category=category, embedding=method)
            values, meta = columns(ok(client, url))
            assert values["x"].size == 10 * (3 if category == "all" else 1)
            assert np.isfinite(values["x"]).all() and np.isfinite(values["y"]).all() and meta["bounds"] is not None
    # One that is not listed is refused with the reason and what the category has, not sent as empty points.
    text = error(client, route("embedding", run="run", epoch=0, category="class_1", embedding="tsne"), 400)
    assert "'tsne' was not computed for category 'class_1' in epoch 0" in text
    assert "--embeddings all" in text and "['pca', 'spectral']" in text


@pytest.mark.parametrize("category", ["all", "class_0"])
def test_embedding_points_are_the_analysis_table_as_binary_columns(client, logdir, category):
    table = RunStore(logdir / GOOD).read_analysis_table(3, POINTS_TABLE)
    table = table.filter(pc.equal(table.column("category"), category))
    rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names[1:5]}
    rows.update({name: table.column(name).to_numpy() for name in table.column_names[7:]})
    url = route("embedding", run=GOOD, epoch=3, category=category, embedding="umap", clustering=CLUSTERING)
    response = ok(client, url)
    values, meta = columns(response)
    x_name, y_name = embedding_columns("umap")
    np.testing.assert_array_equal(values["sample_id"], rows["sample_id"])
    np.testing.assert_array_equal(values["x"], rows[x_name])
    np.testing.assert_array_equal(values["y"], rows[y_name])
    np.testing.assert_array_equal(values["cluster"], rows[cluster_column(CLUSTERING)])
    np.testing.assert_array_equal(values["label"], rows["label"])
    assert values["x"].dtype == np.float32 and values["sample_id"].dtype == np.int16
    x, y = values["x"], values["y"]
    assert meta["bounds"] == [float(x.min()), float(x.max()), float(y.min()), float(y.max())]


def test_spectral_embedding_uses_the_chosen_eigenvectors(client, logdir):
    table = RunStore(logdir / GOOD).read_analysis_table(0, POINTS_TABLE)
    spectral = np.array(table.column("spectral").to_pylist(), dtype=np.float32)[
        np.asarray(table.column("category").to_pylist()) == "all"
    ]
    url = route("embedding", run=GOOD, epoch=0, category="all", embedding="spectral", x=3, y=0)
    values, meta = columns(ok(client, url))
    np.testing.assert_array_equal(values["x"], spectral[:, 3])
    np.testing.assert_array_equal(values["y"], spectral[:, 0])
    assert "cluster" not in values and meta["x_dim"] == 3
    text = error(client, route("embedding", run=GOOD, epoch=0, category="all", embedding="spectral", x=4, y=0), 400)
    assert "has 4 dimensions" in text


def test_clusters_carry_indicators_flags_and_lineage(client):
    result = json.loads(ok(client, route("clusters", run=GOOD, epoch=3, category="all", clustering=CLUSTERING)).data)
    clusters = {c["cluster"]: c for c in result["clusters"]}
    assert sorted(clusters) == [0, 1, 2, 3]
    flagged = [c for c in clusters.values() if c["flagged"]]
    assert [c["cluster"] for c in flagged] == [3]
    assert flagged[0]["flag_reason"] == "75% of the relevance lies in the top-left corner"
    assert clusters[0]["event"] == "continued" and clusters[0]["previous_cluster"] == 0
    assert sum(c["size"] for c in clusters.values()) == 45
    assert clusters[1]["purity"] == 1.0 and clusters[1]["has_prototype"] is True


def test_prototype_png_is_the_cluster_mean_on_the_analysis_grid(client, logdir):
    table = RunStore(logdir / GOOD).read_analysis_table(1, CLUSTERS_TABLE).to_pylist()
    row = [r for r in table if r["category"] == "all" and r["cluster"] == 2][0]
    grid = np.asarray(row["prototype"], dtype=np.float64).reshape(4, 4)
    url = route("prototype", run=GOOD, epoch=1, category="all", clustering=CLUSTERING, cluster=2, cmap="coldnhot")
    np.testing.assert_array_equal(png(ok(client, url)), np.asarray(lrp_image.heatmap(grid, cmap="coldnhot")))
    url = route("prototype", run=GOOD, epoch=1, category="all", clustering=CLUSTERING, cluster=9)
    assert "no cluster 9" in error(client, url, 404)


def test_lineage_spans_the_analysed_epochs_and_names_the_others(client):
    lineage = json.loads(ok(client, route("lineage", run=GOOD, category="class_0", clustering=CLUSTERING)).data)
    assert [e["epoch"] for e in lineage["epochs"]] == [0, 1, 3]
    assert lineage["missing"] == [2]
    first, later = lineage["epochs"][0]["clusters"], lineage["epochs"][2]["clusters"]
    assert [c["event"] for c in first] == ["born", "born"]
    assert [c["sources"] for c in later] == [[0], [1]]
    assert [c["flagged"] for c in later] == [False, True]


# ------------------------------------------------------------------------------------------ damaged files


def test_a_damaged_epoch_is_a_404_for_that_epoch_only_and_names_the_file_not_the_logdir(client, logdir):
    text = error(client, route("samples", run=DAMAGED, epoch=1), 404)
    assert "cannot be read" in text and "part-00000.parquet" in text
    assert str(logdir) not in text
    error(client, route("heatmap", run=DAMAGED, epoch=1, sample=7), 404)
    ok(client, route("samples", run=DAMAGED, epoch=0))
    ok(client, route("heatmap", run=DAMAGED, epoch=2, sample=7))
    timeline = json.loads(ok(client, route("timeline", run=DAMAGED, sample=7)).data)
    assert timeline["epoch"] == [0, 2]
    assert [u["epoch"] for u in timeline["unreadable"]] == [1]
    assert "cannot be read" in timeline["unreadable"][0]["error"]


def test_a_damaged_analysis_table_is_a_404_for_that_epoch(client, logdir):
    info = json.loads(ok(client, route("run", run=DAMAGED)).data)
    epochs = {e["epoch"]: e for e in info["epochs"]}
    assert epochs[0]["analysis"] is True  # spectrum fine, points damaged
    assert epochs[2]["analysis"] is False and "spectrum/epoch_000002.parquet" in epochs[2]["analysis_error"]
    assert str(logdir) not in epochs[2]["analysis_error"]
    text = error(client, route("embedding", run=DAMAGED, epoch=0, category="all", embedding="tsne"), 404)
    assert "'points'" in text and "cannot be read" in text
    assert "cannot be read" in error(client, route("analysis", run=DAMAGED, epoch=2), 404)


def test_a_manifest_with_a_bad_heatmap_shape_is_404_not_a_server_error(tmp_path):
    store = build_run(tmp_path / "run", epochs=1, samples=6, analysed=[])
    manifest = json.loads((store.store_dir / "manifest.json").read_text())
    manifest["heatmap_shape"] = [0, 5]
    (store.store_dir / "manifest.json").write_text(json.dumps(manifest))
    client, _ = make_app(tmp_path)
    for url in (route("heatmap", run="run", epoch=0, sample=7), route("samples", run="run", epoch=0)):
        assert "heatmap_shape" in error(client, url, 404)


def test_unreadable_runs_are_404_with_the_reason(client):
    assert "not valid JSON" in error(client, route("run", run=BROKEN), 404)
    assert "format 3.0" in error(client, route("samples", run=FUTURE, epoch=0), 404)


# ------------------------------------------------------------------------------------------ validation

TRAVERSALS = [
    "../",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "exp/../exp/version_0",
    "exp/version_0/..",
    "exp/version_0/../../..",
    "exp/version_0/plugins/lrp",
    "exp\\version_0",
    "%2e%2e%2f",
    "..%2F..%2Fetc",
    "exp/version_0%00",
    "file:///etc/passwd",
    "~",
    "~root",
    "./exp/version_0",
    "exp//version_0",
    "exp/version_0/",
    " exp/version_0",
    "C:\\Windows\\win.ini",
    "\\\\server\\share",
    "a" * 300,
]


@pytest.mark.parametrize("run", TRAVERSALS)
def test_run_must_be_one_the_plugin_found(client, logdir, run):
    for name, params in (
        ("run", {}),
        ("samples", {"epoch": 0}),
        ("heatmap", {"epoch": 0, "sample": 7}),
        ("input", {"sample": 7}),
        ("timeline", {"sample": 7}),
        ("analysis", {"epoch": 0}),
        ("embedding", {"epoch": 0, "category": "all"}),
        ("clusters", {"epoch": 0, "category": "all", "clustering": CLUSTERING}),
        ("prototype", {"epoch": 0, "category": "all", "clustering": CLUSTERING, "cluster": 0}),
        ("lineage", {"category": "all", "clustering": CLUSTERING}),
    ):
        response = client.get(route(name, run=run, **params))
        assert response.status_code in (400, 404), (name, run, response.status_code)
        assert str(logdir) not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/data/plugin/lrp/../../../etc/passwd",
        "/data/plugin/lrp/plugin.py",
        "/data/plugin/lrp/static/index.js",
        "/data/plugin/lrp/%2e%2e/plugin.py",
        "/data/plugin/lrp/index.js/../../data.py",
        "/data/plugin/lrp/..%2fdata.py",
        "/data/plugin/lrp/static%2f..%2fplugin.py",
        "/data/plugin/lrp/style.css%00.py",
        "/data/plugin/lrp/",
        "/data/plugin/lrp/INDEX.JS",
        "/data/plugin/lrp/index.js.bak",
    ],
)
def test_only_known_static_files_are_served(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/views/../plugin.py",
        "/views/%2e%2e/plugin.py",
        "/views/..%2fplugin.py",
        "/views/..%2f..%2fplugin.py",
        "/views/../../data.py",
        "/views/",
        "/views",
        "/views/index.js/../../plugin.py",
        "/views/gallery.js%00.py",
        "/views/GALLERY.JS",
        "/views/gallery.js.bak",
        "/static/views/gallery.js",
        "/views//gallery.js",
        "/views/../views/../../../etc/passwd",
        "/views%2f..%2fplugin.py",
    ],
)
def test_the_views_folder_serves_its_modules_and_nothing_above_it(client, path):
    assert ok(client, f"{PREFIX}/views/gallery.js").data == (STATIC / "views" / "gallery.js").read_bytes()
    assert client.get(PREFIX + path).status_code == 404, path


def test_package_data_ships_every_static_file():
    # A view module in a folder that pyproject's package-data misses would work in a checkout and
    # be absent from the wheel.
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the tomli backport (declared for it)
        import tomli as tomllib

    pyproject = tomllib.loads((STATIC.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lrp_lightning.tb_plugin"]
    shipped = {path for pattern in patterns for path in STATIC.parent.glob(pattern)}
    assert set(STATIC_FILES) <= shipped, sorted(str(p.relative_to(STATIC)) for p in set(STATIC_FILES) - shipped)


def test_every_route_is_registered_once_and_listed_in_the_module_docstring(served):
    from lrp_lightning.tb_plugin import plugin as plugin_module

    _, plugin = served
    apps = plugin.get_plugin_apps()
    routes = [path for path in apps if "." not in path]
    assert routes == [
        "/runs",
        "/run",
        "/first_view",
        "/samples",
        "/input",
        "/heatmap",
        "/timeline",
        "/analysis",
        "/embedding",
        "/clusters",
        "/prototype",
        "/prototype_values",
        "/lineage",
        "/findings",
        "/finding_map",
        "/finding_values",
        "/relevance",
        "/trajectory",
    ]
    table = re.findall(r"^``(/[a-z_]+)``", plugin_module.__doc__, flags=re.M)
    assert table == routes
    assert sorted(path for path in apps if "." in path) == sorted(
        ["/bundle.js", *("/" + path.relative_to(STATIC).as_posix() for path in STATIC_FILES)]
    )


def test_a_route_is_one_decorated_method_with_validation_and_errors(tmp_path):
    from tensorboard import errors
    from werkzeug.test import EnvironBuilder

    from lrp_lightning.tb_plugin import plugin as plugin_module

    with pytest.raises(ValueError, match="response must be one of"):
        plugin_module.route("/findings", "xml")
    with pytest.raises(ValueError, match="lower-case name"):
        plugin_module.route("/index.js", "json")

    class WithEcho(plugin_module.LRPPlugin):
        @plugin_module.route("/echo", "json")
        def _serve_echo(self, request):
            run = self._run(request)
            return {"run": run, "n": plugin_module._integer(request, "n", 0, 9)}

    build_run(tmp_path / "a", epochs=1, samples=6, analysed=[])
    plugin = WithEcho(_context(tmp_path))
    assert plugin.index.wait_ready(10)
    apps = plugin.get_plugin_apps()
    assert list(WithEcho.routes())[-1] == "/echo" and "/echo" not in plugin_module.LRPPlugin.routes()

    def call(query):
        environ = EnvironBuilder(path="/echo", query_string=query).get_environ()
        return b"".join(apps["/echo"](environ, lambda *args: None))

    assert json.loads(call("run=a&n=3")) == {"run": "a", "n": 3}
    with pytest.raises(errors.InvalidArgumentError, match="parameter 'n' must be in"):
        call("run=a&n=10")
    with pytest.raises(errors.NotFoundError, match="no run 'b'"):
        call("run=b&n=1")

    class Twice(plugin_module.LRPPlugin):
        @plugin_module.route("/echo", "json")
        def _one(self, request):
            return 1

        @plugin_module.route("/echo", "json")
        def _two(self, request):
            return 2

    with pytest.raises(ValueError, match="both serve '/echo'"):
        Twice.routes()


def _context(logdir):
    from tensorboard.plugins import base_plugin

    return base_plugin.TBContext(logdir=str(logdir))


ALL = {"run": GOOD, "epoch": 0, "category": "all"}
MALFORMED = [
    ("samples", {"run": GOOD}, "missing parameter 'epoch'"),
    ("samples", {"epoch": 0}, "missing parameter 'run'"),
    ("samples", {"run": GOOD, "epoch": "abc"}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": "1.5"}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": "1e3"}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": " 1"}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": ""}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": "0x1"}, "must be an integer"),
    ("samples", {"run": GOOD, "epoch": "-1"}, "must be in [0, 2147483647]"),
    ("samples", {"run": GOOD, "epoch": "99999999999999999999"}, "must be in"),
    ("samples", {"run": GOOD, "epoch": "9" * 400}, "at most 256 characters"),
    ("samples", {"run": "exp/version_0\x01", "epoch": 0}, "printable"),
    ("heatmap", {"run": GOOD, "epoch": 0, "sample": "nan"}, "must be an integer"),
    ("heatmap", {"run": GOOD, "epoch": 0, "sample": str(2**70)}, "must be in"),
    ("heatmap", {"run": GOOD, "epoch": 0, "sample": 7, "cmap": "jet"}, "parameter 'cmap' must be one of"),
    ("heatmap", {"run": GOOD, "epoch": 0, "sample": 7, "cmap": "00f,fff"}, "parameter 'cmap' must be one of"),
    ("heatmap", {"run": GOOD, "epoch": 0, "sample": 7, "kind": "../input"}, "parameter 'kind' must be one of"),
    ("embedding", {"run": GOOD, "epoch": 0, "category": "../all"}, "must be a name"),
    ("embedding", {"run": GOOD, "epoch": 0, "category": "class_9"}, "not analysed in epoch 0"),
    ("embedding", {**ALL, "embedding": "pca"}, "unknown embedding 'pca'"),
    ("embedding", {**ALL, "embedding": "tsne", "clustering": "dbscan"}, "unknown clustering"),
    ("embedding", {**ALL, "x": "-1"}, "must be in [0, 1023]"),
    ("embedding", {**ALL, "y": "5000"}, "must be in [0, 1023]"),
    ("clusters", ALL, "missing parameter 'clustering'"),
    ("clusters", {**ALL, "clustering": "x y"}, "must be a name"),
    ("prototype", {**ALL, "clustering": CLUSTERING, "cluster": "a"}, "integer"),
    ("prototype", {**ALL, "clustering": CLUSTERING, "cluster": "-2"}, "must be in"),
    ("findings", {}, "missing parameter 'run'"),
    ("finding_map", {"run": GOOD, "epoch": 0}, "missing parameter 'finding'"),
    ("finding_map", {"run": GOOD, "epoch": 0, "finding": ""}, "must be a finding id of 1 to 200"),
    ("finding_map", {"run": GOOD, "epoch": 0, "finding": "x" * 220}, "must be a finding id of 1 to 200"),
    ("finding_map", {"run": GOOD, "epoch": 0, "finding": "a\x07"}, "printable"),
    ("finding_map", {"run": GOOD, "epoch": "x", "finding": "a"}, "must be an integer"),
    ("finding_map", {"run": GOOD, "epoch": 0, "finding": "a", "cmap": "jet"}, "parameter 'cmap' must be one of"),
]


@pytest.mark.parametrize(("name", "params", "message"), MALFORMED)
def test_malformed_parameters_are_400_with_a_message(client, name, params, message):
    assert message in error(client, route(name, **params), 400)


ROUTES = ["run", "samples", "input", "heatmap", "timeline", "analysis", "embedding", "clusters", "prototype", "lineage",
          "findings", "finding_map", "finding_values", "relevance", "trajectory", "first_view"]  # fmt: skip
PARAMETERS = ["run", "epoch", "sample", "cmap", "kind", "category", "embedding", "x", "y", "clustering", "cluster",
              "finding", "bins"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(
        [
            GOOD,
            DAMAGED,
            ODD,
            "all",
            "class_0",
            CLUSTERING,
            "tsne",
            "spectral",
            "0",
            "3",
            "7",
            "-1",
            "",
            WATERMARK_FINDING.format(first=0),
        ]
    ),  # fmt: skip
    st.text(max_size=40),
    st.integers(-(2**70), 2**70).map(str),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(ROUTES), params=st.dictionaries(st.sampled_from(PARAMETERS), VALUES, max_size=8))
def test_no_request_gets_a_server_error(client, name, params):
    response = client.get(route(name, **params))
    assert response.status_code in (200, 400, 404), (name, params, response.get_data(as_text=True))


def test_repeated_parameters_are_refused(client):
    assert "given 2 times" in error(client, f"{PREFIX}/samples?run={GOOD}&epoch=0&epoch=1", 400)


def test_missing_items_are_404_with_what_exists(client):
    assert "complete epochs: [0, 1, 2, 3]" in error(client, route("samples", run=GOOD, epoch=7), 404)
    assert "not in epoch 0" in error(client, route("heatmap", run=GOOD, epoch=0, sample=8), 404)
    assert "not in the probe set" in error(client, route("input", run=GOOD, sample=8), 404)
    lineage = route("lineage", run=PLAIN, category="all", clustering=CLUSTERING)
    assert "no analysed epoch" in error(client, lineage, 404)


# ------------------------------------------------------------------------------------------ findings


def _watermarked(logdir: Path, run: str) -> list[int]:
    """Ids of the probe samples whose input carries the watermark (a white top-left 2x2 patch)."""
    probe = RunStore(logdir / run).probe_table().to_pylist()
    marked = []
    for row in probe:
        pixels = np.asarray(Image.open(io.BytesIO(row["thumbnail"])))
        if (pixels[:2, :2] == 255).all():
            marked.append(row["sample_id"])
    return sorted(marked)


def test_findings_lists_each_finding_with_its_lineage_members_and_reason(client, logdir):
    data = json.loads(ok(client, route("findings", run=GOOD)).data)
    assert data["run"] == GOOD and data["epochs"] == [0, 1, 3]  # epoch 2 is not analysed
    assert data["without_findings"] == [] and data["unreadable"] == [] and data["ids_exact"] is True
    watermark, stray = data["findings"]  # both seen last in epoch 3; the more significant first
    assert watermark["finding_id"] == WATERMARK_FINDING.format(first=0)
    assert stray["finding_id"] == STRAY_FINDING.format(last=3)
    assert watermark["member_ids"] == _watermarked(logdir, GOOD) and watermark["n_members"] >= 1
    assert (watermark["category"], watermark["category_name"], watermark["kind"]) == ("class_0", "digit 0", "artifact")
    assert (watermark["region"], watermark["first_epoch"], watermark["last_epoch"]) == ("top-left corner", 0, 3)
    assert watermark["epochs_seen"] == [0, 1, 3]
    history = watermark["history"]
    assert [entry["epoch"] for entry in history] == [0, 1, 3]
    # strength = share - rest_share, share growing with training: 0.2 + 0.6 * (epoch + 1) / 4, rest 0.05
    assert [entry["strength"] for entry in history] == pytest.approx([0.3, 0.45, 0.75])
    assert [entry["n_members"] for entry in history] == [watermark["n_members"]] * 3
    assert watermark["q_value"] == pytest.approx(4e-6) and watermark["strength"] == pytest.approx(0.75)
    assert watermark["reason"].startswith(f"{watermark['n_members']} of 15 samples of digit 0 put 80%")
    assert [entry["epoch"] for entry in stray["history"]] == [3] and stray["category_name"] == "digit 1"
    assert stray["n_members"] == 4 and stray["q_value"] == pytest.approx(0.02)


def test_findings_of_runs_without_them_are_an_empty_list_that_says_why(client, tmp_path):
    plain = json.loads(ok(client, route("findings", run=PLAIN)).data)  # no analysis at all
    assert (plain["findings"], plain["epochs"], plain["without_findings"]) == ([], [], [])
    damaged = json.loads(ok(client, route("findings", run=DAMAGED)).data)  # epoch 2's spectrum is garbage
    assert damaged["epochs"] == [0] and [f["last_epoch"] for f in damaged["findings"]] == [0]
    assert "no run 'nope'" in error(client, route("findings", run="nope"), 404)

    build_run(tmp_path / "old", epochs=2, samples=12, findings=False)  # analysed before findings existed
    store = build_run(tmp_path / "new", epochs=2, samples=12)
    (store.analysis_path(1, "findings")).write_bytes(b"garbage")
    fresh, _ = make_app(tmp_path)
    old = json.loads(ok(fresh, route("findings", run="old")).data)
    assert (old["findings"], old["epochs"], old["without_findings"]) == ([], [], [0, 1])
    assert "no findings table" in error(fresh, route("finding_map", run="old", epoch=0, finding="a"), 404)
    new = json.loads(ok(fresh, route("findings", run="new")).data)
    assert new["epochs"] == [0] and [u["epoch"] for u in new["unreadable"]] == [1]
    assert "findings of epoch 1" in new["unreadable"][0]["error"]
    assert [f["last_epoch"] for f in new["findings"]] == [0]


def test_findings_carry_the_runs_revisions_without_member_ids(tmp_path):
    from synthetic_runs import revision_record

    store = build_run(tmp_path / "revised", epochs=3, samples=12)
    record = revision_record(WATERMARK_FINDING.format(first=0), start_epoch=1, epochs=3)
    record["member_ids"] = [1, 2, 3]
    store.record_revisions([record])
    fresh, _ = make_app(tmp_path)
    (revision,) = json.loads(ok(fresh, route("findings", run="revised")).data)["revisions"]
    assert (revision["finding_id"], revision["method"], revision["status"]) == (
        record["finding_id"],
        "rrclarc",
        "revising",
    )
    assert (revision["found_epoch"], revision["start_epoch"], revision["cav_auc"]) == (0, 1, 0.97)
    assert [e["epoch"] for e in revision["epochs"]] == [0, 1, 2]
    assert [e["strength"] for e in revision["epochs"]] == pytest.approx([0.75, 0.05, 0.05])
    assert [e["artifact_sensitivity"] for e in revision["epochs"]] == [0.2, 0.01, 0.01]
    assert "member_ids" not in revision
    assert json.loads(ok(fresh, route("findings", run="revised")).data)["findings"]  # the findings are unchanged


def test_finding_map_is_the_mean_of_its_members_normalised_heatmaps(client, logdir):
    finding = WATERMARK_FINDING.format(first=0)
    members = _watermarked(logdir, GOOD)
    store = RunStore(logdir / GOOD)
    for epoch in (0, 3):
        _, maps = store.heatmaps(epoch, members)
        maps = maps.astype(np.float64)
        mean = (maps / np.abs(maps).sum(axis=(1, 2), keepdims=True)).mean(axis=0)
        for cmap in ("bwr", "coldnhot"):
            expected = np.asarray(lrp_image.heatmap(mean, cmap=cmap))
            picture = png(ok(client, route("finding_map", run=GOOD, finding=finding, epoch=epoch, cmap=cmap)))
            assert picture.shape == expected.shape == (8, 8, 3)
            np.testing.assert_array_equal(picture, expected)
    # The watermark's corner is where the mean map is red (bwr: relevance for the class).
    corner = png(ok(client, route("finding_map", run=GOOD, finding=finding, epoch=3)))[:2, :2].astype(int)
    assert (corner[..., 0] - corner[..., 2] > 100).all()
    assert "no finding 'nope' in epoch 3" in error(client, route("finding_map", run=GOOD, finding="nope", epoch=3), 404)
    stray = STRAY_FINDING.format(last=3)
    assert WATERMARK_FINDING.format(first=0) in error(
        client, route("finding_map", run=GOOD, finding=stray, epoch=0), 404
    )  # not seen in epoch 0: the message lists the epoch's findings
    assert "no findings table" in error(client, route("finding_map", run=GOOD, finding=finding, epoch=2), 404)
    assert "complete epochs" in error(client, route("finding_map", run=GOOD, finding=finding, epoch=9), 404)


def test_findings_of_a_run_that_the_real_pipeline_analysed(tmp_path, monkeypatch):
    # The contract between the analysis and the plugin: the pipeline's own findings table, read back.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "analysis"))
    from spray_helpers import SHAPE, fast_spray, make_run

    from lrp_lightning.analysis import analyze_run

    store = make_run(tmp_path / "run", epochs=(0, 1), artifact=15)  # class 1's first 15 samples: ids 60-74
    analyze_run(store, fast_spray(), log_scalars=False)
    client, _ = make_app(tmp_path)
    data = json.loads(ok(client, route("findings", run="run")).data)
    assert data["epochs"] == [0, 1] and data["without_findings"] == [] and data["unreadable"] == []
    (finding,) = data["findings"]
    assert finding["finding_id"] == "class_1/top-left-corner@0" and finding["category_name"] == "one"
    assert finding["member_ids"] == list(range(60, 75)) and finding["epochs_seen"] == [0, 1]
    assert [entry["epoch"] for entry in finding["history"]] == [0, 1]
    assert finding["q_value"] < 0.05 and finding["strength"] > 0.3
    assert "top-left corner" in finding["reason"] and "inputs were not stored" in finding["reason"]
    picture = png(ok(client, route("finding_map", run="run", finding=finding["finding_id"], epoch=1)))
    assert picture.shape == (*SHAPE, 3)
    corner = picture[:2, :2].astype(int)
    assert (corner[..., 0] - corner[..., 2] > 100).all()  # bwr: the artifact's corner is red


# ------------------------------------------------------------------------------------------ data layer units


def test_binary_columns_round_trip_and_pick_compact_integers():
    payload = encode_columns(
        {"a": np.arange(5, dtype=np.int16), "b": np.linspace(0, 1, 5, dtype=np.float32)}, {"note": "x"}
    )
    assert payload[:4] == b"LRPB" and (8 + int.from_bytes(payload[4:8], "little")) % 8 == 0
    values, meta = decode_columns(payload)
    np.testing.assert_array_equal(values["b"], np.linspace(0, 1, 5, dtype=np.float32))
    assert meta == {"note": "x"}
    assert compact_int(np.array([0, 40000])).dtype == np.int32
    assert compact_int(np.array([-3, 3])).dtype == np.int16
    assert compact_int(np.array([0, 2**40])).dtype == np.float64
    with pytest.raises(ValueError, match="one length"):
        encode_columns({"a": np.zeros(2, np.int16), "b": np.zeros(3, np.int16)})


def test_embedding_config_is_none_when_the_analysis_did_not_record_it():
    from lrp_lightning.store import META_ANALYSIS_CONFIG
    from lrp_lightning.tb_plugin.data import PluginData

    table = pa.table({"a": [1]})
    assert PluginData._embedding_config(table) is None
    for raw in (b"not json", b"[]", b'{"pipeline": {}}', b'{"pipeline": {"embeddings": {"params": 3}}}'):
        assert PluginData._embedding_config(table.replace_schema_metadata({META_ANALYSIS_CONFIG: raw})) is None
    nested = b'{"pipeline": {"embeddings": {"params": {"perplexity": 5.0, "methods": ["tsne"]}}}}'
    assert PluginData._embedding_config(table.replace_schema_metadata({META_ANALYSIS_CONFIG: nested})) == {
        "perplexity": 5.0
    }


def test_byte_lru_evicts_the_least_recently_used_values():
    cache = ByteLRU(300)
    for key in "abc":
        cache.get_or_make(key, lambda: b"x" * 100)
    cache.get_or_make("a", lambda: pytest.fail("a is cached"))
    cache.get_or_make("d", lambda: b"y" * 100)  # evicts b, the least recently used
    assert cache.nbytes == 300 and len(cache) == 3
    made = []
    cache.get_or_make("b", lambda: made.append(1) or b"z")
    assert made == [1]
    cache.get_or_make("huge", lambda: b"h" * 1000)  # larger than the budget: returned, not kept
    assert "huge" not in [k for k in cache._items]


def test_a_stale_analysis_after_the_epoch_was_rewritten_is_not_shown(tmp_path):
    store = build_run(tmp_path / "run", epochs=1, samples=9)
    client, _ = make_app(tmp_path)
    assert json.loads(ok(client, route("run", run="run")).data)["epochs"][0]["analysis"] is True
    table = store.attributions(0)
    names = ("sample_id", "label", "prediction", "target", "score", "probability")
    rows = {name: table.column(name).to_numpy() for name in names}
    relevance = decode_relevance(table.column("relevance"), (8, 8))
    store.write_epoch(0, 10, make_attribution_table(epoch=0, global_step=10, relevance=relevance, **rows))
    assert json.loads(ok(client, route("run", run="run")).data)["epochs"][0]["analysis"] is False
    assert "no analysis yet" in error(client, route("analysis", run="run", epoch=0), 404)
