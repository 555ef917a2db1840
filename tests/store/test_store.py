"""Tests of the on-disk contract: round trips, DDP parts, replacement, crash safety, errors."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import lrp_lightning
from lrp_lightning import store as S
from lrp_lightning.store import (
    RELEVANCE,
    SAMPLE_ID,
    AnalysisNotFoundError,
    CorruptFileError,
    EpochNotFoundError,
    IncompatibleRunError,
    RunStore,
    SampleNotFoundError,
    SchemaError,
    StoreError,
    StoreNotFoundError,
    UnsupportedFormatError,
    find_runs,
    make_attribution_table,
    make_probe_table,
)

SHAPE = (4, 5)
RUN_META = {"heatmap_shape": SHAPE, "class_names": ["zero", "one", "two"], "composite": "epsilon_gamma_box"}
REPO = Path(__file__).resolve().parents[2]


def maps_for(ids, version: float, shape=SHAPE) -> np.ndarray:
    """Maps whose values encode (sample id, version), exactly representable in float16."""
    ids = np.asarray(ids)
    grid = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape) / 8
    return ((ids[:, None, None] % 8) * 8 + version % 16 + grid).astype(np.float32)  # all below 128


def table_for(epoch: int, step: int, ids, version: float, **extra_columns) -> pa.Table:
    """Attribution rows in which every value says which version wrote them."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    return make_attribution_table(
        epoch=epoch,
        global_step=step,
        sample_id=ids,
        label=ids % 3,
        prediction=(ids + 1) % 3,
        target=ids % 3,
        score=np.full(n, version),
        probability=np.full(n, 0.25),
        relevance=maps_for(ids, version),
        extra=extra_columns or None,
    )


def new_store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path / "run", **RUN_META)


def write_ranks(store: RunStore, epoch: int, step: int, parts: list, version: float) -> S.EpochInfo:
    for rank, ids in enumerate(parts):
        store.write_part(epoch, step, table_for(epoch, step, ids, version), rank=rank)
    return store.commit_epoch(epoch, step, world_size=len(parts))


def assert_consistent(store: RunStore) -> dict[int, int]:
    """Every listed epoch reads completely as one version; returns epoch -> global step seen."""
    seen = {}
    for info in store.epochs():
        table = store.attributions(info.epoch)
        assert table.num_rows == info.rows
        steps = set(table.column("global_step").to_pylist())
        assert steps == {info.global_step}, f"epoch {info.epoch} mixes versions {steps}"
        scores = set(table.column("score").to_pylist())
        assert scores == {float(info.global_step)}, f"epoch {info.epoch} mixes versions {scores}"
        ids, maps = store.heatmaps(info.epoch)
        np.testing.assert_array_equal(maps, maps_for(ids, info.global_step))
        seen[info.epoch] = info.global_step
    return seen


def hidden_entries(store: RunStore) -> list[str]:
    return sorted(p.name for p in (store.store_dir / S.ATTRIBUTIONS_DIR).iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------ basics


def test_module_imports_only_stdlib_numpy_pyarrow():
    tree = ast.parse(Path(S.__file__).read_text())
    top_level = set()
    for node in tree.body:  # imports inside functions (the lazy __version__) are allowed
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    third_party = top_level - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "pyarrow"}


def test_create_layout_and_opening_by_run_or_store_dir(tmp_path):
    store = new_store(tmp_path)
    assert store.store_dir == tmp_path / "run" / "plugins" / "lrp"
    assert store.run_dir == tmp_path / "run"
    manifest = json.loads((store.store_dir / "manifest.json").read_text())
    assert manifest["format_version"] == S.FORMAT_VERSION
    assert manifest["library_version"] == lrp_lightning.__version__
    assert manifest["heatmap_shape"] == [4, 5]
    assert manifest["class_names"] == ["zero", "one", "two"]
    assert manifest["epochs"] == []
    assert RunStore(tmp_path / "run").store_dir == store.store_dir
    assert RunStore(store.store_dir).run_dir == tmp_path / "run"
    assert store.heatmap_shape == SHAPE


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no lrp-lightning store at .*find_runs"):
        RunStore(tmp_path)


