"""Attention canonizers: same outputs while applied, exact restore, auto selection, parity with LXT 2.1."""

import warnings

import pytest
import torch
import torch.nn as nn
from lrp_testing import assert_restored, snapshot, tiny_vit

from lrp_lightning.attention_canonizers import (
    MultiheadAttentionCanonizer,
    TransformerEncoderLayerCanonizer,
    VisionTransformerCanonizer,
)
from lrp_lightning.attribution import Gradient
from lrp_lightning.canonizers import resolve_canonizers
from lrp_lightning.composites import get_composite

D = torch.float64


def _apply(canonizer, model):
    handles = canonizer.apply(model)
    return lambda: [handle.remove() for handle in reversed(handles)]


MHA_CASES = {
    "batch_first": dict(kwargs=dict(batch_first=True), call=dict()),
    "sequence_first": dict(kwargs=dict(batch_first=False), call=dict()),
    "masks": dict(
        kwargs=dict(batch_first=True),
        call=dict(
            attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1),
            key_padding_mask=torch.tensor([[False] * 5, [False, False, False, True, True]]),
        ),
    ),
    "float_mask_per_head": dict(kwargs=dict(batch_first=True), call=dict(attn_mask=torch.randn(2 * 2, 5, 5).double())),
    "no_bias_weights_per_head": dict(kwargs=dict(batch_first=True, bias=False), call=dict(average_attn_weights=False)),
    "kdim_vdim": dict(kwargs=dict(batch_first=True, kdim=6, vdim=3), call=dict(), key_dim=6, value_dim=3),
}


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multihead_attention_forward_is_unchanged_and_restored(case):
    spec = MHA_CASES[case]
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, **spec["kwargs"]).double().eval()
    shape = (2, 5) if mha.batch_first else (5, 2)
    q = torch.randn(*shape, 8, dtype=D)
    k = torch.randn(*shape, spec.get("key_dim", 8), dtype=D)
    v = torch.randn(*shape, spec.get("value_dim", 8), dtype=D)
    expected, expected_weights = mha(q, k, v, **spec["call"])
    before = snapshot(mha)
    remove = _apply(MultiheadAttentionCanonizer(), mha)
    output, weights = mha(q, k, v, **spec["call"])
    remove()
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-12)
    assert_restored(mha, before)
    after, after_weights = mha(q, k, v, **spec["call"])
    assert torch.equal(after, expected) and torch.equal(after_weights, expected_weights)


def test_multihead_attention_unbatched_and_need_weights_false():
    mha = nn.MultiheadAttention(4, 1).double().eval()
    x = torch.randn(3, 4, dtype=D)
    expected = mha(x, x, x, need_weights=False)
    remove = _apply(MultiheadAttentionCanonizer(), mha)
    output, weights = mha(x, x, x, need_weights=False)
    remove()
    assert weights is None and expected[1] is None
    torch.testing.assert_close(output, expected[0], rtol=1e-12, atol=1e-12)


def test_multihead_attention_refuses_bias_kv():
    mha = nn.MultiheadAttention(4, 1, add_bias_kv=True)
    with pytest.raises(ValueError, match="add_bias_kv=True and add_zero_attn=True are not supported"):
        MultiheadAttentionCanonizer().apply(mha)
    assert "lrp_ops" not in mha._modules and "lrp_q" not in mha._modules


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_canonizer_keeps_outputs_and_restores(norm_first):
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.1, activation="gelu", batch_first=True, norm_first=norm_first
    )
    layer = layer.double().eval()
    x = torch.randn(2, 5, 8, dtype=D)
    padding = torch.tensor([[False] * 5, [False, False, False, False, True]])
    expected = layer(x, src_key_padding_mask=padding)
    before = snapshot(layer)
    remove = _apply(TransformerEncoderLayerCanonizer(), layer)
    assert {"lrp_ops", "lrp_q"} <= {name.split(".")[-1] for name, _ in layer.named_modules()}
    output = layer(x, src_key_padding_mask=padding)
    remove()
    torch.testing.assert_close(output[0], expected[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output[1, :4], expected[1, :4], rtol=1e-12, atol=1e-12)
    assert_restored(layer, before)
    assert torch.equal(layer(x, src_key_padding_mask=padding)[0], expected[0])


def test_auto_picks_the_attention_canonizers():
    picked = resolve_canonizers("auto", tiny_vit())
    assert any(isinstance(c, VisionTransformerCanonizer) for c in picked)
    assert not any(type(c) is MultiheadAttentionCanonizer for c in picked)  # contained in the ViT canonizer
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False
    )
    picked = resolve_canonizers("auto", encoder)
    assert any(isinstance(c, TransformerEncoderLayerCanonizer) for c in picked)
    picked = resolve_canonizers("auto", nn.Sequential(nn.MultiheadAttention(4, 1)))
    assert any(type(c) is MultiheadAttentionCanonizer for c in picked)


