"""Test-wide settings."""

import os

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
