"""Embeddings added with a plain ``+``: the embedding_sum canonizer splits the sum, the guard names the fix."""

import math
import warnings

import pytest
import torch
import torch.nn as nn

import lrp_lightning.composites  # noqa: F401 - registers the canonizers
from lrp_lightning._conservation import _WARNED
from lrp_lightning.attention_canonizers import EMBEDDING_SUM_OWNERS, EmbeddingSumCanonizer
from lrp_lightning.attribution import Gradient
from lrp_lightning.canonizers import auto_canonizers
from lrp_lightning.composites import get_composite
from lrp_lightning.layer import Sum

D = torch.float64
LENGTH, HIDDEN = 6, 8


class TokenModel(nn.Module):
    """Token + position or token + type embeddings, then bias-free layers whose rules conserve.

    ``form`` is how the embeddings are summed: ``"position"`` (``tok(ids) + pos(positions[None])``, counted
    per token), ``"type"`` (``tok(ids) + typ(type_ids)``), ``"scaled"`` (``tok(ids) * sqrt(d) + pos(arange)
    .unsqueeze(0) + typ(type_ids)``, the position embedding shared by the batch), ``"inplace"`` (``+=``) and
    ``"sum_module"`` (through :class:`lrp_lightning.layer.Sum`, the fix without a canonizer).
    ``body``: ``"mlp"`` (LayerNorm, Linear, GELU; conserving under AttnLRP), ``"relu"`` (Linear, ReLU; for the
    epsilon composite) or ``"encoder"`` (a transformer encoder layer; softmax does not conserve).
    """

    def __init__(self, form: str, body: str = "mlp") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.form = form
        self.tok = nn.Embedding(20, HIDDEN, padding_idx=0)
        self.pos = nn.Embedding(LENGTH, HIDDEN)
        self.typ = nn.Embedding(2, HIDDEN)
        self.sum = Sum()
        if body == "mlp":
            self.body = nn.Sequential(
                nn.LayerNorm(HIDDEN, bias=False), nn.Linear(HIDDEN, HIDDEN, bias=False), nn.GELU()
            )
        elif body == "relu":
            self.body = nn.Sequential(nn.Linear(HIDDEN, HIDDEN, bias=False), nn.ReLU())
        else:
            self.body = nn.TransformerEncoderLayer(HIDDEN, 2, 16, dropout=0.0, batch_first=True, bias=False)
        self.head = nn.Linear(LENGTH * HIDDEN, 3, bias=False)

    def embed(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1])
        if self.form == "position":
            return self.tok(input_ids) + self.pos(positions[None])
        if self.form == "type":
            return self.tok(input_ids) + self.typ(token_type_ids)
        if self.form == "scaled":
            return self.tok(input_ids) * math.sqrt(HIDDEN) + self.pos(positions).unsqueeze(0) + self.typ(token_type_ids)
        if self.form == "inplace":
            hidden = self.tok(input_ids)
            hidden += self.typ(token_type_ids)
            return hidden
        parts = torch.broadcast_tensors(self.tok(input_ids), self.pos(positions[None]))
        return self.sum(torch.stack(parts, dim=-1))

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None):
        hidden = self.embed(input_ids, token_type_ids) if inputs_embeds is None else inputs_embeds
        return self.head(self.body(hidden).flatten(1))


