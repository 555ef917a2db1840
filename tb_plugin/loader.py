"""Entry point of the TensorBoard plugin "lrp" (``[project.entry-points."tensorboard_plugins"]``).

TensorBoard imports this module at start-up, and an import error here would stop TensorBoard, so it
imports nothing but TensorBoard's ``base_plugin`` and the standard library. The plugin itself is
imported in :meth:`LRPPluginLoader.load`, where a failure only disables the tab.
"""

from __future__ import annotations

import logging

from tensorboard.plugins import base_plugin

__all__ = ["PLUGIN_NAME", "LRPPluginLoader"]

PLUGIN_NAME = "lrp"
"""TensorBoard plugin name: the tab's id, the URL prefix ``/data/plugin/lrp/`` and ``plugins/lrp/``."""

logger = logging.getLogger(__name__)


class LRPPluginLoader(base_plugin.TBLoader):
    """Loads :class:`lrp_lightning.tb_plugin.plugin.LRPPlugin`; returns None (no tab) if that fails."""

    def load(self, context: base_plugin.TBContext) -> base_plugin.TBPlugin | None:
        try:
            from lrp_lightning.tb_plugin.plugin import LRPPlugin
        except Exception:  # a broken install must not take TensorBoard down with it
            logger.error("The LRP plugin could not be imported; its tab is disabled.", exc_info=True)
            return None
        return LRPPlugin(context)
