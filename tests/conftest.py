"""Test-wide settings."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on two cores: one torch thread each avoids oversubscription,
    # which otherwise makes small CPU models tens of times slower.
    import torch

    torch.set_num_threads(1)
