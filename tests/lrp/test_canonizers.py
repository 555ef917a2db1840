"""The generic canonizers (lrp_lightning.canonizers): batch-norm merging and the registry."""

import copy

import pytest
import torch
import torch.nn as nn
from lrp_testing import small_cnn

from lrp_lightning import canonizers as canon
from lrp_lightning.attribution import explain


def test_canonized_relevance_equals_explicitly_merged_model():
    model = small_cnn().double().eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model[1].weight.data.uniform_(0.5, 2)
    merged = copy.deepcopy(model)
    bn, conv = merged[1], merged[0]
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    with torch.no_grad():
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
    merged[1] = nn.Identity()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ours = explain(model, x, target=[0, 3], composite="epsilon_plus", canonizers="auto").relevance
    reference = explain(merged, x, target=[0, 3], composite="epsilon_plus", canonizers=None).relevance
    named = explain(
        model, x, target=[0, 3], composite="epsilon_plus", canonizers=[canon.NamedMergeBatchNorm([(["0"], "1")])]
    ).relevance
    without = explain(model, x, target=[0, 3], composite="epsilon_plus", canonizers=None).relevance
    assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)
    assert torch.allclose(named, reference, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(without, reference, rtol=1e-3)


def test_registering_a_batch_norm_merge_computes_nothing_and_checks_at_once():
    # a registration per attribution (explain, the batch-8 benchmark) merged every layer twice: once to check
    # at registration, once in the forward pass
    model = small_cnn().eval()
    canonizer = canon.NamedMergeBatchNorm([(["0"], "1")])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        handles = canonizer.apply(model)
    for handle in handles:
        handle.remove()
    computed = [
        e.name for e in prof.events() if e.name.startswith("aten::") and e.name not in ("aten::detach", "aten::alias")
    ]
    assert computed == []
    unmerged = small_cnn().eval()
    unmerged[1] = nn.BatchNorm2d(4, track_running_stats=False).eval()
    with pytest.raises(ValueError, match="has no running statistics"):
        canon.NamedMergeBatchNorm([(["0"], "1")]).apply(unmerged)
    with pytest.raises(ValueError, match=r"BatchNorm2d with 4 features cannot be merged into Conv2d with weight of "):
        canon.NamedMergeBatchNorm([(["4"], "1")]).apply(small_cnn().eval())


class Doubler(nn.Module):
    """A block whose ``x + x`` no rule sees, like a residual addition."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x):
        x = self.linear(x)
        return x + x


@pytest.fixture
def registry(monkeypatch):
    """The canonizer registry, restored after the test."""
    monkeypatch.setattr(canon, "CANONIZERS", dict(canon.CANONIZERS))
    monkeypatch.setattr(canon, "_UNSUPPORTED", list(canon._UNSUPPORTED))
    return canon.CANONIZERS


def _doubler_canonizer():
    from lrp_lightning.layer import Sum

    def forward(self, x):
        x = self.linear(x)
        return self.canonizer_sum(torch.stack([x, x], dim=-1))

    def attribute_map(name, module):
        if isinstance(module, Doubler):
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @canon.register_canonizer("doubler")
    class DoublerCanonizer(canon.AttributeCanonizer):
        def __init__(self):
            super().__init__(attribute_map)

        def copy(self):
            return canon.AttributeCanonizer(self.attribute_map)

        @classmethod
        def applies(cls, model):
            return any(isinstance(module, Doubler) for module in model.modules())

        @classmethod
        def uncanonized(cls, model):
            left = [name for name, m in model.named_modules() if isinstance(m, Doubler) and "forward" not in m.__dict__]
            return f"{len(left)} Doubler blocks keep their addition" if left else None

    return DoublerCanonizer


def test_a_registered_canonizer_is_named_picked_by_auto_and_warned_about(registry):
    DoublerCanonizer = _doubler_canonizer()
    assert registry["doubler"] is DoublerCanonizer
    model = nn.Sequential(Doubler(), nn.ReLU(), nn.Linear(3, 2)).double()
    plain = nn.Sequential(nn.Linear(3, 2))
    auto = canon.auto_canonizers(model)
    assert [type(c) for c in auto] == [canon.SequentialMergeBatchNorm, DoublerCanonizer]
    assert [type(c) for c in canon.auto_canonizers(plain)] == [canon.SequentialMergeBatchNorm]
    assert [type(c) for c in canon.resolve_canonizers(["doubler"], model)] == [DoublerCanonizer]
    with pytest.raises(ValueError, match=r"unknown canonizer 'doublr'; choose 'auto' or one of \[.*'doubler'"):
        canon.resolve_canonizers("doublr", model)
    x = torch.rand(2, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="composite epsilon_plus: 1 Doubler blocks keep their addition"):
        doubled = explain(model, x, target=[0, 1], composite="epsilon_plus", canonizers=None).relevance
    canonized = explain(model, x, target=[0, 1], composite="epsilon_plus", canonizers="auto").relevance
    assert torch.allclose(doubled, 2 * canonized, rtol=1e-4)  # the Sum module's Norm rule splits by contribution
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_registering_a_second_class_under_a_taken_name_fails(registry):
    with pytest.raises(ValueError, match="a canonizer named 'merge_batchnorm' is already registered"):
        canon.register_canonizer("merge_batchnorm")(type("Other", (canon.SequentialMergeBatchNorm,), {}))
    assert registry["merge_batchnorm"] is canon.SequentialMergeBatchNorm


def test_a_registered_unsupported_check_makes_auto_refuse(registry):
    @canon.register_unsupported
    def no_upsampling(model):
        if any(isinstance(m, nn.Upsample) for m in model.modules()):
            return "Upsample has no canonizer; pass canonizers=[]"
        return None

    with pytest.raises(ValueError, match="Upsample has no canonizer"):
        canon.auto_canonizers(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)))
    assert canon.auto_canonizers(nn.Sequential(nn.Conv2d(1, 1, 3)))  # others still pass


def test_the_engine_resolves_no_canonizer_names_itself():
    from lrp_lightning.core import Composite

    model = small_cnn().eval()
    with pytest.raises(TypeError, match=r"canonizers \['auto'\] are given by name.*resolve_canonizers"):
        Composite(canonizers="auto").register(model)
    composite = Composite(canonizers=canon.resolve_canonizers("auto", model))
    with composite.context(model):
        assert "forward" in model[0].__dict__  # the batch norm after it is merged
    assert "forward" not in model[0].__dict__


def test_engine_modules_know_no_model_family_and_import_no_cycle():
    import ast
    from pathlib import Path

    import lrp_lightning

    package = Path(lrp_lightning.__file__).parent
    imports = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        imports[path.stem] = found

    def reachable(module, seen):
        for other in imports.get(module, ()):
            if other not in seen:
                seen.add(other)
                reachable(other, seen)
        return seen

    assert [module for module in imports if module in reachable(module, set())] == []
    for engine in ("core", "canonizers", "rules", "layer", "types"):
        assert "torchvision" not in reachable(engine, set()), engine
    assert "canonizers" not in reachable("core", set())
