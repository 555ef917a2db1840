"""Each explanation-quality metric against values computed by hand on tiny inputs."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn as nn

from lrp_lightning.attribution import explain
from lrp_lightning.metrics import (
    METRICS,
    Conservation,
    Entropy,
    ExplanationMetric,
    PixelFlipping,
    PointingGame,
    RegionPerturbation,
    RelevanceMass,
    RelevanceRankAccuracy,
    Sparseness,
    Stability,
    boxes_to_masks,
    check_requirements,
    get_metric,
)


def maps(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- complexity

COMPLEXITY_MAPS = maps(
    [[0.0, 0.0], [0.0, 1.0]],  # one pixel holds everything
    [[1.0, 1.0], [1.0, 1.0]],  # uniform
    [[1.0, -1.0], [0.0, 2.0]],  # |R| = 1, 1, 0, 2
)


def test_sparseness_is_the_gini_index_of_abs_relevance():
    # sorted |R| = (0, 1, 1, 2): sum (2i - 5) a_i = -1 + 1 + 6 = 6; G = 6 / (4 * 4)
    values = Sparseness().per_sample(COMPLEXITY_MAPS)
    assert torch.allclose(values, torch.tensor([0.75, 0.0, 0.375], dtype=values.dtype))


def test_entropy_of_the_normalised_abs_relevance():
    # p = (1/4, 1/4, 0, 1/2): H = 1/2 log 4 + 1/2 log 2
    expected = torch.tensor([0.0, math.log(4), 0.5 * math.log(4) + 0.5 * math.log(2)], dtype=torch.float64)
    assert torch.allclose(Entropy().per_sample(COMPLEXITY_MAPS), expected)
    assert torch.allclose(Entropy(normalize=True).per_sample(COMPLEXITY_MAPS), expected / math.log(4))


def test_channels_are_summed_before_taking_magnitudes():
    attributions = torch.zeros(1, 2, 2, 2)
    attributions[0, 0] = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    attributions[0, 1] = torch.tensor([[-3.0, 0.0], [0.0, 1.0]])  # cancels the first pixel
    # the map is (0, 0, 0, 2): all relevance in one pixel
    assert Sparseness().per_sample(attributions).item() == pytest.approx(0.75)
    assert Entropy().per_sample(attributions).item() == pytest.approx(0.0)


def test_all_zero_map_is_nan_and_left_out_of_the_mean():
    metric = Sparseness()
    values = metric.per_sample(torch.cat([COMPLEXITY_MAPS, torch.zeros(1, 2, 2, dtype=torch.float64)]))
    assert torch.isnan(values[3])
    metric.update(values=values)
    assert metric.compute().item() == pytest.approx((0.75 + 0.0 + 0.375) / 3)
    assert metric.count.item() == 3


def test_update_accumulates_over_batches_and_reset_clears():
    metric = Entropy()
    metric.update(COMPLEXITY_MAPS[:1])
    metric.update(COMPLEXITY_MAPS[1:])
    expected = (0.0 + math.log(4) + 0.5 * math.log(4) + 0.5 * math.log(2)) / 3
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    # torchmetrics' forward gives the batch value and accumulates too
    assert metric(COMPLEXITY_MAPS[1:2]).item() == pytest.approx(math.log(4), rel=1e-6)
    assert metric.compute().item() == pytest.approx((3 * expected + math.log(4)) / 4, rel=1e-6)
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        assert math.isnan(metric.compute().item())


def test_update_with_values_and_batch_together_is_an_error():
    with pytest.raises(TypeError, match="either relevance and its batch, or values"):
        Sparseness().update(COMPLEXITY_MAPS, values=torch.ones(3))
    with pytest.raises(TypeError, match="update needs relevance"):
        Sparseness().update()


# ---------------------------------------------------------------------------------------------------- localisation

LOCAL_MAP = maps(
    [
        [1.0, 2.0, 0.0, 0.0],
        [3.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 4.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)
TOP_LEFT = torch.zeros(1, 4, 4, dtype=torch.bool)
TOP_LEFT[0, :2, :2] = True


def test_relevance_mass_counts_positive_relevance_inside_the_mask():
    # positive inside: 1 + 2 + 3 = 6; all positive: 10 (the -1 counts for neither)
    assert RelevanceMass().per_sample(LOCAL_MAP, masks=TOP_LEFT).item() == pytest.approx(0.6)


def test_relevance_rank_accuracy_takes_the_top_mask_size_pixels():
    # K = 4; the 4 most relevant pixels are 4, 3, 2, 1, of which 3, 2 and 1 lie inside
    assert RelevanceRankAccuracy().per_sample(LOCAL_MAP, masks=TOP_LEFT).item() == pytest.approx(0.75)
    bottom_right = torch.zeros(1, 4, 4, dtype=torch.bool)
    bottom_right[0, 2, 2] = True  # K = 1: the single top pixel (4) is inside
    assert RelevanceRankAccuracy().per_sample(LOCAL_MAP, masks=bottom_right).item() == 1.0


def test_pointing_game_hits_only_with_the_peak_inside_the_grown_mask():
    # the peak (4) is at (2, 2), outside the top-left square; one pixel away diagonally (distance sqrt 2)
    assert PointingGame().per_sample(LOCAL_MAP, masks=TOP_LEFT).item() == 0.0
    assert PointingGame(tolerance=1).per_sample(LOCAL_MAP, masks=TOP_LEFT).item() == 0.0
    assert PointingGame(tolerance=2).per_sample(LOCAL_MAP, masks=TOP_LEFT).item() == 1.0
    column = torch.zeros(1, 4, 4, dtype=torch.bool)
    column[0, :, 3] = True  # (2, 3) is at distance 1 from the peak
    assert PointingGame(tolerance=1).per_sample(LOCAL_MAP, masks=column).item() == 1.0
    assert PointingGame().per_sample(LOCAL_MAP, masks=column).item() == 0.0


def test_pointing_game_constant_map_misses_and_empty_mask_is_not_counted():
    constant = torch.ones(2, 4, 4)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True  # argmax of a constant map would be pixel (0, 0)
    values = PointingGame().per_sample(constant, masks=masks)
    assert values[0].item() == 0.0 and torch.isnan(values[1])


def test_localisation_accepts_channel_attributions_and_integer_masks():
    attributions = torch.stack([LOCAL_MAP[0] / 2, LOCAL_MAP[0] / 2])[None]  # (1, 2, 4, 4), sums to the map
    masks = TOP_LEFT[:, None].long()  # (N, 1, H, W) of 0/1
    assert RelevanceMass().per_sample(attributions, masks=masks).item() == pytest.approx(0.6)


def test_localisation_on_an_empty_mask_is_nan():
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    for metric in (RelevanceMass(), RelevanceRankAccuracy(), PointingGame()):
        assert torch.isnan(metric.per_sample(LOCAL_MAP, masks=empty)).all(), metric


def test_localisation_rejects_bad_masks():
    with pytest.raises(ValueError, match=r"do not fit the relevance maps \(1, 4, 4\)"):
        RelevanceMass().per_sample(LOCAL_MAP, masks=torch.ones(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="soft masks are not supported"):
        RelevanceMass().per_sample(LOCAL_MAP, masks=torch.full((1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="metric relevance_mass needs masks"):
        RelevanceMass().per_sample(LOCAL_MAP)


def test_boxes_to_masks():
    masks = boxes_to_masks(torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.5, 1.0, 3.0, 2.2]]), size=(4, 4))
    assert masks.dtype == torch.bool and masks.shape == (2, 4, 4)
    assert torch.equal(masks[0], TOP_LEFT[0])
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True  # columns floor(1.5)=1 .. ceil(3)-1=2, rows 1 .. ceil(2.2)-1=2
    assert torch.equal(masks[1], expected)
    several = boxes_to_masks([[[0, 0, 1, 1], [3, 3, 9, 9]], []], size=(4, 4))  # union; clipped; none
    assert several[0].nonzero().tolist() == [[0, 0], [3, 3]]
    assert not several[1].any()
    with pytest.raises(ValueError, match=r"must be \(N, 4\)"):
        boxes_to_masks(torch.zeros(2, 3), size=(4, 4))


# ---------------------------------------------------------------------------------------------------- stability


def test_stability_is_spearmans_rho_with_the_previous_maps():
    current = maps([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]])
    previous = maps([[1.0, 2.0], [4.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]])
    # 1: d = (0, 0, 1, 1): 1 - 6 * 2 / (4 * 15) = 0.8
    # 2: ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4): cov 4.5 / sqrt(4.5 * 5)
    # 3: reversed order: -1
    values = Stability().per_sample(current, previous=previous)
    assert torch.allclose(values, torch.tensor([0.8, 4.5 / math.sqrt(22.5), -1.0], dtype=values.dtype))


def test_stability_matches_scipy_with_many_ties():
    generator = torch.Generator().manual_seed(3)
    current = torch.randn(5, 12, 12, generator=generator).half().float().round(decimals=1)  # many ties
    previous = (current + 0.5 * torch.randn(5, 12, 12, generator=generator)).round(decimals=1)
    values = Stability().per_sample(current, previous=previous)
    expected = [
        scipy.stats.spearmanr(c.flatten().numpy(), p.flatten().numpy()).statistic for c, p in zip(current, previous)
    ]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-10)
    assert 0.5 < min(expected)  # the test data are correlated, not trivially


def test_stability_is_nan_without_a_previous_map_or_for_a_constant_map():
    current = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    previous = current.clone()
    previous[1] = math.nan  # not explained in the previous epoch
    current[2] = 1.0
    values = Stability().per_sample(current, previous=previous)
    assert values[0].item() == pytest.approx(1.0) and torch.isnan(values[1:]).all()
    with pytest.raises(ValueError, match="needs the previous epoch's maps"):
        Stability().per_sample(current)
    with pytest.raises(ValueError, match="previous maps"):
        Stability().per_sample(current, previous=torch.zeros(3, 2, 2))


# ---------------------------------------------------------------------------------------------------- conservation


def test_conservation_divides_by_the_initial_relevance():
    relevance = torch.tensor([[2.0, 0.0], [1.0, 2.0]])  # sums 2 and 3
    outputs = torch.tensor([[1.0, 2.0], [4.0, 0.5]])
    targets = torch.tensor([1, 0])
    one_hot = Conservation().per_sample(relevance, outputs=outputs, targets=targets)
    assert torch.allclose(one_hot, torch.tensor([2.0, 3.0], dtype=one_hot.dtype))  # initial relevance 1
    from_score = Conservation().per_sample(
        relevance, outputs=outputs, targets=lambda out: out * torch.eye(2)[targets]
    )  # initial relevance = the target logit: 2 and 4
    assert torch.allclose(from_score, torch.tensor([1.0, 0.75], dtype=from_score.dtype))
    with pytest.raises(ValueError, match="needs the model's outputs"):
        Conservation().per_sample(relevance, targets=targets)
    with pytest.raises(ValueError, match="needs targets"):
        Conservation().per_sample(relevance, outputs=outputs)


def test_conservation_of_lrp_is_one_without_bias_and_flags_a_bias():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-0.5, 1.0, 48, dtype=torch.float64).reshape(3, 16))
        model[1].bias.zero_()
    output, relevance = explain(model, x, target=targets, composite="epsilon_plus")
    values = Conservation().per_sample(relevance, outputs=output, targets=targets)
    assert torch.allclose(values, torch.ones(4, dtype=values.dtype), atol=1e-5)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    output, relevance = explain(model, x, target=targets, composite="epsilon_plus")
    values = Conservation().per_sample(relevance, outputs=output, targets=targets)
    logits = output[torch.arange(4), targets]
    bias = model[1].bias.detach()[targets]
    # Epsilon(1e-6) on the only layer: the bias keeps its share, sum R = (z - b) / (z + eps sign z)
    assert torch.allclose(values, (logits - bias) / (logits + 1e-6 * logits.sign()), rtol=1e-9)
    assert (values - 1).abs().min() > 0.05


# ---------------------------------------------------------------------------------------------------- faithfulness


def linear_model(weights):
    """Flatten, then class 0 scores sum(weights * x); class 1 is constant zero."""
    weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
    model = nn.Sequential(nn.Flatten(), nn.Linear(weights.numel(), 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = weights
    return model


def test_pixel_flipping_curve_on_a_linear_model():
    model = linear_model([4.0, 3.0, 2.0, 1.0])
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    relevance = x * torch.tensor([[4.0, 3.0], [2.0, 1.0]], dtype=torch.float64)
    metric = PixelFlipping(steps=4, random_baseline=False)
    morf, random = metric.curves(relevance, model, x, targets=0)
    assert random is None
    assert morf.tolist() == [[10.0, 6.0, 3.0, 1.0, 0.0]]
    # AOPC: (0 + 4 + 7 + 9 + 10) / 5
    assert metric.per_sample(relevance, model=model, inputs=x, targets=[0]).item() == pytest.approx(6.0)
    normalized = PixelFlipping(steps=4, random_baseline=False, normalize=True)
    assert normalized.per_sample(relevance, model=model, inputs=x, targets=[0]).item() == pytest.approx(0.6)


def test_region_perturbation_ranks_patches_by_their_summed_relevance():
    weights = torch.zeros(4, 4, dtype=torch.float64)
    weights[0, 0] = 5.0  # top-left patch: the largest pixel, sum 5
    weights[0:2, 2:4] = 2.0  # top-right patch: sum 8
    weights[2:4, 0:2] = 1.0  # bottom-left patch: sum 4
    model = linear_model(weights)
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    metric = RegionPerturbation(patch_size=2, steps=2, patches_per_step=1, random_baseline=False)
    morf, _ = metric.curves(weights[None], model, x, targets=torch.tensor([0]))
    assert morf.tolist() == [[17.0, 9.0, 4.0]]  # top-right first, then top-left
    pixels, _ = PixelFlipping(steps=2, patches_per_step=1, random_baseline=False).curves(weights[None], model, x, 0)
    assert pixels.tolist() == [[17.0, 12.0, 10.0]]  # pixel by pixel, the 5 goes first


def test_region_perturbation_baselines():
    model = linear_model([4.0, 3.0, 2.0, 1.0])
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)  # score 4 + 6 + 6 + 4 = 20
    relevance = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]], dtype=torch.float64)  # removes x3, x2, x1, x0
    mean = PixelFlipping(steps=4, random_baseline=False, baseline="mean")
    # each removed pixel becomes 2.5: 20 - 1.5 * 1, - 0.5 * 2, + 0.5 * 3, + 1.5 * 4
    assert mean.curves(relevance, model, x, 0)[0].tolist() == [[20.0, 18.5, 17.5, 19.0, 25.0]]
    constant = PixelFlipping(steps=4, random_baseline=False, baseline=1.0)
    assert constant.curves(relevance, model, x, 0)[0].tolist() == [[20.0, 17.0, 13.0, 10.0, 10.0]]
    custom = PixelFlipping(steps=4, random_baseline=False, baseline=lambda inputs: inputs + 1)
    assert custom.curves(relevance, model, x, 0)[0].tolist() == [[20.0, 21.0, 23.0, 26.0, 30.0]]


def test_random_order_baseline_is_chance_level_on_average():
    # the random curve's expected value is 10 (1 - k / 4): AOPC_rand = 5, AOPC_MoRF = 6
    model = linear_model([4.0, 3.0, 2.0, 1.0])
    x = torch.ones(4000, 1, 2, 2, dtype=torch.float64)
    relevance = x * torch.tensor([[4.0, 3.0], [2.0, 1.0]], dtype=torch.float64)
    metric = PixelFlipping(steps=4)
    morf, random = metric.curves(relevance, model, x, 0)
    assert (random[:, 0] == 10).all() and (random[:, -1] == 0).all()
    assert (random.diff(dim=1) <= 0).all() and (random >= morf).all()  # MoRF is the fastest possible drop
    assert random.mean(dim=0).tolist() == pytest.approx([10.0, 7.5, 5.0, 2.5, 0.0], abs=0.1)
    values = metric.per_sample(relevance, model=model, inputs=x, targets=0)
    assert values.mean().item() == pytest.approx(1.0, abs=0.05)


def test_random_orders_are_seeded_and_leave_the_global_rng_alone():
    model = linear_model(torch.arange(16.0))
    x = torch.rand(8, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    relevance = torch.randn(8, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    state = torch.random.get_rng_state()
    first = PixelFlipping(steps=4, seed=7).per_sample(relevance, model=model, inputs=x, targets=0)
    again = PixelFlipping(steps=4, seed=7).per_sample(relevance, model=model, inputs=x, targets=0)
    other = PixelFlipping(steps=4, seed=8).per_sample(relevance, model=model, inputs=x, targets=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, other)
    advancing = PixelFlipping(steps=4, seed=torch.Generator().manual_seed(7))
    assert torch.equal(advancing.per_sample(relevance, model=model, inputs=x, targets=0), first)
    assert not torch.equal(advancing.per_sample(relevance, model=model, inputs=x, targets=0), first)


def test_faithfulness_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    model.train()
    model[1].eval()  # mixed modes must survive as they are
    before = {key: value.clone() for key, value in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    x = torch.rand(5, 1, 4, 4)
    values = RegionPerturbation(patch_size=2, steps=2).per_sample(
        torch.rand(5, 1, 4, 4), model=model, inputs=x, targets="prediction"
    )
    assert values.shape == (5,) and torch.isfinite(values).all()
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert [id(p) for p in model.parameters()] == params and all(p.grad is None for p in model.parameters())


def test_faithfulness_rejects_bad_inputs():
    model = linear_model([1.0, 1.0, 1.0, 1.0])
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the model and its inputs"):
        PixelFlipping().per_sample(x)
    with pytest.raises(ValueError, match="do not fit the inputs"):
        PixelFlipping().per_sample(torch.ones(1, 1, 1), model=model, inputs=x, targets=0)
    with pytest.raises(ValueError, match="needs targets"):
        PixelFlipping().per_sample(x, model=model, inputs=x)
    with pytest.raises(ValueError, match="holds 2 samples, but relevance holds 1"):
        PixelFlipping().per_sample(x, model=model, inputs=x.expand(2, 1, 2, 2), targets=0)
    callable_baseline = r"must be 'zero', 'mean', a number or a callable inputs -> tensor"
    with pytest.raises(ValueError, match=rf"PixelFlipping: baseline {callable_baseline}, got 'blur'"):
        PixelFlipping(baseline="blur")
    with pytest.raises(TypeError, match=rf"RegionPerturbation: baseline {callable_baseline}, got list \[0\]"):
        RegionPerturbation(baseline=[0])
    with pytest.raises(ValueError, match="RegionPerturbation: steps must be an int >= 1, got 0"):
        RegionPerturbation(steps=0)
    with pytest.raises(ValueError, match=r"patches_per_step must be an int >= 1, got 2\.0"):
        RegionPerturbation(patches_per_step=2.0)
    with pytest.raises(TypeError, match="RegionPerturbation: seed must be an int or a torch.Generator, got True"):
        RegionPerturbation(seed=True)
    with pytest.raises(ValueError, match=r"PointingGame: tolerance must be an int >= 0 \(in pixels\), got -1"):
        PointingGame(tolerance=-1)


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_names_and_requirements():
    assert set(METRICS) == {
        "sparseness",
        "entropy",
        "pixel_flipping",
        "region_perturbation",
        "relevance_mass",
        "relevance_rank_accuracy",
        "pointing_game",
        "stability",
        "conservation",
    }
    needs = {
        name: (cls.needs_model, cls.needs_outputs, cls.needs_masks, cls.needs_previous) for name, cls in METRICS.items()
    }
    assert {name for name, flags in needs.items() if flags[0]} == {"pixel_flipping", "region_perturbation"}
    assert {name for name, flags in needs.items() if flags[1]} == {"conservation"}
    assert {name for name, flags in needs.items() if flags[2]} == {
        "relevance_mass",
        "relevance_rank_accuracy",
        "pointing_game",
    }
    assert {name for name, flags in needs.items() if flags[3]} == {"stability"}
    for name, cls in METRICS.items():
        assert cls.name == name and issubclass(cls, ExplanationMetric)


def test_get_metric():
    metric = get_metric("Region-Perturbation", patch_size=8, steps=3)
    assert isinstance(metric, RegionPerturbation) and (metric.patch_size, metric.steps) == (8, 3)
    assert get_metric(metric) is metric
    assert isinstance(get_metric(PointingGame, tolerance=3), PointingGame)
    with pytest.raises(ValueError, match=r"unknown metric 'sparsness' \(did you mean 'sparseness'\?\); choose one of"):
        get_metric("sparsness")
    with pytest.raises(TypeError, match="constructed already"):
        get_metric(metric, steps=4)
    with pytest.raises(TypeError, match="a metric must be a name"):
        get_metric(3)


def test_check_requirements_names_the_metric_that_needs_masks():
    check_requirements(["sparseness", Stability(), PixelFlipping], has_masks=False)
    check_requirements(["relevance_mass", PointingGame()], has_masks=True)
    message = "metric relevance_mass needs masks: give the probe dataset a 'mask' field or remove it from metrics"
    with pytest.raises(ValueError, match=message):
        check_requirements(["sparseness", "relevance_mass"], has_masks=False)
    with pytest.raises(ValueError, match="metric pointing_game needs masks"):
        check_requirements([PointingGame(tolerance=2)], has_masks=False)
    with pytest.raises(ValueError, match="unknown metric 'gini'"):
        check_requirements(["gini"], has_masks=True)
