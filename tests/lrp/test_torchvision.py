"""Canonizers for torchvision models (lrp_lightning.torchvision) and "auto" on them."""

import pytest
import torch
import torch.nn as nn
import torchvision
from lrp_testing import assert_restored, snapshot

from lrp_lightning import canonizers as canon
from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.torchvision import ResNetCanonizer


def test_resnet_restored_also_after_an_exception_inside_the_context():
    model = torchvision.models.resnet18(num_classes=4).eval()
    before = snapshot(model)
    with pytest.raises(ZeroDivisionError):
        with Gradient(model, get_composite("epsilon_plus", canonizers="auto")):
            assert any("canonizer_sum" in m._modules for m in model.modules())
            raise ZeroDivisionError
    assert_restored(model, before)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_auto_canonizers_choice_and_errors():
    assert isinstance(canon.auto_canonizers(torchvision.models.resnet18())[0], ResNetCanonizer)
    assert isinstance(canon.auto_canonizers(torchvision.models.vgg11_bn())[0], canon.SequentialMergeBatchNorm)
    bn_first = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"batch norm layer 0 \(BatchNorm2d\) does not follow an affine layer"):
        canon.auto_canonizers(bn_first)
    with pytest.raises(ValueError, match="cannot pick canonizers for torchvision MobileNetV2"):
        canon.auto_canonizers(torchvision.models.mobilenet_v2())


def test_an_lrp_composite_warns_about_resnet_blocks_it_does_not_canonize():
    import warnings

    torch.manual_seed(0)  # random weights: how close to 1 the sum stays depends on them, not on the test order
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(UserWarning, match=r"8 torchvision ResNet blocks \(first: layer1.0\).*canonizers='auto'"):
        with Gradient(model, get_composite("epsilon_plus")) as attributor:
            _, doubled = attributor(x, [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # canonized: no warning; a gradient composite needs no canonizer
        with Gradient(model, get_composite("epsilon_plus", canonizers="auto")) as attributor:
            _, relevance = attributor(x, [1])
        with Gradient(model, get_composite("guided_backprop")) as attributor:
            attributor(x, [1])
    assert abs(relevance.sum().item() - 1.0) < 0.2  # about conserved
    assert doubled.sum().item() > 100  # 2**8 for the eight uncanonized additions


def test_zennit_import_paths_and_create_graph():
    from lrp_lightning.torchvision import ResNetCanonizer, VGGCanonizer

    # defined at the edge, as in Zennit, and registered by name; the generic module knows no model family
    assert canon.CANONIZERS["resnet"] is ResNetCanonizer and canon.CANONIZERS["vgg"] is VGGCanonizer
    assert not hasattr(canon, "ResNetCanonizer") and not hasattr(canon, "VGGCanonizer")
    # create_graph: the attribution can be differentiated again (e.g. to optimise an explanation)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    attributor = Gradient(model, get_composite("beta_smooth", beta_smooth=2.0), create_graph=True)
    _, relevance = attributor(x, [0, 1])
    assert relevance.requires_grad
    (second,) = torch.autograd.grad(relevance.pow(2).sum(), model[0].weight)
    assert second.abs().sum() > 0
