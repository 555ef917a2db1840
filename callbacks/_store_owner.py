"""Which store a training writes to, and holding it: the run id, the writer lock and resuming.

:class:`StoreOwner` keeps what :class:`~lrp_lightning.callbacks.LRPCallback` knows about the store it
owns: the run id of the training it writes for (kept in the checkpoint, checked against the store's
manifest), the store directory recorded in the checkpoint it resumed from (a resume with a new logger
version goes on writing into that one store) and, on rank 0 while fitting or validating, the store's
:class:`~lrp_lightning.store.WriterLock`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lrp_lightning.store import MANIFEST_FILE, STORE_SUBDIR, RunStore, WriterLock, check_run_id, new_run_id

STATE_VERSION = 2
"""Version 2 added the run id and the store directory; version 1 states (lrp-lightning 0.1) have neither."""


class StoreOwner:
    """The run id, the recorded store and the writer lock of one callback.

    Parameters
    ----------
    owner
        The callback's name, for messages.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.run_id: str | None = None  # the training the callback writes for; kept in the checkpoint
        self.recorded: str | None = None  # the store recorded in the checkpoint resumed from
        self.legacy = False  # resumed from a version 1 state: its store has no run id yet
        self.lock: WriterLock | None = None  # rank 0, while fitting or validating
        self.claimed = False

    def state_dict(self, store_dir: Path | None) -> dict[str, Any]:
        """The checkpoint entries about the store: the state version, the run id and the store directory."""
        return {
            "version": STATE_VERSION,
            "run_id": self.run_id,
            "store_dir": None if store_dir is None else os.path.abspath(store_dir),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the run id and the recorded store of a (non-empty) callback state from a checkpoint."""
        self.legacy = "run_id" not in state_dict
        self.run_id = state_dict.get("run_id") or self.run_id
        self.recorded = state_dict.get("store_dir")

    def claim(
        self,
        trainer: pl.Trainer,
        dirpath: str | os.PathLike[str] | None,
        sync_errors: Callable[[BaseException | None, str], None],
    ) -> Path | None:
        """Choose the store, take its writer lock (rank 0) and check it is this training's; collective.

        Once per ``fit`` or ``validate``, after the checkpoint (if any) was loaded. Returns the store
        directory, or None when the store is already claimed (or under ``fast_dev_run``).
        ``sync_errors(error, what)`` raises on every rank when any rank failed.
        """
        if self.claimed or trainer.fast_dev_run:
            return None
        payload, error = None, None
        # Trainer.log_dir broadcasts: every rank asks for it, or rank 0 waits for the others forever
        run_dir = Path(dirpath) if dirpath is not None else Path(trainer.log_dir)
        if trainer.is_global_zero:
            try:
                payload = self._open(trainer, dirpath, run_dir)
            except Exception as exc:
                self.release()
                error = exc
        payload = trainer.strategy.broadcast(payload, src=0)
        sync_errors(error, "opening the store")
        store_dir, self.run_id = Path(payload[0]), payload[1]
        self.claimed = True
        return store_dir

    def _open(self, trainer: pl.Trainer, dirpath: str | os.PathLike[str] | None, run_dir: Path) -> tuple[str, str]:
        """Rank 0: ``(store directory, run id)``, with the store's writer lock held."""
        run_id = self.run_id or new_run_id()
        recorded = self.recorded
        if dirpath is None and recorded is not None and trainer.state.fn == TrainerFn.FITTING:
            # Lightning's resume with a new logger starts a new version directory: keep the one store
            if (Path(recorded) / MANIFEST_FILE).is_file():
                if os.path.abspath(recorded) != os.path.abspath(run_dir / STORE_SUBDIR):
                    rank_zero_info(
                        f"{self.owner}: resuming; attributions go on into the store recorded in the checkpoint, "
                        f"{recorded} (the logger writes to {run_dir})"
                    )
                run_dir = Path(recorded)
            else:
                warnings.warn(
                    f"{self.owner}: the store recorded in the checkpoint, {recorded}, is gone; the resumed run "
                    f"writes a new store in {run_dir}. Pass dirpath=<the moved run directory> to continue the "
                    "old one.",
                    UserWarning,
                    stacklevel=2,
                )
        lock = WriterLock(run_dir, run_id).acquire()
        self.lock = lock
        manifest = lock.store_dir / MANIFEST_FILE
        if manifest.exists():  # fail before training, not at the first explained epoch
            check_run_id(RunStore(lock.store_dir).manifest, run_id, lock.store_dir, adopt=self.legacy)
        return str(lock.store_dir), run_id

    def release(self) -> None:
        """Release the writer lock (if held); the next ``fit`` or ``validate`` claims the store again."""
        lock, self.lock = self.lock, None
        self.claimed = False
        if lock is not None:
            lock.release()
