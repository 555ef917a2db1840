"""Reading analysis configurations from JSON or TOML files (``lrp-analyze --config FILE``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RUN_OPTIONS", "load_config"]

RUN_OPTIONS = ("include_all", "category_by", "nonfinite")
"""Keys of a config file that are options of :func:`analyze_epoch`, not of :class:`SpRAy`."""


def load_config(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Read a JSON (``.json``) or TOML (any other suffix) analysis configuration.

    The file holds a table per step (``preprocess``, ``affinity``, ``spectral``, ``clusterings``,
    ``embeddings``, ``indicators``, ``tracking``, ``findings``) with that step's constructor keywords,
    optionally ``random_state`` and ``min_category_size``, and the run options ``include_all``,
    ``category_by`` and ``nonfinite``. For example (TOML)::

        random_state = 1
        [clusterings]
        k_range = [2, 6]
        methods = ["kmeans", "components"]
        [embeddings]
        methods = ["tsne", "pca"]
        scope = "all"      # t-SNE for every category; default "flagged": all samples and flagged classes
        [findings]
        alpha = 0.05     # false-discovery rate over every tested cluster
        min_size = 5     # least cluster size (and min_fraction = 0.02 of the category)

    ``lrp-analyze --embeddings all`` sets ``embeddings.scope`` without a file.

    Returns
    -------
    spray : SpRAy
        The pipeline.
    options : dict
        Run options found in the file.

    Raises
    ------
    ValueError
        If the file cannot be parsed or holds unknown keys or bad values; the message names them.
    """
    from .spray import SpRAy

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise ValueError(
                    f"{path}: reading TOML needs Python 3.11 or `pip install tomli`; or write the config as JSON"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} must hold a table of settings, got {type(data).__name__}")
    options = {k: data[k] for k in RUN_OPTIONS if k in data}
    pipeline = {k: v for k, v in data.items() if k not in RUN_OPTIONS}
    try:
        spray = SpRAy.from_config(pipeline)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return spray, options
