"""Analysing runs through the store: tables, caching, staleness, lineage, bad input, scalars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from spray_helpers import epoch_table, fast_spray, make_run

from lrp_lightning import store as S
from lrp_lightning.analysis import (
    AnalysisError,
    Clusterings,
    Embeddings,
    analyze_epoch,
    analyze_run,
    current_analysis_key,
    load_analysis,
)


def test_tables_hold_every_category_and_flag_the_corner_artifact(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,), artifact=15)
    outcome = analyze_run(store, fast_spray(), log_scalars=False)
    assert outcome.failures == [] and [e.computed for e in outcome.epochs] == [True]
    tables = load_analysis(store, 0)
    hashes = {t.schema.metadata[b"lrp.config_hash"] for t in tables.values()}
    assert hashes == {outcome.epochs[0].config_hash.encode()}
    points, clusters, spectrum = tables["points"], tables["clusters"], tables["spectrum"]
    categories = points.column(S.CATEGORY).to_pylist()
    assert categories.count("all") == 120 and categories.count("class_0") == 60 and categories.count("class_1") == 60
    assert points.schema.names[: len(S.POINTS_SCHEMA)] == S.POINTS_SCHEMA.names
    assert S.cluster_column("kmeans_6") in points.column_names and S.embedding_columns("pca")[1] in points.column_names
    assert clusters.schema.remove_metadata() == S.CLUSTERS_SCHEMA
    assert json.loads(clusters.schema.metadata[S.META_GRID_SHAPE]) == [16, 16]
    prototypes = clusters.column(S.PROTOTYPE).to_pylist()
    assert all(len(p) == 256 for p in prototypes)
    rows = spectrum.to_pylist()
    assert [r["category"] for r in rows] == ["all", "class_0", "class_1"]
    assert rows[2]["class_name"] == "one" and rows[2]["status"] == "ok" and len(rows[2]["eigenvalues"]) == 32
    # class 1 holds 3 planted groups and the artifact group: the eigengap says 4 and k-means_4 is selected
    assert (rows[2]["eigengap_k"], rows[2]["selected_clustering"]) == (4, "kmeans_4")
    flagged = clusters.filter(clusters.column(S.FLAGGED)).to_pylist()
    selected = [r for r in flagged if r["category"] == "class_1" and r["clustering"] == "kmeans_4"]
    assert len(selected) == 1 and selected[0]["size"] == 15
    assert "top-left corner" in selected[0]["flag_reason"] and "class 1 (one)" in selected[0]["flag_reason"]
    assert not any(r["category"] == "class_0" for r in flagged)
    artifact_ids = set(range(60, 75))  # class 1 starts at sample id 60; its first 15 carry the artifact
    label_column = points.column(S.cluster_column("kmeans_4")).to_numpy(zero_copy_only=False)
    in_class_1 = np.array(categories) == "class_1"
    ids = points.column(S.SAMPLE_ID).to_numpy()
    members = set(ids[in_class_1 & (label_column == selected[0]["cluster"])].tolist())
    assert members == artifact_ids
    flags = outcome.epochs[0].flags
    assert [f[:2] for f in flags] == [("all", "top-left corner"), ("class_1", "top-left corner")]
    assert "kmeans_4" in flags[1][2]  # class 1's flag comes from its selected clustering
    # the flags of both categories and all clusterings are one finding, of class 1
    findings = outcome.epochs[0].findings
    assert [(f.category, f.region, f.n_members) for f in findings] == [("class_1", "top-left corner", 15)]
    assert set(findings[0].member_ids.tolist()) == artifact_ids
    assert findings[0].finding_id == "class_1/top-left-corner@0"
    # read back without recomputing: the same flags and findings
    again = analyze_run(store, fast_spray(), log_scalars=False).epochs[0]
    assert again.computed is False and again.flags == flags
    assert [(f.finding_id, f.reason, f.member_ids.tolist()) for f in again.findings] == [
        (f.finding_id, f.reason, f.member_ids.tolist()) for f in findings
    ]


def test_same_config_is_cached_and_any_parameter_change_recomputes(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,))
    spray = fast_spray()
    first = analyze_epoch(store, 0, spray)
    path = store.analysis_path(0, "points")
    mtime = path.stat().st_mtime_ns
    again = analyze_epoch(store, 0, spray)
    assert again.computed is False and again.config_hash == first.config_hash
    assert path.stat().st_mtime_ns == mtime
    reseeded = analyze_epoch(store, 0, spray.set_params(clusterings=Clusterings(k_range=(2, 6), random_state=1)))
    assert reseeded.computed is True and reseeded.config_hash != first.config_hash
    assert current_analysis_key(store, 0) == reseeded.config_hash
    forced = analyze_epoch(
        store, 0, spray.set_params(clusterings=Clusterings(k_range=(2, 6), random_state=1)), force=True
    )
    assert forced.computed is True and forced.config_hash == reseeded.config_hash
    assert analyze_epoch(store, 0, spray, classes=[1]).computed is True  # other categories: another key


def test_rewritten_epoch_makes_its_analysis_stale(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,))
    spray = fast_spray()
    first = analyze_epoch(store, 0, spray)
    table, _ = epoch_table(0, seed=1)
    store.write_epoch(0, 100, table)  # the epoch is re-run (e.g. after resuming)
    assert current_analysis_key(store, 0) is None
    with pytest.raises(S.AnalysisNotFoundError, match="replaced version"):
        store.read_analysis_table(0, "points")
    with pytest.raises(S.AnalysisNotFoundError, match="no complete current analysis"):
        load_analysis(store, 0)
    second = analyze_epoch(store, 0, spray)
    assert second.computed and second.config_hash != first.config_hash
    assert current_analysis_key(store, 0) == second.config_hash


def test_epochs_are_linked_tracks_stability_and_warm_start(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0, 1), artifact=15)
    # scope="all": every category gets a t-SNE layout to warm-start from, not only the flagged ones
    embeddings = Embeddings(methods=("tsne", "pca"), scope="all", tsne_max_iter=500, warm_max_iter=250)
    spray = fast_spray(embeddings=embeddings)
    outcome = analyze_run(store, spray, log_scalars=False)
    assert [e.computed for e in outcome.epochs] == [True, True]
    first, second = load_analysis(store, 0), load_analysis(store, 1)
    # identical maps in both epochs: every cluster continues its track, every map is perfectly stable
    events = set(second["clusters"].column(S.EVENT).to_pylist())
    assert events == {"continued"}
    assert second["clusters"].column(S.TRACK).to_pylist() == first["clusters"].column(S.TRACK).to_pylist()
    assert all(t.startswith("0:") for t in second["clusters"].column(S.TRACK).to_pylist())
    np.testing.assert_allclose(second["points"].column(S.STABILITY).to_numpy(), 1.0, atol=1e-6)
    assert first["points"].column(S.STABILITY).null_count == first["points"].num_rows
    assert set(first["lineage"].column(S.EVENT).to_pylist()) == {"born"}
    # epoch 1 started from epoch 0's t-SNE layout: points stay close
    for category in ("all", "class_0", "class_1"):
        layouts = []
        for points in (first["points"], second["points"]):
            rows = points.filter(points.column(S.CATEGORY).to_numpy(zero_copy_only=False) == category)
            xy = np.stack([rows.column(c).to_numpy() for c in S.embedding_columns("tsne")], axis=1)
            layouts.append((xy - xy.mean(0)) / xy.std())
        assert np.median(np.linalg.norm(layouts[0] - layouts[1], axis=1)) < 0.5, category
    # re-analysing epoch 0 with another config makes epoch 1 stale too (its key names epoch 0's analysis)
    key_1 = current_analysis_key(store, 1)
    analyze_epoch(store, 0, spray.set_params(embeddings=Embeddings(methods=("pca",))))
    assert current_analysis_key(store, 1) == key_1  # tables untouched ...
    assert analyze_epoch(store, 1, spray).computed is True  # ... but no longer what the chain gives


def _laid_out(points, method: str) -> dict[str, bool]:
    """Per category: whether every sample has a ``method`` layout (False: none has)."""
    out = {}
    for category in dict.fromkeys(points.column(S.CATEGORY).to_pylist()):
        rows = points.filter(points.column(S.CATEGORY).to_numpy(zero_copy_only=False) == category)
        nulls = {rows.column(c).null_count for c in S.embedding_columns(method)}
        assert nulls in ({0}, {rows.num_rows}), (category, method, nulls)
        out[category] = nulls == {0}
    return out


def test_t_sne_and_umap_only_for_all_samples_and_flagged_categories_unless_asked(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,), artifact=15)
    spray = fast_spray(embeddings=Embeddings(methods=("tsne", "umap", "pca"), tsne_max_iter=250, umap_n_epochs=50))
    analyze_epoch(store, 0, spray)
    tables = load_analysis(store, 0)
    clusters = tables["clusters"]
    flagged = {c for c, f in zip(clusters.column(S.CATEGORY).to_pylist(), clusters.column(S.FLAGGED).to_pylist()) if f}
    assert "class_1" in flagged and "class_0" not in flagged  # the planted corner, and a clean class
    for method in ("tsne", "umap"):
        assert _laid_out(tables["points"], method) == {"all": True, "class_0": False, "class_1": True}
    assert _laid_out(tables["points"], "pca") == {"all": True, "class_0": True, "class_1": True}
    # every other result is the same as with every layout everywhere; only the layouts and the key differ
    everywhere = spray.set_params(embeddings=spray.embeddings.set_params(scope="all"))
    key = current_analysis_key(store, 0)
    analyze_epoch(store, 0, everywhere)
    again = load_analysis(store, 0)
    assert current_analysis_key(store, 0) != key
    assert _laid_out(again["points"], "tsne") == {"all": True, "class_0": True, "class_1": True}
    for table in ("clusters", "spectrum", "lineage"):
        assert again[table].equals(tables[table]), table
    layout = S.embedding_columns("tsne")
    same = [c for c in tables["points"].column_names if c not in (*layout, *S.embedding_columns("umap"))]
    assert again["points"].select(same).equals(tables["points"].select(same))


def test_class_with_one_sample_is_skipped_with_a_message_and_the_rest_analysed(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,), extra_class_samples=1)
    outcome = analyze_epoch(store, 0, fast_spray())
    assert outcome.skipped == {"class_2": "class 2 has 1 sample; SpRAy needs at least 3 (min_category_size): skipped"}
    spectrum = load_analysis(store, 0)["spectrum"].to_pylist()
    assert [(r["category"], r["status"]) for r in spectrum] == [
        ("all", "ok"),
        ("class_0", "ok"),
        ("class_1", "ok"),
        ("class_2", "skipped"),
    ]
    assert "1 sample" in spectrum[3]["message"]


def test_nan_maps_fail_the_epoch_cleanly_or_are_dropped_on_request(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,), nan_ids=(5, 70))
    with pytest.raises(AnalysisError, match=r"sample id\(s\) \[5, 70\] hold NaN or infinity"):
        analyze_epoch(store, 0, fast_spray())
    assert store.analysis_files(0) == {}
    outcome = analyze_epoch(store, 0, fast_spray(), nonfinite="drop")
    assert any("left out 2 map(s)" in m for m in outcome.messages)
    points = load_analysis(store, 0)["points"]
    assert 5 not in points.column(S.SAMPLE_ID).to_pylist() and points.num_rows == 2 * 118


def test_a_failing_epoch_does_not_stop_the_others(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0, 1, 2))
    part = store.store_dir / store.epoch_info(1).files[0]
    part.write_bytes(b"")  # damaged after writing: an empty Parquet file
    outcome = analyze_run(store, fast_spray(), log_scalars=False)
    assert [e.epoch for e in outcome.epochs] == [0, 2]
    assert len(outcome.failures) == 1
    item, message = outcome.failures[0]
    assert item.endswith("epoch 1") and "not a readable Parquet file" in message
    assert current_analysis_key(store, 1) is None and current_analysis_key(store, 2) is not None


def test_indicator_scalars_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = make_run(tmp_path / "run", epochs=(0, 1), artifact=15)
    analyze_run(store, fast_spray())
    accumulator = EventAccumulator(str(store.run_dir))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert {"lrp/class_1/eigengap", "lrp/class_1/flagged_clusters", "lrp/all/mean_stability"} <= set(tags)
    flagged = accumulator.Scalars("lrp/class_1/flagged_clusters")
    assert [(e.step, e.value) for e in flagged] == [(100, 1.0), (200, 1.0)]
    assert [e.value for e in accumulator.Scalars("lrp/class_1/eigengap_k")] == [4.0, 4.0]
    # nothing recomputed: nothing logged twice
    analyze_run(store, fast_spray())
    accumulator = EventAccumulator(str(store.run_dir))
    accumulator.Reload()
    assert len(accumulator.Scalars("lrp/class_1/flagged_clusters")) == 2


def test_analysis_imports_neither_torch_nor_corelay(tmp_path):
    make_run(tmp_path / "run", epochs=(0,))
    code = (
        "import sys\n"
        "from lrp_lightning.cli import main\n"
        "from lrp_lightning.analysis import analyze_run, SpRAy, Clusterings, Embeddings\n"
        f"analyze_run({str(tmp_path / 'run')!r}, SpRAy(clusterings=Clusterings(k_range=(2, 3)),"
        " embeddings=Embeddings(methods=('pca',))))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'corelay', 'tensorflow', 'lightning'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_package_is_listed_for_regular_installs():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"lrp_lightning.analysis"' in text


def test_clusters_below_the_minimum_size_are_not_flagged(tmp_path):
    store = make_run(tmp_path / "run", epochs=(0,), artifact=3)  # 3 class-1 samples carry the artifact
    ids, maps = store.heatmaps(0)
    alone = fast_spray().fit(maps[(ids >= 60) & (ids < 120)])
    assert any(s.size == 3 for _, s in alone.flagged())  # the indicators alone flag the 3 samples
    outcome = analyze_epoch(store, 0, fast_spray())
    assert outcome.flags == [] and outcome.findings == []
    clusters = load_analysis(store, 0)[S.CLUSTERS_TABLE]
    assert not any(clusters.column(S.FLAGGED).to_pylist())
    assert load_analysis(store, 0)["findings"].num_rows == 0


def test_load_findings_gives_the_lineage_of_each_finding_over_epochs(tmp_path):
    from lrp_lightning.analysis import load_findings

    store = make_run(tmp_path / "run", epochs=(0, 1, 2), artifact=15)
    analyze_run(store, fast_spray(), log_scalars=False)
    table = load_findings(store)
    rows = table.to_pylist()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert {r["finding_id"] for r in rows} == {"class_1/top-left-corner@0"}
    assert [r["epochs_seen"] for r in rows] == [[0], [0, 1], [0, 1, 2]]
    assert all(r["first_epoch"] == 0 and r["n_members"] == 15 and r["kind"] == "artifact" for r in rows)
