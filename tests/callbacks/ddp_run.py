"""Two-process DDP run on CPU (gloo) for test_callback_ddp.py: fit with LRPCallback, then predict with
LRPPredictionWriter. Lightning starts the second process by running this script again.

Usage: python ddp_run.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from callback_testing import ImageData, TinyNet, loader, trainer
from torch.utils.data import DataLoader, DistributedSampler

from lrp_lightning import LRPCallback, LRPPredictionWriter

BOX = {"low": 0.0, "high": 1.5}


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    callback = LRPCallback(num_samples=13, composite_kwargs=BOX, batch_size=4, dirpath=out / "fit")
    fit = trainer(out, callbacks=[callback], strategy="ddp", devices=2, max_epochs=2)
    fit.fit(model, loader(ImageData(48, seed=1), batch_size=8, shuffle=True), loader(ImageData(30), batch_size=8))
    # one probe sample for two ranks: rank 1 writes an empty part; in trainer.validate (inference mode)
    single = LRPCallback(probe=[4], composite_kwargs=BOX, dirpath=out / "single")
    trainer(out, callbacks=[single], strategy="ddp", devices=2, logger=False).validate(model, loader(ImageData(30)))
    # a plain DistributedSampler pads 37 samples to 2 x 19 by repeating sample 0 on rank 1; the store must
    # hold each sample once (Lightning's own predict sampler would not repeat any)
    data = ImageData(37, seed=3)
    sampler = DistributedSampler(data, num_replicas=2, rank=int(os.environ.get("LOCAL_RANK", 0)), shuffle=False)
    writer = LRPPredictionWriter(dirpath=out / "predict", composite_kwargs=BOX, epoch=4)
    predict = trainer(out, callbacks=[writer], strategy="ddp", devices=2, logger=False, use_distributed_sampler=False)
    predict.predict(model, DataLoader(data, batch_size=8, sampler=sampler), return_predictions=False)
    if predict.is_global_zero:
        torch.save(model.state_dict(), out / "model.pt")
        (out / "rank0-scalars.txt").write_text(repr({k: float(v) for k, v in fit.callback_metrics.items()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
