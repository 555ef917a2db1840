"""Atomic file I/O: a file appears complete or not at all, and stays on disk once it appeared.

Every file of a store is written through :func:`atomic_write`: into a temp file next to it (a name
starting with ``.``, which readers ignore), ``fsync``, ``os.replace`` onto the final name, then
``fsync`` of the directory so the rename itself survives a power loss. Directories are only ever
created complete and moved into place with :func:`move_dir`. Other writers of run files (the
TensorBoard scalars of ``lrp-analyze``) use the same functions.

The other modules of the store call these functions through this module (``fileio.move_dir``), so a
test can make one of them fail everywhere by patching it here.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .contract import COMPRESSION
from .errors import StoreError

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "atomic_write_parquet",
    "fsync_dir",
    "fsync_file",
    "move_dir",
    "remove_tree",
    "temp_path",
]


def temp_path(path: Path) -> Path:
    """Return a fresh hidden temp name next to ``path`` (unique per process and call)."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through ``write(tmp_path)``, fsync, then ``os.replace`` into place.

    On any error (or interrupt) the temp file is removed and ``path`` is unchanged.
    """
    tmp = temp_path(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_parquet(table: pa.Table, path: Path, **options: Any) -> None:
    """Write ``table`` to ``path`` atomically, compressed as the store's files are; ``options`` go to pyarrow."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression=COMPRESSION, **options))


def move_dir(src: Path, dst: Path) -> None:
    """Rename a complete directory into place; refuses to replace an existing ``dst``."""
    if dst.exists():  # os.replace would silently replace an empty directory
        raise StoreError(f"cannot move {src} to {dst}: the destination exists")
    os.replace(src, dst)
    fsync_dir(dst.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