def test_probe_round_trip_and_rewrite_rules(tmp_path):
    store = new_store(tmp_path)
    png = [b"\x89PNG-a", b"\x89PNG-b", None]
    table = make_probe_table(
        sample_id=[7, 3, 11],
        dataset_index=[70, 30, 110],
        label=[1, 0, 2],
        thumbnail=png,
        metadata={"split": ["val", "val", "test"]},
    )
    path = store.write_probe(table)
    probe = store.probe_table()
    assert probe.column_names == [*S.PROBE_COLUMNS, "split"]
    assert probe.column(SAMPLE_ID).to_pylist() == [7, 3, 11]
    assert probe.column("dataset_index").to_pylist() == [70, 30, 110]
    assert probe.column("thumbnail").to_pylist() == png
    assert probe.column("split").to_pylist() == ["val", "val", "test"]

    before = path.stat()
    same_ids = make_probe_table(sample_id=[11, 7, 3], dataset_index=[0, 0, 0], label=[0, 0, 0])
    assert store.write_probe(same_ids) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # a no-op
    assert store.probe_table().column("dataset_index").to_pylist() == [70, 30, 110]

    other = make_probe_table(sample_id=[7, 3, 12], dataset_index=[0, 0, 0], label=[0, 0, 0])
    with pytest.raises(IncompatibleRunError, match=r"different probe set .*\[11\].*\[12\]"):
        store.write_probe(other)
    with pytest.raises(SchemaError, match=r"unique; repeated: \[4\]"):
        store.write_probe(make_probe_table(sample_id=[4, 4], dataset_index=[0, 1], label=[0, 0]))


def test_attribution_round_trip_is_exact_for_every_float16(tmp_path):
    store = new_store(tmp_path)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**16, size=(64, *SHAPE), dtype=np.uint16)
    bits[0, 0, :4] = [0x7C00, 0xFC00, 0x8000, 0x0001]  # +inf, -inf, -0.0, smallest subnormal
    bits[0, 1, 0] = 0x7E00  # NaN
    maps16 = bits.view(np.float16)
    ids = np.arange(100, 164)
    table = make_attribution_table(
        epoch=2,
        global_step=77,
        sample_id=ids,
        label=ids % 3,
        prediction=ids % 2,
        target=np.full(64, 2),
        score=np.linspace(-1, 1, 64),
        probability=np.linspace(0, 1, 64),
        relevance=maps16,
        relevance_sum=np.arange(64) / 4,
        extra={"entropy": np.arange(64, dtype=np.float64) / 3},
    )
    info = store.write_epoch(2, 77, table)
    assert (info.epoch, info.global_step, info.rows) == (2, 77, 64)
    assert info.files == ("attributions/epoch=000002/part-00000.parquet",)
    assert store.epochs() == [info]

    back = store.attributions(2)
    assert back.column_names == [*S.ATTRIBUTION_COLUMNS, "entropy"]
    assert back.schema.field(RELEVANCE).type == pa.binary()
    assert back.column(SAMPLE_ID).to_pylist() == ids.tolist()
    assert back.column("epoch").to_pylist() == [2] * 64
    assert back.column("target").to_pylist() == [2] * 64
    np.testing.assert_array_equal(back.column("score").to_numpy(), np.linspace(-1, 1, 64).astype(np.float32))
    np.testing.assert_array_equal(back.column("relevance_sum").to_numpy(), np.arange(64) / 4)
    np.testing.assert_array_equal(back.column("entropy").to_numpy(), np.arange(64) / 3)
    stored_bits = np.frombuffer(b"".join(back.column(RELEVANCE).to_pylist()), dtype="<u2").reshape(bits.shape)
    np.testing.assert_array_equal(stored_bits, bits)  # bit-exact, NaN payloads included

    got_ids, got_maps = store.heatmaps(2)
    assert got_maps.dtype == np.float32 and got_maps.shape == (64, *SHAPE)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_maps, maps16.astype(np.float32))
    assert np.isnan(got_maps[0, 1, 0]) and got_maps[0, 0, 0] == np.inf


