"""The plugin's routes per attribution method and named analysis (``method=``, ``analysis=``)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_testing import make_app, route  # noqa: E402

from lrp_lightning.store import METHOD_FIELD, RunStore, make_attribution_table  # noqa: E402

IDS = np.arange(6, dtype=np.int64)


def method_rows(epoch: int, method: str, value: float) -> pa.Table:
    maps = np.zeros((6, 4, 4), np.float32)
    maps[:, 0, 0] = value  # 'lrp' puts its relevance top-left, 'gradient' bottom-right
    if method == "gradient":
        maps = maps[:, ::-1, ::-1].copy()
    table = make_attribution_table(
        epoch=epoch,
        global_step=epoch,
        sample_id=IDS,
        label=IDS % 2,
        prediction=IDS % 2,
        target=IDS % 2,
        score=np.ones(6),
        probability=np.full(6, 0.5),
        relevance=maps,
    )
    return table.append_column(METHOD_FIELD, pa.array([method] * 6))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    store = RunStore.create(root / "run", heatmap_shape=(4, 4), methods=[{"name": "lrp"}, {"name": "gradient"}])
    for epoch in (0, 1):
        store.write_epoch(
            epoch, epoch, pa.concat_tables([method_rows(epoch, "lrp", 1.0), method_rows(epoch, "gradient", 1.0)])
        )
    store.select(analysis="coarse").write_analysis_table(0, "notes", pa.table({"x": [1]}), "h")
    return make_app(root)[0]


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("L"), dtype=np.float32)


def test_run_info_lists_the_methods_and_analyses(client):
    info = json.loads(client.get(route("run", run="run")).data)
    assert info["methods"] == ["lrp", "gradient"] and info["method"] == "lrp"
    assert info["analyses"] == ["coarse"] and info["analysis_name"] == "default"
    picked = json.loads(client.get(route("run", run="run", method="gradient", analysis="coarse")).data)
    assert picked["method"] == "gradient" and picked["analysis_name"] == "coarse"


def test_heatmap_of_each_method(client):
    default = png(client.get(route("heatmap", run="run", epoch=1, sample=2, cmap="gray")))
    lrp = png(client.get(route("heatmap", run="run", epoch=1, sample=2, cmap="gray", method="lrp")))
    gradient = png(client.get(route("heatmap", run="run", epoch=1, sample=2, cmap="gray", method="gradient")))
    assert np.array_equal(default, lrp)
    assert np.array_equal(gradient, lrp[::-1, ::-1])  # the same map, mirrored: the other method's rows
    assert not np.array_equal(gradient, lrp)


def test_unknown_method_is_a_bad_request_naming_the_methods(client):
    response = client.get(route("heatmap", run="run", epoch=1, sample=2, method="lime"))
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and "'lime' is not one of" in text and "['lrp', 'gradient']" in text
