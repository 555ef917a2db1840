"""One writer per store: the writer lock, and the run id that ties a store to one training.

Two trainings that write into one directory interleave their epochs, and the manifest ends up naming
one run's commit while the folder holds the other's. Two mechanisms prevent it.

Writer lock
-----------
:class:`WriterLock` holds an exclusive ``fcntl.flock`` on ``plugins/lrp/.writer.lock``
(:data:`~lrp_lightning.store.WRITER_LOCK_FILE`). A second writer gets :class:`StoreLockedError` at
once, naming the holder (pid, host, start time and run id, which the file holds for that message
only). ``flock`` and not a pid file created with ``O_EXCL``: the kernel drops a ``flock`` when the
process that holds it dies, however it dies (``SIGKILL``, out of memory), so a stale lock needs no
guess whether a pid is still alive, was reused, or lives on another host: the next writer simply gets
the lock and writes its own details over the dead one's.

* Acquire: open the file (``O_CREAT``), ``flock(LOCK_EX | LOCK_NB)``, then check that the path still
  names the locked file (a writer releasing meanwhile unlinks it; then try again), then write the
  holder's details into it.
* Release: unlink the file, then close it, which drops the lock. A finished run leaves no lock file;
  a crashed one leaves an unlocked file that the next writer takes over.

Scope. The lock excludes processes on one host, and processes on several hosts where the file
system implements ``flock`` across hosts (Linux NFS clients map it to NFS locks; Lustre needs the
``flock`` mount option). There, a lock of a host that died is dropped by the file server when that
host's lease runs out (NFSv4: about 90 s). Where the file system refuses locks (some FUSE mounts), or
without ``fcntl`` (Windows), the writer warns and goes on unprotected. Two :class:`WriterLock` objects
in one process exclude each other too (a ``flock`` belongs to an open file, not a process). Children
forked without ``exec`` (DataLoader workers under the ``fork`` start method) share the open file and
with it the lock; they end with their trainer.

Who takes it: the writers of attributions, for as long as they write (``LRPCallback`` on rank 0 for a
whole ``fit`` or ``validate``, ``LRPPredictionWriter`` on rank 0 during ``predict``); the other ranks
write their parts under rank 0's lock. ``lrp-analyze`` does not: it only writes derived tables, each
atomically, and may run while a training writes.

Run id
------
A store belongs to one training: its manifest names a run id (:data:`~lrp_lightning.store.RUN_ID_KEY`,
from :func:`new_run_id`). The callback keeps its run id in its checkpoint state, so a resume from a
checkpoint (``Trainer.fit(..., ckpt_path=...)``) carries the same id and continues the store, while a
new training into a used directory carries a new one and gets :class:`IncompatibleRunError` from
:meth:`RunStore.create <lrp_lightning.store.RunStore.create>` (:func:`check_run_id`), even with equal
settings.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import stat
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .contract import RUN_ID_KEY, WRITER_LOCK_FILE
from .epochs import _store_dir_for_create
from .errors import IncompatibleRunError, NotRegularFileError, StoreLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock", "check_run_id", "lock_holder", "new_run_id"]

_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def new_run_id() -> str:
    """Return a fresh run id: 32 random hex digits (from ``os.urandom``; no RNG stream is touched)."""
    return uuid.uuid4().hex


def lock_holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The details that the current (or last, if it died) holder wrote into a store's lock file.

    Parameters
    ----------
    path : path
        A run directory or its ``plugins/lrp`` directory.

    Returns
    -------
    dict or None
        ``{"pid", "host", "started", "run_id"}``, or None if there is no lock file (no writer, or
        one that finished) or it holds nothing readable yet.
    """
    lock_path = _store_dir_for_create(Path(path)) / WRITER_LOCK_FILE
    try:
        if not lock_path.is_file():  # never open anything else: a pipe would block
            return None
        data = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "a process that has not written its details yet"
    run = f", run id {holder['run_id']}" if holder.get("run_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')!r}, since {holder.get('started')}{run}"


class WriterLock:
    """Exclusive right to write a store's attributions, held by one live process (see the module doc).

    Parameters
    ----------
    path : path
        Run directory (the lock goes to ``<path>/plugins/lrp``) or the ``plugins/lrp`` directory;
        created if missing.
    run_id : str, optional
        Written into the lock file for the message another writer gets. Default: none.

    Raises
    ------
    StoreLockedError
        From :meth:`acquire`, when another live process (or another lock object) holds the lock.

    Examples
    --------
    >>> with WriterLock("runs/mnist/version_0"):               # doctest: +SKIP
    ...     store = RunStore.create("runs/mnist/version_0", heatmap_shape=(28, 28))
    """

    def __init__(self, path: str | os.PathLike[str], run_id: str | None = None) -> None:
        self.store_dir = _store_dir_for_create(Path(path))
        self.path = self.store_dir / WRITER_LOCK_FILE
        self.run_id = run_id
        self._fd: int | None = None
        self._created: list[Path] = []

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise :class:`StoreLockedError` at once (never waits).

        A lock file left by a writer that died is taken over. Without lock support (see the module
        doc) this warns and returns without a lock.
        """
        if self._fd is not None:
            return self
        missing = [p for p in (self.store_dir, *self.store_dir.parents) if not p.exists()]
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._created = missing[::-1]
        if fcntl is None:  # pragma: no cover - Windows
            warnings.warn(
                f"no writer lock on {self.store_dir}: this platform has no fcntl.flock; make sure no other "
                "training writes into this directory",
                RuntimeWarning,
                stacklevel=2,
            )
            return self
        for _ in range(100):  # each retry means another writer released (unlinked) the file meanwhile
            flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.path, flags, 0o644)  # O_NONBLOCK: a planted named pipe must not hang us
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise NotRegularFileError(f"{self.path} is not a regular file; remove it to write into this store")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StoreLockedError(
                        f"another writer is writing into {self.store_dir}: {_describe(lock_holder(self.store_dir))} "
                        f"holds {self.path}. Two trainings in one store would mix their epochs. Write to "
                        "another directory (another dirpath, or a new logger version), or wait until that "
                        "process has ended; a lock of a process that died is taken over by itself."
                    ) from None
                if exc.errno in _UNSUPPORTED:
                    warnings.warn(
                        f"no writer lock on {self.store_dir}: the file system does not support flock ({exc}); "
                        "make sure no other training writes into this directory",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    return self
                raise
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                break
            os.close(fd)  # locked a file that its releasing holder had just unlinked: lock the new one
        else:  # pragma: no cover - 100 writers releasing in a row
            raise StoreLockedError(f"could not lock {self.path}: it keeps being replaced by other writers")
        self._fd = fd
        details = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run_id": self.run_id,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(details).encode(), 0)
        return self

    def release(self) -> None:
        """Drop the lock and remove the lock file (and the store directory if it stayed empty)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink()  # before closing: nobody may lock this file while it has the name
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
        for directory in reversed(self._created):  # a writer that wrote nothing leaves nothing
            try:
                directory.rmdir()
            except OSError:
                break
        self._created = []

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"WriterLock({str(self.store_dir)!r}, held={self.held})"


def check_run_id(manifest: Mapping[str, Any], run_id: str | None, source: Path, *, adopt: bool = False) -> bool:
    """Check that a writer of training ``run_id`` may write into the store of ``manifest``.

    Parameters
    ----------
    manifest : mapping
        The existing store's manifest.
    run_id : str or None
        The writer's run id; None skips the check (stores not tied to a training, e.g. dataset-wide
        attributions).
    source : pathlib.Path
        The store directory, for the message.
    adopt : bool, default False
        Accept a store without a run id (format 1.0, written before run ids), as a resume from a
        checkpoint of that version does.

    Returns
    -------
    bool
        True if the manifest must be given ``run_id`` (an adopted store without one).

    Raises
    ------
    IncompatibleRunError
        If the store belongs to another training; the message names the options.
    """
    if run_id is None:
        return False
    found = manifest.get(RUN_ID_KEY)
    if found == run_id:
        return False
    if found is None and adopt:
        return True
    owner = f"training {found}" if found else "a training without a run id (written before run ids existed)"
    raise IncompatibleRunError(
        f"{source} already holds the lrp-lightning store of {owner}, not of this one ({run_id}); a "
        "store belongs to one training, and only a resume from that training's checkpoint "
        "(trainer.fit(model, ckpt_path=...)) continues it. Write this training to another directory (a new "
        "logger version, or another dirpath), resume that training from its checkpoint, or move "
        f"{source} away to start a new store there. Existing data is never replaced."
    )
