"""Fused relevance paths (attention through torch's fused kernel, residual sums without stacking) against the
per-rule path they replace, when each is taken, and the op count of a transformer attribution."""

import pytest
import torch
import torch.nn as nn
from hf_testing import embeddings_of, tiny_model
from lrp_testing import tiny_vit
from test_host_sync import count_ops

import lrp_lightning.attention as attention
from lrp_lightning.attention import AttentionOps
from lrp_lightning.composites import get_composite

D = torch.float64


def _relevance(model, composite, x, seed, call=lambda model, leaf: model(leaf), observe=False):
    """Relevance of ``x``; ``observe``: a hook on every softmax and sum, which must make the per-rule path run."""
    seen = []
    with composite.context(model):
        handles = []
        if observe:
            for module in model.modules():
                if isinstance(module, AttentionOps):
                    for op in (module.softmax, module.sum):
                        handles.append(op.register_forward_hook(lambda m, args, out: seen.append(type(m).__name__)))
        leaf = x.detach().requires_grad_(True)
        (relevance,) = torch.autograd.grad(call(model, leaf), leaf, seed)
        for handle in handles:
            handle.remove()
    return relevance, seen


@pytest.fixture
def fused_calls(monkeypatch):
    calls = {"attention": 0, "sum": 0}
    fused_attention, proportional_sum = attention.fused_attention, attention.proportional_sum

    def counted_attention(*args, **kwargs):
        calls["attention"] += 1
        return fused_attention(*args, **kwargs)

    def counted_sum(*args, **kwargs):
        calls["sum"] += 1
        return proportional_sum(*args, **kwargs)

    monkeypatch.setattr(attention, "fused_attention", counted_attention)
    monkeypatch.setattr(attention, "proportional_sum", counted_sum)
    return calls


@pytest.mark.parametrize("name, epsilon", [("attn_lrp", 0.0), ("cp_lrp", 1e-6), ("cp_lrp", 0.0)])
def test_fused_vit_relevance_equals_the_per_rule_path(name, epsilon, fused_calls):
    model = tiny_vit(seed=3)
    x = torch.randn(2, 3, 16, 16, dtype=D)
    seed = torch.zeros(2, 5, dtype=D)
    seed[0, 1] = seed[1, 3] = 1.0
    composite = get_composite(name, epsilon=epsilon, stabilizer=epsilon)
    fused, seen = _relevance(model, composite, x, seed)
    assert fused_calls == {"attention": 2, "sum": 5} and seen == []  # 2 blocks; 2 residuals each, position embedding
    fused_calls.update(attention=0, sum=0)
    per_rule, seen = _relevance(model, composite, x, seed, observe=True)
    assert fused_calls == {"attention": 0, "sum": 0}
    assert seen.count("Softmax") == 2 and seen.count("Sum") == 5
    difference = ((fused - per_rule).abs().max() / per_rule.abs().max()).item()
    assert difference <= 1e-12, difference
    assert per_rule.abs().sum() > 0


def test_fused_attention_leaves_out_only_the_default_stabilizer_of_the_scores(fused_calls):
    # the scores' relevance divided by the stabilized scores: the per-rule path loses what the stabilizer takes
    # where a score is near zero; the fused path cancels it exactly. Differences stay at the stabilizer's scale.
    model = tiny_vit(seed=4)
    x = torch.randn(2, 3, 16, 16, dtype=D)
    seed = torch.zeros(2, 5, dtype=D)
    seed[:, 2] = 1.0
    fused, _ = _relevance(model, get_composite("attn_lrp"), x, seed)
    per_rule, _ = _relevance(model, get_composite("attn_lrp"), x, seed, observe=True)
    difference = ((fused - per_rule).abs().max() / per_rule.abs().max()).item()
    assert 0 < difference < 1e-3, difference
    # a larger stabilizer is an explicit choice: the per-rule path runs for the attention (sums stay fused)
    fused_calls.update(attention=0, sum=0)
    _relevance(model, get_composite("attn_lrp", epsilon=0.1), x, seed)
    assert fused_calls == {"attention": 0, "sum": 5}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_fused_hugging_face_relevance_equals_the_per_rule_path(family, fused_calls):
    pytest.importorskip("transformers")
    model = tiny_model(family, seed=2)
    ids = torch.randint(1, 100, (2, 6))
    embeds = embeddings_of(model, ids)
    seed = torch.zeros(2, 3, dtype=D)
    seed[:, 1] = 1.0
    composite = get_composite("attn_lrp", epsilon=0.0, stabilizer=0.0)

    def call(model, leaf):
        return model(inputs_embeds=leaf).logits

    fused, _ = _relevance(model, composite, embeds, seed, call)
    assert fused_calls["attention"] == 2 and fused_calls["sum"] >= 4
    fused_calls.update(attention=0, sum=0)
    per_rule, seen = _relevance(model, composite, embeds, seed, call, observe=True)
    assert fused_calls["attention"] == 0 and seen.count("Softmax") == 2
    difference = ((fused - per_rule).abs().max() / per_rule.abs().max()).item()
    assert difference <= 1e-10, difference


def test_attention_weights_asked_for_take_the_per_rule_path(fused_calls):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    model = nn.Sequential()  # the canonizer applies to the attention inside any model
    model.add_module("mha", mha)
    x = torch.randn(2, 5, 8, dtype=D)
    with get_composite("attn_lrp").context(model):
        leaf = x.requires_grad_(True)
        output, weights = mha(leaf, leaf, leaf, need_weights=True)
        assert weights is not None and weights.shape == (2, 5, 5)
        assert fused_calls["attention"] == 0
        output, weights = mha(leaf, leaf, leaf, need_weights=False)
        assert weights is None and fused_calls["attention"] == 1


def test_a_vit_attribution_stays_under_its_op_count():
    # 2-block tiny ViT, attn_lrp: 334 kernel-launching operations with bmm + softmax + stacked residual sums
    # per block; 294 with the fused attention and sums. A regression that adds a few ops per block fails here.
    model = tiny_vit(seed=5).float()
    x = torch.randn(1, 3, 16, 16)
    seed = torch.zeros(1, 5)
    seed[0, 2] = 1.0
    composite = get_composite("attn_lrp")
    _relevance(model, composite, x, seed)
    ops = count_ops(lambda: _relevance(model, composite, x, seed))
    assert ops <= 300, ops
