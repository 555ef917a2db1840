"""Token runs: the fixed-length form, findings of a planted shortcut token, and the words of every modality."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_lightning._validation import InvalidArgumentError
from lrp_lightning.analysis import Embeddings, Indicators, SpRAy
from lrp_lightning.analysis import findings as F
from lrp_lightning.analysis.regions import indicator_regions, token_name
from lrp_lightning.analysis.synthetic import planted_tokens
from lrp_lightning.analysis.tokens import TokenForm

IMAGE_WORDS = ("corner", "border", "patch", "px")


def _no_image_words(*texts: str) -> None:
    for text in texts:
        for word in IMAGE_WORDS:
            assert word not in text.lower(), text


def test_token_form_sums_relevance_per_vocabulary_item_and_per_position():
    ids = [np.array([5, 7, 5, 9]), np.array([7, 8])]
    relevance = [np.array([1.0, -2.0, 1.0, 0.5]), np.array([3.0, 1.0])]
    form = TokenForm(vocabulary_size=2, position_bins=2, position_weight=0.5, sign="signed")
    # per-sample shares of |relevance|: id 7 gets 0.444 + 0.75, id 5 0.444, id 8 0.25, id 9 0.111
    assert form.vocabulary(ids, relevance).tolist() == [7, 5]
    maps = form.transform(ids, relevance, names={7: "seven"})
    assert maps.vocabulary.tolist() == [7, 5] and maps.grid == (1, 3)
    np.testing.assert_allclose(maps.absolute, [[2 / 4.5, 2 / 4.5, 0.5 / 4.5], [0.75, 0.0, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(maps.signed, [[-2 / 4.5, 2 / 4.5, 0.5 / 4.5], [0.75, 0.0, 0.25]], rtol=1e-6)
    assert maps.presence.tolist() == [[1, 1, 1], [1, 0, 1]]
    # features: the unit bag block, then the unit position block (bins [0, 2) and [2, 4)) at weight 0.5
    bag = np.array([-2.0, 2.0, 0.5]) / np.linalg.norm([-2.0, 2.0, 0.5])
    positions = 0.5 * np.array([-1.0, 1.5]) / np.linalg.norm([-1.0, 1.5])
    np.testing.assert_allclose(maps.features[0], np.concatenate([bag, positions]), rtol=1e-6)
    np.testing.assert_allclose(maps.features[1, 3:], [0.5, 0.0], atol=1e-7)  # both tokens in the first bin
    assert [r.name for r in maps.regions] == ['token "seven"', "token id 5"]
    assert [r.token_id for r in maps.regions] == [7, 5]
    # a fixed vocabulary and no position block
    fixed = TokenForm(position_bins=0).transform(ids, relevance, vocabulary=[8])
    assert fixed.features.shape == (2, 2) and fixed.absolute[:, 0].tolist() == [0.0, 0.25]


def test_token_form_names_the_bad_input():
    form = TokenForm()
    with pytest.raises(InvalidArgumentError, match=r"relevance\[1\] must be one value per token of the sample"):
        form.transform([np.array([1, 2]), np.array([3])], [np.array([0.1, 0.2]), np.array([0.1, 0.2])])
    with pytest.raises(InvalidArgumentError, match="relevance must be one array per sample of token_ids"):
        form.transform([np.array([1])], [])
    with pytest.raises(InvalidArgumentError, match="finite"):
        form.transform([np.array([1])], [np.array([np.nan])])
    with pytest.raises(InvalidArgumentError, match="vocabulary_size"):
        TokenForm(vocabulary_size=0)
    assert token_name(3) == "token id 3" and token_name(3, {3: "[X]"}) == 'token "[X]"'


def _analyse(data, spray=None, findings=None):
    spray = spray or SpRAy(embeddings=Embeddings(methods=("pca",)), random_state=0)
    prepared, form = spray.prepare_tokens(data.token_ids, data.relevance, names=data.names)
    ids = np.arange(len(data.labels), dtype=np.int64)
    categories, results = {}, {}
    for c in np.unique(data.labels):
        rows = np.flatnonzero(data.labels == c)
        results[c] = spray.analyze(
            prepared.subset(rows), sample_ids=ids[rows], labels=data.labels[rows], predictions=data.labels[rows]
        )
        categories[f"class_{c}"] = F.CategoryInput(
            f"class {c}", ids[rows], prepared.absolute[rows], results[c].clustering.labelings, form.presence[rows]
        )
    detection = (findings or spray.findings).detect(0, categories, form.regions, modality="tokens")
    return detection, results


def test_a_planted_shortcut_token_is_one_finding_in_its_words():
    data = planted_tokens(n_samples=300, random_state=0)
    detection, results = _analyse(data)
    assert len(detection.findings) == 1, [f.summary() for f in detection.findings]
    finding = detection.findings[0]
    assert finding.member_ids.tolist() == data.planted.tolist()
    assert finding.region == 'token "[X]"' and finding.region_cells.tolist() == [data.shortcut_token]
    assert finding.summary() == 'class 1: token "[X]", 75 samples, since epoch 0'
    assert finding.reason.startswith(
        'token "[X]" carries 50% of the relevance in this cluster against 0% in the rest of the class '
        "(75 of 150 samples of class 1; the most relevant token of 100% of them); 75 of its 75 samples hold the token"
    )
    assert finding.input_spread == 0.0 and finding.q_value < 1e-10
    _no_image_words(finding.reason, finding.summary())
    # the indicators flag the cluster in the same words
    flagged = [s for s in results[1].summaries[results[1].selected] if s.flagged]
    assert [s.flag_region for s in flagged] == ['token "[X]"']
    assert 'on token "[X]" (token id 3)' in flagged[0].flag_reason
    _no_image_words(flagged[0].flag_reason)


def test_groups_reading_one_of_several_class_keywords_are_no_finding():
    """Without the shortcut the class keywords form clusters; but a keyword is not most members' top token, or
    the rest of the class holds it too (the cluster is not the group that holds it)."""
    data = planted_tokens(n_samples=300, shortcut_fraction=0.0, random_state=0)
    detection, _ = _analyse(data)
    assert detection.findings == []
    # the same groups are findings without these two guards
    loose, _ = _analyse(data, findings=F.Findings(min_token_top=0.0, min_token_coverage=0.0))
    assert loose.findings and all(f.region.startswith('token "class') for f in loose.findings)


def _token_category(held: int):
    """20 of 100 samples put about half their relevance on column 0 (token id 42); ``held`` of them hold it."""
    rng = np.random.default_rng(0)
    absolute = rng.random((100, 9)) * [0, 1, 1, 1, 1, 1, 1, 1, 1]
    absolute /= absolute.sum(axis=1, keepdims=True)
    absolute[:held] *= 0.4
    absolute[:held, 0] = 0.6
    presence = (rng.random((100, 9)) < 0.3).astype(np.float32)
    presence[:, 0] = 0
    presence[:held, 0] = 1
    labels = (np.arange(100) < 20).astype(np.int64)
    regions = F.token_regions(list(range(42, 50)), {42: "[X]"})
    ids = np.arange(100, dtype=np.int64)
    return {"class_0": F.CategoryInput("class 0", ids, absolute, {"kmeans_2": labels}, presence)}, regions


def test_evidence_b_for_tokens_is_that_the_members_hold_the_token():
    category, regions = _token_category(held=17)  # 85% of the cluster holds the token
    detection = F.Findings(min_token_top=0.8).detect(0, category, regions, modality="tokens")
    assert detection.findings == []
    (tested,) = detection.tested
    assert tested.presence[0] == pytest.approx(0.85) and tested.spread == pytest.approx(0.15)
    found = F.Findings(min_token_top=0.8, min_token_presence=0.8).detect(0, category, regions, modality="tokens")
    assert len(found.findings) == 1 and found.findings[0].region == 'token "[X]"'
    assert "17 of its 20 samples hold the token" in found.findings[0].reason


def test_findings_speak_the_words_of_signals_tabular_data_and_tokens():
    rng = np.random.default_rng(1)
    labels = (np.arange(100) < 20).astype(np.int64)

    def category(width: int, cells: list[int], value: float):
        absolute = rng.random((100, width))
        absolute[:20, cells] += 16.0 / len(cells)
        absolute /= absolute.sum(axis=1, keepdims=True)
        inputs = rng.uniform(0.1, 0.9, (100, width))
        inputs[:20][:, cells] = value  # the group has the same input there
        ids = np.arange(100, dtype=np.int64)
        return {"class_2": F.CategoryInput("class 2", ids, absolute, {"kmeans_2": labels}, inputs)}

    signal = F.region_set("signal", (1, 32), (1, 256))
    (finding,) = F.Findings().detect(0, category(32, [28, 29, 30, 31], 0.5), signal, modality="signal").findings
    assert finding.region == "time steps 224–255" and finding.summary().startswith("class 2: time steps 224–255,")
    assert "relevance in time steps 224–255 (32 of 256 steps)" in finding.reason
    _no_image_words(finding.reason, finding.summary())

    tabular = F.region_set("tabular", (1, 4), (1, 4), feature_names=["age", "income", "tenure", "score"])
    (finding,) = F.Findings().detect(0, category(4, [0], 0.5), tabular, modality="tabular").findings
    assert finding.region == "feature age" and finding.kind == F.KIND_FEATURE
    assert "relevance in feature age (feature index 0)" in finding.reason
    _no_image_words(finding.reason, finding.summary())

    data = planted_tokens(n_samples=200, random_state=3)
    (finding,) = _analyse(data)[0].findings
    assert finding.reason.startswith('token "[X]" carries 50% of the relevance in this cluster against 0% in the rest')
    _no_image_words(finding.reason, finding.summary())

    # the cluster flags of the indicators follow the same words
    absolute = category(32, [28, 29, 30, 31], 0.5)["class_2"].absolute
    summaries = Indicators().summarize(
        labels,
        coordinates=rng.normal(size=(100, 2)),
        absolute=absolute,
        signed=absolute,
        grid=(1, 32),
        sample_ids=np.arange(100),
        true_labels=labels,
        predictions=labels,
        regions=indicator_regions("signal", signal),
    )
    (flagged,) = [s for s in summaries if s.flagged]
    assert flagged.flag_region.startswith("time steps") and "relevance in time steps" in flagged.flag_reason
    assert flagged.corner_share == 0.0 and flagged.border_share == 0.0
    _no_image_words(flagged.flag_reason)
    assert indicator_regions("image", signal) is None
