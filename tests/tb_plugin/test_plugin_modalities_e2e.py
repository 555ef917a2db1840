"""Runs that LRPCallback wrote for a token model, a tabular MLP and a signal model, served by the plugin.

The synthetic runs of test_plugin_modalities.py check the routes against the store's contract; these
check them on what the real callback writes: the modality and feature names it records, the token
strings from its tokenizer, the relevance per token with padding removed, the signal's thumbnail.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_testing import make_app, route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "callbacks"))

torch = pytest.importorskip("torch")

from callback_testing import trainer  # noqa: E402
from token_testing import VOCAB, TinyTokenNet, TokenData, VectorNet, token_loader, vectors  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from lrp_lightning import LRPCallback  # noqa: E402
from lrp_lightning.store import RunStore  # noqa: E402

pytestmark = pytest.mark.slow
COMPOSITE = "epsilon_plus"
NAMES = ["age", "bmi", "blood pressure", "glucose"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    callback = LRPCallback(composite=COMPOSITE, num_samples=8, log_images=0, batch_size=4, tokenizer=VOCAB)
    run = trainer(root / "tokens", callbacks=[callback], max_epochs=2)
    run.fit(TinyTokenNet(), token_loader(TokenData(32), shuffle=True), token_loader(TokenData(16, seed=1)))
    callback = LRPCallback(composite=COMPOSITE, num_samples=8, feature_names=NAMES, log_images=0)
    run = trainer(root / "tabular", callbacks=[callback], max_epochs=1)
    run.fit(VectorNet(), DataLoader(vectors(32, (4,)), batch_size=8), DataLoader(vectors(16, (4,), 1), batch_size=8))
    signals = vectors(16, (2, 40))
    run = trainer(root / "signal", callbacks=[LRPCallback(composite=COMPOSITE, num_samples=6)], max_epochs=1)
    run.fit(VectorNet(features=80), DataLoader(signals, batch_size=8), DataLoader(signals, batch_size=8))
    client, _ = make_app(root)
    return client, {name: RunStore(root / name / "version_0") for name in ("tokens", "tabular", "signal")}


def _get(client, url: str):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_a_trained_token_run_is_served_as_tokens_with_their_strings_and_relevance(trained):
    client, stores = trained
    store = stores["tokens"]
    name = "tokens/version_0"
    assert _get(client, route("run", run=name)).json["modality"] == "tokens"
    ids = store.token_ids()
    relevance = store.token_relevance(1)
    for sample_id in sorted(ids)[:4]:
        data = _get(client, route("relevance", run=name, epoch=1, sample=sample_id)).json
        assert data["token_ids"] == ids[sample_id].tolist()  # padding removed
        assert data["labels"] == [VOCAB[t] for t in ids[sample_id]]
        assert np.array_equal(np.asarray(data["relevance"], np.float32), relevance[sample_id])
        assert len(data["colors"]) == ids[sample_id].size and None not in data["colors"]
    trajectory = _get(client, route("trajectory", run=name, sample=sorted(ids)[0])).json
    assert trajectory["epochs"] == [0, 1]


def test_a_trained_tabular_run_is_served_with_its_feature_names(trained):
    client, stores = trained
    ids, maps = stores["tabular"].heatmaps(0)
    data = _get(client, route("relevance", run="tabular/version_0", epoch=0, sample=int(ids[0]))).json
    assert data["modality"] == "tabular" and data["labels"] == NAMES
    assert np.array_equal(np.asarray(data["relevance"], np.float32), maps[0, 0])


def test_a_trained_signal_run_is_served_with_its_input_line(trained):
    client, stores = trained
    name = "signal/version_0"
    sample = int(stores["signal"].heatmaps(0)[0][0])
    data = _get(client, route("relevance", run=name, epoch=0, sample=sample)).json
    assert data["modality"] == "signal" and len(data["relevance"]) == 40
    thumbnail = np.asarray(Image.open(io.BytesIO(_get(client, route("input", run=name, sample=sample)).get_data())))
    assert thumbnail.shape == (1, 40)  # the callback's one-pixel-high strip of the channel mean
    assert data["input"] == pytest.approx((thumbnail[0] / 255.0).tolist(), abs=1e-4)
    assert min(data["input"]) == 0.0 and max(data["input"]) == 1.0  # min-max scaled within the sample