class _EmbeddedInput(nn.Module):
    """The model from its summed embeddings (a float input): the reference for the relevance of the sum."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embedded):
        return self.model(inputs_embeds=embedded)


def _batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 20, (3, LENGTH), generator=generator)
    return {"input_ids": ids, "token_type_ids": torch.randint(0, 2, (3, LENGTH), generator=generator)}


def _composite(name, canonizers):
    if name == "attn_lrp":
        return get_composite("attn_lrp", epsilon=1e-12, stabilizer=1e-12, zero_params="bias", canonizers=canonizers)
    return get_composite("epsilon_plus", epsilon=1e-12, stabilizer=1e-12, canonizers=canonizers)


def _attribute(model, composite, batch=None):
    _WARNED.discard(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, relevance = Gradient(model, composite)(batch or _batch(), 0)
    messages = [str(w.message) for w in caught if "relevance reaching" in str(w.message)]
    return relevance, messages


@pytest.mark.parametrize("form", ["position", "type", "scaled", "inplace"])
@pytest.mark.parametrize(("composite", "body"), [("attn_lrp", "mlp"), ("epsilon_plus", "relu")])
def test_token_relevance_conserves_with_the_canonizer(form, composite, body):
    model = TokenModel(form, body).to(D).eval()
    relevance, messages = _attribute(model, _composite(composite, "auto"))
    assert relevance.dtype == D
    # the target's relevance is the one-hot weight: 1 per sample
    torch.testing.assert_close(relevance.sum(1), torch.ones(3, dtype=D), rtol=0, atol=1e-6)
    assert messages == []


@pytest.mark.parametrize("form", ["position", "type"])
def test_plain_sum_without_the_canonizer_counts_twice_and_the_guard_names_the_fix(form):
    model = TokenModel(form).to(D).eval()
    relevance, messages = _attribute(model, _composite("attn_lrp", []))
    torch.testing.assert_close(relevance.sum(1), torch.full((3,), 2.0, dtype=D), rtol=0, atol=1e-6)
    assert len(messages) == 1
    assert "2 times the target's" in messages[0] and "plain +" in messages[0]
    assert "canonizers='auto'" in messages[0] and "embedding_sum" in messages[0] and "layer.Sum" in messages[0]


def test_epsilon_composite_without_canonizers_warns_too():
    model = TokenModel("type", "relu").to(D).eval()
    relevance, messages = _attribute(model, _composite("epsilon_plus", None))
    torch.testing.assert_close(relevance.sum(1), torch.full((3,), 2.0, dtype=D), rtol=0, atol=1e-6)
    assert len(messages) == 1 and "embedding_sum" in messages[0]
    relevance, messages = _attribute(model, _composite("epsilon_plus", ["embedding_sum"]))
    torch.testing.assert_close(relevance.sum(1), torch.ones(3, dtype=D), rtol=0, atol=1e-6)
    assert messages == []


def test_sum_module_conserves_without_the_canonizer():
    model = TokenModel("sum_module").to(D).eval()
    relevance, messages = _attribute(model, _composite("attn_lrp", []))
    torch.testing.assert_close(relevance.sum(1), torch.ones(3, dtype=D), rtol=0, atol=1e-6)
    assert messages == []
    with_canonizer, _ = _attribute(model, _composite("attn_lrp", "auto"))
    torch.testing.assert_close(with_canonizer, relevance, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("form", ["position", "type", "scaled"])
def test_token_relevance_is_the_relevance_of_the_embedding_sum(form):
    """With attention (which does not conserve), a token gets what reaches its summed embedding, not twice it."""
    model = TokenModel(form, "encoder").to(D).eval()
    batch = _batch()
    relevance, _ = _attribute(model, _composite("attn_lrp", "auto"), batch)
    with torch.no_grad():
        embedded = model.embed(batch["input_ids"], batch["token_type_ids"]).expand(3, LENGTH, HIDDEN).clone()
    _, reference = Gradient(_EmbeddedInput(model), _composite("attn_lrp", "auto"))(embedded, 0)
    torch.testing.assert_close(relevance, reference.sum(-1), rtol=1e-9, atol=1e-10)
    if form != "scaled":  # the plain sum gives each counted embedding the sum's relevance: twice
        split, _ = _attribute(model, _composite("attn_lrp", "auto"), batch)
        plain, _ = _attribute(model, _plain_sum_composite(), batch)
        torch.testing.assert_close(plain, 2 * split, rtol=1e-9, atol=1e-10)


def _plain_sum_composite():
    """attn_lrp with the attention canonizers but without the embedding sum's."""
    model = TokenModel("type", "encoder")
    kept = [c for c in auto_canonizers(model) if not isinstance(c, EmbeddingSumCanonizer)]
    return _composite("attn_lrp", kept)


def test_auto_picks_the_canonizer_for_two_embeddings_only():
    assert any(isinstance(c, EmbeddingSumCanonizer) for c in auto_canonizers(TokenModel("type")))
    single = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 2))
    assert not any(isinstance(c, EmbeddingSumCanonizer) for c in auto_canonizers(single))

    class GPT2Model(nn.Module):  # a family whose canonizer splits the sum itself (matched by class name)
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(5, 4), nn.Embedding(3, 4)

    assert "GPT2Model" in EMBEDDING_SUM_OWNERS
    assert not EmbeddingSumCanonizer.applies(GPT2Model())


def test_training_and_unattributed_passes_are_untouched():
    model = TokenModel("position").to(D)
    batch = _batch()
    reference = model(**batch)
    (expected,) = torch.autograd.grad(reference.sum(), model.tok.weight)
    composite = _composite("attn_lrp", "auto")
    composite.register(model)
    try:
        hidden = model.embed(batch["input_ids"], batch["token_type_ids"])
        assert type(hidden) is not torch.Tensor  # marked while attributed: a part of the split sum
        with torch.no_grad():
            unmarked = model.embed(batch["input_ids"], batch["token_type_ids"])
        assert type(unmarked) is torch.Tensor
        with composite.inactive():
            output = model(**batch)
            (gradient,) = torch.autograd.grad(output.sum(), model.tok.weight)
    finally:
        composite.remove()
    assert torch.equal(output, reference) and torch.equal(gradient, expected)
    for module in (model.tok, model.pos, model.typ):
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert torch.equal(model(**batch), reference)