def test_relevance_sum_defaults_to_the_exact_sum_and_overflow_warns(tmp_path):
    store = new_store(tmp_path)
    maps = np.full((2, *SHAPE), 0.1, dtype=np.float64)
    maps[1, 0, 0] = 1e6  # beyond float16
    with pytest.warns(RuntimeWarning, match="1 relevance values exceed the float16 range"):
        table = make_attribution_table(
            epoch=0, global_step=0, sample_id=[0, 1], label=[0, 0], prediction=[0, 0], target=[0, 0],
            score=[0, 0], probability=[0, 0], relevance=maps,
        )  # fmt: skip
    store.write_epoch(0, 0, table)
    sums = store.attributions(0, ["relevance_sum"]).column(0).to_numpy()
    np.testing.assert_allclose(sums, [2.0, 1e6 + 1.9], rtol=1e-6)
    assert store.heatmaps(0)[1][1, 0, 0] == np.inf


def test_two_ranks_concatenated_and_duplicates_removed(tmp_path):
    store = new_store(tmp_path)
    store.write_part(0, 10, table_for(0, 10, [0, 1, 2, 3, 4], 10.0, margin=np.arange(5.0)), rank=0)
    # the distributed sampler pads rank 1 with samples 0 and 1 again; their rows must not appear twice
    store.write_part(0, 10, table_for(0, 10, [5, 6, 7, 0, 1], 99.0), rank=1)
    info = store.commit_epoch(0, 10, world_size=2)
    assert info.rows == 8
    assert info.files == (
        "attributions/epoch=000000/part-00000.parquet",
        "attributions/epoch=000000/part-00001.parquet",
    )
    table = store.attributions(0)
    assert table.column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert table.column("score").to_pylist() == [10.0] * 5 + [99.0] * 3  # duplicates: rank 0's rows kept
    assert table.column("margin").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, None, None, None]
    ids, maps = store.heatmaps(0)
    np.testing.assert_array_equal(maps[:5], maps_for([0, 1, 2, 3, 4], 10.0))
    np.testing.assert_array_equal(maps[5:], maps_for([5, 6, 7], 99.0))
    assert store.attributions(0, ["score"]).column_names == ["score"]


def test_rerun_of_an_epoch_replaces_its_rows(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    first = write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    # resumed from a checkpoint: epoch 1 runs again, at another step and with fewer ranks
    second = write_ranks(store, 1, 25, [[3, 2, 1, 0]], 25.0)
    assert [e.epoch for e in store.epochs()] == [0, 1]
    assert second.commit != first.commit and second.rows == first.rows == 4
    table = store.attributions(1)
    assert table.column(SAMPLE_ID).to_pylist() == [3, 2, 1, 0]
    assert set(table.column("score").to_pylist()) == {25.0}
    assert assert_consistent(store) == {0: 10, 1: 25}
    assert sorted(p.name for p in store.epoch_dir(1).iterdir()) == ["_commit.json", "part-00000.parquet"]
    assert hidden_entries(store) == []
    # the same step again (a resume from the same checkpoint) replaces as well
    write_ranks(store, 1, 25, [[0, 1, 2, 3]], 25.0)
    assert store.attributions(1).column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3]


def test_commit_needs_every_ranks_part(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    store.write_part(0, 30, table_for(0, 30, [0], 30.0), rank=0)
    with pytest.raises(StoreError, match=r"no part from rank\(s\) \[1\].*write_part"):
        store.commit_epoch(0, 30, world_size=2)
    assert assert_consistent(store) == {0: 10}


def test_stale_parts_of_more_ranks_are_not_committed(tmp_path):
    store = new_store(tmp_path)
    # a crashed attempt with three ranks left parts in the staging directory of step 40
    for rank, ids in enumerate([[0], [1], [2]]):
        store.write_part(0, 40, table_for(0, 40, ids, 1.0), rank=rank)
    write_ranks(store, 0, 40, [[5, 6], [7]], 40.0)  # the resumed run has two ranks
    assert store.attributions(0).column(SAMPLE_ID).to_pylist() == [5, 6, 7]
    assert assert_consistent(store) == {0: 40}


def test_empty_part_of_a_rank_without_samples(tmp_path):
    store = new_store(tmp_path)
    info = write_ranks(store, 0, 5, [[0, 1, 2], []], 5.0)
    assert info.rows == 3
    assert store.attributions(0).column(SAMPLE_ID).to_pylist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------ reading


def test_missing_epoch_lists_the_available_ones(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(EpochNotFoundError, match="complete epochs: none yet"):
        store.attributions(0)
    write_ranks(store, 0, 10, [[0]], 10.0)
    write_ranks(store, 3, 40, [[0]], 40.0)
    with pytest.raises(EpochNotFoundError, match=r"epoch 2 is not a complete epoch .*complete epochs: 0, 3"):
        store.heatmaps(2)
    with pytest.raises(SchemaError, match=r"unknown column\(s\) \['nope'\]"):
        store.attributions(0, ["score", "nope"])


def test_heatmaps_of_selected_samples_and_across_epochs(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2], [3, 4]], 10.0)
    write_ranks(store, 1, 20, [[4, 3, 2]], 20.0)
    write_ranks(store, 2, 30, [[0, 4]], 30.0)
    ids, maps = store.heatmaps(0, [4, 0, 3])
    np.testing.assert_array_equal(ids, [4, 0, 3])
    np.testing.assert_array_equal(maps, maps_for([4, 0, 3], 10.0))
    with pytest.raises(SampleNotFoundError, match=r"sample id\(s\) \[9\] are not in epoch 1"):
        store.heatmaps(1, [2, 9])
    epochs, maps = store.sample_heatmaps(4)
    np.testing.assert_array_equal(epochs, [0, 1, 2])
    np.testing.assert_array_equal(maps, np.concatenate([maps_for([4], v) for v in (10.0, 20.0, 30.0)]))
    epochs, maps = store.sample_heatmaps(0)
    np.testing.assert_array_equal(epochs, [0, 2])  # sample 0 was not explained in epoch 1
    with pytest.raises(SampleNotFoundError, match="sample id 99 is in no complete epoch"):
        store.sample_heatmaps(99)


