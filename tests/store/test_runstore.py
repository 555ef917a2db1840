"""Tests of RunStore: creation, round trips, reading, bad input, versions, resume, analysis tables."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from store_testing import (
    RUN_META,
    SHAPE,
    assert_consistent,
    maps_for,
    new_store,
    table_for,
    write_ranks,
)

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
    StoreNotFoundError,
    UnsupportedFormatError,
    find_runs,
    make_attribution_table,
    make_probe_table,
)

# ------------------------------------------------------------------------------------------ basics


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
    assert info.files == ("attributions/epoch_000002/part-00000.parquet",)
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
    expected = [tmp_path / p for p in ["a/version_0", "a/version_0/nested", "a/version_1", "b/deep/er/version_0"]]
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

    path.write_text(json.dumps({**manifest, "format_version": "3.0", "library_version": "9.9.9"}))
    with pytest.raises(UnsupportedFormatError) as refused:
        RunStore(store.run_dir)
    message = str(refused.value)
    assert "format 3.0" in message and "9.9.9" in message
    assert "reads formats 1.x, 2.x only" in message and "Upgrade lrp-lightning" in message

    path.write_text(json.dumps({**manifest, "format_version": "2.7", "new_key": {"x": 1}}))
    newer = RunStore(store.run_dir)
    assert [e.epoch for e in newer.epochs()] == [0]
    assert newer.manifest["new_key"] == {"x": 1}
    np.testing.assert_array_equal(newer.heatmaps(0)[1], maps_for([0, 1], 10.0))
    with pytest.raises(UnsupportedFormatError, match=f"format 2.7, newer than format {S.FORMAT_VERSION}.*Upgrade"):
        RunStore.create(store.run_dir, **RUN_META)
    with pytest.raises(UnsupportedFormatError, match="newer"):
        newer.write_part(1, 20, table_for(1, 20, [0], 20.0))


def test_resume_keeps_epochs_and_incompatible_runs_are_refused(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert [e.epoch for e in resumed.epochs()] == [0]
    with pytest.raises(IncompatibleRunError, match=r"heatmap_shape is \[4, 5\] there but \[8, 8\] now.*another"):
        RunStore.create(tmp_path / "run", **{**RUN_META, "heatmap_shape": (8, 8)})
    with pytest.raises(IncompatibleRunError, match="composite is 'epsilon_gamma_box' there but 'epsilon' now"):
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
    notes = pa.table({SAMPLE_ID: [0, 1, 2], "x": [0.5, -1.0, 2.0], "cluster": [0, 1, 1]})
    path = store.write_analysis_table(0, "notes", notes, "cfg-abc")
    assert path == store.analysis_path(0, "notes") == store.store_dir / "analysis" / "notes" / "epoch_000000.parquet"
    back = store.read_analysis_table(0, "notes", config_hash="cfg-abc")
    assert back.replace_schema_metadata(None).equals(notes)
    assert back.schema.metadata[b"lrp.config_hash"] == b"cfg-abc"
    assert back.schema.metadata[b"lrp.source_commit"] == info.commit.encode()
    assert store.analysis_tables(0) == {"notes": "cfg-abc"}
    assert [p.name for p in path.parent.iterdir()] == ["epoch_000000.parquet"]  # no temp files left

    with pytest.raises(AnalysisNotFoundError, match="made with config cfg-abc, not cfg-new"):
        store.read_analysis_table(0, "notes", config_hash="cfg-new")
    with pytest.raises(AnalysisNotFoundError, match="no analysis table 'spectrum'"):
        store.read_analysis_table(0, "spectrum")
    with pytest.raises(ValueError, match="name '../x'"):
        store.write_analysis_table(0, "../x", notes, "cfg")
    with pytest.raises(EpochNotFoundError):
        store.write_analysis_table(4, "notes", notes, "cfg")

    write_ranks(store, 0, 11, [[0, 1, 2]], 11.0)  # the epoch was re-run: the analysis is stale
    assert store.analysis_tables(0) == {}
    with pytest.raises(AnalysisNotFoundError, match="replaced version"):
        store.read_analysis_table(0, "notes")
