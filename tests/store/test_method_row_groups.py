"""One method's read of a several-method epoch reads only the row groups holding its rows, and gives
exactly the table that reading every row and filtering gave (the read before the pushdown).

Parts are written with a row group per method (``_method_groups``); parts written before that, whose
row groups mix methods (``mixed=True`` writes them as the writer did then), read the same."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lrp_lightning.store as S
from lrp_lightning.store import RunStore, make_attribution_table

METHODS = ["epsilon_gamma_box", "gradient", "input_x_gradient"]


def rows(ids, method: str | None, offset: float) -> pa.Table:
    ids = np.asarray(ids, np.int64)
    return make_attribution_table(
        epoch=0,
        global_step=0,
        sample_id=ids,
        label=ids % 2,
        prediction=ids % 2,
        target=ids % 2,
        score=np.full(len(ids), offset),
        probability=np.full(len(ids), 0.5),
        relevance=np.stack([np.full((2, 3), offset + i, np.float32) for i in ids]),
        method=method,
    )


def store_with(tmp_path, row_group_size: int, rank1_methods=METHODS, mixed: bool = False, monkeypatch=None) -> RunStore:
    """Rank 0 holds ids 0..6, rank 1 ids 5..9 (5 and 6 twice: rank 0's rows count), every method's rows
    one block after the other, in row groups of at most ``row_group_size`` rows of one method; with
    ``mixed``, as parts were written before: row groups of ``row_group_size`` rows straddling the blocks."""
    if mixed:
        monkeypatch.setattr(S.runstore, "_method_groups", lambda table: [table])
    store = RunStore.create(
        tmp_path, heatmap_shape=(2, 3), composite={"name": METHODS[0]}, methods=[{"name": m} for m in METHODS]
    )
    rank0 = pa.concat_tables([rows(range(7), m, 100.0 * k) for k, m in enumerate(METHODS)])
    rank1 = pa.concat_tables([rows(range(5, 10), m, 100.0 * METHODS.index(m) + 50) for m in rank1_methods])
    store.write_part(0, 0, rank0, rank=0, row_group_size=row_group_size)
    store.write_part(0, 0, rank1, rank=1, row_group_size=row_group_size)
    store.commit_epoch(0, 0, world_size=2)
    return store


def read_all_then_filter(store: RunStore, method: str | None, columns=None) -> pa.Table:
    """The read before the pushdown: every row of every part, then the method's first occurrences."""
    with store._open_epoch(0, method=method) as snapshot:
        schema = snapshot.unified_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        tables = []
        for part, keep in zip(snapshot.parts, snapshot.keep_masks()):
            table = part.read([c for c in schema.names if c in part.names])
            tables.append(S.tables._conform_to(table if keep is None else table.filter(pa.array(keep)), schema))
    return pa.concat_tables(tables)


@pytest.mark.parametrize("mixed", [False, True], ids=["grouped", "mixed"])
@pytest.mark.parametrize("row_group_size", [1, 4, 5, 64])
def test_each_method_reads_the_same_table_as_before(tmp_path, row_group_size, mixed, monkeypatch):
    store = store_with(tmp_path, row_group_size, mixed=mixed, monkeypatch=monkeypatch)
    for k, method in enumerate(METHODS):
        table = store.attributions(0, method=method)
        assert table.equals(read_all_then_filter(store, method))
        assert table.column(S.SAMPLE_ID).to_pylist() == list(range(10))
        assert set(table.column(S.METHOD).to_pylist()) == {method}
        assert table.column(S.SCORE).to_pylist() == [100.0 * k] * 7 + [100.0 * k + 50] * 3
        ids, maps = store.heatmaps(0, method=method)
        assert maps[:, 1, 2].tolist() == [100.0 * k + i + (50 if i > 6 else 0) for i in ids]
    default = store.attributions(0, [S.SAMPLE_ID, S.SCORE])
    assert default.equals(read_all_then_filter(store, None, [S.SAMPLE_ID, S.SCORE]))
    assert default.column(1).to_pylist() == [0.0] * 7 + [50.0] * 3
    assert store.select(method="gradient").attributions(0).equals(store.attributions(0, method="gradient"))


@pytest.mark.parametrize("mixed", [False, True], ids=["grouped", "mixed"])
def test_a_method_absent_from_one_part_reads_none_of_its_groups(tmp_path, mixed, monkeypatch):
    store = store_with(tmp_path, 2, rank1_methods=METHODS[:1], mixed=mixed, monkeypatch=monkeypatch)
    table = store.attributions(0, [S.SAMPLE_ID, S.METHOD, S.RELEVANCE], method="input_x_gradient")
    assert table.equals(read_all_then_filter(store, "input_x_gradient", [S.SAMPLE_ID, S.METHOD, S.RELEVANCE]))
    assert table.column(0).to_pylist() == list(range(7))
    assert store.attributions(0, method=METHODS[0]).column(S.SAMPLE_ID).to_pylist() == list(range(10))


def test_unknown_method_is_still_an_error_naming_the_methods(tmp_path):
    store = store_with(tmp_path, 4)
    with pytest.raises(ValueError, match=r"'lime' is not one of .*'gradient'"):
        store.attributions(0, method="lime")


def counting_row_group_reads(monkeypatch) -> list[int]:
    read: list[int] = []
    original = S.tables._Parquet.read_row_group
    monkeypatch.setattr(
        S.tables._Parquet, "read_row_group", lambda self, i, c=None: read.append(i) or original(self, i, c)
    )
    return read


def test_the_maps_of_other_methods_row_groups_are_not_read_in_mixed_parts(tmp_path, monkeypatch):
    store = store_with(tmp_path, 3, mixed=True, monkeypatch=monkeypatch)  # rank 0: 21 rows in 7 groups, rank 1: 15 in 5
    read = counting_row_group_reads(monkeypatch)
    store.attributions(
        0, method="gradient"
    )  # rank 0's rows 7..13: groups 2-4; rank 1's rows 7..9 (ids 7-9): groups 2-3
    assert read == [2, 3, 4, 2, 3]


def method_of_each_row_group(part_path) -> list[list[str]]:
    """The distinct methods in each row group of a part file, read from the file itself."""
    file = pq.ParquetFile(part_path)
    return [sorted(set(file.read_row_group(i, [S.METHOD]).column(0).to_pylist())) for i in range(file.num_row_groups)]


def test_a_part_holds_one_method_per_row_group_and_a_read_touches_only_its_own(tmp_path, monkeypatch):
    store = store_with(tmp_path, 3)  # rank 0: 7 rows per method in groups of 3, 3, 1; rank 1: 5 in 3, 2
    with store._open_epoch(0) as snapshot:
        paths = [part.path for part in snapshot.parts]
    groups = [method_of_each_row_group(path) for path in paths]
    assert groups[0] == [[m] for m in METHODS for _ in range(3)]
    assert groups[1] == [[m] for m in METHODS for _ in range(2)]
    read = counting_row_group_reads(monkeypatch)
    table = store.attributions(0, [S.SAMPLE_ID, S.METHOD, S.SCORE], method="gradient")
    assert read == [3, 4, 5, 2, 3]  # gradient's groups only, in both parts
    assert table.column(S.METHOD).to_pylist() == ["gradient"] * 10
    assert table.column(S.SCORE).to_pylist() == [100.0] * 7 + [150.0] * 3
    read.clear()
    ids, maps = store.heatmaps(0, method="input_x_gradient")
    assert read == [6, 7, 8, 4, 5]
    assert maps[:, 0, 0].tolist() == [200.0 + i + (50 if i > 6 else 0) for i in ids]


@pytest.mark.parametrize("mixed", [False, True], ids=["grouped", "mixed"])
def test_iter_batches_skips_other_methods_row_groups(tmp_path, mixed, monkeypatch):
    store = store_with(tmp_path, 3, mixed=mixed, monkeypatch=monkeypatch)
    read = counting_row_group_reads(monkeypatch)
    batches = list(store.iter_batches(0, [S.SAMPLE_ID, S.SCORE], method="gradient"))
    table = pa.Table.from_batches(batches)
    assert table.column(S.SAMPLE_ID).to_pylist() == list(range(10))
    assert table.column(S.SCORE).to_pylist() == [100.0] * 7 + [150.0] * 3
    assert read == ([2, 3, 4, 2, 3] if mixed else [3, 4, 5, 2, 3])