def test_streaming_batches_cover_all_rows_once(tmp_path):
    store = new_store(tmp_path)
    store.write_part(0, 7, table_for(0, 7, np.arange(10), 7.0), rank=0, row_group_size=3)
    store.write_part(0, 7, table_for(0, 7, [10, 11, 12, 3, 13, 14, 15, 16], 7.0), rank=1, row_group_size=3)
    store.commit_epoch(0, 7, world_size=2)
    whole = store.attributions(0)

    batches = list(store.iter_batches(0))
    assert len(batches) == 7  # 4 row groups + 3 row groups
    assert {b.schema for b in batches} == {whole.schema}
    streamed = pa.Table.from_batches(batches)
    assert streamed.column(SAMPLE_ID).to_pylist() == whole.column(SAMPLE_ID).to_pylist() == list(range(17))
    assert streamed.equals(whole)

    small = list(store.iter_batches(0, columns=[SAMPLE_ID], batch_size=2))
    assert max(b.num_rows for b in small) == 2
    assert [i for b in small for i in b.column(0).to_pylist()] == list(range(17))

    pieces = list(store.iter_heatmaps(0))
    ids = np.concatenate([p[0] for p in pieces])
    maps = np.concatenate([p[1] for p in pieces])
    np.testing.assert_array_equal(ids, np.arange(17))
    np.testing.assert_array_equal(maps, store.heatmaps(0)[1])
    with pytest.raises(EpochNotFoundError):
        store.iter_batches(5)  # raised at the call, not at the first next()


def test_find_runs_finds_nested_runs(tmp_path):
    for run in ["a/version_0", "a/version_1", "b/deep/er/version_0", ".hidden/version_0"]:
        RunStore.create(tmp_path / run, **RUN_META)
    (tmp_path / "c" / "version_0" / "plugins" / "lrp").mkdir(parents=True)  # no manifest: not a run
    RunStore.create(tmp_path / "a" / "version_0" / "nested", **RUN_META)
    expected = [
        tmp_path / p for p in ["a/version_0", "a/version_0/nested", "a/version_1", "b/deep/er/version_0"]
    ]
    assert find_runs(tmp_path) == expected
    assert [s.run_dir for s in RunStore.find(tmp_path / "b")] == [tmp_path / "b/deep/er/version_0"]
    assert find_runs(tmp_path / "a" / "version_1") == [tmp_path / "a" / "version_1"]
    assert find_runs(tmp_path / "c") == []


# ------------------------------------------------------------------------------------------ bad input


