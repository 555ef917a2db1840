"""lrp_lightning.revise: CAVs, the three ClArC methods and the revision measures, against their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrp_lightning._validation import InvalidArgumentError
from lrp_lightning.revise import (
    AClArC,
    ArtifactPaste,
    PClArC,
    RRClArC,
    artifact_sensitivity,
    fit_cav,
    layer_activations,
    project,
    region_share,
)


def _groups(n: int = 60, d: int = 12, shift: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    x = rng.normal(size=(n, d))
    t = np.arange(n) % 2 == 0
    x[t] += shift * u
    return x, t, u


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))


def test_pattern_cav_is_the_normalised_covariance_with_the_label_and_separates_held_out_samples():
    x, t, u = _groups(shift=8.0)
    cav = fit_cav(x, t, layer="features", seed=1)
    # oracle: cov(a, t) / var(t), written from the formula in float64
    tc = t.astype(np.float64) - t.mean()
    pattern = ((x - x.mean(0)) * tc[:, None]).sum(0) / (tc**2).sum()
    np.testing.assert_allclose(cav.direction.double().numpy(), pattern / np.linalg.norm(pattern), rtol=1e-5, atol=1e-6)
    assert float(cav.direction.double() @ torch.from_numpy(u)) > 0.9
    assert cav.auc == 1.0 and cav.accuracy == 1.0  # shift 8 along u: held-out groups do not overlap
    assert cav.artifact_projection - cav.clean_projection == pytest.approx(
        float(x[t].mean(0) @ pattern / np.linalg.norm(pattern) - x[~t].mean(0) @ pattern / np.linalg.norm(pattern))
    )
    assert cav.summary()["heldout_auc"] == 1.0 and cav.summary()["n_artifact"] == 30


def test_linear_cav_points_along_the_shift_and_weak_shifts_give_weaker_quality():
    x, t, u = _groups(n=200)
    cav = fit_cav(x, t, method="linear")
    assert float(cav.direction.double() @ torch.from_numpy(u)) > 0.8
    weak = fit_cav(*_groups(n=200, shift=0.3)[:2])
    assert 0.4 < weak.auc < cav.auc


def test_fit_cav_rejects_bad_input_with_the_fix():
    x, t, _ = _groups()
    with pytest.raises(ValueError, match="at least 2 artifact and 2 clean"):
        fit_cav(x[:3], [True, False, False])
    with pytest.raises(InvalidArgumentError, match="method must be one of"):
        fit_cav(x, t, method="svm")
    with pytest.raises(ValueError, match="no direction"):
        fit_cav(np.ones((6, 3)), [True, False] * 3)


def test_project_moves_every_sample_to_the_reference_and_keeps_the_rest():
    a = torch.randn(7, 2, 3, dtype=torch.float64)
    v = torch.randn(6, dtype=torch.float64)
    v /= v.norm()
    out = project(a, v, 0.5)
    flat = out.flatten(1)
    torch.testing.assert_close(flat @ v, torch.full((7,), 0.5, dtype=torch.float64))
    rest = a.flatten(1) - (a.flatten(1) @ v)[:, None] * v
    torch.testing.assert_close(flat - (flat @ v)[:, None] * v, rest)


def _cav_of(model, layer, x, t, **kwargs):
    return fit_cav(layer_activations(model, layer, x), t, layer=layer, **kwargs)


def test_pclarc_is_a_reversible_hook_that_projects_the_layer_output():
    model = _net()
    x = torch.randn(20, 6)
    t = np.arange(20) < 10
    x[torch.from_numpy(t), 0] += 2.0
    cav = _cav_of(model, "1", x, t)
    before = model(x).detach()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    with PClArC(cav).attach(model) as hook:
        assert hook.attached
        projected = model(x).detach()
        hidden = model[1](model[0](x)).detach()
        expected = model[4](model[3](model[2](project(hidden, cav.direction, cav.clean_projection)))).detach()
        torch.testing.assert_close(projected, expected)
    assert not torch.equal(projected, before)
    assert torch.equal(model(x).detach(), before)  # removed: exactly as before
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())


def test_aclarc_adds_the_artifact_to_other_classes_in_training_only():
    model = _net()
    x = torch.randn(12, 6)
    t = np.arange(12) < 6
    x[torch.from_numpy(t), 1] += 2.0
    cav = _cav_of(model, "1", x, t)
    seen = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    labels = torch.tensor([0, 1, 2] * 4)
    v = cav.direction
    plain = model[1](model[0](x)).detach() @ v
    hook = AClArC(cav, artifact_class=1).attach(model)
    model.train()
    with pytest.raises(RuntimeError, match="set_labels"):
        model(x)
    hook.set_labels(labels)
    model(x)
    moved = seen[-1] @ v
    other = labels != 1
    torch.testing.assert_close(moved[other], torch.full((int(other.sum()),), cav.artifact_projection))
    torch.testing.assert_close(moved[~other], plain[~other])
    model.eval()
    model(x)
    torch.testing.assert_close(seen[-1] @ v, plain)  # evaluation is untouched
    hook.remove()


@pytest.mark.parametrize("target", ["all", "artifact", "label"])
def test_rrclarc_derivative_matches_finite_differences_along_the_cav(target):
    model = _net().double()
    x = torch.randn(9, 6, dtype=torch.float64)
    t = np.arange(9) < 4
    cav = _cav_of(model, "1", x, t)
    cav.direction = cav.direction.double()
    labels = torch.tensor([0, 1, 2] * 3)
    rr = RRClArC(cav, artifact_class=2, strength=0.5, target=target).attach(model)
    model.train()
    output = model(x)
    derivative = rr.directional_derivatives(output, labels)
    # oracle: central differences of the head along v
    head = lambda a: model[4](model[3](model[2](a)))  # noqa: E731
    with torch.no_grad():  # (a pass with gradients would replace the activation the hook keeps)
        hidden = model[1](model[0](x))
    h = 1e-6
    with torch.no_grad():
        fd = (head(hidden + h * cav.direction) - head(hidden - h * cav.direction)) / (2 * h)
    expected = {"all": fd, "artifact": fd[:, 2], "label": fd.gather(1, labels[:, None])[:, 0]}[target]
    torch.testing.assert_close(derivative.detach(), expected.detach(), rtol=1e-5, atol=1e-7)
    penalty = rr.penalty(output, labels)
    squared = expected.pow(2)
    assert float(penalty) == pytest.approx(
        0.5 * float((squared.sum(1) if squared.dim() == 2 else squared).mean()), rel=1e-5
    )
    penalty.backward()
    assert model[2].weight.grad.abs().sum() > 0  # differentiable in the parameters after the layer
    rr.remove()


def test_rrclarc_asks_for_a_forward_pass_first():
    model = _net()
    x = torch.randn(8, 6)
    cav = _cav_of(model, "1", x, np.arange(8) < 4)
    with pytest.raises(RuntimeError, match="no activation"):
        RRClArC(cav, 0).penalty(torch.zeros(8, 3))


def test_region_share_is_the_pooled_absolute_share_in_the_cells():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 8, 8))
    grid = (4, 4)
    pooled = np.abs(maps).reshape(3, 4, 2, 4, 2).sum(axis=(2, 4)).reshape(3, -1)
    cells = [0, 1, 4]
    np.testing.assert_allclose(region_share(maps, cells, grid), pooled[:, cells].sum(1) / pooled.sum(1))
    assert region_share(np.zeros((1, 8, 8)), cells, grid)[0] == 0.0


def test_artifact_paste_from_a_finding_and_sensitivity():
    members = torch.zeros(4, 1, 8, 8)
    members[:, :, 0:2, 0:2] = 1.0  # the artifact: a bright 2x2 corner
    members[:, :, 4:, 4:] = torch.rand(4, 1, 4, 4)
    paste = ArtifactPaste.from_finding(members, cells=[0], grid=(4, 4))
    clean = torch.full((5, 1, 8, 8), 0.2)
    pasted = paste(clean)
    assert torch.equal(pasted[:, :, 0:2, 0:2], torch.ones(5, 1, 2, 2))
    assert torch.equal(pasted[:, :, 2:, :], clean[:, :, 2:, :]) and torch.equal(pasted[:, :, :, 2:], clean[:, :, :, 2:])

    class Corner(nn.Module):  # class 1 when the corner is bright, else class 0
        def forward(self, x):
            corner = x[:, 0, 0, 0]
            return torch.stack([0.5 - corner, corner - 0.5], 1)

    assert artifact_sensitivity(Corner(), clean, 1, paste) == 1.0
    assert artifact_sensitivity(Corner(), clean, 1, lambda x: x) == 0.0
