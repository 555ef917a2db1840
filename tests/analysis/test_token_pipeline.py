"""The analysis of a stored token run: the fixed-length form, findings in words, stored and read back."""

from __future__ import annotations

import json

import numpy as np

from lrp_lightning import store as S
from lrp_lightning.analysis import Embeddings, SpRAy, analyze_run, load_analysis, load_findings
from lrp_lightning.analysis.synthetic import planted_tokens

MAX_TOKENS = 32  # shorter than the longest texts: the fixed-shape maps are cut, the token relevance is not


def _token_run(tmp_path, epochs=2, strings=True):
    data = planted_tokens(n_samples=200, length=(12, 40), random_state=2)
    store = S.RunStore.create(
        tmp_path / "run",
        heatmap_shape=(1, MAX_TOKENS),
        input_shape=(MAX_TOKENS,),
        modality="tokens",
        max_tokens=MAX_TOKENS,
        class_names=["neg", "pos"],
    )
    ids = np.arange(len(data.labels))
    store.write_probe(
        S.make_probe_table(
            sample_id=ids,
            dataset_index=ids,
            label=data.labels,
            token_ids=data.token_ids,
            tokens=[[data.names[int(t)] for t in row] for row in data.token_ids] if strings else None,
        )
    )
    for epoch in range(epochs):
        store.write_epoch(
            epoch,
            epoch * 10,
            S.make_attribution_table(
                epoch=epoch,
                global_step=epoch * 10,
                sample_id=ids,
                label=data.labels,
                prediction=data.labels,
                target=data.labels,
                score=np.ones(len(ids)),
                probability=np.full(len(ids), 0.9),
                relevance=S.token_maps(data.relevance, MAX_TOKENS),
                token_relevance=data.relevance,
            ),
        )
    return store, data


def _spray():
    return SpRAy(embeddings=Embeddings(methods=("pca",)), random_state=0)


def test_a_token_run_is_analysed_on_tokens_and_its_finding_names_the_token(tmp_path):
    store, data = _token_run(tmp_path)
    outcome = analyze_run(store, _spray(), log_scalars=False)
    assert not outcome.failures
    (finding,) = outcome.findings
    assert finding.region == 'token "[X]"' and finding.category == "class_1"
    assert finding.member_ids.tolist() == data.planted.tolist()
    assert finding.epochs_seen == [0, 1] and finding.finding_id == "class_1/token-x@0"
    assert finding.reason.startswith('token "[X]" carries 50% of the relevance in this cluster against 0% in the rest')

    stored = load_findings(store).to_pylist()
    assert [(r[S.EPOCH], r[S.FINDING_REGION], r[S.FINDING_REGION_CELLS]) for r in stored] == [
        (0, 'token "[X]"', [data.shortcut_token]),
        (1, 'token "[X]"', [data.shortcut_token]),
    ]
    tables = load_analysis(store, 1)
    clusters = tables[S.CLUSTERS_TABLE]
    vocabulary = json.loads(clusters.schema.metadata[S.META_TOKEN_VOCABULARY])
    grid = json.loads(clusters.schema.metadata[S.META_GRID_SHAPE])
    assert grid == [1, len(vocabulary) + 1] and vocabulary[0] == data.shortcut_token  # the most relevant token
    assert all(len(p) == grid[1] for p in clusters.column(S.PROTOTYPE).to_pylist())
    reasons = [r for r in clusters.column(S.FLAG_REASON).to_pylist() if r]
    assert reasons and all("corner" not in r and "token" in r for r in reasons)
    # the stability compares the stored per-position maps of the two epochs (the same relevance: 1.0)
    stability = tables[S.POINTS_TABLE].column(S.STABILITY).to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(stability, 1.0, atol=1e-5)


def test_without_token_strings_the_finding_names_the_token_id(tmp_path):
    store, data = _token_run(tmp_path, epochs=1, strings=False)
    (finding,) = analyze_run(store, _spray(), log_scalars=False).findings
    assert finding.region == f"token id {data.shortcut_token}"
    assert finding.reason.startswith(f"token id {data.shortcut_token} carries 50% of the relevance in this cluster")
