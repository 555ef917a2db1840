"""Overhead of LRPCallback on a Lightning fit, and bytes it stores per sample and epoch.

The same fit runs with and without ``LRPCallback()`` at its defaults (256 probe samples explained
every epoch with ``epsilon_gamma_box``, 16 heatmaps logged as an image), interleaved for several
repeats (alternating which of the two runs first); median and fastest wall and CPU times give the
overhead ratio. The time spent inside the callback's hook is measured too: it is the overhead itself,
free of the run-to-run noise of the fit (on a machine shared with other jobs, wall times of identical
fits can differ several-fold).

Data: scikit-learn's handwritten digits (shipped with scikit-learn, nothing is downloaded), upsampled
to 28x28 (MNIST size) and augmented (random shifts of up to 2 pixels, Gaussian noise) to ``--train``
training samples per epoch and ``--val`` validation samples. Model: a small CNN (two conv +
batch-norm + ReLU + max-pool blocks, 16 and 32 channels, a linear classifier), Adam, batch size 64, CPU
(``--accelerator gpu`` for CUDA).

    python benchmarks/callback_overhead.py --repeats 7         # 12,000 training samples, 3 epochs
    python benchmarks/callback_overhead.py --repeats 1 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrp_lightning import LRPCallback
from lrp_lightning.store import RunStore

SIZE = 28
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*litlogger.*|.*litmodels.*")


def make_data(train: int, val: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Augmented digits: (N, 1, 16, 16) in [0, 1] and labels 0..9."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    split = int(0.8 * len(order))

    def augment(indices: torch.Tensor, count: int) -> TensorDataset:
        chosen = indices[torch.randint(len(indices), (count,), generator=generator)]
        x = images[chosen]
        shifts = torch.randint(-2, 3, (count, 2), generator=generator)
        x = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2)) for img, s in zip(x, shifts)])
        x = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        return TensorDataset(x, labels[chosen])

    return augment(order[:split], train), augment(order[split:], val)


class DigitNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (SIZE // 4) ** 2, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=2e-3)


class TimedLRPCallback(LRPCallback):
    """LRPCallback that adds up the wall and CPU time of its validation-epoch-end hook."""

    wall = cpu = 0.0

    def on_validation_epoch_end(self, trainer, pl_module):
        wall, cpu = time.perf_counter(), time.process_time()
        super().on_validation_epoch_end(trainer, pl_module)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu


def fit_once(
    root: Path, train: TensorDataset, val: TensorDataset, epochs: int, with_callback: bool, accelerator: str = "cpu"
) -> dict:
    """One fit; returns its wall and CPU seconds, the callback hook's share, and the trainer."""
    L.seed_everything(0, verbose=False)
    callback = TimedLRPCallback() if with_callback else None
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=TensorBoardLogger(root, name="", version="with" if with_callback else "without"),
        callbacks=[callback] if callback else [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    model = DigitNet()
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "hook_wall": callback.wall if callback else 0.0,
        "hook_cpu": callback.cpu if callback else 0.0,
        "trainer": trainer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=12_000, help="training samples per epoch (default 12,000)")
    parser.add_argument("--val", type=int, default=2_000, help="validation samples (default 2,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs of fits (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator, e.g. gpu (default cpu)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train < 10_000:
        print(f"note: --train {args.train} is below the 10,000 samples per epoch that the 5% target assumes")

    train, val = make_data(args.train, args.val)
    print(
        f"data: sklearn digits upsampled to {SIZE}x{SIZE}, augmented (shifts, noise): {len(train)} training and "
        f"{len(val)} validation samples per epoch, 10 classes"
    )
    features = 32 * (SIZE // 4) ** 2
    print(
        f"model: CNN conv16-BN-ReLU-pool, conv32-BN-ReLU-pool, linear({features}, 10); Adam, batch 64, "
        f"{args.accelerator}"
    )
    print(
        f"callback: LRPCallback() at its defaults (num_samples=256 every epoch, epsilon_gamma_box, log_images=16); "
        f"{args.epochs} epochs per fit, {args.repeats} interleaved pairs of fits"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, lightning {L.__version__}"
    )
    runs: dict[bool, list[dict]] = {False: [], True: []}
    stored_bytes = rows = probe_bytes = 0
    heatmap_shape = (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        # imports and first-call costs
        fit_once(Path(tmp) / "warmup", train, val, 1, with_callback=True, accelerator=args.accelerator)
        for repeat in range(args.repeats):
            for with_callback in (False, True) if repeat % 2 == 0 else (True, False):  # alternate the order
                run = fit_once(Path(tmp) / f"r{repeat}", train, val, args.epochs, with_callback, args.accelerator)
                runs[with_callback].append(run)
            plain, timed = runs[False][-1], runs[True][-1]
            print(
                f"  pair {repeat}: without {plain['wall']:.2f} s ({plain['cpu']:.2f} s CPU), "
                f"with {timed['wall']:.2f} s ({timed['cpu']:.2f} s CPU), "
                f"of which the callback {timed['hook_wall']:.2f} s ({timed['hook_cpu']:.2f} s CPU)"
            )
            store = RunStore(timed["trainer"].log_dir)
            for info in store.epochs():
                stored_bytes += sum((store.store_dir / name).stat().st_size for name in info.files)
                rows += info.rows
            probe_bytes = (store.store_dir / "probe.parquet").stat().st_size
            heatmap_shape = store.heatmap_shape

    def summary(key: str) -> tuple[float, float, float, float]:
        plain = [run[key] for run in runs[False]]
        timed = [run[key] for run in runs[True]]
        return statistics.median(plain), statistics.median(timed), min(plain), min(timed)

    print()
    for key, label in (("wall", "wall time"), ("cpu", "CPU time ")):
        median_plain, median_timed, min_plain, min_timed = summary(key)
        print(
            f"fit {label}: without {median_plain:.2f} s, with {median_timed:.2f} s (medians) -> overhead "
            f"{median_timed / median_plain - 1:+.1%}; fastest runs {min_plain:.2f} s vs {min_timed:.2f} s -> "
            f"{min_timed / min_plain - 1:+.1%}"
        )
    shares = [run["hook_wall"] / run["wall"] for run in runs[True]]
    cpu_shares = [run["hook_cpu"] / run["cpu"] for run in runs[True]]
    per_epoch = statistics.median(run["hook_wall"] for run in runs[True]) / args.epochs
    print(
        f"time inside the callback / fit time: {statistics.median(shares):.1%} wall, "
        f"{statistics.median(cpu_shares):.1%} CPU (medians; {per_epoch:.3f} s per epoch)  [target <= 5%]"
    )
    print(
        f"stored per sample per epoch: {stored_bytes / rows:.0f} bytes (relevance map {heatmap_shape[0]}x"
        f"{heatmap_shape[1]} float16 + columns, zstd, in attributions/); once per run in probe.parquet: "
        f"{probe_bytes / 256:.0f} bytes per probe sample (thumbnail PNG + ids)"
    )


if __name__ == "__main__":
    main()
