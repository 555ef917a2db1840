"""Models and checks shared by the LRP engine tests."""

from contextlib import contextmanager

import torch
import torch.nn as nn


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    )


def snapshot(model):
    return {
        "params": [id(p) for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, type(m)) for name, m in model.named_modules()],
        "dicts": [sorted(m.__dict__) for m in model.modules()],
        "training": [m.training for m in model.modules()],
    }


def assert_restored(model, before):
    after = snapshot(model)
    assert after["params"] == before["params"]
    assert after["modules"] == before["modules"]
    assert after["dicts"] == before["dicts"]
    assert after["training"] == before["training"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks


SYNCING = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


@contextmanager
def no_host_reads():
    """Fail on every method that copies a tensor's values to the host (each one a sync on a GPU)."""
    saved = {name: getattr(torch.Tensor, name) for name in SYNCING}
    calls: list[str] = []

    def failing(name):
        def method(self, *args, **kwargs):
            calls.append(name)
            raise AssertionError(f"Tensor.{name} read a tensor's values on the host during an attribution")

        return method

    try:
        for name in SYNCING:
            setattr(torch.Tensor, name, failing(name))
        yield calls
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def tiny_vit(seed: int = 0, layers: int = 2) -> nn.Module:
    """A small torchvision VisionTransformer in float64 eval mode, with a non-zero head (16 px, 2 heads)."""
    import pytest

    vision_transformer = pytest.importorskip("torchvision.models.vision_transformer")
    torch.manual_seed(seed)
    model = vision_transformer.VisionTransformer(
        image_size=16, patch_size=8, num_layers=layers, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision initialises the head with zeros
    nn.init.normal_(model.heads.head.bias, std=0.1)
    return model.double().eval()
