"""Fault injection, part 2 (issue 14, items 5 to 9): wrong-schema analysis tables, advice that never
destroys primary data, bad manifest values, symlinks out of the run, and smaller faults.

Every fault is planted into a real store; each test asserts a clear error that names the file and the
fix, and that the rest of the run stays readable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_testing import RUN_META, assert_consistent, new_store, write_ranks

from lrp_lightning import store as S
from lrp_lightning.store import CorruptFileError, RunStore

TESTS = Path(__file__).resolve().parents[1]


def plugin_helpers():
    sys.path.insert(0, str(TESTS / "tb_plugin"))
    import plugin_testing
    import synthetic_runs

    return plugin_testing, synthetic_runs


def rewrite_table(path: Path, change) -> None:
    """Rewrite an analysis table through ``change(table) -> table``, keeping its tags (config hash, commit)."""
    table = pq.read_table(path)
    metadata = table.schema.metadata
    changed = change(table)
    pq.write_table(changed.replace_schema_metadata(metadata), path)


def drop(*names):
    return lambda table: table.drop_columns(list(names))


def retype(name, values, kind=None):
    def change(table):
        index = table.schema.get_field_index(name)
        return table.set_column(index, name, pa.array(values(table.num_rows), type=kind))

    return change


# ------------------------------------------------------------------------------------------ 6: schemas


def analysed_store(tmp_path: Path) -> RunStore:
    _, synthetic = plugin_helpers()
    return synthetic.build_run(tmp_path / "run", epochs=2, samples=12, analysed=[0, 1])


@pytest.mark.parametrize(
    ("table", "change", "problem"),
    [
        ("clusters", drop("track", "prototype"), r"lacks column\(s\) \['prototype', 'track'\]"),
        ("clusters", retype("size", lambda n: ["big"] * n), r"column 'size' has type string, expected int64"),
        ("points", drop("sample_id"), r"lacks column\(s\) \['sample_id'\]"),
        ("spectrum", retype("eigenvalues", lambda n: [1.0] * n), "column 'eigenvalues' has type double"),
        ("lineage", retype("track", lambda n: [None] * n, pa.string()), r"column 'track' holds \d+ nulls"),
    ],
)
def test_an_analysis_table_of_the_wrong_schema_is_a_clear_error_naming_file_and_fix(tmp_path, table, change, problem):
    store = analysed_store(tmp_path)
    path = store.analysis_path(0, table)
    rewrite_table(path, change)
    with pytest.raises(CorruptFileError, match=problem) as caught:
        store.read_analysis_table(0, table)
    message = str(caught.value)
    assert str(path) in message and "lrp-analyze --force" in message
    assert "delete" not in message
    if "nulls" not in problem:  # checked from the file's schema alone: the table is not current
        assert table not in store.analysis_tables(0)
    assert store.read_analysis_table(1, table).num_rows > 0  # the other epoch is unaffected
    assert assert_consistent_heatmaps(store)


def assert_consistent_heatmaps(store: RunStore) -> bool:
    return all(store.heatmaps(info.epoch)[1].shape[0] == info.rows for info in store.epochs())


def test_a_table_with_compatible_types_is_read_in_the_contract_types(tmp_path):
    store = analysed_store(tmp_path)
    path = store.analysis_path(0, "clusters")
    rewrite_table(
        path, lambda t: t.set_column(t.schema.get_field_index("cluster"), "cluster", t["cluster"].cast("int64"))
    )
    table = store.read_analysis_table(0, "clusters")
    assert table.schema.field("cluster").type == pa.int32()
    assert "clusters" in store.analysis_tables(0)


def test_plugin_routes_answer_404_for_wrong_schema_tables_never_500_or_nulls(tmp_path):
    testing, synthetic = plugin_helpers()
    store = synthetic.build_run(tmp_path / "run", epochs=2, samples=12, analysed=[0, 1])
    rewrite_table(store.analysis_path(0, "clusters"), drop("prototype", "size", "purity"))
    rewrite_table(store.analysis_path(0, "points"), retype("cluster.kmeans", lambda n: ["x"] * n))
    rewrite_table(store.analysis_path(1, "spectrum"), drop("category"))
    client, _ = testing.make_app(tmp_path)
    route, clustering = testing.route, synthetic.CLUSTERING
    where = {"run": "run", "category": "all", "clustering": clustering}
    for url in (
        route("clusters", epoch=0, **where),
        route("prototype", epoch=0, cluster=0, **where),
        route("embedding", run="run", epoch=0, category="all", embedding="tsne", clustering=clustering),
        route("analysis", run="run", epoch=1),
    ):
        response = client.get(url)
        text = response.get_data(as_text=True)
        assert response.status_code == 404, (url, response.status_code, text)
        assert "analysis table" in text and "lrp-analyze --force" in text
        assert str(tmp_path) not in text
    info = json.loads(client.get(route("run", run="run")).get_data())
    assert "spectrum/epoch_000001.parquet" in info["epochs"][1]["analysis_error"]
    assert client.get(route("heatmap", run="run", epoch=0, sample=7)).status_code == 200


def lrp_analyze(arguments):
    from lrp_lightning import cli

    return cli.main([str(a) for a in arguments])


FAST_TOML = '[clusterings]\nk_range = [2, 4]\n[embeddings]\nmethods = ["pca"]\n'


def test_lrp_analyze_recomputes_a_wrong_schema_or_damaged_analysis_table(tmp_path, capsys):
    sys.path.insert(0, str(TESTS / "analysis"))
    from spray_helpers import make_run

    from lrp_lightning.analysis import current_analysis_key

    store = make_run(tmp_path / "run", epochs=(0, 1))
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TOML)
    assert lrp_analyze([store.run_dir, "--config", config, "--quiet", "--no-scalars"]) == 0
    key = current_analysis_key(store, 0)
    rewrite_table(store.analysis_path(0, "clusters"), drop("track", "flagged"))
    (store.analysis_path(1, "spectrum")).write_bytes(b"PAR1 damaged PAR1")
    capsys.readouterr()
    code = lrp_analyze([store.run_dir, "--config", config, "--quiet", "--no-scalars"])  # no --force
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "KeyError" not in err and "delete" not in out + err
    assert current_analysis_key(store, 0) == key and current_analysis_key(store, 1) is not None
    assert {"track", "flagged"} <= set(store.read_analysis_table(0, "clusters").column_names)


# ------------------------------------------------------------------------------------------ 5: advice


def test_no_error_advises_deleting_the_runs_data(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    write_ranks(store, 1, 20, [[0, 1, 2]], 20.0)
    store.write_probe(S.make_probe_table(sample_id=[0, 1, 2], dataset_index=[0, 1, 2], label=[0, 1, 2]))
    store.write_analysis_table(0, "notes", pa.table({"x": [1]}), "cfg")
    damaged = {
        "part": (store.epoch_dir(1) / "part-00000.parquet", lambda: store.attributions(1), "attribution of this epoch"),
        "probe": (store.probe_path, store.probe_table, "probe set"),
        "analysis": (
            store.analysis_path(0, "notes"),
            lambda: store.read_analysis_table(0, "notes"),
            "lrp-analyze --force",
        ),
    }
    for name, (path, read, advice) in damaged.items():
        path.write_bytes(b"PAR1 damaged PAR1")
        with pytest.raises(CorruptFileError) as caught:
            read()
        message = str(caught.value)
        assert str(path) in message and advice in message, name
        assert "delete" not in message.lower() and "plugins/lrp directory" not in message, name
    assert assert_consistent(store, skip={1}) == {0: 10}


# ------------------------------------------------------------------------------------------ 7: manifest values


def edit_manifest(store: RunStore, change) -> Path:
    path = store.store_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("shape", ["big", [4], [4, 0], [4.5, 5], [True, 5], None])
def test_a_bad_heatmap_shape_is_an_error_naming_the_manifest_and_the_key(tmp_path, shape):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    path = edit_manifest(store, lambda m: m.update(heatmap_shape=shape))
    reader = RunStore(store.run_dir)
    assert [e.epoch for e in reader.epochs()] == [0]  # the epoch list stays readable
    for read in (lambda: reader.heatmap_shape, lambda: reader.heatmaps(0)):
        with pytest.raises(CorruptFileError, match="heatmap_shape") as caught:
            read()
        assert str(path) in str(caught.value)


def test_a_heatmap_shape_of_the_same_size_never_reshapes_the_maps(tmp_path):
    store = new_store(tmp_path)  # maps of 4 x 5
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    write_ranks(store, 1, 20, [[0, 1]], 20.0)
    edit_manifest(store, lambda m: m.update(heatmap_shape=[2, 10]))
    reader = RunStore(store.run_dir)
    for read in (lambda: reader.heatmaps(1), lambda: reader.heatmaps(1, [0]), lambda: list(reader.iter_heatmaps(0))):
        with pytest.raises(CorruptFileError, match=r"holds maps of shape \[4, 5\].*heatmap_shape \[2, 10\]") as caught:
            read()
        assert "manifest.json" in str(caught.value) and "part-00000.parquet" in str(caught.value)


@pytest.mark.parametrize(
    "entry",
    [
        {"epoch": 1, "global_step": "twenty", "rows": 2, "files": [], "commit": "x"},
        {"epoch": 1, "rows": 2},
        {"epoch": 1, "global_step": 20, "rows": 2, "files": "part-00000.parquet", "commit": "x"},
        "epoch one",
    ],
)
def test_one_bad_epoch_entry_fails_only_that_epoch(tmp_path, entry):
    store = new_store(tmp_path)
    for epoch in range(3):
        write_ranks(store, epoch, 10 * (epoch + 1), [[0, 1]], 10.0 * (epoch + 1))
    path = edit_manifest(store, lambda m: m["epochs"].__setitem__(1, entry))
    reader = RunStore(store.run_dir)
    assert [e.epoch for e in reader.epochs()] == [0, 2]
    assert assert_consistent(reader) == {0: 10, 2: 30}
    if isinstance(entry, dict):
        with pytest.raises(CorruptFileError, match="malformed epoch entry") as caught:
            reader.heatmaps(1)
        assert str(path) in str(caught.value)
    # a later commit keeps the bad entry as it is (a person may fix it by hand) and adds its epoch
    write_ranks(reader, 3, 40, [[0, 1]], 40.0)
    assert [e.epoch for e in reader.epochs()] == [0, 2, 3]
    assert entry in json.loads(path.read_text())["epochs"]


# ------------------------------------------------------------------------------------------ 8: symlinks


def move_out_and_link(path: Path, outside: Path) -> Path:
    """Move ``path`` to ``outside`` and leave a symbolic link to it in its place."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    path.rename(outside)
    path.symlink_to(outside)
    return path


