"""Colour maps under Zennit's module name (``zennit.cmap``): :class:`ColorMap` and :class:`LazyColorMapCache`.

The colour maps themselves live in :mod:`lrp_lightning._colormaps` and are re-exported by
:mod:`lrp_lightning.image`; this module exists so that code written for Zennit can change
``zennit.cmap`` to ``lrp_lightning.cmap`` and nothing else.
"""

from ._colormaps import COLOR_MAPS, ColorMap, LazyColorMapCache

__all__ = ["COLOR_MAPS", "ColorMap", "LazyColorMapCache"]
