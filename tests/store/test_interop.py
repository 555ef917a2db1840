"""The store is plain Parquet that pandas, pyarrow.dataset, DuckDB and Polars read with an integer epoch.

Format 1.x named folders hive-style (``epoch=000003``), which those readers take for a partition that
clashes with the integer ``epoch`` column (pandas: "Unable to merge", DuckDB: the string '000003').
These tests write real stores, read their folders with each tool, and check that a store of the old
layout still reads and migrates in place, atomically.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from store_testing import RUN_META, assert_consistent, new_store, table_for, write_ranks

from lrp_lightning.store import (
    ANALYSIS_DIR,
    ATTRIBUTIONS_DIR,
    COMMIT_MARKER,
    EPOCH,
    FORMAT_VERSION,
    CorruptFileError,
    RunStore,
    SchemaError,
    UnsupportedFormatError,
    fileio,
    legacy_epoch_dirname,
)

# ------------------------------------------------------------------------------------------ readers


def _pandas(path: Path) -> np.ndarray:
    pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install pandas)")
    column = pd.read_parquet(path)[EPOCH]
    assert pd.api.types.is_integer_dtype(column.dtype), column.dtype
    return column.to_numpy()


def _dataset(path: Path) -> np.ndarray:
    column = ds.dataset(path).to_table().column(EPOCH)
    assert pa.types.is_integer(column.type), column.type
    return column.to_numpy()


def _duckdb(path: Path, pattern: str) -> np.ndarray:
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install duckdb)")
    rows = duckdb.sql(f"SELECT epoch, typeof(epoch) FROM read_parquet('{path}/{pattern}')").fetchall()
    assert {kind for _, kind in rows} <= {"INTEGER", "BIGINT"}, {kind for _, kind in rows}
    return np.array([epoch for epoch, _ in rows], dtype=np.int64)


def _polars(path: Path | str) -> np.ndarray:
    pl = pytest.importorskip("polars", reason="polars is not installed (pip install polars)")
    column = pl.read_parquet(str(path))[EPOCH]
    assert column.dtype.is_integer(), column.dtype
    return column.to_numpy()


ATTRIBUTION_READERS = {
    "pandas": _pandas,
    "pyarrow.dataset": _dataset,
    # the epoch_* glob leaves out hidden directories of an epoch being written (see the contract)
    "duckdb": lambda path: _duckdb(path, "epoch_*/*.parquet"),
    "polars": lambda path: _polars(f"{path}/epoch_*/*.parquet"),
}
TABLE_READERS = {
    "pandas": _pandas,
    "pyarrow.dataset": _dataset,
    "duckdb": lambda path: _duckdb(path, "*.parquet"),
    "polars": _polars,  # the folder itself
}


def _store_with_epochs(tmp_path: Path) -> RunStore:
    """Epochs 0, 1 (written twice) and 3 from two ranks, plus epoch 4 staged but never committed."""
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2], [3, 4]], 10.0)
    write_ranks(store, 1, 20, [[0, 1], [2, 3, 4]], 20.0)
    write_ranks(store, 1, 25, [[0, 1, 2, 3], [4]], 25.0)  # replaces epoch 1
    write_ranks(store, 3, 40, [[0, 1, 2, 3, 4], []], 40.0)
    store.write_part(4, 50, table_for(4, 50, [0, 1, 2], 50.0))  # a crash before the commit: hidden
    return store


def _committed(store: RunStore) -> np.ndarray:
    return np.concatenate([np.full(info.rows, info.epoch) for info in store.epochs()])


@pytest.mark.parametrize("reader", sorted(ATTRIBUTION_READERS))
def test_the_attributions_folder_reads_with_an_integer_epoch(tmp_path, reader):
    store = _store_with_epochs(tmp_path)
    epochs = ATTRIBUTION_READERS[reader](store.store_dir / ATTRIBUTIONS_DIR)
    assert [e.epoch for e in store.epochs()] == [0, 1, 3]
    np.testing.assert_array_equal(np.sort(epochs), _committed(store))  # 5 rows each, no staged rows


def _analysed_run(tmp_path: Path) -> RunStore:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tb_plugin"))
    from synthetic_runs import build_run

    return build_run(tmp_path / "analysed", epochs=3, samples=12, analysed=[0, 2])


TABLES = ("points", "clusters", "lineage", "spectrum", "findings")


@pytest.mark.parametrize("reader", sorted(TABLE_READERS))
def test_each_analysis_table_folder_reads_with_an_integer_epoch(tmp_path, reader):
    store = _analysed_run(tmp_path)
    assert sorted(p.name for p in (store.store_dir / ANALYSIS_DIR).iterdir()) == sorted(TABLES)
    for name in TABLES:
        expected = np.concatenate([np.full(store.read_analysis_table(e, name).num_rows, e) for e in (0, 2)])
        assert expected.size and set(expected) == {0, 2}
        epochs = TABLE_READERS[reader](store.store_dir / ANALYSIS_DIR / name)
        np.testing.assert_array_equal(np.sort(epochs), expected, err_msg=name)


def test_no_folder_or_file_is_named_like_a_partition(tmp_path):
    _store_with_epochs(tmp_path)
    _analysed_run(tmp_path)
    names = [name for _, dirs, files in os.walk(tmp_path) for name in dirs + files if not name.startswith(".")]
    assert names and not [name for name in names if "=" in name]


def test_the_epoch_column_of_an_analysis_table_must_agree_with_its_place(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    write_ranks(store, 1, 20, [[0, 1]], 20.0)
    with pytest.raises(SchemaError, match="does not hold epoch 1"):
        store.write_analysis_table(1, "notes", pa.table({"x": [1.0], EPOCH: [0]}), "cfg")
    store.write_analysis_table(1, "notes", pa.table({"x": [1.0], EPOCH: [1]}), "cfg")  # agrees: kept
    store.write_analysis_table(0, "notes", pa.table({"x": [2.0]}), "cfg")
    assert store.read_analysis_table(0, "notes").column_names == ["x"]  # the store's column is left out
    # epoch 1's table edited by another tool to say epoch 0: the rows contradict the place
    edited = pq.read_table(store.analysis_path(1, "notes"))
    edited = edited.set_column(edited.schema.get_field_index(EPOCH), EPOCH, pa.array([0], pa.int32()))
    fileio.atomic_write_parquet(edited, store.analysis_path(1, "notes"))
    with pytest.raises(CorruptFileError, match="rows of another epoch than 1"):
        store.read_analysis_table(1, "notes")


# ------------------------------------------------------------------------------------------ format 1.x


def _to_format_1(store: RunStore) -> None:
    """Lay a store out as lrp-lightning wrote format 1.1: hive-style folders, no epoch in analysis tables."""
    root = store.store_dir
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["epochs"]:
        old = legacy_epoch_dirname(entry["epoch"])
        entry["files"] = [f"{ATTRIBUTIONS_DIR}/{old}/{Path(f).name}" for f in entry["files"]]
        (store.epoch_dir(entry["epoch"]) / COMMIT_MARKER).write_text(json.dumps(entry))
        store.epoch_dir(entry["epoch"]).rename(root / ATTRIBUTIONS_DIR / old)
        for name, path in store.analysis_files(entry["epoch"]).items():
            table = pq.read_table(path)
            legacy = root / ANALYSIS_DIR / old / f"{name}.parquet"
            legacy.parent.mkdir(exist_ok=True)
            pq.write_table(table.drop_columns([EPOCH]).replace_schema_metadata(table.schema.metadata), legacy)
            path.unlink()
    for folder in (root / ANALYSIS_DIR).iterdir() if (root / ANALYSIS_DIR).is_dir() else []:
        if "=" not in folder.name:
            folder.rmdir()
    manifest["format_version"] = "1.1"
    (root / "manifest.json").write_text(json.dumps(manifest))


def _contents(store: RunStore) -> dict:
    """What a reader sees: every epoch's rows and every current analysis table."""
    seen = {}
    for info in store.epochs():
        seen[info.epoch, info.commit] = store.attributions(info.epoch).sort_by("sample_id")
        for name, config_hash in store.analysis_tables(info.epoch).items():
            table = store.read_analysis_table(info.epoch, name, config_hash=config_hash)
            seen[info.epoch, name] = table.replace_schema_metadata(None)
    return seen