def test_wrong_maps_are_refused_with_the_fix(tmp_path):
    store = new_store(tmp_path)
    kwargs = dict(epoch=0, global_step=1, sample_id=[0], label=[0], prediction=[0], target=[0], score=[0],
                  probability=[0])  # fmt: skip
    wrong = make_attribution_table(**kwargs, relevance=np.zeros((1, 8, 8), np.float32))
    with pytest.raises(SchemaError, match=r"shape \(8, 8\).*heatmap_shape \(4, 5\).*\(N, 4, 5\)"):
        store.write_part(0, 1, wrong)
    transposed = make_attribution_table(**kwargs, relevance=np.zeros((1, 5, 4), np.float32))
    with pytest.raises(SchemaError, match=r"shape \(5, 4\)"):
        store.write_part(0, 1, transposed)
    with pytest.raises(SchemaError, match=r"relevance.sum\(axis=1\)"):
        make_attribution_table(**kwargs, relevance=np.zeros((1, 3, 4, 5), np.float32))
    with pytest.raises(SchemaError, match="floating point.*int64"):
        make_attribution_table(**kwargs, relevance=np.zeros((1, 4, 5), np.int64))
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['relevance'\].*make_attribution_table"):
        store.write_part(0, 1, pa.table({c: [0] for c in S.ATTRIBUTION_COLUMNS[:-1]}))
    good = make_attribution_table(**kwargs, relevance=np.full((1, 4, 5), np.nan, np.float32))
    with pytest.raises(SchemaError, match=r"'epoch' holds \[0\], expected only 3"):
        store.write_part(3, 1, good)
    store.write_epoch(0, 1, good)  # NaN maps are stored; analysis deals with them
    assert np.isnan(store.heatmaps(0)[1]).all()
    assert not any(store.store_dir.rglob("*.tmp-*"))


def test_corrupt_parquet_names_the_file(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1], [2]], 10.0)
    part = store.epoch_dir(0) / "part-00001.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"part-00001\.parquet is not a readable Parquet file"):
        store.attributions(0)
    part.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=str(part).replace("\\", "\\\\")):
        store.heatmaps(0)
    probe = store.store_dir / S.PROBE_FILE
    probe.write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptFileError, match=r"probe\.parquet is not a readable Parquet file"):
        store.probe_table()


def test_corrupt_manifest_is_named(tmp_path):
    store = new_store(tmp_path)
    (store.store_dir / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"manifest\.json is not valid JSON"):
        RunStore(store.run_dir)


