"""Findings: Benjamini-Hochberg, the permutation test, minimum size, merging, stable ids, words per modality."""

from __future__ import annotations

import numpy as np
import pytest

from lrp_lightning.analysis import findings as F

GRID = (8, 8)
CORNER = np.zeros(GRID, dtype=bool)
CORNER[:2, :2] = True
CORNER = CORNER.reshape(-1)


def _category(n=100, planted=20, seed=0, pattern=True):
    """Maps and inputs of one class: the first ``planted`` samples put half their relevance in the top-left
    corner and (with ``pattern``) carry the same bright square there; the others spread it over the middle."""
    rng = np.random.default_rng(seed)
    absolute = rng.random((n, 64)) * ~CORNER
    absolute /= absolute.sum(axis=1, keepdims=True)
    absolute[:planted] *= 0.5
    absolute[:planted, CORNER] += 0.5 / CORNER.sum()
    inputs = rng.random((n, 64)) * 0.5
    if pattern:
        inputs[:planted, CORNER] = 1.0
    return absolute, inputs


def _input(absolute, inputs, labelings, label="class 0"):
    ids = np.arange(100, 100 + len(absolute), dtype=np.int64)
    return F.CategoryInput(label=label, sample_ids=ids, absolute=absolute, labelings=labelings, inputs=inputs)


def _regions():
    return F.region_set("image", GRID, GRID)


def test_benjamini_hochberg_matches_the_hand_computed_adjustment():
    q = F.benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    # sorted p 0.005, 0.01, 0.03, 0.04 scaled by m/rank: 0.02, 0.02, 0.04, 0.04 (then running minimum from the top)
    np.testing.assert_allclose(q, [0.02, 0.04, 0.04, 0.02])
    assert F.benjamini_hochberg([0.5, 0.9]).tolist() == [0.9, 0.9]
    assert F.benjamini_hochberg([0.9]).tolist() == [0.9]
    assert F.benjamini_hochberg([]).size == 0
    p = np.random.default_rng(0).random(50)
    q = F.benjamini_hochberg(p)
    assert (q >= p - 1e-12).all() and (np.diff(q[np.argsort(p)]) >= 0).all()


def test_permutation_test_planted_cluster_is_significant_random_subset_is_not():
    absolute, _ = _category()
    shares = absolute[:, CORNER].sum(axis=1)
    subsets = F._random_subsets(100, 20, 999, (0, 100, 20))
    assert subsets.sum(axis=1).tolist() == [20] * 999
    null = subsets.astype(float) @ shares / 20
    planted = F.permutation_pvalue(shares[:20].mean(), null)
    assert planted < 1e-6
    rng = np.random.default_rng(5)
    random_members = rng.choice(np.arange(20, 100), 20, replace=False)
    assert F.permutation_pvalue(shares[random_members].mean(), null) > 0.05
    # count-based p value when the observed statistic is ordinary
    assert F.permutation_pvalue(np.median(null), null) == pytest.approx((1 + np.sum(null >= np.median(null))) / 1000)


def test_planted_cluster_is_one_finding_and_a_random_cluster_none():
    absolute, inputs = _category()
    planted = (np.arange(100) < 20).astype(np.int64)
    random_labels = np.zeros(100, np.int64)
    random_labels[np.random.default_rng(1).choice(100, 20, replace=False)] = 1
    detection = F.Findings().detect(0, {"class_0": _input(absolute, inputs, {"kmeans_2": planted})}, _regions())
    assert len(detection.findings) == 1
    finding = detection.findings[0]
    assert finding.region == "top-left corner" and finding.kind == F.KIND_ARTIFACT
    assert finding.member_ids.tolist() == list(range(100, 120))
    assert finding.q_value < 0.01 and finding.input_spread < 0.01
    assert finding.share == pytest.approx(0.5, abs=0.01) and finding.strength > 0.4
    assert finding.summary() == "class 0: top-left corner, 20 samples, since epoch 0"
    none = F.Findings().detect(0, {"class_0": _input(absolute, inputs, {"kmeans_2": random_labels})}, _regions())
    assert none.findings == []


