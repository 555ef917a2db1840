"""Explain a torchvision ResNet-18 while it trains, with canonizers chosen automatically.

A randomly initialised ResNet-18 (no weights are downloaded) learns a synthetic task: 32x32 RGB noise
images of 4 classes, where the class says which quadrant holds a bright square. ``LRPCallback``
explains a probe set after every epoch with ``epsilon_gamma_box``; ``canonizers="auto"`` merges every
batch norm into the convolution before it and lets relevance flow through the residual additions
(``ResNetCanonizer``). The script prints what was stored and how much relevance lies in the square.

    python examples/resnet_synthetic.py --out runs/resnet_synthetic
    tensorboard --logdir runs/resnet_synthetic
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np

SIZE = 32
SQUARE = 8
CLASSES = 4


def make_data(n: int, seed: int):
    """Noise images with a bright square in the quadrant given by the label; returns (x, y, square masks)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = 0.4 * torch.rand(n, 3, SIZE, SIZE, generator=generator)
    y = torch.arange(n) % CLASSES
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    offsets = torch.randint(2, SIZE // 2 - SQUARE - 1, (n, 2), generator=generator)
    for i in range(n):
        top = offsets[i, 0] + (SIZE // 2) * (int(y[i]) // 2)
        left = offsets[i, 1] + (SIZE // 2) * (int(y[i]) % 2)
        x[i, :, top : top + SQUARE, left : left + SQUARE] = 0.9
        masks[i, top : top + SQUARE, left : left + SQUARE] = True
    return x, y, masks


def make_module(lr: float = 1e-3):
    import lightning as L
    import torch
    from torch import nn
    from torchvision.models import resnet18

    class ResNetModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = resnet18(weights=None, num_classes=CLASSES)

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            logits = self(batch[0])
            self.log("val_acc", (logits.argmax(1) == batch[1]).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return ResNetModule()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/resnet_synthetic"), help="log dir")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--train", type=int, default=1024, help="training images (default 1024)")
    parser.add_argument("--probe", type=int, default=32, help="probe samples explained per epoch (default 32)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.train < CLASSES or args.probe < CLASSES:
        parser.error("--epochs must be at least 1, --train and --probe at least 4")

    start = time.perf_counter()
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from lrp_lightning import LRPCallback
    from lrp_lightning.canonizers import auto_canonizers
    from lrp_lightning.store import RunStore

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|log_every_n_steps).*")

    L.seed_everything(0, verbose=False)
    x_train, y_train, _ = make_data(args.train, seed=0)
    x_val, y_val, masks = make_data(max(args.probe, 64), seed=1)
    callback = LRPCallback(
        composite="epsilon_gamma_box",
        canonizers="auto",  # merge batch norms, canonize the residual blocks
        composite_kwargs={"low": 0.0, "high": 1.0},
        num_samples=args.probe,
        class_names=["top-left", "top-right", "bottom-left", "bottom-right"],
        analyze={"random_state": 0, "embeddings": {"methods": ["pca"]}},
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(save_dir=str(args.out), name="resnet18"),
        callbacks=[callback],
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    generator = torch.Generator().manual_seed(0)
    module = make_module()
    chosen = ", ".join(type(c).__name__ for c in auto_canonizers(module))
    trainer.fit(
        module,
        DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True, generator=generator),
        DataLoader(TensorDataset(x_val, y_val), batch_size=64),
    )

    store = RunStore(trainer.log_dir)
    seconds = time.perf_counter() - start
    print(f"ResNet-18 trained {args.epochs} epochs on {args.train} synthetic images in {seconds:.1f} s")
    print(f"canonizers: {store.manifest.get('canonizers')!r} chose {chosen}")
    for info in store.epochs():
        table = store.attributions(info.epoch, ["label", "prediction"]).to_pydict()
        accuracy = float(np.mean(np.asarray(table["label"]) == np.asarray(table["prediction"])))
        ids, maps = store.heatmaps(info.epoch)
        inside = masks.numpy()[ids]
        positive = np.clip(maps, 0, None)
        share = (positive * inside).sum(axis=(1, 2)) / np.maximum(positive.sum(axis=(1, 2)), 1e-12)
        print(
            f"epoch {info.epoch}: {info.rows} probe samples, probe accuracy {accuracy:.2f}, "
            f"positive relevance inside the square {np.mean(share):.0%} (the square covers "
            f"{SQUARE * SQUARE / SIZE**2:.0%} of the image)"
        )
    print(f"explore it:  tensorboard --logdir {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
