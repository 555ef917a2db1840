"""A fit with LRPCallback into OUT/run that pauses or dies mid-training, for test_callback_lock.py.

Usage: python writer_run.py OUT_DIR pause|kill
  pause: at the start of epoch 1 (epoch 0 committed) writes OUT/paused, waits for OUT/go, then finishes
  kill:  at the start of epoch 2 (epochs 0 and 1 committed and checkpointed) dies by SIGKILL
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lrp_lightning import LRPCallback

BOX = {"low": 0.0, "high": 1.5}


class Interrupt(Callback):
    def __init__(self, out: Path, mode: str) -> None:
        self.out, self.mode = out, mode

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.mode == "pause" and trainer.current_epoch == 1:
            for callback in trainer.callbacks:
                if isinstance(callback, LRPCallback):
                    callback._store  # noqa: B018 - waits for the epochs being written in the background
            (self.out / "paused").write_text(str(os.getpid()))
            deadline = time.monotonic() + 300
            while not (self.out / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.mode == "kill" and trainer.current_epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


def main(out: Path, mode: str) -> None:
    callback = LRPCallback(num_samples=12, composite_kwargs=BOX, dirpath=out / "run")
    checkpoints = ModelCheckpoint(dirpath=out / "ckpt", save_top_k=-1)
    fit = trainer(out, callbacks=[callback, checkpoints, Interrupt(out, mode)], enable_checkpointing=True, max_epochs=3)
    fit.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