def test_a_group_that_a_clustering_splits_in_two_is_one_finding_with_every_member():
    # the full digits demo: k-means puts the 28 watermarked 3s into two clusters of 14; each half is
    # measured against the clean samples (not against the other half) and the halves are one finding
    absolute, inputs = _category(n=100, planted=40)
    halves = np.zeros(100, np.int64)
    halves[:20], halves[20:40] = 1, 2
    detection = F.Findings().detect(0, {"class_0": _input(absolute, inputs, {"kmeans_3": halves})}, _regions())
    assert len(detection.findings) == 1
    finding = detection.findings[0]
    assert finding.member_ids.tolist() == list(range(100, 140))
    assert finding.rest_share < 0.05  # the other half is not "the rest"
    assert sorted(finding.clusters) == ["class_0/kmeans_3/1", "class_0/kmeans_3/2"]


def test_relevance_without_the_same_inputs_is_no_finding():
    """A subgroup reading its own, varying inputs in a corner (evidence b fails) is not flagged."""
    absolute, inputs = _category(pattern=False)
    planted = (np.arange(100) < 20).astype(np.int64)
    detection = F.Findings().detect(0, {"class_0": _input(absolute, inputs, {"kmeans_2": planted})}, _regions())
    assert detection.findings == []
    assert len(detection.tested) == 1 and detection.tested[0].spread > 0.5
    # without stored inputs, (b) is not checked: the finding rests on (a) and (c) and says so
    detection = F.Findings().detect(0, {"class_0": _input(absolute, None, {"kmeans_2": planted})}, _regions())
    assert len(detection.findings) == 1 and detection.findings[0].input_spread is None
    assert "inputs were not stored" in detection.findings[0].reason


def test_minimum_size_is_the_larger_of_min_size_and_the_fraction():
    absolute, inputs = _category(planted=4)
    planted = (np.arange(100) < 4).astype(np.int64)
    category = {"class_0": _input(absolute, inputs, {"kmeans_2": planted})}
    assert F.Findings().detect(0, category, _regions()).findings == []  # 4 < 5
    assert len(F.Findings(min_size=3).detect(0, category, _regions()).findings) == 1
    assert F.Findings(min_size=3, min_fraction=0.05).detect(0, category, _regions()).findings == []  # 4 < 5% of 100
    assert F.Findings().min_cluster_size(1000) == 20 and F.Findings().min_cluster_size(100) == 5


def test_clusterings_and_epochs_merge_into_one_finding_with_a_stable_id():
    absolute, inputs = _category(planted=30)
    whole = (np.arange(100) < 30).astype(np.int64)
    split = np.where(np.arange(100) < 15, 1, np.where(np.arange(100) < 30, 2, 0))  # the group split in two
    labelings = {"kmeans_2": whole, "kmeans_3": split, "agglomerative": 1 - whole}  # same group, another id
    categories = {"class_0": _input(absolute, inputs, labelings)}
    step = F.Findings()
    first = step.detect(0, categories, _regions()).findings
    assert len(first) == 1
    assert first[0].finding_id == "class_0/top-left-corner@0"
    assert first[0].member_ids.tolist() == list(range(100, 130))
    assert first[0].clusters == [
        "class_0/agglomerative/0",
        "class_0/kmeans_2/1",
        "class_0/kmeans_3/1",
        "class_0/kmeans_3/2",
    ]
    # the next epoch: a different clustering finds most of the same samples; same id, first epoch kept
    absolute2, inputs2 = _category(planted=30, seed=1)
    nearly = (np.arange(100) < 27).astype(np.int64)
    second = step.detect(1, {"class_0": _input(absolute2, inputs2, {"kmeans_4": nearly})}, _regions(), previous=first)
    assert len(second.findings) == 1
    assert second.findings[0].finding_id == first[0].finding_id
    assert second.findings[0].first_epoch == 0 and second.findings[0].epochs_seen == [0, 1]
    # analysing again gives the same ids and members
    again = F.Findings().detect(0, categories, _regions()).findings
    assert [(f.finding_id, f.member_ids.tolist()) for f in again] == [
        (f.finding_id, f.member_ids.tolist()) for f in first
    ]
    # an unrelated group in another corner is another finding
    far = F.Findings().detect(1, {"class_0": _input(absolute2, inputs2, {"kmeans_4": nearly})}, _regions(), previous=[])
    assert far.findings[0].finding_id == "class_0/top-left-corner@1"