def _assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, table in before.items():
        assert after[key].equals(table), key


def test_a_format_1_store_reads_and_migrates_in_place(tmp_path):
    pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install pandas)")
    store = _analysed_run(tmp_path)
    before = _contents(store)
    assert sum(isinstance(key[1], str) and key[1] in TABLES for key in before) == 2 * len(TABLES)
    _to_format_1(store)
    with pytest.raises(Exception, match="Unable to merge"):  # the problem of the old layout
        pd.read_parquet(store.store_dir / ATTRIBUTIONS_DIR)

    old = RunStore(store.run_dir)
    assert old.format_version == "1.1"
    _assert_same(before, _contents(old))  # reads without migrating
    with pytest.raises(UnsupportedFormatError, match=r"older layout.*lrp-analyze.*migrate\(\)"):
        old.write_part(5, 60, table_for(5, 60, [0], 60.0))

    assert old.migrate() is True
    assert old.format_version == FORMAT_VERSION and old.migrate() is False
    _assert_same(before, _contents(old))
    assert [f for e in old.epochs() for f in e.files] == [
        f"attributions/epoch_{e:06d}/part-00000.parquet" for e in range(3)
    ]
    names = [n for _, dirs, files in os.walk(old.store_dir) for n in dirs + files]
    assert not [n for n in names if "=" in n]
    np.testing.assert_array_equal(np.sort(_pandas(old.store_dir / ATTRIBUTIONS_DIR)), _committed(old))
    for name in TABLES:
        epochs = _pandas(old.store_dir / ANALYSIS_DIR / name)
        assert set(epochs) == {0, 2} and epochs.size == sum(before[e, name].num_rows for e in (0, 2))


