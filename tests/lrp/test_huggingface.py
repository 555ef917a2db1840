"""Hugging Face BERT, GPT-2 and LLaMA blocks: parity with LXT 2.1, conservation, exact restore.

The oracle is LXT 2.1 (``lxt.efficient``), which computes AttnLRP / CP-LRP as gradient x input with
patched classes; we compute explicit relevance through the canonized blocks. Both in float64 on tiny
random-init models (2 layers, hidden 32, 2 heads, vocabulary 100).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

pytest.importorskip("transformers")

from hf_testing import embeddings_of, lxt_relevance, tiny_model  # noqa: E402

from lrp_lightning.canonizers import auto_canonizers  # noqa: E402
from lrp_lightning.composites import get_composite  # noqa: E402
from lrp_lightning.core import MissingRuleError  # noqa: E402
from lrp_lightning.huggingface import BertCanonizer, GPT2Canonizer, LlamaCanonizer  # noqa: E402

pytestmark = pytest.mark.slow

EPSILON = 1e-14
CANONIZERS = {"bert": BertCanonizer, "gpt2": GPT2Canonizer, "llama": LlamaCanonizer}


def canonizer(family):
    return GPT2Canonizer(epsilon=EPSILON) if family == "gpt2" else CANONIZERS[family]()


def composite(canonizer, variant="attn_lrp"):
    """The engine's AttnLRP / CP-LRP composite with ``canonizer``, stabilizers tiny (LXT uses none)."""
    return get_composite(variant, epsilon=EPSILON, stabilizer=EPSILON, canonizers=[canonizer])


def relevance(model, canonizer, embeds, target, variant="attn_lrp", **kwargs):
    """Our relevance of ``embeds`` with the logit of ``target`` as the initial relevance."""
    leaf = embeds.clone().requires_grad_(True)
    with composite(canonizer, variant).context(model):
        logits = model(inputs_embeds=leaf, **kwargs).logits
        seed = torch.zeros_like(logits)
        seed[torch.arange(len(logits)), target] = 1.0
        (result,) = torch.autograd.grad(logits, leaf, seed * logits)
    return result, logits.detach()


def inputs(model, length=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (2, length), generator=generator)
    return embeddings_of(model, ids), torch.tensor([0, 2])


def relative_error(ours, theirs):
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize(
    "family, implementation, variant, tolerance",
    [
        ("bert", "eager", "attnLRP", 1e-9),
        ("bert", "sdpa", "attnLRP", 1e-9),
        ("gpt2", "eager", "attnLRP", 1e-9),
        ("gpt2", "eager", "cp_LRP", 1e-9),
        # LlamaRMSNorm normalises in float32 (also in float64 models), so LXT's gradient carries float32
        # rounding there: parity to float32 precision only
        ("llama", "sdpa", "attnLRP", 1e-6),
        ("llama", "sdpa", "cp_LRP", 1e-6),
    ],
)
def test_parity_with_lxt(family, implementation, variant, tolerance):
    pytest.importorskip("lxt")
    model = tiny_model(family, implementation)
    embeds, target = inputs(model)
    ours_variant = "attn_lrp" if variant == "attnLRP" else "cp_lrp"
    ours, logits = relevance(model, canonizer(family), embeds, target, ours_variant)
    theirs, their_logits = lxt_relevance(family, model, embeds, target, variant=variant)
    torch.testing.assert_close(logits, their_logits, rtol=1e-12, atol=1e-15)
    assert relative_error(ours, theirs) < tolerance
    assert relative_error(ours.sum(-1), theirs.sum(-1)) < tolerance
    assert float(theirs.abs().max()) > 1e-4  # a map worth comparing


def test_parity_with_lxt_with_padding():
    """BERT with a padding mask: the masked keys get no relevance, the rest matches LXT."""
    pytest.importorskip("lxt")
    model = tiny_model("bert")
    embeds, target = inputs(model)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    ours, _ = relevance(model, BertCanonizer(), embeds, target, attention_mask=mask)
    theirs, _ = lxt_relevance("bert", model, embeds, target, attention_mask=mask)
    assert relative_error(ours, theirs) < 1e-9


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_cp_lrp_conserves_without_biases(family):
    """CP-LRP with every bias, the position and token-type embeddings zero: input relevance == the logit."""
    model = tiny_model(family)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "position_embeddings" in name or "token_type" in name or "wpe" in name:
                param.zero_()
    embeds, target = inputs(model)
    ours, logits = relevance(model, canonizer(family), embeds, target, "cp_lrp")
    expected = logits[torch.arange(2), target]
    torch.testing.assert_close(ours.sum((1, 2)), expected, rtol=1e-9, atol=1e-12)


