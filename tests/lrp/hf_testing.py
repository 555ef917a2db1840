"""Helpers for the Hugging Face tests: tiny random-init models, LXT 2.1 as an oracle (patched reversibly)."""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import torch
import torch.nn as nn

_MISSING = object()

#: tiny configurations: 2 layers, hidden 32, 2 heads, vocabulary 100
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "vocab_size": 100}


def tiny_model(family: str, attn_implementation: str | None = None, num_labels: int = 3, seed: int = 0) -> nn.Module:
    """A float64 random-init sequence classifier of ``family`` ("bert", "gpt2", "llama"), in eval mode.

    LLaMA defaults to SDPA attention: its eager attention computes the softmax in float32 even in float64
    models, where the canonized attention (and SDPA) compute in the model's dtype.
    """
    import transformers

    if attn_implementation is None:
        attn_implementation = "sdpa" if family == "llama" else "eager"
    torch.manual_seed(seed)
    if family == "bert":
        config = transformers.BertConfig(**TINY, intermediate_size=64, max_position_embeddings=64)
        cls = transformers.BertForSequenceClassification
    elif family == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, pad_token_id=0)
        cls = transformers.GPT2ForSequenceClassification
    elif family == "llama":
        config = transformers.LlamaConfig(
            **TINY, intermediate_size=64, num_key_value_heads=1, max_position_embeddings=64, pad_token_id=0
        )
        cls = transformers.LlamaForSequenceClassification
    else:
        raise ValueError(family)
    config.num_labels = num_labels
    config._attn_implementation = attn_implementation
    model = cls(config).to(torch.float64).eval()
    with torch.no_grad():  # non-trivial norm parameters (they initialise to ones and zeros)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm) or type(module).__name__ == "LlamaRMSNorm":
                module.weight.uniform_(0.5, 1.5)
                if getattr(module, "bias", None) is not None:
                    module.bias.uniform_(-0.2, 0.2)
    return model


def embeddings_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model.get_input_embeddings()(ids).detach()


_LXT_MODULES = {
    "bert": "transformers.models.bert.modeling_bert",
    "gpt2": "transformers.models.gpt2.modeling_gpt2",
    "llama": "transformers.models.llama.modeling_llama",
}


@contextmanager
def lxt_patched(family: str, variant: str = "attnLRP"):
    """LXT 2.1's patches for ``family`` inside the context; everything it changed is restored afterwards.

    LXT patches classes and modules of the whole process (``nn.LayerNorm.forward``, transformers' modeling
    modules); the model must be built inside the context, from the patched module.
    """
    import lxt.efficient.models as lxt_models
    from lxt.efficient import monkey_patch
    from transformers import modeling_utils

    modeling = importlib.import_module(_LXT_MODULES[family])
    patch_map = getattr(getattr(lxt_models, family), variant)
    classes = [nn.LayerNorm, nn.Dropout] + [key for key in patch_map if isinstance(key, type)]
    saved_classes = [(cls, cls.__dict__.get("forward", _MISSING)) for cls in classes]
    saved_module = dict(vars(modeling))
    interface = modeling_utils.ALL_ATTENTION_FUNCTIONS
    saved_interface = dict(interface._global_mapping), dict(getattr(interface, "_local_mapping", {}))
    # LXT's identity rule divides by ``input + 1e-10`` (an error of 1e-10 / |input|); exact for the oracle
    from lxt.efficient.rules import identity_rule_implicit_fn

    forward = identity_rule_implicit_fn.forward
    saved_defaults = forward.__defaults__
    try:
        forward.__defaults__ = (0.0,)
        monkey_patch(modeling, patch_map)
        yield modeling
    finally:
        forward.__defaults__ = saved_defaults
        for cls, forward in saved_classes:
            if forward is _MISSING:
                if "forward" in cls.__dict__:
                    delattr(cls, "forward")
            else:
                cls.forward = forward
        for key in set(vars(modeling)) - set(saved_module):
            delattr(modeling, key)
        for key, value in saved_module.items():
            setattr(modeling, key, value)
        interface._global_mapping.clear()
        interface._global_mapping.update(saved_interface[0])
        if hasattr(interface, "_local_mapping"):
            interface._local_mapping.clear()
            interface._local_mapping.update(saved_interface[1])


def lxt_relevance(family, model, embeds, target, variant="attnLRP", **kwargs):
    """LXT's relevance of ``embeds`` (batch, tokens, hidden) for class ``target``, and the logits."""
    with lxt_patched(family, variant) as modeling:
        cls = getattr(modeling, type(model).__name__)
        lxt_model = cls(model.config).to(torch.float64).eval()
        lxt_model.load_state_dict(model.state_dict())
        leaf = embeds.clone().requires_grad_(True)
        logits = lxt_model(inputs_embeds=leaf, **kwargs).logits
        seed = torch.zeros_like(logits)
        seed[torch.arange(len(logits)), target] = 1.0
        (gradient,) = torch.autograd.grad(logits, leaf, seed)
    return (leaf * gradient).detach(), logits.detach()
