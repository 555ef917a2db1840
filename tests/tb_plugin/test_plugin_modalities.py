"""The routes that serve signal, tabular and token runs as values: /run's modality, /relevance, /trajectory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_testing import make_app, route
from synthetic_runs import build_run
from synthetic_sequences import (
    FEATURES,
    LENGTH,
    SPURIOUS,
    VOCABULARY,
    WINDOWS,
    build_signal_run,
    build_tabular_run,
    build_token_run,
    token_sentences,
)

from lrp_lightning.image import heatmap
from lrp_lightning.store import DATASET_INDEX, LABEL, SAMPLE_ID, RunStore, make_probe_table

SIGNAL, TABULAR, IMAGE, TOKENS, TOKEN_IDS = "signal", "tabular", "image", "tokens", "token_ids"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("modalities")
    build_signal_run(root / SIGNAL, epochs=3, samples=8)
    build_tabular_run(root / TABULAR, epochs=2, samples=8)
    build_run(root / IMAGE, epochs=1, samples=6, analysed=[])
    build_token_run(root / TOKENS, epochs=3, samples=8)
    build_token_run(root / TOKEN_IDS, epochs=1, samples=8, strings=False)
    client, plugin = make_app(root)
    return client, plugin, root


def _json(client, url: str, status: int = 200):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json if status == 200 else response.get_data(as_text=True)


def _stored(root: Path, run: str, epoch: int, sample: int) -> np.ndarray:
    return RunStore(root / run).heatmaps(epoch, [sample])[1][0]


def test_run_info_names_the_modality_and_the_feature_names(runs):
    client, _, _ = runs
    modalities = [_json(client, route("run", run=name))["modality"] for name in (SIGNAL, TABULAR, IMAGE, TOKENS)]
    assert modalities == ["signal", "tabular", "image", "tokens"]
    assert _json(client, route("run", run=TABULAR))["feature_names"] == list(FEATURES)
    assert _json(client, route("run", run=SIGNAL))["feature_names"] is None


def test_relevance_of_a_signal_is_the_stored_map_with_the_heatmaps_colours_and_the_input_line(runs):
    client, _, root = runs
    data = _json(client, route("relevance", run=SIGNAL, epoch=2, sample=8, cmap="bwr"))
    stored = _stored(root, SIGNAL, 2, 8)
    assert data["modality"] == "signal" and data["epoch"] == 2 and data["sample_id"] == 8
    assert np.array_equal(np.asarray(data["relevance"], np.float32), stored[0])
    assert data["scale"] == pytest.approx(float(np.abs(stored).max()))
    # Each colour is the pixel the heatmap PNG of the same map has.
    png = client.get(route("heatmap", run=SIGNAL, epoch=2, sample=8, cmap="bwr")).get_data()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[0]
    assert data["colors"] == [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in pixels.tolist()]
    # The input line is the stored thumbnail in [0, 1]: its bump (class 1) is in the class's window.
    thumbnail = np.asarray(Image.open(io.BytesIO(client.get(route("input", run=SIGNAL, sample=8)).get_data())))
    assert data["input"] == pytest.approx((thumbnail[0] / 255.0).tolist(), abs=1e-4)
    start, stop = WINDOWS[1]
    assert min(data["input"][start:stop]) > max(data["input"][:start] + data["input"][stop:])
    assert data["labels"] is None and data["token_ids"] is None
    # Cacheable: the frontend puts the epoch's version into the URL.
    assert "max-age" in client.get(route("relevance", run=SIGNAL, epoch=2, sample=8)).headers["Cache-Control"]


def test_relevance_of_a_tabular_sample_names_its_features(runs):
    client, _, root = runs
    data = _json(client, route("relevance", run=TABULAR, epoch=1, sample=3, cmap="coldnhot"))
    assert data["labels"] == list(FEATURES) and data["input"] is None
    assert np.array_equal(np.asarray(data["relevance"], np.float32), _stored(root, TABULAR, 1, 3)[0])
    assert data["colors"][FEATURES.index("income")] == "#ffffff"  # coldnhot's top: class 0's feature is the largest


def test_relevance_of_a_token_sample_is_one_value_per_token_padding_removed(runs):
    client, _, root = runs
    ids, _, sentences = token_sentences(8)
    sample = int(ids[0])  # class 0 with the spurious token
    data = _json(client, route("relevance", run=TOKENS, epoch=2, sample=sample))
    stored = RunStore(root / TOKENS).token_relevance(2, [sample])[sample]
    assert data["labels"] == sentences[0] and SPURIOUS in data["labels"]
    assert len(data["relevance"]) == len(data["token_ids"]) == len(sentences[0]) < 12  # not the padded width
    assert np.array_equal(np.asarray(data["relevance"], np.float32), stored)
    # The spurious token carries the most relevance: it gets the colour map's end (bwr: pure red).
    assert data["colors"][sentences[0].index(SPURIOUS)] == "#ff0000"
    assert data["colors"] == [
        f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.asarray(heatmap(stored[None], cmap="bwr"))[0].tolist()
    ]
    # Without a tokenizer: the token ids, no strings.
    bare = _json(client, route("relevance", run=TOKEN_IDS, epoch=0, sample=sample))
    assert bare["labels"] is None and bare["token_ids"] == data["token_ids"]
    timeline = _json(client, route("trajectory", run=TOKENS, sample=sample))
    assert timeline["epochs"] == [0, 1, 2] and [len(v) for v in timeline["relevance"]] == [len(sentences[0])] * 3


def test_trajectory_holds_the_sample_in_every_epoch_each_scaled_on_its_own(runs):
    client, _, root = runs
    data = _json(client, route("trajectory", run=SIGNAL, sample=13))
    assert data["epochs"] == [0, 1, 2] and data["unreadable"] == []
    for epoch, values, scale, colors in zip(data["epochs"], data["relevance"], data["scale"], data["colors"]):
        stored = _stored(root, SIGNAL, epoch, 13)[0]
        assert np.array_equal(np.asarray(values, np.float32), stored)
        assert scale == pytest.approx(float(np.abs(stored).max()))
        assert len(colors) == LENGTH
    # The relevance sharpens on the class's window over the epochs (as the synthetic run is built).
    start, stop = WINDOWS[13 // 5 % 2]
    inside = [np.mean(v[start:stop]) for v in data["relevance"]]
    assert inside == sorted(inside)


def test_bad_requests_are_400_and_missing_items_404(runs):
    client, _, _ = runs
    assert "shows as pictures" in _json(client, route("relevance", run=IMAGE, epoch=0, sample=7), 400)
    assert "parameter 'cmap' must be one of" in _json(
        client, route("relevance", run=SIGNAL, epoch=0, sample=8, cmap="jet"), 400
    )
    assert "must be an integer" in _json(client, route("trajectory", run=SIGNAL, sample="x"), 400)
    assert "missing parameter 'epoch'" in _json(client, route("relevance", run=SIGNAL, sample=8), 400)
    assert "not in epoch 0" in _json(client, route("relevance", run=SIGNAL, epoch=0, sample=9), 404)
    assert "complete epochs: [0, 1, 2]" in _json(client, route("relevance", run=SIGNAL, epoch=5, sample=8), 404)
    assert "in no complete epoch" in _json(client, route("trajectory", run=TABULAR, sample=9), 404)
    assert "no run" in _json(client, route("trajectory", run="nothing", sample=8), 404)


def test_a_signal_without_thumbnails_has_no_input_line(tmp_path):
    store = build_signal_run(tmp_path / "bare", epochs=1, samples=4)
    table = store.probe_table()
    store.probe_path.unlink()
    store.write_probe(
        make_probe_table(
            sample_id=table.column(SAMPLE_ID).to_pylist(),
            dataset_index=table.column(DATASET_INDEX).to_pylist(),
            label=table.column(LABEL).to_pylist(),
        )
    )
    client, _ = make_app(tmp_path)
    data = _json(client, route("relevance", run="bare", epoch=0, sample=3))
    assert data["input"] is None and len(data["relevance"]) == LENGTH


def test_a_long_signal_is_reduced_to_its_peaks_when_bins_are_asked_for(runs):
    client, _, root = runs
    full = _json(client, route("relevance", run=SIGNAL, epoch=1, sample=8))
    binned = _json(client, route("relevance", run=SIGNAL, epoch=1, sample=8, bins=10))
    stored = _stored(root, SIGNAL, 1, 8)[0]
    assert binned["length"] == full["length"] == LENGTH and len(binned["relevance"]) == 10
    edges = (np.arange(11) * LENGTH) // 10
    for k, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
        peak = start + int(np.argmax(np.abs(stored[start:stop])))
        assert binned["relevance"][k] == full["relevance"][peak]
        assert binned["colors"][k] == full["colors"][peak]  # the colour of the step, scaled over the whole signal
    # Tabular and token values are never binned; more bins than steps send every step.
    assert len(_json(client, route("relevance", run=TABULAR, epoch=0, sample=3, bins=2))["relevance"]) == len(FEATURES)
    assert len(_json(client, route("relevance", run=SIGNAL, epoch=1, sample=8, bins=500))["relevance"]) == LENGTH
    assert "must be in [0, 4096]" in _json(client, route("relevance", run=SIGNAL, epoch=1, sample=8, bins=5000), 400)


def test_a_damaged_epoch_is_named_in_the_trajectory_and_the_others_stay(tmp_path):
    store = build_signal_run(tmp_path / "damaged", epochs=3, samples=4)
    (store.epoch_dir(1) / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    client, _ = make_app(tmp_path)
    data = _json(client, route("trajectory", run="damaged", sample=3))
    assert data["epochs"] == [0, 2]
    assert [u["epoch"] for u in data["unreadable"]] == [1] and "cannot be read" in data["unreadable"][0]["error"]
    assert str(tmp_path) not in data["unreadable"][0]["error"]  # the logdir is not disclosed
    assert "cannot be read" in _json(client, route("relevance", run="damaged", epoch=1, sample=3), 404)


def test_the_trajectory_of_a_long_signal_is_reduced_to_its_peaks_in_every_epoch(runs):
    client, _, _ = runs
    full = _json(client, route("trajectory", run=SIGNAL, sample=8))
    binned = _json(client, route("trajectory", run=SIGNAL, sample=8, bins=12))
    assert binned["epochs"] == full["epochs"] and binned["length"] == LENGTH
    edges = (np.arange(13) * LENGTH) // 12
    for values, all_values in zip(binned["relevance"], full["relevance"]):
        assert values == [max(all_values[a:b], key=abs) for a, b in zip(edges[:-1], edges[1:])]
    assert binned["scale"] == full["scale"]  # the colours stay scaled over the whole signal


@pytest.mark.slow
def test_a_cluster_prototype_of_a_token_or_tabular_run_is_served_as_named_values(tmp_path):
    """/prototype_values: the stored prototype per vocabulary column (named by its token, "other tokens"
    last) or per named feature, with the heatmap's colours; 400 for an image run, 404 before the analysis."""
    import json

    from lrp_lightning.analysis import Embeddings, SpRAy, analyze_run
    from lrp_lightning.store import META_TOKEN_VOCABULARY

    spray = SpRAy(embeddings=Embeddings(methods=("pca",)))
    analyze_run(build_token_run(tmp_path / TOKENS, epochs=2, samples=8), spray, epochs=[1], log_scalars=False)
    analyze_run(build_tabular_run(tmp_path / TABULAR, epochs=1, samples=8), spray, epochs=[0], log_scalars=False)
    build_run(tmp_path / IMAGE, epochs=1, samples=6)
    client, _ = make_app(tmp_path)
    for run, epoch in ((TOKENS, 1), (TABULAR, 0)):
        table = RunStore(tmp_path / run).read_analysis_table(epoch, "clusters")
        row = table.to_pylist()[-1]
        query = {"category": row["category"], "clustering": row["clustering"], "cluster": row["cluster"]}
        data = _json(client, route("prototype_values", run=run, epoch=epoch, cmap="bwr", **query))
        stored = np.asarray(row["prototype"], np.float32)
        assert data["modality"] == run and np.array_equal(np.asarray(data["relevance"], np.float32), stored)
        pixels = np.asarray(heatmap(stored[None, :], cmap="bwr"))[0]
        assert data["colors"] == ["#{:02x}{:02x}{:02x}".format(*p) for p in pixels.tolist()]
        if run == TOKENS:
            vocabulary = json.loads(table.schema.metadata[META_TOKEN_VOCABULARY])
            assert data["token_ids"] == [*vocabulary, None]
            assert data["labels"] == [VOCABULARY[t - 100] for t in vocabulary] + ["other tokens"]
        else:
            assert data["labels"] == list(FEATURES) and data["token_ids"] is None
    query = {"category": "all", "clustering": row["clustering"], "cluster": 0, "cmap": "bwr"}
    assert "shows as pictures" in _json(client, route("prototype_values", run=IMAGE, epoch=0, **query), 400)
    assert "analys" in _json(client, route("prototype_values", run=TOKENS, epoch=0, **query), 404)
