"""Tests of the store's modalities: manifest keys, token columns, RunStore accessors, format 2.0 stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from store_testing import RUN_META, new_store, table_for

from lrp_lightning import store as S
from lrp_lightning.store import (
    CorruptFileError,
    IncompatibleRunError,
    RunStore,
    SampleNotFoundError,
    SchemaError,
    StoreError,
    make_attribution_table,
    make_probe_table,
    token_maps,
)

MAX_TOKENS = 6
TOKEN_IDS = {10: [5, 7, 9], 11: [4, 4, 8, 1, 2, 3, 6], 12: [2]}  # sample 11 is longer than MAX_TOKENS
VOCAB = [f"w{i}" for i in range(10)]


def _token_relevance(ids, epoch):
    return [np.arange(len(TOKEN_IDS[i]), dtype=np.float32) / 4 + epoch + i for i in ids]


def token_store(tmp_path, tokens=True):
    store = RunStore.create(
        tmp_path / "run",
        heatmap_shape=(1, MAX_TOKENS),
        input_shape=(MAX_TOKENS,),
        modality="tokens",
        max_tokens=MAX_TOKENS,
        class_names=["neg", "pos"],
    )
    ids = sorted(TOKEN_IDS)
    store.write_probe(
        make_probe_table(
            sample_id=ids,
            dataset_index=ids,
            label=[0, 1, 0],
            token_ids=[TOKEN_IDS[i] for i in ids],
            tokens=[[VOCAB[t] for t in TOKEN_IDS[i]] for i in ids] if tokens else None,
        )
    )
    return store


def token_rows(epoch, ids):
    relevance = _token_relevance(ids, epoch)
    return make_attribution_table(
        epoch=epoch,
        global_step=epoch * 10,
        sample_id=ids,
        label=np.zeros(len(ids), np.int64),
        prediction=np.zeros(len(ids), np.int64),
        target=np.zeros(len(ids), np.int64),
        score=np.ones(len(ids)),
        probability=np.full(len(ids), 0.5),
        relevance=token_maps(relevance, MAX_TOKENS),
        token_relevance=relevance,
    )


def test_manifest_records_modality_and_format_version(tmp_path):
    store = token_store(tmp_path)
    manifest = json.loads((store.store_dir / S.MANIFEST_FILE).read_text())
    assert S.FORMAT_VERSION == "2.2" and manifest[S.FORMAT_VERSION_KEY] == "2.2"
    assert manifest[S.MODALITY_KEY] == "tokens" and manifest[S.MAX_TOKENS_KEY] == MAX_TOKENS
    assert store.modality == "tokens" and store.max_tokens == MAX_TOKENS and store.feature_names is None
    assert store.heatmap_shape == (1, MAX_TOKENS)


def test_token_round_trip_keeps_variable_lengths(tmp_path):
    store = token_store(tmp_path)
    store.write_epoch(0, 0, token_rows(0, [10, 11, 12]))
    store.write_epoch(1, 10, token_rows(1, [12, 10, 11]))
    ids = store.token_ids()
    assert list(ids) == [10, 11, 12]
    for sample_id, expected in TOKEN_IDS.items():
        assert ids[sample_id].tolist() == expected and ids[sample_id].dtype == np.int64
    assert store.tokens([12, 10]) == {12: ["w2"], 10: ["w5", "w7", "w9"]}
    relevance = store.token_relevance(1, sample_ids=[11, 12])
    assert list(relevance) == [11, 12]
    np.testing.assert_array_equal(relevance[11], np.arange(7, dtype=np.float32) / 4 + 1 + 11)
    assert {k: v.size for k, v in store.token_relevance(0).items()} == {10: 3, 11: 7, 12: 1}
    # the fixed-shape maps: zero-padded, the long sample cut at max_tokens; relevance_sum is over all tokens
    sample_ids, maps = store.heatmaps(1, sample_ids=[12, 11])
    assert maps.shape == (2, 1, MAX_TOKENS)
    assert maps[0, 0].tolist() == [13.0, 0, 0, 0, 0, 0]
    assert maps[1, 0].tolist() == (np.arange(6) / 4 + 12).tolist()
    sums = dict(zip(*(store.attributions(1, [S.SAMPLE_ID, S.RELEVANCE_SUM]).column(i).to_pylist() for i in (0, 1))))
    assert sums[11] == pytest.approx(float(np.sum(np.arange(7) / 4 + 12)))


def test_tokens_are_none_without_a_tokenizer(tmp_path):
    store = token_store(tmp_path, tokens=False)
    assert store.tokens() is None
    assert store.token_ids([12])[12].tolist() == [2]


def test_token_columns_read_with_pandas(tmp_path):
    store = token_store(tmp_path)
    store.write_epoch(0, 0, token_rows(0, [10, 11, 12]))
    frame = pd.read_parquet(store.store_dir / S.ATTRIBUTIONS_DIR)
    row = frame.set_index(S.SAMPLE_ID).loc[10, S.TOKEN_RELEVANCE]
    assert list(row) == pytest.approx([10.0, 10.25, 10.5])
    probe = pd.read_parquet(store.probe_path).set_index(S.SAMPLE_ID)
    assert list(probe.loc[11, S.TOKEN_IDS]) == TOKEN_IDS[11] and list(probe.loc[12, S.TOKENS]) == ["w2"]


def test_token_rows_must_match_the_probe_token_counts(tmp_path):
    store = token_store(tmp_path)
    rows = token_rows(0, [10, 11, 12])
    bad = rows.set_column(
        rows.schema.get_field_index(S.TOKEN_RELEVANCE),
        S.TOKEN_RELEVANCE_FIELD,
        make_attribution_table(**_kwargs(rows, [[1.0, 2.0], [0.0] * 7, [1.0]])).column(S.TOKEN_RELEVANCE),
    )
    with pytest.raises(SchemaError, match="sample 10 has 3 token ids in probe.parquet but 2 relevance values"):
        store.write_part(0, 0, bad)
    without = rows.drop_columns([S.TOKEN_RELEVANCE])
    with pytest.raises(SchemaError, match="need the column 'token_relevance'"):
        store.write_part(0, 0, without)


def _kwargs(table, relevance):
    n = table.num_rows
    return dict(
        epoch=0,
        global_step=0,
        sample_id=table.column(S.SAMPLE_ID).to_numpy(),
        label=np.zeros(n, np.int64),
        prediction=np.zeros(n, np.int64),
        target=np.zeros(n, np.int64),
        score=np.ones(n),
        probability=np.ones(n),
        relevance=np.zeros((n, 1, MAX_TOKENS), np.float32),
        token_relevance=relevance,
    )


def test_token_relevance_is_refused_in_other_modalities(tmp_path):
    store = new_store(tmp_path)
    table = make_attribution_table(**{**_kwargs(table_for(0, 0, [1], 0.0), [[1.0]]), "relevance": np.zeros((1, 4, 5))})
    with pytest.raises(SchemaError, match="belongs to token runs"):
        store.write_part(0, 0, table)
    with pytest.raises(StoreError, match="only in token runs.*modality None"):
        store.token_ids()


def test_probe_token_input_errors():
    with pytest.raises(SchemaError, match="tokens of row 0 must be 2 strings, one per token id"):
        make_probe_table(sample_id=[0], dataset_index=[0], label=[0], token_ids=[[1, 2]], tokens=[["a"]])
    with pytest.raises(SchemaError, match="token_ids of row 0 must be a 1-D array of integers"):
        make_probe_table(sample_id=[0], dataset_index=[0], label=[0], token_ids=[[1.5]])
    with pytest.raises(SchemaError, match="need token_ids"):
        make_probe_table(sample_id=[0], dataset_index=[0], label=[0], tokens=[["a"]])
    with pytest.raises(SchemaError, match="one array per sample \\(2\\)"):
        make_probe_table(sample_id=[0, 1], dataset_index=[0, 1], label=[0, 0], token_ids=[[1]])


def test_create_checks_the_modality_keys(tmp_path):
    with pytest.raises(SchemaError, match="modality must be one of"):
        RunStore.create(tmp_path / "a", heatmap_shape=(1, 3), modality="text")
    with pytest.raises(SchemaError, match=r"heatmap_shape must be \(1, max_tokens\) = \(1, 4\)"):
        RunStore.create(tmp_path / "a", heatmap_shape=(2, 4), modality="tokens", max_tokens=4)
    with pytest.raises(SchemaError, match="feature_names has 2 names, but the inputs hold 3 features"):
        RunStore.create(tmp_path / "a", heatmap_shape=(1, 3), input_shape=(3,), feature_names=["a", "b"])
    with pytest.raises(SchemaError, match="max_tokens belongs to token runs"):
        RunStore.create(tmp_path / "a", heatmap_shape=(1, 3), modality="tabular", max_tokens=3)


def test_tabular_feature_names_and_inferred_modality(tmp_path):
    store = RunStore.create(
        tmp_path / "t", heatmap_shape=(1, 3), input_shape=(3,), modality="tabular", feature_names=["age", "bmi", "bp"]
    )
    assert store.modality == "tabular" and store.feature_names == ["age", "bmi", "bp"]
    assert RunStore.create(tmp_path / "s", heatmap_shape=(1, 9), input_shape=(2, 9)).modality == "signal"
    assert RunStore.create(tmp_path / "i", heatmap_shape=(4, 5), input_shape=(3, 4, 5)).modality == "image"
    assert RunStore.create(tmp_path / "n", heatmap_shape=(4, 5)).modality is None
    assert S.infer_modality((7,), integer=True) == "tokens"


def _as_format_2_0(store):
    path = store.store_dir / S.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    for key in (S.MODALITY_KEY, S.FEATURE_NAMES_KEY, S.MAX_TOKENS_KEY):
        del manifest[key]
    manifest[S.FORMAT_VERSION_KEY] = "2.0"
    path.write_text(json.dumps(manifest))


def test_a_format_2_0_store_reads_and_resumes_into_2_1(tmp_path):
    store = RunStore.create(tmp_path / "run", **RUN_META, input_shape=(1, 4, 5))
    store.write_epoch(0, 0, table_for(0, 0, [1, 2], 0.0))
    _as_format_2_0(store)
    old = RunStore(tmp_path / "run")
    assert old.format_version == "2.0" and old.modality == "image"  # inferred from input_shape
    assert old.heatmaps(0)[1].shape == (2, 4, 5)
    resumed = RunStore.create(tmp_path / "run", **RUN_META, input_shape=(1, 4, 5), modality="image")
    assert resumed.format_version == S.FORMAT_VERSION and resumed.manifest[S.MODALITY_KEY] == "image"
    assert [e.epoch for e in resumed.epochs()] == [0]
    with pytest.raises(IncompatibleRunError, match="modality is 'image' there but 'signal' now"):
        RunStore.create(tmp_path / "run", **RUN_META, input_shape=(1, 4, 5), modality="signal")


def test_a_bad_modality_in_the_manifest_names_the_key(tmp_path):
    store = token_store(tmp_path)
    path = store.store_dir / S.MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), S.MODALITY_KEY: "video"}))
    with pytest.raises(CorruptFileError, match="'modality' must be one of"):
        RunStore(tmp_path / "run")


def test_unknown_sample_ids_are_named(tmp_path):
    store = token_store(tmp_path)
    store.write_epoch(0, 0, token_rows(0, [10, 11]))
    with pytest.raises(SampleNotFoundError, match=r"\[99\]"):
        store.token_ids([10, 99])
    with pytest.raises(SampleNotFoundError, match=r"\[12\] are not in epoch 0"):
        store.token_relevance(0, [12])
