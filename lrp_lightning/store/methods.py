"""Several attribution methods and named analyses per run: the :class:`RunStore` methods that pick them.

A run's manifest lists its attribution methods (:data:`~lrp_lightning.store.METHODS_KEY`, format 2.2),
the first being the default; a store of an older version has one method, named by its composite. Every
read of attributions takes a ``method`` (default: the store's selected method, at first the run's
first). :meth:`RunStore.select <_Methods.select>` gives a view of the same store with another method
and/or named analysis selected: its reads default to that method, and its analysis tables live in that
analysis' own folder (:func:`~lrp_lightning.store.analysis_dirname`), so the analysis pipeline, the CLI
and the plugin work on any (method, analysis) pair unchanged.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .contract import (
    ANALYSES_DIR,
    ANALYSIS_DIR,
    DEFAULT_ANALYSIS,
    DEFAULT_METHOD,
    METHOD,
    METHODS_KEY,
    analysis_dirname,
)

__all__ = ["check_name", "method_names"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _method_groups(table: pa.Table) -> list[pa.Table]:
    """``table``'s rows by attribution method: one table per method, in the order the methods first
    appear, each with its rows in ``table``'s order; ``[table]`` when it has one method (or no column).

    Parts are written one group after the other, so that no row group holds two methods' rows: a read
    of one method skips the others' row groups (by the method column, read first), where a row group
    that mixes methods is read whole, every method's maps in it. Parts written before (mixed row
    groups) read as they did.
    """
    if METHOD not in table.column_names or table.num_rows == 0:
        return [table]
    names, codes = np.unique(table.column(METHOD).to_numpy(zero_copy_only=False), return_inverse=True)
    if len(names) == 1:
        return [table]
    first_rows = [int(np.argmax(codes == code)) for code in range(len(names))]
    return [table.filter(pa.array(codes == code)) for code in np.argsort(first_rows, kind="stable")]


def check_name(name: Any, what: str) -> str:
    """``name`` if it can name a method or an analysis (it becomes a folder name), else ValueError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.' "
            "and '-' (at most 64 characters), e.g. 'epsilon_plus_flat' or 'coarse'"
        )
    return name


def method_names(manifest: dict[str, Any]) -> list[str]:
    """The run's method names in order: :data:`METHODS_KEY`, or the one composite of an older store."""
    methods = manifest.get(METHODS_KEY)
    if isinstance(methods, list) and methods:
        return [str(m["name"]) if isinstance(m, dict) else str(m) for m in methods]
    composite = manifest.get("composite")
    if isinstance(composite, dict) and isinstance(composite.get("name"), str):
        return [composite["name"]]
    if isinstance(composite, str):
        return [composite]
    return [DEFAULT_METHOD]


def _check_methods(methods: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The manifest's methods: a list of dicts with unique, folder-safe names (or None)."""
    if methods is None:
        return None
    if isinstance(methods, (str, Mapping)) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"methods must be a non-empty list of dicts with a 'name', got {methods!r}")
    result = []
    for method in methods:
        if not isinstance(method, Mapping) or "name" not in method:
            raise ValueError(f"each method must be a dict with a 'name', got {method!r}")
        result.append({**method, "name": check_name(method["name"], "method")})
    names = [m["name"] for m in result]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"method names must be unique; {repeated} repeat")
    return result


class _Methods:
    """Mixin of :class:`~lrp_lightning.store.RunStore`: its methods and named analyses."""

    _method: str | None = None
    _analysis: str = DEFAULT_ANALYSIS

    @property
    def methods(self) -> list[str]:
        """The run's attribution methods in order; the first is the default of every read."""
        return method_names(self._manifest_data())

    @property
    def method(self) -> str:
        """The method that reads default to (see :meth:`select`)."""
        return self._method if self._method is not None else self.methods[0]

    @property
    def analysis_name(self) -> str:
        """The named analysis whose tables this store object reads and writes (see :meth:`select`)."""
        return self._analysis

    def _method_key(self, method: str | None) -> tuple[str, str] | None:
        """(wanted method, first method) for the epoch reader; an unknown method names the known ones."""
        methods = self.methods
        wanted = self.method if method is None else method
        if wanted not in methods:
            raise ValueError(
                f"method {wanted!r} is not one of this run's attribution methods {methods}; pass one of them "
                "(RunStore.methods lists them)"
            )
        return wanted, methods[0]

    @property
    def _analysis_root(self) -> str:
        return analysis_dirname(self._analysis, self.method, self.methods[0])

    def select(self, method: str | None = None, analysis: str | None = None) -> Any:
        """A view of this store with ``method`` and/or the named ``analysis`` selected.

        Reads of attributions default to ``method``, and analysis tables are read and written in the
        folder of (``analysis``, ``method``). Arguments left out keep this object's selection.

        Raises
        ------
        ValueError
            If ``method`` is not one of :attr:`methods`, or ``analysis`` is not a valid name.
        """
        view = copy.copy(self)
        if method is not None:
            self._method_key(method)
            view._method = method
        if analysis is not None:
            view._analysis = check_name(analysis, "analysis")
        return view

    def analyses(self) -> list[str]:
        """Names of the analyses found in the store (folders with tables), the default one first."""
        names = []
        if (self._store_dir / ANALYSIS_DIR).is_dir():
            names.append(DEFAULT_ANALYSIS)
        root = self._store_dir / ANALYSES_DIR
        try:
            found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False))
        except OSError:
            found = []
        names.extend(name for name in found if _NAME_RE.fullmatch(name) and name not in names)
        return names
