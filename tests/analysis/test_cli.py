"""``lrp-analyze``: exit codes, per-item failures, options, summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest
from spray_helpers import CLASS_NAMES, SHAPE, epoch_table, make_run

from lrp_lightning import store as S
from lrp_lightning.analysis import current_analysis_key, load_analysis
from lrp_lightning.cli import main

FAST_TOML = """
[clusterings]
k_range = [2, 6]
[embeddings]
methods = ["pca"]
"""


@pytest.fixture
def fast_config(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text(FAST_TOML)
    return path


def test_good_and_corrupt_runs_exit_1_naming_the_failed_item(tmp_path, fast_config, capsys):
    good = make_run(tmp_path / "runs" / "good" / "version_0", epochs=(0, 1), artifact=15)
    bad = make_run(tmp_path / "runs" / "bad" / "version_0", epochs=(0, 1))
    part = bad.store_dir / bad.epoch_info(1).files[0]
    part.write_bytes(part.read_bytes()[:100])  # truncated after writing
    code = main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"FAILED {bad.run_dir} epoch 1:" in err and "not a readable Parquet file" in err
    # everything else was analysed
    assert current_analysis_key(good, 0) and current_analysis_key(good, 1) and current_analysis_key(bad, 0)
    assert current_analysis_key(bad, 1) is None
    assert "finding: good/version_0: class 1 (one): top-left corner, 15 samples, since epoch 0" in out
    assert "flagged cluster" not in out  # per-clustering flags only with --verbose
    lines = out.strip().splitlines()
    assert lines[-1].split() == ["total", "(2", "runs)", "3", "0", "1", "1"]  # analysed, current, failed, findings
    assert any(line.split()[:5] == ["good/version_0", "2", "0", "0", "1"] for line in lines)
    # nothing half-written for the failed epoch
    assert bad.analysis_files(1) == {}


def test_second_run_is_up_to_date_and_exits_0(tmp_path, fast_config, capsys):
    make_run(tmp_path / "runs" / "a", epochs=(0,))
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet"]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].split()[3:5] == ["0", "1"]  # 0 analysed, 1 up to date
    # --force recomputes
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet", "--force"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split()[3:5] == ["1", "0"]


def test_bad_arguments_exit_2(tmp_path, fast_config, capsys):
    make_run(tmp_path / "runs" / "a", epochs=(0,))
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no lrp-lightning runs below" in capsys.readouterr().err
    assert main([str(tmp_path / "runs"), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main([str(tmp_path / "runs"), "--epochs", "one"]) == 2
    assert "not a list of integers" in capsys.readouterr().err
    assert main([str(tmp_path / "runs"), "--bogus"]) == 2
    bad_key = tmp_path / "bad.json"
    bad_key.write_text(json.dumps({"clusterings": {"k_rnage": [2, 4]}}))
    assert main([str(tmp_path / "runs"), "--config", str(bad_key)]) == 2
    assert "k_rnage" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[clusterings\n")
    assert main([str(tmp_path / "runs"), "--config", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_unknown_format_version_fails_that_run_only(tmp_path, fast_config, capsys):
    make_run(tmp_path / "runs" / "ok", epochs=(0,))
    future = make_run(tmp_path / "runs" / "future", epochs=(0,))
    manifest = future.store_dir / S.MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["format_version"] = "9.0"
    manifest.write_text(json.dumps(data))
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "format 9.0" in err and "Upgrade lrp-lightning" in err


def test_epochs_classes_and_json_config(tmp_path, capsys):
    store = make_run(tmp_path / "run", epochs=(0, 1, 2))
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"clusterings": {"k_range": [2, 3]}, "embeddings": {"methods": ["pca"]}, "include_all": False})
    )
    assert (
        main(
            [
                str(tmp_path / "run"),
                "--config",
                str(config),
                "--epochs",
                "1-2",
                "--classes",
                "1",
                "--quiet",
                "--no-scalars",
            ]
        )
        == 0
    )
    assert current_analysis_key(store, 0) is None and current_analysis_key(store, 2) is not None
    spectrum = load_analysis(store, 1)["spectrum"]
    assert spectrum.column(S.CATEGORY).to_pylist() == ["class_1"]
    assert json.loads(spectrum.schema.metadata[S.META_ANALYSIS_CONFIG])["pipeline"]["clusterings"]["params"][
        "k_range"
    ] == [2, 3]
    assert not list(store.run_dir.glob("events.out.tfevents.*"))


def test_embeddings_all_lays_out_every_category(tmp_path, capsys):
    store = make_run(tmp_path / "run", epochs=(0,), artifact=15)
    config = tmp_path / "c.toml"
    config.write_text('[clusterings]\nk_range = [2, 3]\n[embeddings]\nmethods = ["tsne", "pca"]\ntsne_max_iter = 250\n')
    args = [str(tmp_path / "run"), "--config", str(config), "--quiet", "--no-scalars"]

    def tsne_categories() -> set[str]:
        points = load_analysis(store, 0)["points"]
        laid_out = points.filter(points.column(S.embedding_columns("tsne")[0]).is_valid())
        return set(laid_out.column(S.CATEGORY).to_pylist())

    assert main(args) == 0  # the default: t-SNE of all samples and of the classes with a flagged cluster
    clusters = load_analysis(store, 0)["clusters"]
    flagged = {c for c, f in zip(clusters.column(S.CATEGORY).to_pylist(), clusters.column(S.FLAGGED).to_pylist()) if f}
    assert tsne_categories() == {"all"} | flagged
    assert flagged == {"all", "class_1"}  # the planted corner artifact; class_0 is clean
    assert main([*args, "--embeddings", "all"]) == 0  # another scope: recomputed, every category laid out
    assert tsne_categories() == {"all", "class_0", "class_1"}
    assert main([*args, "--embeddings", "sideways"]) == 2
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_console_script_with_parallel_jobs(tmp_path, fast_config):
    make_run(tmp_path / "runs" / "a", epochs=(0,))
    make_run(tmp_path / "runs" / "b", epochs=(0,))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrp_lightning.cli",
            str(tmp_path / "runs"),
            "--config",
            str(fast_config),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split()[3:6] == ["2", "0", "0"]
    assert "2/2" in result.stderr  # the progress bar reached both epochs
    assert list((tmp_path / "runs" / "a").glob("events.out.tfevents.*.lrp-analyze"))


def test_selections_that_match_nothing_exit_2_naming_what_exists(tmp_path, fast_config, capsys):
    store = make_run(tmp_path / "runs" / "a", epochs=(0, 1))
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet", "--epochs", "5-9"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 5-9 matches no complete epoch; the runs hold epochs 0-1" in err
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet", "--classes", "42"]) == 2
    err = capsys.readouterr().err
    assert "--classes 42 matches no class; the runs hold classes 0-1" in err
    assert current_analysis_key(store, 0) is None  # nothing was analysed
    # a selection that matches part of what exists is analysed
    assert main([str(tmp_path / "runs"), "--config", str(fast_config), "--quiet", "--epochs", "1-9"]) == 0
    assert current_analysis_key(store, 1) is not None and current_analysis_key(store, 0) is None


def test_notes_are_summarised_per_kind_and_listed_with_verbose(tmp_path, fast_config, capsys):
    make_run(tmp_path / "exp" / "version_0", epochs=(0, 1, 2), extra_class_samples=2)  # class 2 too small
    assert main([str(tmp_path / "exp" / "version_0"), "--config", str(fast_config), "--quiet"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("lrp-analyze: note")]
    assert notes == [
        "lrp-analyze: note (3 like it; --verbose lists them): exp/version_0: epoch 0, class_2: class 2 has 2 "
        "samples; SpRAy needs at least 3 (min_category_size): skipped"
    ]
    # a single run given as the path is named by its folder, not "."
    assert out.strip().splitlines()[2].split()[0] == "exp/version_0"
    run = str(tmp_path / "exp" / "version_0")
    assert main([run, "--config", str(fast_config), "--quiet", "--verbose", "--force"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("lrp-analyze: note")]
    assert [line.split(": ")[3] for line in notes] == ["epoch 0, class_2", "epoch 1, class_2", "epoch 2, class_2"]


def test_flags_per_clustering_only_with_verbose(tmp_path, fast_config, capsys):
    make_run(tmp_path / "mine", epochs=(0,), artifact=15)
    assert main([str(tmp_path / "mine"), "--config", str(fast_config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("lrp-analyze:")] == [
        "lrp-analyze: finding: mine: class 1 (one): top-left corner, 15 samples, since epoch 0"
    ]
    assert main([str(tmp_path / "mine"), "--config", str(fast_config), "--quiet", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "lrp-analyze: flagged cluster: mine epoch 0, class_1: " in out
    assert "finding: mine: class 1 (one): top-left corner" in out and "FDR-adjusted q = " in out


def three_method_run(path):
    """Methods 'lrp' and 'gradient' both see the corner artifact in 15 class-1 samples (in other maps), 'ixg' none."""
    methods = [("lrp", {"artifact": 15}), ("gradient", {"artifact": 15, "seed": 5}), ("ixg", {"seed": 7})]
    store = S.RunStore.create(
        path, heatmap_shape=SHAPE, class_names=CLASS_NAMES, methods=[{"name": name} for name, _ in methods]
    )
    tables = []
    for name, kwargs in methods:
        table, _ = epoch_table(0, **kwargs)
        tables.append(table.append_column(S.METHOD_FIELD, pa.array([name] * table.num_rows)))
    store.write_epoch(0, 100, pa.concat_tables(tables))
    return store


@pytest.mark.slow
def test_findings_of_several_methods_and_a_named_analysis_say_whose_they_are(tmp_path, fast_config, capsys):
    store = three_method_run(tmp_path / "run")
    args = [str(store.run_dir), "--config", str(fast_config), "--quiet", "--no-scalars"]
    assert main([*args, "--method", "all"]) == 0
    out = capsys.readouterr().out
    corner = "class 1 (one): top-left corner, 15 samples, since epoch 0"
    assert [line for line in out.splitlines() if line.startswith("lrp-analyze:")] == [
        f"lrp-analyze: finding: run [method lrp]: {corner}",
        f"lrp-analyze: finding: run [method gradient]: {corner}",  # the same finding id, kept per method
        "lrp-analyze: no findings: run [method ixg]",
    ]
    assert out.strip().splitlines()[-1].split() == ["total", "(1", "run)", "3", "0", "0", "2"]
    assert main([*args, "--method", "gradient,ixg", "--name", "coarse", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert f"lrp-analyze: finding: run [method gradient, analysis coarse]: {corner}" in out
    assert "lrp-analyze: no findings: run [method ixg, analysis coarse]" in out
    assert "lrp-analyze: flagged cluster: run [method gradient, analysis coarse] epoch 0, class_1: " in out
    assert "[method lrp" not in out  # not asked for
    single = make_run(tmp_path / "single", epochs=(0,), artifact=15)
    assert main([str(single.run_dir), "--config", str(fast_config), "--quiet", "--name", "coarse"]) == 0
    assert f"lrp-analyze: finding: single [analysis coarse]: {corner}" in capsys.readouterr().out
