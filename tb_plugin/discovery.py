"""Which runs below TensorBoard's logdir hold an lrp-lightning store.

:class:`RunIndex` walks the logdir with :func:`lrp_lightning.store.find_runs` in a background thread
and keeps the result; nothing that a request calls waits for a walk. A run is named as TensorBoard
names it: its directory relative to the logdir, with ``/`` separators (``"."`` for the logdir
itself). Requests may only name runs from the last scan, so no path is ever built from request text.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from lrp_lightning.store import RunStore, StoreError, find_runs

__all__ = ["RunIndex", "RunNotFound", "RunUnreadable"]

logger = logging.getLogger(__name__)


class RunNotFound(LookupError):
    """The run name is not one the last scan found."""


class RunUnreadable(LookupError):
    """The run was found but its store cannot be opened (the message says why)."""


class RunIndex:
    """Runs below a logdir, rescanned in the background.

    Parameters
    ----------
    logdir : str or path, optional
        TensorBoard's ``--logdir``. None, empty or a remote URL (``gs://...``): no runs.
    interval : float, optional
        Minimum seconds between two scans (default 10). A scan starts when :meth:`names`,
        :meth:`get` or :meth:`is_active` is called and the last one is older than this.
    start : bool, optional
        Start the first scan at once (default True).
    """

    def __init__(self, logdir: str | os.PathLike[str] | None, interval: float = 10.0, start: bool = True) -> None:
        text = os.fspath(logdir) if logdir else ""
        self._root: Path | None = Path(text).expanduser().resolve() if text and "://" not in text else None
        if text and self._root is None:
            logger.warning("LRP plugin: logdir %r is not a local directory; the LRP tab stays empty.", text)
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._runs: dict[str, Path] = {}
        self._stores: dict[str, RunStore] = {}
        self._scanned_at: float | None = None
        self._scan_started_at = -float("inf")
        self._thread: threading.Thread | None = None
        self._first_scan = threading.Event()
        if self._root is None:
            self._first_scan.set()
        elif start:
            self._start_scan()

    # ------------------------------------------------------------------------------ scanning

    def _start_scan(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._scan_started_at = time.monotonic()
            self._thread = threading.Thread(target=self._scan, name="lrp-plugin-scan", daemon=True)
            self._thread.start()

    def _maybe_rescan(self) -> None:
        if self._root is not None and time.monotonic() - self._scan_started_at >= self.interval:
            self._start_scan()

    def _scan(self) -> None:
        assert self._root is not None
        try:
            found = find_runs(self._root) if self._root.is_dir() else []
            runs = {self._name(path): path for path in found}
        except OSError:
            logger.warning("LRP plugin: scanning %s failed; keeping the previous run list.", self._root, exc_info=True)
            runs = None
        with self._lock:
            if runs is not None:
                self._stores = {name: store for name, store in self._stores.items() if runs.get(name) == store.run_dir}
                self._runs = runs
            self._scanned_at = time.time()
        self._first_scan.set()

    def _name(self, path: Path) -> str:
        assert self._root is not None
        relative = path.relative_to(self._root).as_posix()
        return relative or "."

    def scan_now(self) -> None:
        """Scan in the calling thread (for tests and tools; requests never call this)."""
        if self._root is not None:
            self._scan_started_at = time.monotonic()
            self._scan()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the first scan finished; return whether it did within ``timeout`` seconds."""
        return self._first_scan.wait(timeout)

    # ------------------------------------------------------------------------------ reading

    @property
    def root(self) -> Path | None:
        """The resolved logdir, or None when the plugin has none."""
        return self._root

    @property
    def scanned_at(self) -> float | None:
        """Wall-clock time of the last finished scan (None before the first)."""
        return self._scanned_at

    def is_active(self) -> bool:
        """Whether the last scan found a run; never waits for a scan."""
        self._maybe_rescan()
        return bool(self._runs)

    def names(self) -> list[str]:
        """Run names of the last scan, sorted."""
        self._maybe_rescan()
        return sorted(self._runs)

    def get(self, name: Any) -> RunStore:
        """The store of a run the last scan found.

        Raises
        ------
        RunNotFound
            If ``name`` is not such a run.
        RunUnreadable
            If the run's manifest cannot be read (damaged, or a newer major format).
        """
        self._maybe_rescan()
        path = self._runs.get(name) if isinstance(name, str) else None
        if path is None:
            raise RunNotFound(name)
        store = self._stores.get(name)
        if store is None:
            try:
                store = RunStore(path)
            except (StoreError, OSError) as exc:
                raise RunUnreadable(self.redact(str(exc))) from exc
            with self._lock:
                if self._runs.get(name) == path:
                    self._stores[name] = store
        return store

    def redact(self, message: str) -> str:
        """Replace the logdir's absolute path in a message by ``<logdir>`` (error texts go to the client)."""
        if self._root is None:
            return message
        return message.replace(str(self._root) + os.sep, "").replace(str(self._root), "<logdir>")
