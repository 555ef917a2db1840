"""Test-wide settings, and a guard against composites left registered after a test."""

import gc
import os
import sys
import warnings

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on two cores: one torch thread each avoids oversubscription,
    # which otherwise makes small CPU models tens of times slower.
    import torch

    torch.set_num_threads(1)


def pytest_terminal_summary(terminalreporter):
    """Print the pass count of Zennit's suite (tests/lrp/test_zennit_suite.py), also from xdist workers."""
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "zennit_suite":
                    terminalreporter.write_line(value)


@pytest.fixture(autouse=True)
def _no_composite_left_registered(request):
    """Catch a test that leaves a composite registered on a model after it ends.

    A registered rule keeps an entry per module in the weight cache (``lrp_lightning._weight_cache``),
    dropped when the composite is removed or the model is freed. An entry new since the test began is a
    registration the test never removed: on a model something still holds (a global, a module-scoped
    fixture) the test fails, since later tests would compute through its rules; on a model that is garbage
    in a reference cycle (it lingers until the next collection, making checks of the cache order-dependent)
    a warning names the test, and a collection clears it. Cheap: between tests the cache is empty, so the
    common case is one look at an empty dictionary.
    """
    cache = sys.modules.get("lrp_lightning._weight_cache")
    before = set() if cache is None else {id(module) for module in cache._DERIVED.keys()}
    yield
    cache = sys.modules.get("lrp_lightning._weight_cache")
    if cache is None or all(id(module) in before for module in cache._DERIVED.keys()):
        return
    gc.collect()
    left = [module for module in cache._DERIVED.keys() if id(module) not in before]
    if left:
        names = sorted({type(module).__name__ for module in left})
        pytest.fail(
            f"{request.node.nodeid} left a composite registered on a live model ({len(left)} modules: "
            f"{', '.join(names[:6])}); remove it (composite.remove(), or register it in a with block)",
            pytrace=False,
        )
    warnings.warn(
        f"{request.node.nodeid} left a composite registered on its model (freed only by garbage collection); "
        "remove it (composite.remove(), or register it in a with block)",
        stacklevel=1,
    )
