"""Zennit 0.5.1's own test suite, unchanged, run against lrp_lightning by aliasing the modules.

The suite comes from the zennit 0.5.1 source distribution, which pip downloads at test time
(``pip download --no-deps --no-binary :all: zennit==0.5.1``) into a cache folder
(``$LRP_ZENNIT_SUITE_CACHE``, by default ``~/.cache/lrp-lightning``). It is not vendored: Zennit is
LGPL-3.0 and this project MIT, and keeping Zennit's files out of the repository keeps the licences apart.
Without the sdist (no network, no pip) the test skips and says why.

A pytest subprocess runs Zennit's ``tests`` folder with the plugin ``tests/lrp/zennit_suite/zennit_alias.py``,
which maps ``zennit.<module>`` to ``lrp_lightning.<module>`` in ``sys.modules`` and marks the deliberate
differences (``tests/lrp/zennit_suite/differences.py``) as strict expected failures. Every other test must
pass. By default it runs the CI subset (``LRP_ZENNIT_SUBSET=ci``, 2,648 tests: one seed, the 14 linear
layers with 3 channels and kernel size 3); ``LRP_ZENNIT_SUBSET=full`` runs all 21,548 of Zennit's
``-m "not extended"`` tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VERSION = "0.5.1"
SUITE_DIR = Path(__file__).parent / "zennit_suite"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _cache_dir() -> Path:
    return Path(os.environ.get("LRP_ZENNIT_SUITE_CACHE", Path.home() / ".cache" / "lrp-lightning"))


def _zennit_tests() -> Path:
    """Zennit's ``tests`` folder from the sdist, downloaded and unpacked once; skips when pip cannot get it."""
    root = _cache_dir() / f"zennit-{VERSION}"
    if (root / "tests" / "conftest.py").is_file():
        return root / "tests"
    _cache_dir().mkdir(parents=True, exist_ok=True)
    archive = _cache_dir() / f"zennit-{VERSION}.tar.gz"
    if not archive.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += [f"zennit=={VERSION}", "-d", str(_cache_dir()), "-q"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"cannot download the zennit {VERSION} sdist for its test suite: {error}")
        if done.returncode != 0 or not archive.is_file():
            pytest.skip(
                f"cannot download the zennit {VERSION} sdist for its test suite (pip download failed: "
                f"{done.stderr.strip().splitlines()[-1:] or done.returncode}); it needs network access to PyPI"
            )
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"zennit-{VERSION}/tests/") and m.isfile()]
        try:
            tar.extractall(_cache_dir(), members=members, filter="data")
        except TypeError:  # a Python without extraction filters (3.10 before 3.10.12)
            tar.extractall(_cache_dir(), members=members)
    return root / "tests"


def test_zennit_suite_passes(tmp_path, record_property):
    tests = _zennit_tests()
    report = tmp_path / "report.json"
    subset = os.environ.get("LRP_ZENNIT_SUBSET", "ci")
    env = dict(os.environ, LRP_ZENNIT_REPORT=str(report), LRP_ZENNIT_SUBSET=subset)
    env["PYTHONPATH"] = os.pathsep.join([str(SUITE_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", str(tests), "-p", "zennit_alias", "-p", "no:cacheprovider"]
    command += [
        "-m",
        "not extended",
        "-q",
        "-W",
        "ignore",
        "--tb=short",
        "-o",
        "addopts=",
        "--rootdir",
        str(tests.parent),
    ]
    done = subprocess.run(command, cwd=tests.parent, env=env, capture_output=True, text=True, timeout=1800)
    assert report.is_file(), f"Zennit's suite did not run:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    counts = json.loads(report.read_text())
    summary = (
        f"Zennit {VERSION}'s suite ({subset} subset) against lrp_lightning: {counts['passed']} passed, "
        f"{counts['xfailed']} deliberate differences, {counts['failed'] + counts['error']} failed"
    )
    print(summary)
    record_property("zennit_suite", summary)  # tests/conftest.py prints it in the run's summary
    assert not counts["failed_ids"], f"{summary}:\n" + "\n".join(counts["failed_ids"][:50]) + "\n" + done.stdout[-6000:]
    assert counts["passed"] > 0 and done.returncode == 0, done.stdout[-6000:]