def test_vit_attribution_leaves_the_model_bitwise_unchanged():
    model = tiny_vit()
    x = torch.randn(2, 3, 16, 16, dtype=D)
    expected = model(x)
    before = snapshot(model)
    for name in ("attn_lrp", "cp_lrp"):
        output, relevance = Gradient(model, get_composite(name))(x, torch.tensor([1, 2]))
        torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
        assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    assert_restored(model, before)
    assert torch.equal(model(x), expected)
    assert all(p.grad is None for p in model.parameters())


def test_lrp_composite_without_canonizers_warns_about_the_attention():
    model = tiny_vit(layers=1)
    composite = get_composite("cp_lrp", canonizers=[])
    try:
        with pytest.warns(UserWarning, match="explained without their canonizer"):
            composite.register(model)
    finally:
        composite.remove()


def test_attn_lrp_gamma_option_and_bad_gamma():
    model = tiny_vit(layers=1)
    x = torch.randn(1, 3, 16, 16, dtype=D)
    _, epsilon = Gradient(model, get_composite("attn_lrp"))(x, 0)
    _, gamma = Gradient(model, get_composite("attn_lrp", gamma=0.25))(x, 0)
    assert torch.isfinite(gamma).all() and (gamma - epsilon).abs().max() > 1e-6
    with pytest.raises(ValueError, match="gamma must be None"):
        get_composite("attn_lrp", gamma=-1.0)


class _TextEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.embed = nn.Embedding(20, 8, padding_idx=0)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2, enable_nested_tensor=False
        )
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        return {"logits": self.head(hidden[:, 0])}