def test_resuming_or_lrp_analyze_migrates_a_format_1_store(tmp_path):
    from lrp_lightning.cli import main

    resumed = new_store(tmp_path / "a")
    write_ranks(resumed, 0, 10, [[0, 1, 2]], 10.0)
    _to_format_1(resumed)
    store = RunStore.create(resumed.run_dir, **RUN_META)  # a resumed training
    assert store.format_version == FORMAT_VERSION
    write_ranks(store, 1, 20, [[0, 1, 2]], 20.0)
    assert sorted(p.name for p in (store.store_dir / ATTRIBUTIONS_DIR).iterdir()) == ["epoch_000000", "epoch_000001"]
    assert assert_consistent(store) == {0: 10, 1: 20}

    analysed = new_store(tmp_path / "b")
    write_ranks(analysed, 0, 10, [[0, 1, 2]], 10.0)
    analysed.write_analysis_table(0, "notes", pa.table({"x": [1.5]}), "cfg")
    _to_format_1(analysed)
    main([str(analysed.run_dir)])  # the analysis of 3 samples is skipped; the migration is what counts
    migrated = RunStore(analysed.run_dir)
    assert migrated.format_version == FORMAT_VERSION
    assert [p.name for p in (migrated.store_dir / ATTRIBUTIONS_DIR).iterdir()] == ["epoch_000000"]
    assert migrated.read_analysis_table(0, "notes").column("x").to_pylist() == [1.5]
    assert pq.read_table(migrated.analysis_path(0, "notes")).column(EPOCH).to_pylist() == [0]


def _fail_after(monkeypatch, name: str, calls: int, *, after_writing: bool = False) -> None:
    """Make ``fileio.<name>`` raise on its call number ``calls + 1`` (after doing it, if ``after_writing``)."""
    real, count = getattr(fileio, name), [0]

    def failing(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            if after_writing:
                real(*args, **kwargs)
            raise OSError(f"simulated crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(fileio, name, failing)


CRASHES = {
    "after renaming one epoch folder": ("move_dir", 1, False),
    "before writing an analysis table": ("atomic_write_parquet", 3, False),
    "between writing a table and deleting its old file": ("atomic_write_parquet", 4, True),
    "before the manifest": ("atomic_write_json", 0, False),
}


@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_an_interrupted_migration_reads_consistently_and_a_rerun_finishes_it(tmp_path, monkeypatch, crash):
    store = _analysed_run(tmp_path)
    before = _contents(store)
    _to_format_1(store)
    name, calls, after_writing = CRASHES[crash]
    with monkeypatch.context() as patch:
        _fail_after(patch, name, calls, after_writing=after_writing)
        with pytest.raises(OSError, match="simulated crash"):
            RunStore(store.run_dir).migrate()
    interrupted = RunStore(store.run_dir)
    assert interrupted.format_version == "1.1"
    _assert_same(before, _contents(interrupted))  # every epoch and table reads, from either place

    assert interrupted.migrate() is True
    assert interrupted.format_version == FORMAT_VERSION
    _assert_same(before, _contents(interrupted))
    assert not [n for _, dirs, files in os.walk(interrupted.store_dir) for n in dirs + files if "=" in n]
    np.testing.assert_array_equal(np.sort(_dataset(interrupted.store_dir / ATTRIBUTIONS_DIR)), _committed(interrupted))
