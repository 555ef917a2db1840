"""Token input to the attributors: per-token relevance, padding, output selection."""

import pytest
import torch
import torch.nn as nn

from lrp_lightning.attribution import Gradient, SmoothGrad
from lrp_lightning.composites import get_composite


class TinyText(nn.Module):
    """Token + position embeddings (summed through a module-free add), flattened into a linear head."""

    def __init__(self, vocab=11, length=5, hidden=4, classes=3, position=False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, hidden, padding_idx=0)
        self.position = nn.Embedding(length, hidden) if position else None
        self.head = nn.Linear(length * hidden, classes)

    def forward(self, input_ids, attention_mask=None):
        x = self.embed(input_ids)
        if self.position is not None:
            x = x + self.position(torch.arange(input_ids.shape[1])[None])
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x)
        return {"logits": self.head(x.flatten(1)), "hidden": x}


def test_gradient_without_composite_is_gradient_times_embedding():
    model = TinyText().double()
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    output, relevance = Gradient(model)(ids, torch.tensor([0, 2]))
    assert relevance.shape == (2, 5) and relevance.dtype == torch.float64
    embedded = model.embed.weight[ids].detach()
    weight = model.head.weight.detach().reshape(3, 5, 4)
    expected = (embedded * weight[[0, 2]]).sum(-1)
    torch.testing.assert_close(relevance, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output, model(ids)["logits"].detach())


def test_lrp_token_relevance_is_the_epsilon_rule_at_the_embedding_output():
    model = TinyText().double()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    composite = get_composite("epsilon_plus", epsilon=1e-3)
    _, relevance = Gradient(model, composite, output="logits")(ids, 1)
    x = model.embed.weight[ids].detach().flatten(1)
    z = model.head(x).detach()[0, 1]
    weight = model.head.weight.detach()[1]
    expected = (x[0] * weight / (z + 1e-3 * torch.sign(z))).reshape(5, 4).sum(-1)
    torch.testing.assert_close(relevance[0], expected, rtol=1e-12, atol=1e-12)


def test_padding_is_exactly_zero_and_batch_keys_are_filtered():
    model = TinyText(position=True).double()
    batch = {
        "input_ids": torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        "labels": torch.tensor([0, 1]),
    }
    _, relevance = Gradient(model)(batch, "prediction")
    assert relevance.shape == (2, 5)
    assert torch.equal(relevance[0, 3:], torch.zeros(2, dtype=torch.float64))
    assert not torch.signbit(relevance[0, 3:]).any()
    assert (relevance[1] != 0).all()


def test_position_embeddings_count_per_token():
    model = TinyText(position=True).double()
    ids = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    _, relevance = Gradient(model)(ids, 0)
    tokens = model.embed.weight[ids].detach()
    positions = model.position.weight.detach()[None].expand(2, 5, 4)
    weight = model.head.weight.detach()[0].reshape(5, 4)
    expected = ((tokens + positions) * weight).sum(-1)  # position embeddings per sample, not summed over the batch
    torch.testing.assert_close(relevance, expected, rtol=1e-12, atol=1e-12)


def test_token_input_errors_are_clear():
    model = TinyText()
    with pytest.raises(ValueError, match=r"token ids of shape \(batch, tokens\)"):
        Gradient(model)({"input_ids": torch.tensor([1, 2, 3])}, 0)
    with pytest.raises(ValueError, match="input must be a floating point tensor"):
        Gradient(model)(torch.tensor([1, 2, 3]), 0)
    with pytest.raises(ValueError, match="token input is attributed by Gradient only"):
        SmoothGrad(model)(torch.tensor([[1, 2, 3, 4, 5]]), 0)
    with pytest.raises(TypeError, match="has none"):
        Gradient(nn.Linear(3, 2))(torch.tensor([[1, 2, 3]]), 0)
    with pytest.raises(ValueError, match="output must be a key"):
        Gradient(model, output="scores")(torch.tensor([[1, 2, 3, 4, 5]]), 0)


def test_token_input_in_inference_mode():
    model = TinyText()
    with torch.inference_mode():
        ids = torch.tensor([[1, 2, 3, 4, 5]])
        _, relevance = Gradient(model)({"input_ids": ids}, 0)
    assert relevance.shape == (1, 5) and torch.isfinite(relevance).all()


class _TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        hidden = x * 2
        return hidden, {"scores": self.linear(x)}


def test_output_selection_for_float_input_in_every_attributor():
    from lrp_lightning.attribution import IntegratedGradients, Occlusion

    model = _TupleOutput().double()
    x = torch.randn(2, 6, dtype=torch.float64)
    pick = lambda raw: raw[1]["scores"]  # noqa: E731
    expected = model.linear.weight.detach()[[1, 1]]
    _, gradient = Gradient(model, output=pick)(x, 1)
    torch.testing.assert_close(gradient, expected)
    _, integrated = IntegratedGradients(model, output=pick, n_iter=4)(x, "prediction")
    predicted = model.linear(x).argmax(1)
    torch.testing.assert_close(integrated, x * model.linear.weight.detach()[predicted])  # linear: exact
    _, occlusion = Occlusion(model, output=pick, window=1, stride=1)(x, 1)
    torch.testing.assert_close(occlusion, x * expected)
