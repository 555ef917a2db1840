"""AttnLRP / CP-LRP rules against float64 oracles written from the papers' formulas, and conservation."""

import math

import pytest
import torch
import torch.nn as nn

from lrp_lightning.attention import (
    AttentionValues,
    ConstantFactor,
    CPMatMul,
    LayerNormRule,
    MatMul,
    Multiply,
    RMSNormRule,
    SoftmaxRule,
    UniformMatMul,
    UniformProduct,
    merge_masks,
)
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite

D = torch.float64


def _sign_shift(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)


def test_layernorm_rule_matches_the_linear_map_with_sigma_held_constant():
    torch.manual_seed(0)
    n = 6
    module = nn.LayerNorm(n).double()
    nn.init.normal_(module.weight)
    nn.init.normal_(module.bias)
    x = torch.randn(3, n, dtype=D)
    relevance = torch.randn(3, n, dtype=D)
    eps = 1e-3
    result = LayerNormRule(epsilon=eps).backward(module, x, relevance)
    for b in range(3):
        sigma = math.sqrt(x[b].var(unbiased=False).item() + module.eps)
        matrix = (torch.eye(n, dtype=D) - 1.0 / n) * module.weight.detach()[None, :] / sigma  # M[i, j] = dy_j/dx_i
        y = x[b] @ matrix + module.bias.detach()
        expected = torch.zeros(n, dtype=D)
        for i in range(n):
            for j in range(n):
                expected[i] += x[b, i] * matrix[i, j] * relevance[b, j] / _sign_shift(y[j], eps)
        torch.testing.assert_close(result[b], expected, rtol=1e-12, atol=1e-12)


def test_layernorm_rule_conserves_without_bias():
    module = nn.LayerNorm(5, bias=False).double()
    nn.init.normal_(module.weight)
    x = torch.randn(4, 3, 5, dtype=D)
    relevance = torch.randn(4, 3, 5, dtype=D)
    result = LayerNormRule(epsilon=0.0).backward(module, x, relevance)
    torch.testing.assert_close(result.sum(-1), relevance.sum(-1), rtol=1e-10, atol=1e-10)
    biased = nn.LayerNorm(5)
    nn.init.normal_(biased.bias)
    assert LayerNormRule().conserves(module) and LayerNormRule().conserves(nn.LayerNorm(5))  # a zero bias
    assert not LayerNormRule().conserves(biased)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="nn.RMSNorm needs torch >= 2.4")
def test_rmsnorm_rule_oracle_and_conservation():
    module = nn.RMSNorm(4, eps=1e-5).double()
    nn.init.normal_(module.weight)
    x = torch.randn(2, 4, dtype=D)
    relevance = torch.randn(2, 4, dtype=D)
    result = RMSNormRule(epsilon=1e-2).backward(module, x, relevance)
    rms = (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
    y = x / rms * module.weight.detach()
    expected = x * module.weight.detach() / rms * relevance / _sign_shift(y, 1e-2)
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)
    exact = RMSNormRule(epsilon=0.0).backward(module, x, relevance)
    torch.testing.assert_close(exact, relevance, rtol=1e-12, atol=1e-12)  # element-wise: R_x = R_y


def test_softmax_rule_oracle_and_masked_scores():
    x = torch.randn(2, 5, dtype=D)
    x[1, 2] = float("-inf")
    relevance = torch.randn(2, 5, dtype=D)
    relevance[1, 2] = 0.0
    module = nn.Softmax(dim=-1)
    result = SoftmaxRule().backward(module, x, relevance, output=module(x))
    s = torch.softmax(x, -1)
    for b in range(2):
        for i in range(5):
            expected = 0.0 if not math.isfinite(x[b, i]) else x[b, i] * (relevance[b, i] - s[b, i] * relevance[b].sum())
            assert result[b, i].item() == pytest.approx(float(expected), rel=1e-12, abs=1e-14)
    assert torch.isfinite(result).all()


def _op_relevance(module, rule, inputs, relevance, **kwargs):
    handle = rule.register(module)
    try:
        leaves = [x.clone().requires_grad_(True) for x in inputs]
        output = module(*leaves, **kwargs)
        return output, torch.autograd.grad(output, leaves, relevance, allow_unused=True)
    finally:
        handle.remove()


def test_uniform_matmul_oracle_with_scale_and_mask():
    torch.manual_seed(1)
    a = torch.randn(2, 3, 4, dtype=D)
    b = torch.randn(2, 4, 5, dtype=D)
    mask = torch.zeros(3, 5, dtype=D)
    mask[0, 1] = float("-inf")
    relevance = torch.randn(2, 3, 5, dtype=D)
    relevance[:, 0, 1] = 0.0
    scale, eps = 0.7, 1e-4
    output, (ra, rb) = _op_relevance(MatMul(), UniformMatMul(epsilon=eps), (a, b), relevance, scale=scale, bias=mask)
    torch.testing.assert_close(output, scale * a @ b + mask)
    o = scale * torch.einsum("nji,nip->njp", a, b)
    ratio = torch.where(torch.isfinite(mask), relevance / _sign_shift(o + mask, eps), 0.0)
    # contribution of a_ji b_ip to O_jp is scale * a_ji * b_ip, shared in halves
    expected_a = 0.5 * scale * torch.einsum("nji,nip,njp->nji", a, b, ratio)
    expected_b = 0.5 * scale * torch.einsum("nji,nip,njp->nip", a, b, ratio)
    torch.testing.assert_close(ra, expected_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rb, expected_b, rtol=1e-12, atol=1e-12)