@pytest.mark.parametrize("name", ["attn_lrp", "cp_lrp"])
def test_token_relevance_of_a_text_transformer(name):
    model = _TextEncoder().double().eval()
    batch = {
        "input_ids": torch.tensor([[1, 5, 7, 0, 0], [2, 3, 4, 5, 6]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
    }
    output, relevance = Gradient(model, get_composite(name))(batch, "prediction")
    assert relevance.shape == (2, 5) and torch.isfinite(relevance).all()
    assert torch.equal(relevance[0, 3:], torch.zeros(2, dtype=D))
    assert (relevance[1] != 0).all()
    # the masked tokens take no part: the first sample explained alone, without padding, gives the same
    short = {"input_ids": batch["input_ids"][:1, :3], "attention_mask": batch["attention_mask"][:1, :3]}
    target = output.argmax(1)[:1]
    _, alone = Gradient(model, get_composite(name))(short, target)
    torch.testing.assert_close(alone[0], relevance[0, :3], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_cp_lrp_parity_with_lxt_on_a_torchvisiontiny_vit(monkeypatch):
    pytest.importorskip("lxt")
    from torchvision.models import vision_transformer

    model = tiny_vit(seed=4)
    x = torch.randn(2, 3, 16, 16, dtype=D)
    onehot = torch.zeros(2, 5, dtype=D)
    onehot[0, 1] = onehot[1, 3] = 1.0
    composite = get_composite("cp_lrp", epsilon=0.0, stabilizer=0.0)
    # LXT's relevance starts from the target logit (gradient x input): the same initial relevance here
    _, ours = Gradient(model, composite)(x, lambda output: onehot * output)

    # LXT patches classes process-wide; monkeypatch restores them after the test
    for cls in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention):
        monkeypatch.setattr(cls, "forward", cls.forward)
        monkeypatch.setattr(cls, "original_forward", None, raising=False)
    from lxt.efficient import monkey_patch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkey_patch(vision_transformer)
    leaf = x.clone().requires_grad_(True)
    model(leaf).backward(onehot)
    reference = leaf * leaf.grad
    difference = ((ours - reference).abs().max() / reference.abs().max()).item()
    print(f"relative max difference {difference:.2e}")
    assert difference <= 1e-8, difference
    torch.testing.assert_close(ours.sum((1, 2, 3)), reference.sum((1, 2, 3)), rtol=1e-8, atol=0)


def test_a_cnn_composite_on_a_transformer_names_the_attention_composites():
    from lrp_lightning.core import MissingRuleError

    model = tiny_vit(layers=1)
    with pytest.raises(
        MissingRuleError, match=r"ln_1 \(LayerNorm\) has no rule .*composite='attn_lrp' or 'cp_lrp'.*LayerNormRule"
    ):
        Gradient(model, get_composite("epsilon_plus", canonizers="auto"))(torch.randn(1, 3, 16, 16, dtype=D), 0)
    assert "lrp_ops" not in dict(model.named_children()).get("encoder")._modules


def test_training_is_unaffected_by_attributions_in_between():
    def train(attribute):
        torch.manual_seed(5)
        model = _TextEncoder()
        model.encoder.layers[0].dropout.p = 0.1  # dropout draws from the RNG in training
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        batch = {"input_ids": torch.randint(1, 20, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long)}
        for _ in range(3):
            optimizer.zero_grad()
            model(**batch)["logits"].sum().backward()
            optimizer.step()
            if attribute:
                model.eval()
                Gradient(model, get_composite("attn_lrp"))(batch, 0)
                model.train()
        return [p.detach().clone() for p in model.parameters()], torch.rand(1)

    (plain, plain_rng), (attributed, attributed_rng) = train(False), train(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, attributed))
    assert torch.equal(plain_rng, attributed_rng)


def _lxt_explicit_attn_lrp(vit, x, relevance_out):
    """AttnLRP of a torchvision ViT written with LXT 2.1's explicit rule functions (its relevance-flow API)."""
    import torch.nn.functional as F
    from lxt.explicit import functional as lxt_f
    from lxt.explicit.functional import layer_norm_grad_fn
    from lxt.explicit.rules import epsilon_lrp, identity

    def norm(module, t):
        return layer_norm_grad_fn.apply(t, module.weight.detach(), module.bias.detach(), module.eps, 0.0)

    def linear(module_or_weight, t, bias=None):
        if isinstance(module_or_weight, nn.Linear):
            module_or_weight, bias = module_or_weight.weight, module_or_weight.bias
        return lxt_f.linear_epsilon(t, module_or_weight.detach(), bias.detach(), 0.0)

    width = vit.hidden_dim
    leaf = x.clone().requires_grad_(True)
    h = epsilon_lrp(vit.conv_proj, 0.0, leaf)
    n = h.shape[0]
    h = h.reshape(n, width, -1).permute(0, 2, 1)
    h = torch.cat([vit.class_token.detach().expand(n, -1, -1), h], dim=1)
    h = lxt_f.add2(h, vit.encoder.pos_embedding.detach().expand_as(h), False, 0.0)
    for block in vit.encoder.layers:
        a = norm(block.ln_1, h)
        mha = block.self_attention
        heads, tokens = mha.num_heads, a.shape[1]
        dim = width // heads
        weight, bias = mha.in_proj_weight, mha.in_proj_bias
        q, k, v = (
            linear(weight[i * width : (i + 1) * width], a, bias[i * width : (i + 1) * width])
            .reshape(n, tokens, heads, dim)
            .transpose(1, 2)
            for i in range(3)
        )
        q = identity(lambda t, scale=dim**-0.5: t * scale, q)
        weights = lxt_f.softmax(lxt_f.matmul(q, k.transpose(-1, -2), False, 0.0), -1)
        o = lxt_f.matmul(weights, v, False, 0.0).transpose(1, 2).reshape(n, tokens, width)
        h = lxt_f.add2(linear(mha.out_proj, o), h, False, 0.0)
        m = norm(block.ln_2, h)
        m = linear(block.mlp[3], identity(F.gelu, linear(block.mlp[0], m)))
        h = lxt_f.add2(h, m, False, 0.0)
    logits = linear(vit.heads.head, norm(vit.encoder.ln, h)[:, 0])
    logits.backward(relevance_out)
    return leaf.grad


@pytest.mark.slow
def test_attn_lrp_parity_with_lxt_explicit_rules_on_a_torchvisiontiny_vit():
    pytest.importorskip("lxt")
    model = tiny_vit(seed=6)
    x = torch.randn(2, 3, 16, 16, dtype=D)
    onehot = torch.zeros(2, 5, dtype=D)
    onehot[0, 2] = onehot[1, 4] = 1.0
    _, ours = Gradient(model, get_composite("attn_lrp", epsilon=0.0, stabilizer=0.0))(x, onehot)
    reference = _lxt_explicit_attn_lrp(model, x, onehot)
    difference = ((ours - reference).abs().max() / reference.abs().max()).item()
    print(f"relative max difference {difference:.2e}")
    assert difference <= 1e-8, difference


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_canonizer_keeps_outputs_restores_and_conserves(norm_first):
    from lrp_lightning.attention_canonizers import TransformerDecoderLayerCanonizer

    torch.manual_seed(7)
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=norm_first, bias=False)
    layer = layer.double().eval()
    tgt, memory = torch.randn(2, 4, 8, dtype=D), torch.randn(2, 6, 8, dtype=D)
    causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=D)
    expected = layer(tgt, memory, tgt_mask=causal, tgt_is_causal=True)
    before = snapshot(layer)
    remove = _apply(TransformerDecoderLayerCanonizer(), layer)
    output = layer(tgt, memory, tgt_mask=causal, tgt_is_causal=True)
    remove()
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    assert_restored(layer, before)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer
            self.head = nn.Linear(32, 3, bias=False).double()

        def forward(self, x):
            return self.head(self.layer(x, x, tgt_mask=causal, tgt_is_causal=True).flatten(1))

    model = Head()
    assert any(isinstance(c, TransformerDecoderLayerCanonizer) for c in resolve_canonizers("auto", model))
    _, relevance = Gradient(model, get_composite("cp_lrp", epsilon=0.0, stabilizer=0.0))(tgt, 1)
    # the memory is the input itself, so all relevance (bias-free, CP-LRP) comes back to it
    torch.testing.assert_close(relevance.sum((1, 2)), torch.ones(2, dtype=D), rtol=1e-6, atol=1e-6)
