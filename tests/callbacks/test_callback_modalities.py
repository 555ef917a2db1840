"""LRPCallback and LRPPredictionWriter on token, tabular and signal inputs; output=; the check at fit start."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from callback_testing import trainer
from token_testing import VOCAB, TinyTokenNet, TokenData, VectorNet, pad_collate, token_loader, vectors
from torch.utils.data import DataLoader

from lrp_lightning import LRPCallback, LRPPredictionWriter
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.store import MODALITY_KEY, RunStore

COMPOSITE = "epsilon_plus"


def token_callback(**kwargs):
    options = dict(composite=COMPOSITE, num_samples=10, log_images=4, batch_size=4)
    options.update(kwargs)
    return LRPCallback(**options)


@pytest.mark.slow
def test_token_run_stores_ids_without_padding_and_relevance_per_token(tmp_path):
    torch.manual_seed(0)
    model = TinyTokenNet()
    val = TokenData(24, seed=1)
    run = trainer(tmp_path, callbacks=[token_callback(tokenizer=VOCAB)], max_epochs=2)
    run.fit(model, token_loader(TokenData(32), shuffle=True), token_loader(val))
    store = RunStore(run.log_dir)
    assert store.manifest[MODALITY_KEY] == "tokens" and store.modality == "tokens"
    ids = store.token_ids()
    assert len(ids) == 10
    for sample_id, stored in ids.items():  # the dataset's ids, padding (id 0) removed
        assert stored.tolist() == val.samples[sample_id][0].tolist()
    assert store.max_tokens == max(v.size for v in ids.values())  # as wide as the longest probe sample
    assert store.heatmap_shape == (1, store.max_tokens)
    tokens = store.tokens()
    assert all(tokens[i] == [VOCAB[t] for t in ids[i]] for i in ids)
    # the relevance per token is the engine's on the trained model, padding left out
    relevance = store.token_relevance(1)
    assert {i: r.size for i, r in relevance.items()} == {i: v.size for i, v in ids.items()}
    order = sorted(ids)
    batch = pad_collate([val[i] for i in order])
    labels = batch.pop("labels")
    with Gradient(model.eval(), get_composite(COMPOSITE), output="logits") as attributor:
        _, expected = attributor(batch, labels)
    for row, sample_id in enumerate(order):
        n = ids[sample_id].size
        np.testing.assert_allclose(relevance[sample_id], expected[row, :n].numpy(), rtol=1e-5, atol=1e-6)
        assert float(expected[row, :n].abs().sum()) > 0
    # the fixed-shape maps are the token relevance, zero beyond each sample's length
    sample_ids, maps = store.heatmaps(1, sample_ids=order)
    for row, sample_id in enumerate(order):
        n = ids[sample_id].size
        np.testing.assert_allclose(maps[row, 0, :n], relevance[sample_id], rtol=1e-3, atol=1e-3)  # float16
        assert not maps[row, 0, n:].any()
    sums = dict(zip(*(store.attributions(1, ["sample_id", "relevance_sum"]).column(c).to_pylist() for c in (0, 1))))
    assert all(sums[i] == pytest.approx(float(relevance[i].sum(dtype=np.float64)), rel=1e-4) for i in ids)


def _fit_token_weights(root, with_callback: bool):
    from lightning.pytorch import seed_everything

    seed_everything(3, workers=True)
    model = TinyTokenNet()
    callbacks = [token_callback()] if with_callback else []
    run = trainer(root, callbacks=callbacks, max_epochs=2, deterministic=True)
    run.fit(model, token_loader(TokenData(24), shuffle=True), token_loader(TokenData(16, seed=1)))
    return {**copy.deepcopy(model.state_dict()), "draw": torch.rand(1)}


@pytest.mark.slow
def test_token_training_is_bitwise_identical_with_and_without_the_callback(tmp_path):
    without = _fit_token_weights(tmp_path / "without", with_callback=False)
    with_callback = _fit_token_weights(tmp_path / "with", with_callback=True)
    assert [e.epoch for e in RunStore(tmp_path / "with" / "version_0").epochs()] == [0, 1]
    assert [name for name in without if not torch.equal(without[name], with_callback[name])] == []


def test_a_wrong_output_fails_when_training_starts_naming_what_the_output_holds(tmp_path):
    model = TinyTokenNet()
    run = trainer(tmp_path, callbacks=[token_callback(output="scores")], num_sanity_val_steps=0)
    with pytest.raises(ValueError, match=r"output must be a key or attribute of the model's output") as info:
        run.fit(model, token_loader(TokenData(16)), token_loader(TokenData(16, seed=1)))
    assert "dict with keys ['logits', 'pooled']" in str(info.value) and "LRPCallback" in str(info.value)
    assert model.training_steps == 0  # before the first training step, not after an epoch
    assert not list(tmp_path.rglob("part-*.parquet"))


def test_a_tuple_output_without_output_fails_at_start_and_works_with_an_index(tmp_path):
    model = TinyTokenNet(output_kind="tuple")
    run = trainer(tmp_path / "a", callbacks=[token_callback()], num_sanity_val_steps=0)
    with pytest.raises(TypeError, match=r"returned tuple of 2 items \[tensor\(8, 2\), tensor\(8, 8\)\]|tuple of 2"):
        run.fit(model, token_loader(TokenData(16)), token_loader(TokenData(16, seed=1)))
    assert model.training_steps == 0
    run = trainer(tmp_path / "b", callbacks=[token_callback(output=0)], max_epochs=1)
    run.fit(model, token_loader(TokenData(16)), token_loader(TokenData(16, seed=1)))
    assert len(RunStore(run.log_dir).token_relevance(0)) == 10


def test_tabular_run_stores_feature_names(tmp_path):
    names = ["age", "bmi", "blood pressure", "glucose"]
    callback = LRPCallback(composite=COMPOSITE, num_samples=8, feature_names=names, log_images=0)
    run = trainer(tmp_path, callbacks=[callback], max_epochs=1)
    run.fit(VectorNet(), DataLoader(vectors(32, (4,)), batch_size=8), DataLoader(vectors(16, (4,), 1), batch_size=8))
    store = RunStore(run.log_dir)
    assert store.modality == "tabular" and store.feature_names == names
    assert store.heatmap_shape == (1, 4) and store.manifest["input_shape"] == [4]
    assert store.heatmaps(0)[1].shape == (8, 1, 4)


def test_signal_run_is_inferred_and_wrong_feature_names_fail_at_start(tmp_path):
    run = trainer(tmp_path / "s", callbacks=[LRPCallback(composite=COMPOSITE, num_samples=6)], max_epochs=1)
    data = vectors(16, (2, 5))
    run.fit(VectorNet(features=10), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    store = RunStore(run.log_dir)
    assert store.modality == "signal" and store.heatmap_shape == (1, 5) and store.feature_names is None
    model = VectorNet()
    callback = LRPCallback(composite=COMPOSITE, num_samples=6, feature_names=["a", "b"])
    run = trainer(tmp_path / "t", callbacks=[callback], num_sanity_val_steps=0)
    with pytest.raises(ValueError, match="feature_names has 2 names, but the inputs hold 4 features"):
        run.fit(model, DataLoader(vectors(16, (4,)), batch_size=8), DataLoader(vectors(16, (4,)), batch_size=8))
    assert model.training_steps == 0


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"modality": "text"}, "modality must be None (inferred from the inputs) or one of"),
        ({"tokenizer": 5}, "tokenizer must be an object with convert_ids_to_tokens"),
        ({"tokenizer": "abc"}, "tokenizer must be an object with convert_ids_to_tokens"),
        ({"tokenizer": VOCAB, "modality": "image"}, "tokenizer must be None unless modality='tokens'"),
        ({"feature_names": ["a", 1]}, "feature_names must be a list of str"),
        ({"feature_names": ["a"], "modality": "signal"}, "feature_names must be None unless modality='tabular'"),
        ({"output": 1.5}, "output must be None, a key or attribute name"),
    ],
)
def test_arguments_are_checked_at_construction(kwargs, fragment):
    for owner in (LRPCallback, LRPPredictionWriter):
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            owner(**kwargs)


def test_modality_tokens_with_float_inputs_fails_at_start(tmp_path):
    model = VectorNet()
    run = trainer(tmp_path, callbacks=[LRPCallback(modality="tokens", num_samples=4)], num_sanity_val_steps=0)
    with pytest.raises(ValueError, match="modality='tokens' needs token ids"):
        run.fit(model, DataLoader(vectors(8, (4,)), batch_size=4), DataLoader(vectors(8, (4,)), batch_size=4))
    assert model.training_steps == 0


class _Tokenizer:
    def convert_ids_to_tokens(self, ids):
        return [f"<{i}>" for i in ids]


def test_prediction_writer_stores_token_runs(tmp_path):
    torch.manual_seed(0)
    model = TinyTokenNet()
    data = TokenData(13, seed=2)
    writer = LRPPredictionWriter(dirpath=tmp_path / "wide", composite=COMPOSITE, tokenizer=_Tokenizer())
    run = trainer(tmp_path, callbacks=[writer], logger=False)
    run.predict(model, token_loader(data, batch_size=5), return_predictions=False)
    store = RunStore(tmp_path / "wide")
    ids = store.token_ids()
    assert store.modality == "tokens" and sorted(ids) == list(range(13))
    assert all(ids[i].tolist() == data.samples[i][0].tolist() for i in ids)
    assert store.tokens([4])[4] == [f"<{t}>" for t in data.samples[4][0].tolist()]
    relevance = store.token_relevance(0)
    assert {i: r.size for i, r in relevance.items()} == {i: v.size for i, v in ids.items()}
    widths = [
        pad_collate([data[i] for i in range(start, min(start + 5, 13))])["input_ids"].shape[1] for start in (0, 5, 10)
    ]
    assert store.max_tokens == max(widths) > widths[0]  # the widest batch's width, not the first's


def test_an_output_object_with_logits_works_by_default_and_scores_are_its_logits(tmp_path):
    torch.manual_seed(0)
    model = TinyTokenNet(output_kind="object")
    data = TokenData(9, seed=3)
    writer = LRPPredictionWriter(dirpath=tmp_path / "wide", composite=COMPOSITE, target="prediction")
    trainer(tmp_path, callbacks=[writer], logger=False).predict(model, token_loader(data), return_predictions=False)
    table = RunStore(tmp_path / "wide").attributions(0, ["sample_id", "score", "prediction"]).to_pydict()
    batch = pad_collate([data[i] for i in table["sample_id"]])
    with torch.no_grad():
        logits = model.eval()(batch["input_ids"], batch["attention_mask"]).logits
    np.testing.assert_allclose(table["score"], logits.max(dim=1).values.numpy(), rtol=1e-6)
    assert table["prediction"] == logits.argmax(dim=1).tolist()


class _IdsNet(VectorNet):
    """Token ids ``(B, T)`` as one positional tensor (no mask): every position is a token."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Embedding(len(VOCAB), 4), torch.nn.Flatten(), torch.nn.Linear(4 * 5, 2))


def test_integer_tensor_batches_are_tokens(tmp_path):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, len(VOCAB), (16, 5), generator=generator)
    data = torch.utils.data.TensorDataset(ids, torch.arange(16) % 2)
    run = trainer(tmp_path, callbacks=[LRPCallback(composite=COMPOSITE, num_samples=6)], max_epochs=1)
    run.fit(_IdsNet(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    store = RunStore(run.log_dir)
    stored = store.token_ids()
    assert store.modality == "tokens" and store.max_tokens == 5 and store.tokens() is None
    assert all(stored[i].tolist() == ids[i].tolist() for i in stored)
    assert all(r.size == 5 for r in store.token_relevance(0).values())