def test_uniform_matmul_conserves_and_cp_matmul_holds_attention_constant():
    a = torch.softmax(torch.randn(2, 3, 3, dtype=D), -1)
    v = torch.randn(2, 3, 4, dtype=D)
    relevance = torch.randn(2, 3, 4, dtype=D)
    _, (ra, rv) = _op_relevance(AttentionValues(), UniformMatMul(epsilon=0.0), (a, v), relevance)
    torch.testing.assert_close(ra.sum() + rv.sum(), relevance.sum(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ra.sum(), rv.sum(), rtol=1e-10, atol=1e-10)
    _, (ra, rv) = _op_relevance(AttentionValues(), CPMatMul(epsilon=0.0), (a, v), relevance)
    assert ra is None
    expected = torch.einsum("nji,nip,njp->nip", a, v, relevance / (a @ v))
    torch.testing.assert_close(rv, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rv.sum(), relevance.sum(), rtol=1e-10, atol=1e-10)


def test_products_uniform_and_constant_factor():
    a, b = torch.randn(3, 4, dtype=D), torch.randn(3, 4, dtype=D)
    relevance = torch.randn(3, 4, dtype=D)
    output, (ra, rb) = _op_relevance(Multiply(), UniformProduct(), (a, b), relevance)
    torch.testing.assert_close(output, a * b)
    assert torch.equal(ra, relevance / 2) and torch.equal(rb, relevance / 2)
    _, (ra, rb) = _op_relevance(Multiply(), ConstantFactor(0), (a, b), relevance)
    assert ra is None and torch.equal(rb, relevance)
    with pytest.raises(ValueError, match="constant must be 0 or 1"):
        ConstantFactor(2)


def test_operation_modules_without_rule_are_the_plain_operations():
    a, b = torch.randn(2, 3, requires_grad=True), torch.randn(3, 2)
    out = MatMul()(a, b, scale=2.0)
    (grad,) = torch.autograd.grad(out.sum(), a)
    torch.testing.assert_close(grad, 2.0 * b.sum(1).expand(2, 3))


def test_merge_masks_bool_float_and_padding():
    causal = torch.ones(3, 3, dtype=torch.bool).triu(1)
    padding = torch.tensor([[False, False, True], [False, False, False]])
    mask = merge_masks(causal, padding, 2, 1, 3, 3, D)
    assert mask.shape == (2, 1, 3, 3)
    assert mask[0, 0, 2, 2] == float("-inf") and mask[1, 0, 2, 2] == 0.0 and mask[1, 0, 0, 1] == float("-inf")
    assert torch.equal(
        merge_masks(None, None, 2, 1, 3, 3, D, is_causal=True),
        torch.zeros(3, 3, dtype=D).masked_fill(causal, float("-inf")),
    )
    assert merge_masks(None, None, 2, 1, 3, 3, D) is None


class _BiasFreeEncoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        torch.manual_seed(3)
        self.layer = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, batch_first=True, bias=False, norm_first=norm_first
        )
        self.head = nn.Linear(4 * 8, 3, bias=False)

    def forward(self, x):
        return self.head(self.layer(x).flatten(1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_cp_lrp_conserves_relevance_on_a_bias_free_encoder(norm_first):
    model = _BiasFreeEncoder(norm_first).double().eval()
    x = torch.randn(3, 4, 8, dtype=D)
    composite = get_composite("cp_lrp", epsilon=0.0, stabilizer=0.0)
    output, relevance = Gradient(model, composite)(x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(relevance.sum((1, 2)), torch.ones(3, dtype=D), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(output, model(x))


def test_attn_lrp_relevance_passes_through_softmax_into_queries_and_keys():
    model = _BiasFreeEncoder(False).double().eval()
    x = torch.randn(2, 4, 8, dtype=D)
    _, cp = Gradient(model, get_composite("cp_lrp", epsilon=0.0, stabilizer=0.0))(x, 0)
    _, attn = Gradient(model, get_composite("attn_lrp", epsilon=0.0, stabilizer=0.0))(x, 0)
    assert torch.isfinite(attn).all()
    assert (attn - cp).abs().max() > 1e-6  # the softmax path adds relevance that CP-LRP leaves out


class LlamaRMSNorm(nn.Module):
    """A stand-in with the class name and attributes of Hugging Face's LLaMA RMSNorm (no import needed)."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size))
        self.variance_epsilon = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def test_normalisations_outside_torch_are_matched_by_class_name():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), LlamaRMSNorm(4), nn.Linear(4, 2, bias=False)).double()
    composite = get_composite("attn_lrp", epsilon=0.0)
    with composite.context(model):
        assert isinstance(composite.rule_map["1"], RMSNormRule)
    _, relevance = Gradient(model, composite)(torch.randn(3, 4, dtype=D), 1)
    torch.testing.assert_close(relevance.sum(1), torch.ones(3, dtype=D), rtol=1e-9, atol=1e-9)  # conserved


def test_functional_epsilon_rule_on_a_rotary_embedding():
    from lrp_lightning.attention import EpsilonFunctional, Functional

    cos, sin = torch.rand(4, dtype=D), torch.rand(4, dtype=D)

    def rotate(q):  # linear in q: q * cos + rotate_half(q) * sin
        half = torch.cat([-q[..., 2:], q[..., :2]], dim=-1)
        return q * cos + half * sin

    q = torch.randn(3, 4, dtype=D)
    relevance = torch.randn(3, 4, dtype=D)
    output, (rq,) = _op_relevance(Functional(rotate), EpsilonFunctional(epsilon=1e-3), (q,), relevance)
    torch.testing.assert_close(output, rotate(q))
    matrix = torch.stack([rotate(row) for row in torch.eye(4, dtype=D)])  # y = q @ matrix
    expected = q[:, :, None] * matrix[None] * (relevance / _sign_shift(q @ matrix, 1e-3))[:, None, :]
    torch.testing.assert_close(rq, expected.sum(-1), rtol=1e-12, atol=1e-12)
