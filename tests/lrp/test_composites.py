"""Composites (lrp_lightning.composites): which rule each layer gets."""

import torch.nn as nn
from lrp_testing import small_cnn

from lrp_lightning.composites import EpsilonGammaBox, NameLayerMapComposite
from lrp_lightning.rules import Epsilon, ZPlus


def test_name_layer_map_user_rules_come_first():
    model = small_cnn().eval()
    composite = NameLayerMapComposite(name_map=[(["8"], Epsilon(epsilon=0.5))], layer_map=[(nn.Linear, ZPlus())])
    composite.register(model)
    try:
        assert isinstance(composite.rule_map["8"], Epsilon)
    finally:
        composite.remove()
    first = EpsilonGammaBox(first_map=[(nn.Conv2d, Epsilon())])
    first.register(model)
    try:
        assert isinstance(first.rule_map["0"].first, Epsilon)  # the first layer's rule, at its first call
        assert type(first.rule_map["4"]).__name__ == "Gamma"
    finally:
        first.remove()