def test_symbolic_links_out_of_the_run_are_refused_and_links_inside_are_followed(tmp_path):
    store = new_store(tmp_path)
    store.write_probe(S.make_probe_table(sample_id=[0, 1], dataset_index=[0, 1], label=[0, 1]))
    for epoch in range(3):
        write_ranks(store, epoch, 10 * (epoch + 1), [[0, 1]], 10.0 * (epoch + 1))
    part = move_out_and_link(store.epoch_dir(1) / "part-00000.parquet", tmp_path / "elsewhere" / "part.parquet")
    probe = move_out_and_link(store.probe_path, tmp_path / "elsewhere" / "probe.parquet")
    epoch_dir = move_out_and_link(store.epoch_dir(2), tmp_path / "elsewhere" / "epoch2")
    reader = RunStore(store.run_dir)
    for link, read in (
        (part, lambda: reader.heatmaps(1)),
        (probe, reader.probe_table),
        (epoch_dir, lambda: reader.heatmaps(2)),
    ):
        with pytest.raises(S.LinkOutsideRunError, match="leads outside its run directory") as caught:
            read()
        assert str(link.name) in str(caught.value) and isinstance(caught.value, CorruptFileError)
    assert assert_consistent(reader, skip={1, 2}) == {0: 10}

    inside = store.run_dir / "kept" / "probe.parquet"  # a link within the run is fine
    inside.parent.mkdir()
    (tmp_path / "elsewhere" / "probe.parquet").rename(inside)
    probe.unlink()
    probe.symlink_to(inside)
    assert reader.probe_table().num_rows == 2


