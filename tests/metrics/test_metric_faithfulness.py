"""Faithfulness on a trained model: LRP beats a deliberately broken (random) explanation."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

from lrp_lightning import explain
from lrp_lightning.metrics import Conservation, PixelFlipping, RegionPerturbation, Sparseness

SIZE = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: with two test workers on two cores, more threads per worker only fight each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """A small CNN trained for about a second on scikit-learn's digits (upsampled to 16x16), and test data."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = order[:1500], order[1500:1628]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        for batch in torch.randperm(len(train), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(images[train[batch]]), labels[train[batch]]).backward()
            optimizer.step()
    model.eval()
    x, y = images[test], labels[test]
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9, accuracy
    return model, x, y


@pytest.mark.parametrize("metric_class", [RegionPerturbation, PixelFlipping])
def test_lrp_is_more_faithful_than_random_relevance(trained, metric_class):
    model, x, y = trained
    output, relevance = explain(model, x, target=y, composite="epsilon_plus_flat")
    broken = torch.randn(relevance.shape, generator=torch.Generator().manual_seed(5))
    scores = {}
    for label, maps in (("lrp", relevance), ("random", broken), ("inverted", -relevance)):
        metric = metric_class(steps=16, patch_size=2 if metric_class is RegionPerturbation else 1)
        metric.update(maps, model=model, inputs=x, targets=y)
        scores[label] = metric.compute().item()
    # true-class logits are about 5: removing what LRP marks first costs about 3 logits more than chance
    assert scores["lrp"] > 1.0, scores
    assert abs(scores["random"]) < 0.3 * scores["lrp"], scores
    assert scores["inverted"] < -0.5, scores  # least relevant first: slower than chance
    assert not model.training


def test_lrp_on_the_trained_model_is_sparser_than_noise_and_conservative(trained):
    model, x, y = trained
    output, relevance = explain(model, x, target=y, composite="epsilon_plus_flat")
    noise = torch.randn(relevance.shape, generator=torch.Generator().manual_seed(5))
    # the Gini index of |N(0, 1)| (a half-normal distribution) is sqrt(2) - 1
    assert Sparseness().per_sample(noise).mean().item() == pytest.approx(2**0.5 - 1, abs=0.02)
    assert Sparseness().per_sample(relevance).mean().item() > 2**0.5 - 1 + 0.05
    # biases keep part of the relevance, so the ratio is near but not exactly 1
    ratio = Conservation().per_sample(relevance, outputs=output, targets=y)
    assert 0.9 < ratio.median().item() < 1.1 and (ratio - 1).abs().max() > 1e-3, ratio
