"""Fixtures of the plugin tests: a logdir of synthetic runs (some damaged) and TensorBoard's WSGI app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_testing import BROKEN, DAMAGED, FUTURE, GOOD, ODD, PLAIN, make_app, write_odd_run  # noqa: E402
from synthetic_runs import build_run  # noqa: E402

from lrp_lightning.store import MANIFEST_FILE, STORE_SUBDIR  # noqa: E402
from lrp_lightning.tb_plugin.plugin import LRPPlugin  # noqa: E402


@pytest.fixture(scope="session")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``exp/version_0`` (4 epochs, analysed 0, 1, 3), ``exp/version_1`` (no analysis, no thumbnails),
    ``damaged`` (a corrupt part, a corrupt points table, a corrupt spectrum), ``odd`` (odd values),
    ``broken`` (manifest not JSON), ``future`` (format 3.0)."""
    root = tmp_path_factory.mktemp("logdir")
    build_run(root / GOOD, epochs=4, samples=45, analysed=[0, 1, 3])
    build_run(root / PLAIN, epochs=2, samples=12, analysed=[], thumbnails=False, seed=1)
    damaged = build_run(root / DAMAGED, epochs=3, samples=12, analysed=[0, 2], seed=2)
    (damaged.epoch_dir(1) / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    (damaged.analysis_path(0, "points")).write_bytes(b"garbage")
    (damaged.analysis_path(2, "spectrum")).write_bytes(b"garbage")
    write_odd_run(root / ODD)
    for name, text in ((BROKEN, "{not json"), (FUTURE, json.dumps({"format_version": "3.0", "epochs": []}))):
        directory = root / name / STORE_SUBDIR
        directory.mkdir(parents=True)
        (directory / MANIFEST_FILE).write_text(text)
    return root


@pytest.fixture(scope="session")
def served(logdir: Path) -> tuple[Client, LRPPlugin]:
    return make_app(logdir)


@pytest.fixture(scope="session")
def client(served: tuple[Client, LRPPlugin]) -> Client:
    return served[0]
