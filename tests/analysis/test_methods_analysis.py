"""The analysis per attribution method and named analyses side by side (``--method``, ``--name``)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from spray_helpers import CLASS_NAMES, SHAPE, epoch_table, fast_spray

from lrp_lightning import store as S
from lrp_lightning.analysis import analyze_run, current_analysis_key, load_findings
from lrp_lightning.cli import main

FAST_TOML = """
[clusterings]
k_range = [2, 6]
[embeddings]
methods = ["pca"]
"""
COARSE_TOML = FAST_TOML.replace("[2, 6]", "[2, 3]")


def two_method_run(path):
    """Method 'lrp' sees a corner artifact in 15 class-1 samples; method 'gradient' sees none."""
    store = S.RunStore.create(
        path, heatmap_shape=SHAPE, class_names=CLASS_NAMES, methods=[{"name": "lrp"}, {"name": "gradient"}]
    )
    for epoch in (0, 1):
        lrp, _ = epoch_table(epoch, artifact=15)
        gradient, _ = epoch_table(epoch, seed=5)
        lrp = lrp.append_column(S.METHOD_FIELD, pa.array(["lrp"] * lrp.num_rows))
        gradient = gradient.append_column(S.METHOD_FIELD, pa.array(["gradient"] * gradient.num_rows))
        store.write_epoch(epoch, 100 * (epoch + 1), pa.concat_tables([lrp, gradient]))
    return store


@pytest.fixture
def configs(tmp_path):
    fast, coarse = tmp_path / "fast.toml", tmp_path / "coarse.toml"
    fast.write_text(FAST_TOML)
    coarse.write_text(COARSE_TOML)
    return fast, coarse


def test_cli_analyses_the_first_method_by_default_and_others_on_request(tmp_path, configs, capsys):
    store = two_method_run(tmp_path / "run")
    assert main([str(store.run_dir), "--config", str(configs[0]), "--quiet"]) == 0
    gradient = store.select(method="gradient")
    assert current_analysis_key(store, 1) is not None and current_analysis_key(gradient, 1) is None
    assert main([str(store.run_dir), "--config", str(configs[0]), "--quiet", "--method", "gradient"]) == 0
    assert current_analysis_key(gradient, 1) is not None
    # each method's analysis is of its own maps: the artifact is found in 'lrp' only
    lrp_findings = load_findings(store).to_pandas()
    gradient_findings = load_findings(gradient).to_pandas()
    assert (lrp_findings[S.FINDING_KIND] == S.FINDING_KIND_ARTIFACT).any()
    assert not (gradient_findings[S.FINDING_KIND] == S.FINDING_KIND_ARTIFACT).any()
    points = store.read_analysis_table(1, S.POINTS_TABLE).to_pandas()
    other = gradient.read_analysis_table(1, S.POINTS_TABLE).to_pandas()
    assert len(points) == len(other) == 240  # "all" and each class
    assert not points.filter(like="embedding.pca").equals(other.filter(like="embedding.pca"))


def test_named_analysis_is_written_next_to_the_default_one(tmp_path, configs, capsys):
    store = two_method_run(tmp_path / "run")
    assert main([str(store.run_dir), "--config", str(configs[0]), "--quiet"]) == 0
    default_key = current_analysis_key(store, 0)
    before = store.read_analysis_table(0, S.CLUSTERS_TABLE)
    assert (
        main([str(store.run_dir), "--config", str(configs[1]), "--quiet", "--name", "coarse", "--method", "all"]) == 0
    )
    assert current_analysis_key(store, 0) == default_key  # not replaced
    assert store.read_analysis_table(0, S.CLUSTERS_TABLE).equals(before)
    coarse = store.select(analysis="coarse")
    assert current_analysis_key(coarse, 0) not in (None, default_key)
    assert current_analysis_key(coarse.select(method="gradient"), 0) is not None
    clusterings = set(coarse.read_analysis_table(0, S.CLUSTERS_TABLE).column(S.CLUSTERING).to_pylist())
    assert clusterings and all(name.endswith(("_2", "_3")) for name in clusterings if "kmeans" in name)
    assert store.analyses() == ["default", "coarse"]


def test_scalars_of_other_methods_and_named_analyses_get_their_own_tags(tmp_path):
    store = two_method_run(tmp_path / "run")
    first = analyze_run(store, fast_spray(), log_scalars=False).epochs[0].scalars
    gradient = analyze_run(store, fast_spray(), method="gradient", log_scalars=False).epochs[0].scalars
    named = analyze_run(store, fast_spray(), method="gradient", name="coarse", log_scalars=False).epochs[0].scalars
    assert first and all(not tag.endswith("/gradient") for tag in first)
    assert set(gradient) == {f"{tag}/gradient" for tag in first}
    assert set(named) == {f"{tag}/coarse/gradient" for tag in first}


def test_unknown_method_fails_the_run_naming_the_methods(tmp_path, configs, capsys):
    store = two_method_run(tmp_path / "run")
    assert main([str(store.run_dir), "--config", str(configs[0]), "--quiet", "--method", "lime"]) == 1
    err = capsys.readouterr().err
    assert "--method lime: not a method of this run; its methods are ['lrp', 'gradient']" in err
    assert main([str(store.run_dir), "--name", "../x"]) == 2
