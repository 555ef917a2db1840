"""Atomic file I/O: a file appears complete or not at all, and stays on disk once it appeared.

Every file of a store is written through :func:`atomic_write`: into a temp file next to it (a name
starting with ``.``, which readers ignore), ``fsync``, ``os.replace`` onto the final name, then
``fsync`` of the directory so the rename itself survives a power loss. Directories are only ever
created complete and moved into place with :func:`move_dir`. Other writers of run files (the
TensorBoard scalars of ``lrp-analyze``) use the same functions.

Reading opens regular files only (:func:`open_regular`, :func:`read_regular`, :func:`open_input_file`):
a named pipe in place of a store file would otherwise block its reader forever, and a directory or
device there would give a confusing error. A symbolic link is followed only while it stays inside the
run directory (:class:`~lrp_lightning.store.LinkOutsideRunError` otherwise), so a planted link cannot
make a reader, or the TensorBoard plugin, serve another file of the machine.

The other modules of the store call these functions through this module (``fileio.move_dir``), so a
test can make one of them fail everywhere by patching it here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .contract import COMPRESSION, MANIFEST_FILE, STORE_SUBDIR
from .errors import LinkOutsideRunError, NotRegularFileError, StoreError

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_parquet_groups",
    "fsync_dir",
    "fsync_file",
    "move_dir",
    "open_input_file",
    "open_regular",
    "read_regular",
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
    """Write ``table`` to ``path`` atomically, compressed and checksummed as the store's files are.

    Every page carries a CRC-32 (``write_page_checksum``), which readers verify. ``options`` go to pyarrow.
    """
    options = {"compression": COMPRESSION, "write_page_checksum": True, **options}
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, **options))


def atomic_write_parquet_groups(tables: Sequence[pa.Table], path: Path, *, row_group_size: int, **options: Any) -> None:
    """Write ``tables`` (one schema) to one file at ``path`` atomically, as :func:`atomic_write_parquet` does,
    each table in row groups of its own (at most ``row_group_size`` rows), so no row group mixes two tables."""
    options = {"compression": COMPRESSION, "write_page_checksum": True, **options}

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, tables[0].schema, **options) as writer:
            for table in tables:
                writer.write_table(table, row_group_size=row_group_size)

    atomic_write(path, write)


def move_dir(src: Path, dst: Path) -> None:
    """Rename a complete directory into place; refuses to replace an existing ``dst``."""
    if dst.exists():  # os.replace would silently replace an empty directory
        raise StoreError(f"cannot move {src} to {dst}: the destination exists")
    os.replace(src, dst)
    fsync_dir(dst.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_DEV_FD = Path("/dev/fd")
_HAS_DEV_FD = os.name == "posix" and _DEV_FD.is_dir()


def _not_regular(path: Path, mode: int) -> NotRegularFileError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return NotRegularFileError(
        f"{path} is {kind}, not a regular file. lrp-lightning writes only regular files there, so "
        "something else replaced it; remove it, and re-run what wrote it (the attribution of its epoch, "
        "or lrp-analyze for an analysis table).",
    )


def _run_root(path: Path) -> Path | None:
    """The run directory a store file belongs to: the directory above ``plugins/lrp`` in its path, else
    the nearest directory above it that holds a manifest (a store opened by its own directory)."""
    parts = Path(os.path.abspath(path)).parts
    for index in range(len(parts) - 2, 0, -1):
        if parts[index : index + 2] == STORE_SUBDIR.parts:
            return Path(*parts[:index])
    for parent in list(Path(*parts).parents)[:4]:
        if os.path.lexists(parent / MANIFEST_FILE):
            return parent
    return None


def _resolve_inside_run(path: Path) -> str:
    """The real path of ``path``, refusing one that a symbolic link leads out of its run directory.

    Links inside the run are followed; a link (of the file or of a directory on the way) that leaves
    the run would let a store serve any file of the machine, e.g. through the TensorBoard plugin.
    """
    real = os.path.realpath(path)
    root = _run_root(path)
    if root is None:
        return real
    inside = os.path.realpath(root)
    if os.path.commonpath([real, inside]) != inside:
        raise LinkOutsideRunError(
            f"{path} is a symbolic link (or lies below one) that leads outside its run directory {root}; "
            "lrp-lightning reads only files inside the run. Replace the link by a copy of the file, or "
            "move the run to where its files are."
        )
    return real


def open_regular(path: Path) -> int:
    """Open an existing file for reading and return its descriptor, refusing anything but a regular file.

    Never blocks: the file is opened non-blocking and checked with ``fstat`` before anything reads it.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    NotRegularFileError
        If a named pipe, directory, socket or device is at ``path``.
    LinkOutsideRunError
        If a symbolic link leads from ``path`` out of its run directory.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    real = _resolve_inside_run(path)
    try:
        fd = os.open(real, flags | getattr(os, "O_NOFOLLOW", 0))  # a link swapped in since is refused
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EISDIR, errno.EACCES):  # a socket; a directory (Windows)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                raise exc from None
            if not stat.S_ISREG(mode):
                raise _not_regular(path, mode) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path) -> bytes:
    """Read a whole regular file (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return handle.read()


def open_input_file(path: Path) -> pa.NativeFile:
    """Open a regular file as an Arrow input file (see :func:`open_regular`).

    The file opened is the one checked: on POSIX systems it is opened again through ``/dev/fd``, which
    keeps Arrow's fast native reads; elsewhere Arrow reads through the checked Python file object.
    Like any open file, it stays readable after a concurrent rename or delete (POSIX).
    """
    fd = open_regular(path)
    if _HAS_DEV_FD:
        try:
            return pa.OSFile(str(_DEV_FD / str(fd)), "r")
        finally:
            os.close(fd)
    return pa.PythonFile(os.fdopen(fd, "rb"), mode="r")  # pragma: no cover - platforms without /dev/fd