def test_all_samples_are_tested_only_without_class_categories():
    absolute, inputs = _category()
    planted = (np.arange(100) < 20).astype(np.int64)
    both = {
        "all": _input(absolute, inputs, {"kmeans_2": planted}, "all samples"),
        "class_0": _input(absolute, inputs, {"kmeans_2": planted}),
    }
    findings = F.Findings().detect(0, both, _regions()).findings
    assert [f.category for f in findings] == ["class_0"]
    only_all = F.Findings().detect(0, {"all": both["all"]}, _regions()).findings
    assert [(f.category, f.summary()) for f in only_all] == [
        ("all", "all samples: top-left corner, 20 samples, since epoch 0")
    ]


def test_tabular_findings_are_feature_concentrations_named_by_feature():
    names = ["age", "income", "tenure", "score"]
    regions = F.region_set("tabular", (1, 4), (1, 4), feature_names=names)
    assert [r.name for r in regions] == ["feature age", "feature income", "feature tenure", "feature score"]
    rng = np.random.default_rng(0)
    absolute = rng.random((100, 4)) * [0, 1, 1, 1]
    absolute[:20, 0] = 3.0  # a group relies on "age"
    absolute /= absolute.sum(axis=1, keepdims=True)
    inputs = rng.uniform(0.1, 0.9, (100, 4))
    inputs[:20, 0] = 0.5  # and has the same value of it (a leaked constant)
    labels = (np.arange(100) < 20).astype(np.int64)
    findings = (
        F.Findings()
        .detect(0, {"class_1": _input(absolute, inputs, {"kmeans_2": labels}, "class 1")}, regions, modality="tabular")
        .findings
    )
    assert len(findings) == 1
    finding = findings[0]
    assert finding.kind == "feature concentration" and finding.region == "feature age"
    assert finding.summary() == "class 1: feature age (feature concentration), 20 samples, since epoch 0"
    for word in ("shortcut", "corner", "artifact", "patch"):
        assert word not in finding.reason.lower() and word not in finding.summary().lower()
    # a feature that is the samples' extreme shows as 1.0 in every per-sample-scaled thumbnail: not evidence
    inputs[:20, 0] = 1.0
    assert (
        F.Findings()
        .detect(0, {"class_1": _input(absolute, inputs, {"kmeans_2": labels}, "class 1")}, regions, modality="tabular")
        .findings
        == []
    )


def test_signal_regions_are_time_windows_and_modality_is_inferred():
    regions = F.region_set("signal", (1, 32), (1, 128))
    assert regions[0].name == "time steps 0–15" and regions[0].cells.sum() == 4
    assert all(r.name.startswith("time steps ") for r in regions)
    assert F.modality_of({"heatmap_shape": [24, 24]}) == "image"
    assert F.modality_of({"heatmap_shape": [1, 128], "input_shape": [2, 128]}) == "signal"
    assert F.modality_of({"heatmap_shape": [1, 12], "input_shape": [12]}) == "tabular"
    assert F.modality_of({"heatmap_shape": [1, 12], "input_shape": [12], "modality": "signal"}) == "signal"


def test_findings_table_round_trips():
    absolute, inputs = _category()
    planted = (np.arange(100) < 20).astype(np.int64)
    findings = F.Findings().detect(0, {"class_0": _input(absolute, inputs, {"kmeans_2": planted})}, _regions()).findings
    table = F.findings_table(findings)
    assert table.schema.equals(F.FINDINGS_SCHEMA) and table.num_rows == 1
    back = F.findings_from_table(table, {"class_0": "class 0"})
    assert (
        back[0].finding_id == findings[0].finding_id and back[0].member_ids.tolist() == findings[0].member_ids.tolist()
    )
    assert back[0].summary() == findings[0].summary() and back[0].reason == findings[0].reason
    assert table.column(F.STRENGTH)[0].as_py() == pytest.approx(findings[0].strength)


def test_alpha_and_min_size_are_options_of_the_config_and_enter_the_cache_key():
    from lrp_lightning.analysis import SpRAy

    spray = SpRAy.from_config({"findings": {"alpha": 0.01, "min_size": 8}})
    assert (spray.findings.alpha, spray.findings.min_size) == (0.01, 8)
    assert spray.get_config() != SpRAy().get_config()
    with pytest.raises(ValueError, match="alpha"):
        SpRAy.from_config({"findings": {"alpha": 2.0}})
