"""Several attribution methods per run and named analyses: the store's method key and analysis folders."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import lrp_lightning.store as S
from lrp_lightning.store import RunStore, make_attribution_table

METHODS = [{"name": "epsilon_gamma_box", "kind": "lrp"}, {"name": "gradient", "kind": "gradient"}]


def rows(epoch: int, ids, offset: float, method: str | None):
    ids = np.asarray(ids, np.int64)
    maps = np.stack([np.full((2, 3), offset + i, np.float32) for i in ids])
    return make_attribution_table(
        epoch=epoch,
        global_step=epoch,
        sample_id=ids,
        label=ids % 2,
        prediction=ids % 2,
        target=ids % 2,
        score=np.ones(len(ids)),
        probability=np.full(len(ids), 0.5),
        relevance=maps,
        extra={"metric_sparseness": np.full(len(ids), offset, np.float32)},
        method=method,
    )


def two_method_store(tmp_path):
    store = RunStore.create(tmp_path, heatmap_shape=(2, 3), composite={"name": "epsilon_gamma_box"}, methods=METHODS)
    for epoch in (0, 1):
        table = pa.concat_tables(
            [rows(epoch, [3, 1, 2], 0.0, "epsilon_gamma_box"), rows(epoch, [3, 1, 2], 100.0, "gradient")]
        )
        store.write_epoch(epoch, epoch, table)
    return store


def test_each_method_reads_its_own_rows(tmp_path):
    store = two_method_store(tmp_path)
    assert store.methods == ["epsilon_gamma_box", "gradient"] and store.method == "epsilon_gamma_box"
    manifest = json.loads((store.store_dir / S.MANIFEST_FILE).read_text())
    assert [m["name"] for m in manifest[S.METHODS_KEY]] == store.methods
    ids, maps = store.heatmaps(1)  # the default: the first method
    assert ids.tolist() == [3, 1, 2] and maps[:, 0, 0].tolist() == [3.0, 1.0, 2.0]
    ids, maps = store.heatmaps(1, method="gradient")
    assert ids.tolist() == [3, 1, 2] and maps[:, 0, 0].tolist() == [103.0, 101.0, 102.0]
    _, picked = store.heatmaps(0, sample_ids=[2, 3], method="gradient")
    assert picked[:, 1, 2].tolist() == [102.0, 103.0]
    table = store.attributions(0, method="gradient")
    assert table.num_rows == 3 and set(table.column(S.METHOD).to_pylist()) == {"gradient"}
    assert table.column("metric_sparseness").to_pylist() == [100.0] * 3
    epochs, per_epoch = store.sample_heatmaps(1, method="gradient")
    assert epochs.tolist() == [0, 1] and per_epoch[:, 0, 0].tolist() == [101.0, 101.0]
    streamed = np.concatenate([m for _, m in store.iter_heatmaps(0, method="gradient")])
    assert streamed[:, 0, 0].tolist() == [103.0, 101.0, 102.0]
    assert store.epoch_info(0).rows == 3  # unique samples, not rows


def test_select_gives_a_view_with_another_default_method(tmp_path):
    store = two_method_store(tmp_path)
    view = store.select(method="gradient")
    assert view.method == "gradient" and store.method == "epsilon_gamma_box"
    assert view.heatmaps(0)[1][0, 0, 0] == 103.0 and store.heatmaps(0)[1][0, 0, 0] == 3.0


def test_unknown_method_names_the_known_ones(tmp_path):
    store = two_method_store(tmp_path)
    with pytest.raises(ValueError, match=r"'lime' is not one of .*\['epsilon_gamma_box', 'gradient'\]"):
        store.heatmaps(0, method="lime")
    with pytest.raises(ValueError, match="not one of"):
        store.select(method="lime")


def test_store_without_methods_reads_as_its_composite(tmp_path):
    store = RunStore.create(tmp_path, heatmap_shape=(2, 3), composite={"name": "epsilon_plus", "kwargs": {}})
    store.write_epoch(0, 0, rows(0, [1, 2], 0.0, None))
    assert store.methods == ["epsilon_plus"]
    assert store.heatmaps(0, method="epsilon_plus")[1][:, 0, 0].tolist() == [1.0, 2.0]
    assert S.METHOD not in store.attributions(0).column_names


def test_method_names_must_be_unique_and_folder_safe(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        RunStore.create(tmp_path / "a", heatmap_shape=(2, 3), methods=[{"name": "g"}, {"name": "g"}])
    with pytest.raises(ValueError, match="method name 'a/b' must start with a letter"):
        RunStore.create(tmp_path / "b", heatmap_shape=(2, 3), methods=[{"name": "a/b"}])


def test_named_analyses_and_methods_keep_their_own_tables(tmp_path):
    store = two_method_store(tmp_path)
    table = pa.table({"value": [1.0]})
    default = store.write_analysis_table(0, "notes", table, "h1")
    coarse = store.select(analysis="coarse").write_analysis_table(0, "notes", pa.table({"value": [2.0]}), "h2")
    gradient = store.select(method="gradient").write_analysis_table(0, "notes", pa.table({"value": [3.0]}), "h3")
    assert default == store.store_dir / "analysis" / "notes" / "epoch_000000.parquet"
    assert coarse.parts[-4:] == (
        "coarse",
        "epsilon_gamma_box",
        "notes",
        "epoch_000000.parquet",
    )
    assert gradient.parts[-5:-2] == ("analyses", "default", "gradient")
    assert store.read_analysis_table(0, "notes").column("value").to_pylist() == [1.0]
    assert store.select(analysis="coarse").read_analysis_table(0, "notes").column("value").to_pylist() == [2.0]
    assert store.select(method="gradient").analysis_tables(0) == {"notes": "h3"}
    assert store.select(analysis="coarse", method="gradient").analysis_tables(0) == {}
    assert store.analyses() == ["default", "coarse"]
    with pytest.raises(ValueError, match="analysis name"):
        store.select(analysis="../x")
