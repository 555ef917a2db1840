"""Attributors and targets (lrp_lightning.attribution)."""

import pytest
import torch
from lrp_testing import small_cnn

from lrp_lightning._validation import InvalidArgumentError
from lrp_lightning.attribution import Gradient, IntegratedGradients, Occlusion, SmoothGrad, explain, output_weights


def test_optimizer_created_before_still_trains_the_model():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    explain(model, torch.randn(2, 1, 8, 8), composite="epsilon_gamma_box")
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = model(torch.randn(4, 1, 8, 8)).pow(2).sum()
    loss.backward()
    optimizer.step()
    changed = [not torch.equal(p, b) for p, b in zip(model.parameters(), before) if p.grad.abs().max() > 1e-4]
    assert changed and all(changed)


def test_training_mode_of_submodules_is_restored_by_explain():
    model = small_cnn().train()
    model[1].eval()  # a frozen batch norm in a training model
    explain(model, torch.randn(2, 1, 8, 8))
    assert model.training and model[0].training and not model[1].training


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_attribution_inside_no_grad_and_inference_mode(context):
    model = small_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    expected = explain(model, x, target=[1, 2]).relevance
    with context():
        x_in_context = x.clone()
        relevance = explain(model, x_in_context, target=[1, 2]).relevance
    assert torch.equal(relevance, expected)


def test_targets():
    output = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, -1.0]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.equal(output_weights(output, "prediction"), one_hot)
    assert torch.equal(output_weights(output, [1, 0]), one_hot)
    assert torch.equal(output_weights(output, torch.tensor([1, 0])), one_hot)
    assert torch.equal(output_weights(output, 2), torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert torch.equal(output_weights(output, one_hot), one_hot)
    assert torch.equal(output_weights(output, None), output)
    assert torch.equal(output_weights(output, lambda out: out * 2), output * 2)
    expected = r"target must be class indices in \[0, 2\] \(the output has 3 classes\), got 3$"
    with pytest.raises(ValueError, match=expected):
        output_weights(output, [3, 0])
    with pytest.raises(ValueError, match="class scores of shape"):
        output_weights(torch.zeros(2, 3, 4), [0, 1])
    with pytest.raises(ValueError, match=r"target must be one of \['prediction'\] .*, got 'label'"):
        output_weights(output, "label")


def test_bad_arguments_get_one_message_style():
    """Every argument check of the attribution API says ``<owner>: <name> must be <what>, got <given>``."""
    output = torch.zeros(2, 3)
    model = small_cnn()
    image = torch.zeros(1, 1, 8, 8)
    cases = [
        (lambda: output_weights(output, True), "target must be class indices, 'prediction', None", "got True"),
        (lambda: output_weights(output, 1.5), "target must be class indices", "got 1.5"),
        (lambda: output_weights(output, [0, 1, 2]), "must be one class index or one per sample (2)", "list [0, 1, 2]"),
        (lambda: output_weights(output, torch.ones(2, 4)), "float tensor shaped like the output (2, 3)", "(2, 4)"),
        (lambda: output_weights(output, lambda out: out[:, :1]), "returns a tensor shaped like", "(it gave (2, 1))"),
        (lambda: Gradient(model)([[0.0]]), "input must be a torch.Tensor", "got list [[0.0]]"),
        (lambda: Gradient(model)(image.long()), "input must be a floating point tensor", "dtype is torch.int64"),
        (lambda: Gradient("model"), "Gradient: model must be a torch.nn.Module", "got 'model'"),
        (lambda: Gradient(model, composite="epsilon"), "Gradient: composite must be a Composite or None", "'epsilon'"),
        (lambda: SmoothGrad(model, n_iter=0), "SmoothGrad: n_iter must be an int >= 1", "got 0"),
        (lambda: IntegratedGradients(model, n_iter=True), "IntegratedGradients: n_iter must be an int >= 1", "True"),
        (lambda: Occlusion(model, window=(4, 0)), "Occlusion: window must be an int >= 1 or a tuple", "tuple (4, 0)"),
        (lambda: explain(model, image, attributor="lime"), "explain: attributor must be one of ['gradient',", "'lime'"),
        (lambda: explain(model, image, composite=None, low=0.0), "apply only to a composite given by name", "None"),
    ]
    for call, message, given in cases:
        with pytest.raises(InvalidArgumentError) as info:
            call()
        text = str(info.value)
        assert message in text and given in text, text


def test_smoothgrad_is_deterministic_with_a_generator_and_averages_gradients():
    model = small_cnn().eval()
    x = torch.randn(2, 1, 8, 8)
    state = torch.random.get_rng_state()
    runs = [
        SmoothGrad(model, noise_level=0.2, n_iter=5, generator=torch.Generator().manual_seed(7))(x, [0, 1]).relevance
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG stream is untouched
    plain = Gradient(model)(x, [0, 1]).relevance
    assert not torch.allclose(runs[0], plain)
    assert torch.equal(SmoothGrad(model, n_iter=1)(x, [0, 1]).relevance, plain)


@pytest.mark.slow  # captum as the oracle, every occlusion window
def test_integrated_gradients_and_occlusion_equal_captum():
    captum = pytest.importorskip("captum.attr")
    model = small_cnn().double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ours = IntegratedGradients(model, n_iter=16)(x, [1, 3]).relevance
    theirs = captum.IntegratedGradients(model).attribute(
        x, target=torch.tensor([1, 3]), n_steps=16, method="riemann_right"
    )
    assert torch.allclose(ours, theirs, rtol=1e-8, atol=1e-10)
    ours = Occlusion(model, window=(1, 3, 3), stride=(1, 2, 2))(x, [1, 3]).relevance
    theirs = captum.Occlusion(model).attribute(
        x, sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2), target=torch.tensor([1, 3])
    )
    # captum returns float32 here even for float64 inputs
    assert torch.allclose(ours, theirs.to(ours), rtol=1e-5, atol=1e-6 * ours.abs().max().item())
