"""A fit with LRPCallback that dies while writing epoch 2, for test_callback_crash.py.

Usage: python crash_run.py OUT_DIR part|manifest
  part:     killed by SIGKILL while rank 0's part file of epoch 2 is half written
  manifest: exits (os._exit) after epoch 2's directory was moved into place, before the manifest names it
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import ModelCheckpoint

import lrp_lightning.store.fileio as store_io
from lrp_lightning import LRPCallback
from lrp_lightning.store import MANIFEST_FILE

BOX = {"low": 0.0, "high": 1.5}


def crash_while_writing_part() -> None:
    write_table = store_io.pq.write_table

    def dying_write_table(table, where, **kwargs):
        if "epoch_000002" in str(where):
            write_table(table, where, **kwargs)
            with open(where, "r+b") as handle:  # half a file on disk, then the process dies
                handle.truncate(os.path.getsize(where) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return write_table(table, where, **kwargs)

    store_io.pq.write_table = dying_write_table

    close = store_io.pq.ParquetWriter.close  # parts written row group by row group (one per method)

    def dying_close(self):
        close(self)
        where = str(self.where)
        if "epoch_000002" in where:
            with open(where, "r+b") as handle:
                handle.truncate(os.path.getsize(where) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    store_io.pq.ParquetWriter.close = dying_close


def crash_before_manifest() -> None:
    atomic_write_json = store_io.atomic_write_json

    def dying_write_json(path, data):
        if path.name == MANIFEST_FILE and any(e["epoch"] == 2 for e in data.get("epochs", [])):
            os._exit(3)
        return atomic_write_json(path, data)

    store_io.atomic_write_json = dying_write_json


def main(out: Path, mode: str) -> None:
    {"part": crash_while_writing_part, "manifest": crash_before_manifest}[mode]()
    callback = LRPCallback(num_samples=12, composite_kwargs=BOX, dirpath=out / "run")
    checkpoints = ModelCheckpoint(dirpath=out / "ckpt", save_top_k=-1)
    fit = trainer(out, callbacks=[callback, checkpoints], enable_checkpointing=True, max_epochs=3)
    fit.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
