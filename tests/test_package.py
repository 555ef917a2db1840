import importlib
from pathlib import Path

import lrp_lightning

ROOT = Path(__file__).resolve().parents[1]


def test_subpackages_map_to_top_level_folders():
    callbacks = importlib.import_module("lrp_lightning.callbacks")
    plugin = importlib.import_module("lrp_lightning.tb_plugin")
    assert Path(callbacks.__file__).resolve().parent == ROOT / "callbacks"
    assert Path(plugin.__file__).resolve().parent == ROOT / "tb_plugin"


def test_version_matches_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{lrp_lightning.__version__}"' in text
