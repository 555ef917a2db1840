"""Attention canonizers: same outputs while applied, exact restore, auto selection, parity with LXT 2.1."""

import warnings

import pytest
import torch
import torch.nn as nn
from lrp_testing import assert_restored, snapshot

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


def _vit(seed=0, layers=2):
    vision_transformer = pytest.importorskip("torchvision.models.vision_transformer")
    torch.manual_seed(seed)
    model = vision_transformer.VisionTransformer(
        image_size=16, patch_size=8, num_layers=layers, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision initialises the head with zeros
    nn.init.normal_(model.heads.head.bias, std=0.1)
    return model.double().eval()


def test_auto_picks_the_attention_canonizers():
    picked = resolve_canonizers("auto", _vit())
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
    model = _vit()
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
    model = _vit(layers=1)
    with pytest.warns(UserWarning, match="explained without their canonizer"):
        get_composite("cp_lrp", canonizers=[]).register(model)


def test_attn_lrp_gamma_option_and_bad_gamma():
    model = _vit(layers=1)
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
def test_cp_lrp_parity_with_lxt_on_a_torchvision_vit(monkeypatch):
    pytest.importorskip("lxt")
    from torchvision.models import vision_transformer

    model = _vit(seed=4)
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
    assert difference <= 1e-8, difference
    torch.testing.assert_close(ours.sum((1, 2, 3)), reference.sum((1, 2, 3)), rtol=1e-8, atol=0)
