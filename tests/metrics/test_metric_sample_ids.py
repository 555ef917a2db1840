"""Faithfulness metrics with sample ids: a sample's random patch order depends on (seed, sample id) only."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from lrp_lightning.metrics import METRICS, PixelFlipping, RegionPerturbation, get_metric

IDS = [10, 3, 7, 0, 42, 5]


def linear_model(weights):
    model = nn.Sequential(nn.Flatten(), nn.Linear(len(weights), 1, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.as_tensor(weights, dtype=torch.float64)[None])
    return model


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    model = linear_model(torch.randn(16, generator=generator, dtype=torch.float64))
    x = torch.rand(6, 1, 4, 4, generator=generator, dtype=torch.float64)
    relevance = torch.randn(6, 1, 4, 4, generator=generator, dtype=torch.float64)
    return model, x, relevance


def per_sample_in_batches(metric, model, x, relevance, parts, ids=IDS):
    """Per-sample values computed batch by batch (``parts``: lists of positions), put back in sample order."""
    values = torch.full((len(x),), float("nan"), dtype=torch.float64)
    for part in parts:
        index = torch.tensor(part)
        values[index] = metric.per_sample(
            relevance[index],
            model=model,
            inputs=x[index],
            targets=0,
            sample_ids=None if ids is None else [ids[i] for i in part],
        )
    return values


ONE_BATCH = [[0, 1, 2, 3, 4, 5]]
TWO_AND_FOUR = [[0, 1], [2, 3, 4, 5]]
REVERSED = [[5, 4, 3, 2, 1, 0]]
REVERSED_FOUR_AND_TWO = [[5, 3, 1, 4], [2, 0]]


@pytest.mark.parametrize("metric_class", [PixelFlipping, RegionPerturbation])
def test_per_sample_values_do_not_depend_on_the_batching_with_sample_ids(batch, metric_class):
    model, x, relevance = batch
    metric = metric_class(steps=4, patch_size=1 if metric_class is PixelFlipping else 2, seed=3)
    whole = per_sample_in_batches(metric, model, x, relevance, ONE_BATCH)
    assert torch.isfinite(whole).all() and (whole != 0).all()
    for parts in (TWO_AND_FOUR, REVERSED, REVERSED_FOUR_AND_TWO):
        assert torch.allclose(per_sample_in_batches(metric, model, x, relevance, parts), whole, rtol=1e-12, atol=0)
    # the random curves themselves agree, not only the final values
    _, random_whole = metric.curves(relevance, model, x, 0, sample_ids=IDS)
    _, random_tail = metric.curves(relevance[2:], model, x[2:], 0, sample_ids=IDS[2:])
    assert torch.allclose(random_tail, random_whole[2:], rtol=1e-12, atol=0)


def test_without_sample_ids_the_values_depend_on_the_batching(batch):
    """The behaviour kept for callers without ids (and what the test above would catch if ids were ignored)."""
    model, x, relevance = batch
    metric = PixelFlipping(steps=4, seed=3)
    whole = per_sample_in_batches(metric, model, x, relevance, ONE_BATCH, ids=None)
    split = per_sample_in_batches(metric, model, x, relevance, TWO_AND_FOUR, ids=None)
    assert not torch.allclose(split, whole)
    # one generator seeded in each call, as before sample ids existed
    legacy = PixelFlipping(steps=4, seed=torch.Generator().manual_seed(3))
    assert torch.equal(legacy.per_sample(relevance, model=model, inputs=x, targets=0), whole)


def test_sample_ids_values_depend_on_the_seed_and_the_id(batch):
    model, x, relevance = batch
    values = PixelFlipping(steps=4, seed=3).per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS)
    again = PixelFlipping(steps=4, seed=3).per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS)
    other_seed = PixelFlipping(steps=4, seed=4).per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS)
    other_ids = PixelFlipping(steps=4, seed=3).per_sample(
        relevance, model=model, inputs=x, targets=0, sample_ids=[i + 100 for i in IDS]
    )
    assert torch.equal(values, again)
    assert (values != other_seed).sum() >= 4  # nearly every sample gets another order
    assert (values != other_ids).sum() >= 4
    # the same sample id in another batch position gets the same order; ids as list, tensor or numpy agree
    for ids in (torch.tensor(IDS), np.asarray(IDS, np.int32), tuple(IDS)):
        result = PixelFlipping(steps=4, seed=3).per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=ids)
        assert torch.equal(result, values)


def test_update_and_compute_take_sample_ids(batch):
    model, x, relevance = batch
    whole = PixelFlipping(steps=4, seed=3)
    whole.update(relevance, model=model, inputs=x, targets=0, sample_ids=IDS)
    split = PixelFlipping(steps=4, seed=3)
    for part in (slice(4, 6), slice(0, 4)):
        split.update(relevance[part], model=model, inputs=x[part], targets=0, sample_ids=IDS[part])
    assert split.compute().item() == pytest.approx(whole.compute().item(), rel=1e-12)


def test_a_generator_seed_ignores_sample_ids_and_advances(batch):
    model, x, relevance = batch
    metric = PixelFlipping(steps=4, seed=torch.Generator().manual_seed(3))
    first = metric.per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS)
    assert torch.equal(first, PixelFlipping(steps=4, seed=3).per_sample(relevance, model=model, inputs=x, targets=0))
    assert not torch.equal(metric.per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS), first)


def test_bad_sample_ids_are_rejected(batch):
    model, x, relevance = batch
    metric = PixelFlipping(steps=4)
    with pytest.raises(ValueError, match="sample_ids holds 5 ids, but relevance holds 6"):
        metric.per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=IDS[:5])
    with pytest.raises(TypeError, match="sample_ids must be integers"):
        metric.per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=torch.arange(6.0))
    with pytest.raises(TypeError, match="sample_ids must be"):
        metric.per_sample(relevance, model=model, inputs=x, targets=0, sample_ids=1)
    with pytest.raises(TypeError, match="either relevance and its batch, or values"):
        metric.update(values=torch.zeros(6), sample_ids=IDS)


def test_every_metric_accepts_sample_ids():
    generator = torch.Generator().manual_seed(0)
    relevance = torch.randn(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    x = torch.rand(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    model = linear_model(torch.randn(16, generator=generator, dtype=torch.float64))
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    batch = dict(
        model=model,
        inputs=x,
        targets=0,
        outputs=model(x).detach(),
        masks=masks,
        previous=relevance.sum(1),
    )
    for name in METRICS:
        metric = get_metric(name)
        plain = metric.per_sample(relevance, **batch)
        with_ids = metric.per_sample(relevance, **batch, sample_ids=[1, 2, 3])
        assert with_ids.shape == plain.shape == (3,), name
        if not metric.needs_model:
            torch.testing.assert_close(with_ids, plain, rtol=0, atol=0, equal_nan=True, msg=name)
