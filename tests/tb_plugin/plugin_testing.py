"""Helpers of the plugin tests: run names, TensorBoard's WSGI app with the plugin, route URLs."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from lrp_lightning.store import RunStore, make_attribution_table, make_probe_table
from lrp_lightning.tb_plugin.plugin import LRPPlugin

GOOD = "exp/version_0"
PLAIN = "exp/version_1"
DAMAGED = "damaged"
ODD = "odd"
BROKEN = "broken"
FUTURE = "future"
PREFIX = "/data/plugin/lrp"


def write_odd_run(run_dir: Path) -> RunStore:
    """One epoch whose probe thumbnail is not a PNG and whose map holds NaN and inf."""
    store = RunStore.create(run_dir, heatmap_shape=(4, 4), class_names=["a", "b"])
    thumbnails = [b"GIF89a", None]
    store.write_probe(make_probe_table(sample_id=[1, 2], dataset_index=[1, 2], label=[0, 1], thumbnail=thumbnails))
    maps = np.ones((2, 4, 4), np.float32)
    maps[0, 0, 0] = np.nan
    maps[0, 1, 1] = np.inf
    store.write_epoch(
        0,
        5,
        make_attribution_table(
            epoch=0,
            global_step=5,
            sample_id=[1, 2],
            label=[0, 1],
            prediction=[0, 0],
            target=[0, 1],
            score=[1.0, 2.0],
            probability=[0.5, 0.7],
            relevance=maps,
        ),
    )
    return store


class GivenPlugin(base_plugin.TBLoader):
    """A loader that hands TensorBoard an already constructed plugin (so tests can reach it)."""

    def __init__(self, plugin: base_plugin.TBPlugin) -> None:
        self.plugin = plugin

    def load(self, context: base_plugin.TBContext) -> base_plugin.TBPlugin:
        return self.plugin


def make_app(logdir: Path, scan_interval: float = 3600.0, prepare_first_view: bool = False) -> tuple[Client, LRPPlugin]:
    """TensorBoard's WSGI app (error handling included) with only the LRP plugin.

    The plugin does not prepare the first view in the background unless asked: tests count its reads.
    """
    flags = argparse.Namespace(logdir=str(logdir), path_prefix="", samples_per_plugin={}, window_title="")
    plugin = LRPPlugin(
        base_plugin.TBContext(logdir=str(logdir), flags=flags),
        scan_interval=scan_interval,
        prepare_first_view=prepare_first_view,
    )
    assert plugin.index.wait_ready(10)
    app = application.TensorBoardWSGIApp(flags, [GivenPlugin(plugin)], data_provider=None)
    return Client(app), plugin


def route(name: str, **params: object) -> str:
    """URL of a plugin route with query parameters (values as given, not validated)."""
    return f"{PREFIX}/{name}" + (f"?{urlencode(params)}" if params else "")