def _snapshot(model):
    return (
        {name: tensor.clone() for name, tensor in model.state_dict().items()},
        [(name, type(module), sorted(module.__dict__)) for name, module in model.named_modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    )


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_model_restored_exactly(family):
    model = tiny_model(family)
    embeds, target = inputs(model)
    with torch.no_grad():
        before_logits = model(inputs_embeds=embeds).logits
    state, structure, hooks = _snapshot(model)
    relevance(model, CANONIZERS[family](), embeds, target)
    after_state, after_structure, after_hooks = _snapshot(model)
    assert after_structure == structure and after_hooks == hooks
    assert state.keys() == after_state.keys()
    assert all(torch.equal(state[name], after_state[name]) for name in state)
    assert all(param.grad is None for param in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(inputs_embeds=embeds).logits, before_logits)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_canonized_forward_matches_the_model(family):
    model = tiny_model(family)
    embeds, _ = inputs(model)
    with torch.no_grad():
        expected = model(inputs_embeds=embeds).logits
    with composite(CANONIZERS[family]()).context(model), torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=embeds).logits, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_auto_picks_the_family_canonizer(family):
    picked = auto_canonizers(tiny_model(family))
    assert [type(c) for c in picked if type(c).__module__.endswith("huggingface")] == [CANONIZERS[family]]


def test_without_canonizer_a_strict_composite_refuses_the_activation():
    model = tiny_model("bert")
    embeds, target = inputs(model)
    with pytest.warns(UserWarning, match="BertCanonizer"):
        strict = get_composite("attn_lrp", canonizers=[])
        with pytest.raises(MissingRuleError, match="GELUActivation"), strict.context(model):
            model(inputs_embeds=embeds.requires_grad_(True))


def test_token_ids_reach_the_embedding_output():
    """Called with token ids, relevance reaches the word embedding's output (GPT-2: its proportional share)."""
    model = tiny_model("gpt2")
    ids = torch.randint(1, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["output"] = output

    with composite(GPT2Canonizer(epsilon=EPSILON)).context(model):
        handle = model.transformer.wte.register_forward_hook(keep)
        try:
            logits = model(input_ids=ids).logits
        finally:
            handle.remove()
        (logits[:, 0] * 1.0).sum().backward()
    by_ids = captured["output"].grad
    # the same map as from the embeddings themselves: relevance of the output, not the gradient
    by_embeds, _ = relevance(model, GPT2Canonizer(epsilon=EPSILON), embeddings_of(model, ids), 0)
    seeds = logits.detach()[:, 0]
    torch.testing.assert_close(by_ids * seeds[:, None, None], by_embeds, rtol=1e-9, atol=1e-14)


def test_refuses_a_key_value_cache():
    model = tiny_model("gpt2")
    embeds, _ = inputs(model)
    with torch.no_grad():
        past = model.transformer(inputs_embeds=embeds, use_cache=True).past_key_values
    with composite(GPT2Canonizer()).context(model), pytest.raises(ValueError, match="use_cache=False"):
        model(inputs_embeds=embeds[:, :1].requires_grad_(True), past_key_values=past)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="epsilon"):
        GPT2Canonizer(epsilon=-1.0)


def test_warns_when_blocks_keep_their_forward():
    from lrp_lightning.canonizers import warn_uncanonized

    with pytest.warns(UserWarning, match="BertCanonizer"):
        warn_uncanonized(tiny_model("bert"), "attn_lrp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_uncanonized(nn.Sequential(nn.Linear(2, 2)), "attn_lrp")


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_token_ids_through_the_attributor_conserve(family):
    """Gradient on token ids: under CP-LRP without biases the per-token relevance sums to the initial
    relevance (1, one-hot target); padding (attention_mask 0) gets exactly 0."""
    from lrp_lightning.attribution import Gradient

    model = tiny_model(family)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "position_embeddings" in name or "token_type" in name or "wpe" in name:
                param.zero_()
    ids = torch.randint(1, 100, (2, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    rules = composite(canonizer(family), "cp_lrp")
    with Gradient(model, rules, output="logits") as attributor:
        _, relevance = attributor({"input_ids": ids, "attention_mask": mask}, 1)
    assert relevance.shape == (2, 6)
    torch.testing.assert_close(relevance[0].sum(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert torch.all(relevance[1, 4:] == 0.0) and float(relevance[1, :4].abs().sum()) > 0.1
