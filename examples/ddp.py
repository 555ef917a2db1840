"""LRPCallback under 2-process DDP on CPU (gloo): each rank explains its share of the probe set.

Trains a small CNN on scikit-learn's digits with ``strategy="ddp", devices=2`` on the CPU. Lightning
starts the second process by running this script again. Each rank writes its own part file; rank 0
commits the epoch after a barrier, so the store holds every probe sample exactly once.

    python examples/ddp.py --out runs/ddp
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrp_lightning import LRPCallback
from lrp_lightning.store import RunStore


class DigitNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def digits() -> tuple[TensorDataset, TensorDataset]:
    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    labels = torch.tensor(data.target)
    order = np.random.default_rng(0).permutation(len(labels))
    train, val = order[:1400], order[1400:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[val], labels[val])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/ddp"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)

    L.seed_everything(0, verbose=False)
    train, val = digits()
    callback = LRPCallback(num_samples=100, composite_kwargs={"low": 0.0, "high": 1.0})
    trainer = L.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=args.epochs,
        callbacks=[callback],
        default_root_dir=args.out,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(DigitNet(), DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=64))
    log_dir = trainer.log_dir  # a collective (broadcast from rank 0): every rank asks
    if trainer.is_global_zero:
        store = RunStore(log_dir)
        last = store.epochs()[-1]
        ids, _ = store.heatmaps(last.epoch)
        parts = sorted(path.name for path in store.epoch_dir(last.epoch).glob("part-*.parquet"))
        print(f"epochs {[info.epoch for info in store.epochs()]}; epoch {last.epoch}: {len(ids)} rows from {parts}")
        print(f"unique sample ids: {len(set(ids.tolist()))} (the probe set has 100)")
        print(f"explore it: tensorboard --logdir {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