def test_unknown_major_version_is_refused_and_newer_minor_read(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    path = store.store_dir / "manifest.json"
    manifest = json.loads(path.read_text())

    path.write_text(json.dumps({**manifest, "format_version": "2.0", "library_version": "9.9.9"}))
    with pytest.raises(UnsupportedFormatError) as refused:
        RunStore(store.run_dir)
    message = str(refused.value)
    assert "format 2.0" in message and "9.9.9" in message
    assert "reads format 1.x only" in message and "Upgrade lrp-lightning" in message

    path.write_text(json.dumps({**manifest, "format_version": "1.7", "new_key": {"x": 1}}))
    newer = RunStore(store.run_dir)
    assert [e.epoch for e in newer.epochs()] == [0]
    assert newer.manifest["new_key"] == {"x": 1}
    np.testing.assert_array_equal(newer.heatmaps(0)[1], maps_for([0, 1], 10.0))
    with pytest.raises(UnsupportedFormatError, match="format 1.7, newer than format 1.0.*Upgrade"):
        RunStore.create(store.run_dir, **RUN_META)
    with pytest.raises(UnsupportedFormatError, match="newer"):
        newer.write_part(1, 20, table_for(1, 20, [0], 20.0))


def test_resume_keeps_epochs_and_incompatible_runs_are_refused(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert [e.epoch for e in resumed.epochs()] == [0]
    with pytest.raises(
        IncompatibleRunError, match=r"heatmap_shape is \[4, 5\] there but \[8, 8\] now.*another"
    ):
        RunStore.create(tmp_path / "run", **{**RUN_META, "heatmap_shape": (8, 8)})
    with pytest.raises(
        IncompatibleRunError, match="composite is 'epsilon_gamma_box' there but 'epsilon' now"
    ):
        RunStore.create(tmp_path / "run" / "plugins" / "lrp", **{**RUN_META, "composite": "epsilon"})
    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10}  # nothing was deleted


def test_manifest_is_reread_when_another_process_commits(tmp_path):
    reader = new_store(tmp_path)
    writer = RunStore(tmp_path / "run")
    assert reader.epochs() == []
    write_ranks(writer, 0, 10, [[0]], 10.0)
    assert [e.epoch for e in reader.epochs()] == [0]


# ------------------------------------------------------------------------------------------ analysis


def test_analysis_tables_round_trip_with_config_hash(tmp_path):
    store = new_store(tmp_path)
    info = write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    points = pa.table({SAMPLE_ID: [0, 1, 2], "x": [0.5, -1.0, 2.0], "cluster": [0, 1, 1]})
    path = store.write_analysis_table(0, "points", points, "cfg-abc")
    assert path == store.analysis_dir(0) / "points.parquet"
    assert store.analysis_dir(0) == store.store_dir / "analysis" / "epoch=000000"
    back = store.read_analysis_table(0, "points", config_hash="cfg-abc")
    assert back.replace_schema_metadata(None).equals(points)
    assert back.schema.metadata[b"lrp.config_hash"] == b"cfg-abc"
    assert back.schema.metadata[b"lrp.source_commit"] == info.commit.encode()
    assert store.analysis_tables(0) == {"points": "cfg-abc"}
    assert [p.name for p in store.analysis_dir(0).iterdir()] == ["points.parquet"]  # no temp files left

    with pytest.raises(AnalysisNotFoundError, match="made with config cfg-abc, not cfg-new"):
        store.read_analysis_table(0, "points", config_hash="cfg-new")
    with pytest.raises(AnalysisNotFoundError, match="no analysis table 'spectrum'"):
        store.read_analysis_table(0, "spectrum")
    with pytest.raises(ValueError, match="name '../x'"):
        store.write_analysis_table(0, "../x", points, "cfg")
    with pytest.raises(EpochNotFoundError):
        store.write_analysis_table(4, "points", points, "cfg")

    write_ranks(store, 0, 11, [[0, 1, 2]], 11.0)  # the epoch was re-run: the analysis is stale
    assert store.analysis_tables(0) == {}
    with pytest.raises(AnalysisNotFoundError, match="replaced version"):
        store.read_analysis_table(0, "points")


# ------------------------------------------------------------------------------------------ crash safety


class SimulatedCrash(BaseException):
    pass


def crash_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th os.replace (1-based) crash; call ``n + 1`` crashes the cleanup instead."""
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == call:
            raise SimulatedCrash(f"crash before os.replace #{call}: {src} -> {dst}")
        real_replace(src, dst)

    def remove_tree(path):
        calls["n"] += 1
        if calls["n"] >= call:
            raise SimulatedCrash(f"crash while deleting {path}")
        S.shutil.rmtree(path)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(S, "_remove_tree", remove_tree)


# os.replace calls of a commit: marker, [old epoch aside], staging into place, manifest; then cleanup
REPLACING_STEPS = ["marker", "move old aside", "move staging in", "manifest", "cleanup"]
FIRST_STEPS = ["marker", "move staging in", "manifest", "cleanup"]


@pytest.mark.parametrize(
    ("replacing", "step"),
    [(True, s) for s in REPLACING_STEPS] + [(False, s) for s in FIRST_STEPS],
)
def test_simulated_crash_at_each_commit_step(tmp_path, monkeypatch, replacing, step):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    if replacing:
        old = write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    store.write_part(1, 25, table_for(1, 25, [9], 25.0))  # an attempt that crashed before its commit
    for rank, ids in enumerate([[3, 2], [1, 0, 2]]):
        store.write_part(1, 30, table_for(1, 30, ids, 30.0), rank=rank)

    steps = REPLACING_STEPS if replacing else FIRST_STEPS
    with monkeypatch.context() as patch:
        crash_at(patch, steps.index(step) + 1)
        with pytest.raises(SimulatedCrash):
            store.commit_epoch(1, 30, world_size=2)

    previous = {1: 20} if replacing else {}
    committed = step == "cleanup"
    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, **({1: 30} if committed else previous)}

    # the resumed run (rank 0) opens the store for writing: a commit that got as far as moving the new
    # version into place is rolled forward; moved-aside versions are kept only while the manifest needs them
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    rolled_forward = step in ("manifest", "cleanup")
    assert assert_consistent(resumed) == {0: 10, **({1: 30} if rolled_forward else previous)}
    asides = [n for n in hidden_entries(resumed) if n.startswith(".replaced-")]
    assert asides == (
        [f".replaced-epoch=000001-{old.commit}"] if replacing and step == "move staging in" else []
    )

    write_ranks(resumed, 1, 40, [[0, 1, 2, 3]], 40.0)
    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, 1: 40}
    assert hidden_entries(resumed) == []  # stale staging (steps 25, 30) and moved-aside versions are gone


CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import RUN_META, table_for
    from lrp_lightning.store import RunStore

    store = RunStore.create({run!r}, **RUN_META)
    crash_at = int(sys.argv[1])
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == crash_at:
            os._exit(17)  # a hard crash: no cleanup, no exception handlers
        real_replace(src, dst)

    os.replace = replace
    for rank, ids in enumerate([[3, 2], [1, 0, 2]]):
        store.write_part(1, 30, table_for(1, 30, ids, 30.0), rank=rank)
    store.commit_epoch(1, 30, world_size=2)
    """
)

