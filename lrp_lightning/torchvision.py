"""Canonizers for torchvision models under Zennit's module name (``zennit.torchvision``).

``from lrp_lightning.torchvision import ResNetCanonizer`` works like Zennit's import; the classes
live in :mod:`lrp_lightning.canonizers`.
"""

from .canonizers import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer, ResNetCanonizer, VGGCanonizer

__all__ = ["ResNetBasicBlockCanonizer", "ResNetBottleneckCanonizer", "ResNetCanonizer", "VGGCanonizer"]
