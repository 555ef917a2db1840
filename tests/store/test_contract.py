"""Tests of the store package's shape: the contract module, honest exports, light imports, no leaks."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest
from store_testing import new_store

import lrp_lightning.store as S
from lrp_lightning.store import contract

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(info.name for info in pkgutil.iter_modules(S.__path__))
RE_EXPORTED = [m for m in MODULES if m != "fileio"]

# Every name that `from lrp_lightning.store import X` served before the store became a package.
PUBLIC_BEFORE = """
ANALYSIS_DIR ATTRIBUTIONS_DIR ATTRIBUTION_COLUMNS ATTRIBUTION_SCHEMA COMMIT_MARKER COMPRESSION DATASET_INDEX
EPOCH FORMAT_VERSION GLOBAL_STEP LABEL MANIFEST_FILE PREDICTION PROBABILITY PROBE_COLUMNS PROBE_FILE
PROBE_SCHEMA RELEVANCE RELEVANCE_SUM RUN_METADATA_KEYS SAMPLE_ID SCORE STORE_SUBDIR TARGET THUMBNAIL
AnalysisNotFoundError CorruptFileError EpochInfo EpochNotFoundError IncompatibleRunError PartWriter RunStore
SampleNotFoundError SchemaError StoreError StoreNotFoundError UnsupportedFormatError decode_relevance
encode_relevance epoch_dirname find_runs make_attribution_table make_probe_table part_filename
ANALYSIS_FORMAT_VERSION ANALYSIS_TABLES CLUSTERS_SCHEMA LINEAGE_EVENTS LINEAGE_SCHEMA POINTS_SCHEMA
SPECTRUM_SCHEMA class_category cluster_column embedding_columns ROW_GROUP_BYTES MAX_ROW_GROUP_ROWS
POINTS_TABLE CLUSTERS_TABLE SPECTRUM_TABLE LINEAGE_TABLE META_ANALYSIS_CONFIG META_GRID_SHAPE CATEGORY
CATEGORY_ALL CLASS_INDEX CLASS_NAME SPECTRAL STABILITY CLUSTERING CLUSTER SIZE PURITY MAJORITY_LABEL ACCURACY
PROTOTYPE TYPICAL ATYPICAL CONCENTRATION BORDER_SHARE CORNER_SHARE COMPACTNESS EIGENGAP EIGENGAP_K FLAGGED
FLAG_REGION FLAG_REASON TRACK PREVIOUS_CLUSTER MATCH_JACCARD EVENT SOURCES EIGENVALUES N_SAMPLES N_NEIGHBORS
SELECTED_CLUSTERING STATUS MESSAGE CLUSTER_COLUMN_PREFIX EMBEDDING_COLUMN_PREFIX
""".split()


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.parse(path.read_text()).body:  # imports inside functions (the lazy __version__) are allowed
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", ["__init__", *MODULES])
def test_every_module_imports_only_stdlib_numpy_pyarrow(module):
    third_party = _top_level_imports(Path(S.__path__[0]) / f"{module}.py") - set(sys.stdlib_module_names)
    assert third_party - {"__future__"} <= {"numpy", "pyarrow"}


def test_every_module_is_documented_and_small():
    for module in MODULES:
        path = Path(S.__path__[0]) / f"{module}.py"
        assert ast.get_docstring(ast.parse(path.read_text())), f"{module} has no module docstring"
        assert len(path.read_text().splitlines()) < 800, f"{module} has grown past ~800 lines: split it"


def test_everything_public_before_the_package_is_still_exported():
    missing = [name for name in PUBLIC_BEFORE if name not in S.__all__ or not hasattr(S, name)]
    assert missing == []


def _defined_public_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


def test_all_is_honest():
    exported = []
    for name in MODULES:
        module = importlib.import_module(f"lrp_lightning.store.{name}")
        # every public name a module defines is exported, and it exports nothing it does not define
        assert sorted(module.__all__) == sorted(_defined_public_names(Path(module.__file__))), name
        if name != "fileio":
            exported.extend(module.__all__)
    assert sorted(S.__all__) == sorted(exported)
    assert all(getattr(S, name) is not None for name in S.__all__)
    assert not set(S.fileio.__all__) & set(S.__all__)  # atomic I/O is used from its own module


def test_scalar_tags_and_metric_names():
    assert contract.metric_column("sparseness") == "metric_sparseness"
    assert contract.metric_tag("sparseness") == "lrp/metric_sparseness"
    assert contract.category_tag(contract.class_category(3), "eigengap") == "lrp/class_3/eigengap"
    assert contract.category_tag(contract.CATEGORY_ALL, "eigengap") == "lrp/all/eigengap"
    tags = [*contract.CALLBACK_SCALAR_TAGS, contract.HEATMAPS_IMAGE_TAG, contract.MEAN_STABILITY_TAG]
    assert len(set(tags)) == len(tags) and all(tag.startswith(contract.SCALAR_PREFIX) for tag in tags)
    assert set(contract.RUN_INFO_KEYS) - set(contract.RUN_METADATA_KEYS) == {"format_version", "library_version"}


def test_hidden_directory_names_parse_back():
    assert contract.staging_dirname(3, 70) == ".staging-epoch_000003-step_70"
    assert contract.parse_epoch_dirname(contract.epoch_dirname(12)) == 12
    assert contract.parse_epoch_dirname(contract.staging_dirname(12, 1)) is None
    assert contract.parse_replaced_dirname(contract.replaced_dirname(4, "ab12")) == (4, "ab12")
    assert contract.parse_replaced_dirname("epoch=000004") is None
    # format 1.x names: still parsed (reading and migrating old stores), never written
    assert contract.epoch_dirname(3) == "epoch_000003" and contract.legacy_epoch_dirname(3) == "epoch=000003"
    assert contract.parse_legacy_epoch_dirname("epoch=000003") == 3
    assert contract.parse_epoch_dirname("epoch=000003") is None
    assert contract.parse_replaced_dirname(contract.legacy_replaced_dirname(4, "ab12")) == (4, "ab12")
    assert contract.parse_analysis_filename(contract.analysis_filename(7)) == 7
    names = contract.staging_dirname(3, 70) + contract.replaced_dirname(3, "c") + contract.analysis_filename(3)
    assert "=" not in names


def test_probe_path(tmp_path):
    store = new_store(tmp_path)
    assert store.probe_path == store.store_dir / contract.PROBE_FILE


def _private_store_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and "store" in node.module.split("."):
            found.extend(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in {"S", "lrp_store", "store_module"} and node.attr.startswith("_"):
                if not node.attr.startswith("__"):
                    found.append(f"{node.value.id}.{node.attr}")
    return found


def test_nobody_outside_the_store_uses_its_private_names():
    outside = [p for d in ("lrp_lightning", "tb_plugin", "callbacks") for p in (REPO / d).rglob("*.py")]
    outside = [p for p in outside if Path(S.__path__[0]) not in p.parents]
    leaks = {str(p.relative_to(REPO)): names for p in outside if (names := _private_store_imports(p))}
    assert leaks == {}