# os.replace calls of the whole epoch write: part 0, part 1, marker, move old aside, move staging in, manifest
CHILD_STEPS = ["part 0", "part 1", "marker", "move old aside", "move staging in", "manifest"]


@pytest.mark.parametrize("step", CHILD_STEPS)
def test_process_killed_while_writing_an_epoch(tmp_path, step):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run")))
    result = subprocess.run(
        [sys.executable, str(script), str(CHILD_STEPS.index(step) + 1)], capture_output=True, text=True
    )
    assert result.returncode == 17, result.stderr

    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, 1: 20}
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert assert_consistent(resumed) == {0: 10, 1: 30 if step == "manifest" else 20}
    write_ranks(resumed, 1, 40, [[0, 1, 2, 3]], 40.0)
    assert assert_consistent(resumed) == {0: 10, 1: 40}
    assert hidden_entries(resumed) == []


LOOPING_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_store import RUN_META, write_ranks
    from lrp_lightning.store import RunStore

    store = RunStore.create({run!r}, **RUN_META)
    step = 100
    while True:
        step += 1
        write_ranks(store, 1, step, [[0, 1, 2], [3, 4, 0]], float(step))
        print(step, flush=True)
    """
)


def test_sigkill_during_repeated_commits_with_concurrent_readers(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    script = tmp_path / "loop.py"
    script.write_text(LOOPING_CHILD.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run")))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()
        assert first.strip() == "101"
        reader = RunStore(tmp_path / "run")
        versions = set()
        deadline = time.monotonic() + 3.0
        while len(versions) < 5 and time.monotonic() < deadline:
            table = reader.attributions(1)  # a commit may be replacing the epoch right now
            steps = set(table.column("global_step").to_pylist())
            assert len(steps) == 1, f"a read mixed versions {steps}"
            assert set(table.column("score").to_pylist()) == {float(*steps)}
            assert table.column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3, 4]
            versions |= steps
        assert len(versions) >= 2, "the reader never saw the writer's progress"
        time.sleep(0.013)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    seen = assert_consistent(RunStore(tmp_path / "run"))
    assert seen[0] == 10 and seen[1] > 100
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert assert_consistent(resumed)[1] >= seen[1]  # at most rolled forward to the newer version
    write_ranks(resumed, 1, 5000, [[0, 1, 2, 3, 4]], 5000.0)
    assert assert_consistent(resumed) == {0: 10, 1: 5000}
    assert hidden_entries(resumed) == []


def test_readers_ignore_leftovers_of_crashed_writers(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    root = store.store_dir / S.ATTRIBUTIONS_DIR
    (root / ".staging-epoch=000001-step=20").mkdir()
    (root / ".staging-epoch=000001-step=20" / "part-00000.parquet").write_bytes(b"half a file")
    (root / "epoch=000002").mkdir()  # renamed into place, but without marker: never committed
    (store.store_dir / ".manifest.json.tmp-1-abc").write_text("{")
    assert [e.epoch for e in store.epochs()] == [0]
    assert assert_consistent(store) == {0: 10}
    with pytest.raises(EpochNotFoundError):
        store.attributions(1)
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert not list(resumed.store_dir.glob(".manifest.json.tmp-*"))
    write_ranks(resumed, 1, 20, [[0, 1]], 20.0)
    assert assert_consistent(resumed) == {0: 10, 1: 20}
    assert hidden_entries(resumed) == []