def test_a_manifest_linked_from_outside_the_run_is_refused(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    move_out_and_link(store.store_dir / "manifest.json", tmp_path / "other" / "manifest.json")
    with pytest.raises(S.LinkOutsideRunError, match=r"manifest\.json"):
        RunStore(store.run_dir)


def test_the_plugin_never_serves_a_file_linked_from_outside_the_run(tmp_path):
    testing, synthetic = plugin_helpers()
    victim = synthetic.build_run(tmp_path / "logdir" / "victim", epochs=1, samples=6, analysed=[])
    store = synthetic.build_run(tmp_path / "logdir" / "run", epochs=1, samples=6, analysed=[])
    secret = tmp_path / "secret.parquet"  # a readable probe set outside the logdir, with other thumbnails
    secret.write_bytes(victim.probe_path.read_bytes())
    store.probe_path.unlink()
    store.probe_path.symlink_to(secret)
    part = store.epoch_dir(0) / "part-00000.parquet"
    part.unlink()
    part.symlink_to(victim.epoch_dir(0) / "part-00000.parquet")  # another run of the same logdir
    client, _ = testing.make_app(tmp_path / "logdir")
    for url in (testing.route("input", run="run", sample=7), testing.route("heatmap", run="run", epoch=0, sample=7)):
        response = client.get(url)
        text = response.get_data(as_text=True)
        assert response.status_code == 404, (url, text)
        assert "outside its run directory" in text and str(tmp_path) not in text
    assert client.get(testing.route("input", run="victim", sample=7)).status_code == 200


# ------------------------------------------------------------------------------------------ 9: smaller ones


def staging_names(store: RunStore) -> list[str]:
    return sorted(p.name for p in (store.store_dir / "attributions").iterdir() if p.name.startswith(".staging-"))


def test_stale_staging_directories_are_cleaned_up_and_a_live_writers_are_kept(tmp_path):
    import os
    import time

    store = new_store(tmp_path)
    for epoch in range(3):
        write_ranks(store, epoch, 10 * (epoch + 1), [[0, 1]], 10.0 * (epoch + 1))
    store.write_part(1, 99, S.make_attribution_table(**row_arguments(1, 99)))  # a re-run of epoch 1 that died
    store.write_part(5, 60, S.make_attribution_table(**row_arguments(5, 60)))  # died long ago
    old = time.time() - 3600
    for path in [*(store.store_dir / "attributions" / ".staging-epoch_000005-step_60").iterdir()]:
        os.utime(path, (old, old))
    os.utime(store.store_dir / "attributions" / ".staging-epoch_000005-step_60", (old, old))
    store.write_part(3, 40, S.make_attribution_table(**row_arguments(3, 40)))  # a writer staging epoch 3 now

    resumed = RunStore.create(store.run_dir, **RUN_META)  # the resume: older than the last commit goes
    assert staging_names(resumed) == [".staging-epoch_000001-step_99", ".staging-epoch_000003-step_40"]
    resumed.commit_epoch(3, 40, world_size=1)  # a later commit: dead attempts of earlier epochs go
    assert staging_names(resumed) == []
    assert assert_consistent(resumed) == {0: 10, 1: 20, 2: 30, 3: 40}


def row_arguments(epoch: int, step: int) -> dict:
    from store_testing import maps_for

    ids = np.array([0, 1])
    return dict(
        epoch=epoch, global_step=step, sample_id=ids, label=ids, prediction=ids, target=ids,
        score=np.full(2, float(step)), probability=np.full(2, 0.5), relevance=maps_for(ids, step),
    )  # fmt: skip


def test_plugin_routes_answer_405_to_methods_other_than_get(tmp_path):
    testing, synthetic = plugin_helpers()
    synthetic.build_run(tmp_path / "run", epochs=1, samples=6, analysed=[0])
    client, plugin = testing.make_app(tmp_path)
    urls = [testing.route(path.lstrip("/"), run="run", epoch=0) for path in plugin.routes()] + [
        testing.PREFIX + "/index.js"
    ]
    for url in urls:
        for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"):
            response = client.open(url, method=method)
            assert response.status_code == 405, (method, url, response.status_code)
            assert response.headers["Allow"] == "GET, HEAD"
        assert client.head(url).status_code != 405
    assert client.get(testing.route("run", run="run")).status_code == 200


def test_runs_whose_names_requests_cannot_carry_are_listed_with_an_error(tmp_path):
    testing, synthetic = plugin_helpers()
    long_name = "a" * 200 + "/" + "b" * 100
    for name in ("good", long_name, "bell\x07run"):
        synthetic.build_run(tmp_path / name, epochs=1, samples=6, analysed=[])
    client, _ = testing.make_app(tmp_path)
    runs = {r["run"]: r for r in json.loads(client.get(testing.route("runs")).get_data())["runs"]}
    assert runs["good"]["error"] is None and runs["good"]["epochs"] == 1
    for name in (long_name, "bell\x07run"):
        assert runs[name]["epochs"] == 0 and "rename the run's directory" in runs[name]["error"]
        assert client.get(testing.route("run", run=name)).status_code == 400  # what the routes answer


@pytest.mark.parametrize("fault", ["deleted", "truncated", "other epoch"])
def test_lrp_analyze_without_force_notices_a_deleted_or_replaced_part(tmp_path, capsys, fault):
    sys.path.insert(0, str(TESTS / "analysis"))
    from spray_helpers import make_run

    store = make_run(tmp_path / "run", epochs=(0, 1))
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TOML)
    arguments = [store.run_dir, "--config", config, "--quiet", "--no-scalars"]
    assert lrp_analyze(arguments) == 0
    part = store.store_dir / store.epoch_info(1).files[0]
    if fault == "deleted":
        part.unlink()
    elif fault == "truncated":
        part.write_bytes(part.read_bytes()[:-10])
    else:
        part.write_bytes((store.store_dir / store.epoch_info(0).files[0]).read_bytes())
    capsys.readouterr()
    assert lrp_analyze(arguments) == 1  # was: exit 0, "up to date"
    err = capsys.readouterr().err
    assert "epoch 1" in err and "part-00000.parquet" in err


@pytest.mark.parametrize(("key", "value"), [("class_names", 5), ("class_names", ["a", 1]), ("input_shape", "big")])
def test_bad_run_values_are_an_error_naming_the_manifest_and_the_key(tmp_path, key, value):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    path = edit_manifest(store, lambda m: m.update({key: value}))
    with pytest.raises(CorruptFileError, match=rf"{key!r} must be") as caught:
        RunStore(store.run_dir)
    assert str(path) in str(caught.value)
