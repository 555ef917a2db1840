"""UMAP's numba functions are cached on disk, so a new process loads them instead of compiling."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from lrp_lightning.analysis import Embeddings, KNNGraph, planted_maps
from lrp_lightning.analysis.embedding import _UMAP_JITTED, enable_numba_cache


def test_umap_functions_compiled_by_a_fit_are_written_to_numba_s_disk_cache():
    maps, _ = planted_maps(n_samples=60, n_groups=3, shape=(8, 8), random_state=2)
    data = maps.reshape(60, -1)
    Embeddings(methods=("umap",), umap_n_epochs=20).fit_transform(data, neighbors=KNNGraph().neighbors(data, 15))
    assert enable_numba_cache() == []  # switched on once, by the first UMAP; a second call changes nothing
    for module_name, names in _UMAP_JITTED.items():
        module = importlib.import_module(module_name)
        for name in names:
            function = getattr(module, name)
            if not function.signatures:
                continue  # not needed by this fit (the layout calls clip only through its caller's code)
            cache = function._cache
            assert type(cache).__name__ == "FunctionCache", f"{module_name}.{name} is not cached"
            # the index numba writes next to the compiled code: what the next process loads
            stem = f"{Path(module.__file__).stem}.{function.py_func.__name__}-"
            index = [p for p in Path(cache._cache_path).glob(f"{stem}*.nbi")]
            assert index, f"no cache index for {module_name}.{name} in {cache._cache_path}"
            assert np.all([p.stat().st_size > 0 for p in index])
