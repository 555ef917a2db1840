"""Packaging: the package layout, the version in one place, every imported package declared."""

import ast
import importlib
import re
import sys
from importlib.metadata import distributions, packages_distributions, version
from pathlib import Path

import lrp_lightning

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The folders that the wheel ships as lrp_lightning, lrp_lightning.callbacks and lrp_lightning.tb_plugin.
SOURCE_DIRS = ("lrp_lightning", "callbacks", "tb_plugin")


def test_subpackages_map_to_top_level_folders():
    callbacks = importlib.import_module("lrp_lightning.callbacks")
    plugin = importlib.import_module("lrp_lightning.tb_plugin")
    assert Path(callbacks.__file__).resolve().parent == ROOT / "callbacks"
    assert Path(plugin.__file__).resolve().parent == ROOT / "tb_plugin"


# ------------------------------------------------------------------------------------------ version


def test_version_is_written_once_in_the_package():
    project = PYPROJECT["project"]
    assert "version" not in project, "pyproject.toml repeats the version; it comes from lrp_lightning.__version__"
    assert "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lrp_lightning.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", lrp_lightning.__version__)
    literal = re.compile(r"""["']""" + re.escape(lrp_lightning.__version__) + r"""["']""")
    holders = [
        path.relative_to(ROOT).as_posix()
        for folder in (*SOURCE_DIRS, "tests", "examples", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if literal.search(path.read_text())
    ]
    holders += ["pyproject.toml"] if literal.search((ROOT / "pyproject.toml").read_text()) else []
    assert holders == ["lrp_lightning/__init__.py"]


def test_installed_metadata_carries_the_package_version():
    # The editable install's metadata was built from [tool.setuptools.dynamic]; a stale install differs.
    assert version("lrp-lightning") == lrp_lightning.__version__


def test_license_is_an_spdx_expression_with_its_file():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # PEP 639's string form needs setuptools 77; an older backend rejects or misreads it.
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


# ------------------------------------------------------------------------------------------ dependencies


def _requirement_name(requirement: str) -> str:
    """``"scikit-learn>=1.3"`` -> ``"scikit-learn"``; names normalised as in PEP 503."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


# Standard library on the newer Pythons that requires-python admits; older ones get a declared backport.
STDLIB = set(sys.stdlib_module_names) | {"tomllib"}


def _providers(module: str, known: dict[str, list[str]]) -> list[str]:
    """Names of the installed distributions that provide top-level ``module`` (``[module]`` if none)."""
    if module in known:
        return known[module]
    # Python 3.10's packages_distributions() reads only top_level.txt, which some wheels (scikit-learn,
    # protobuf) lack; their RECORD lists the module's files.
    found = [
        distribution.metadata["Name"]
        for distribution in distributions()
        if re.search(rf"^{re.escape(module)}(/|\.py,)", distribution.read_text("RECORD") or "", re.MULTILINE)
    ]
    return found or [module]


def _third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> files of the shipped sources that import it (deferred imports included)."""
    local = {"lrp_lightning", *SOURCE_DIRS}
    found: dict[str, list[str]] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in STDLIB and top not in local and top != "__future__":
                        found.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_import_scan_sees_the_known_imports():
    # Guards the scanner itself: these are imported at module level, in functions and under try.
    imports = _third_party_imports()
    assert {"torch", "numpy", "pyarrow", "scipy", "werkzeug", "google", "pynndescent", "tomli"} <= set(imports)
    assert "json" not in imports and "lrp_lightning" not in imports


def test_every_imported_package_is_declared():
    declared = {_requirement_name(requirement) for requirement in PYPROJECT["project"]["dependencies"]}
    known = packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        # A module that is not installed here (tomli on Python >= 3.11) is its own distribution's name.
        candidates = {_requirement_name(name) for name in _providers(module, known)}
        if not candidates & declared:
            undeclared[module] = (sorted(candidates), sorted(set(files)))
    assert not undeclared, f"imported but not in [project] dependencies of pyproject.toml: {undeclared}"


# ------------------------------------------------------------------------------------------ pre-commit


def test_pre_commit_hooks_run_the_venv_ruff_check_and_format(tmp_path):
    import shlex
    import subprocess

    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # nothing to download when they run
    assert set(hooks) == {"ruff-check", "ruff-format"}
    source = tmp_path / "bad.py"
    source.write_text("import os\nx=1;y =2\n")
    outcomes = {}
    for name, hook in hooks.items():
        program, *arguments = shlex.split(hook["entry"])
        assert program == ".venv/bin/python" and hook["language"] == "system"  # the venv `make install` makes
        done = subprocess.run([sys.executable, *arguments, str(source)], cwd=ROOT, capture_output=True, text=True)
        outcomes[name] = (done.returncode, done.stdout + done.stderr)
    assert outcomes["ruff-check"][0] == 1 and "F401" in outcomes["ruff-check"][1]  # `os` imported but unused
    assert outcomes["ruff-format"][0] == 0 and source.read_text() == "import os\n\nx = 1\ny = 2\n"
