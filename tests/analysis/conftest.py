"""Fixtures of the analysis tests (helpers are in spray_helpers.py)."""

from __future__ import annotations

import pytest
import scipy.linalg  # noqa: F401 - load BLAS and OpenMP before limiting their threads
import sklearn.cluster  # noqa: F401
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _one_thread_per_worker():
    """pytest -n 2 on 2 cores: one thread per worker avoids oversubscription."""
    with threadpool_limits(1):
        yield
