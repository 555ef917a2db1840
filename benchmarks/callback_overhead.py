"""Overhead of LRPCallback on a Lightning fit, and bytes it stores per sample and epoch.

The same fit runs without the callback, with ``LRPCallback()`` at its defaults (256 probe samples
explained every epoch with ``epsilon_gamma_box``, 16 heatmaps logged as an image; the epoch finished in
the callback's worker thread) and with ``LRPCallback(background_writes=False)`` (everything in the hook,
the named peer), interleaved for several repeats (rotating which runs first); median and fastest wall
and CPU times give the overhead ratio. The time the training thread spends inside the callback's hook is
measured too, per epoch and split into the probe fetch, the LRP passes and the rest (host copies, rows,
metrics, thumbnails, Parquet write, commit, image, logging, waiting for the worker): it is the overhead
itself, free of the run-to-run noise of the fit (on a machine shared with other jobs, wall times of
identical fits can differ several-fold). The worker's own time is printed as well; it overlaps with
training and competes with it only for CPU cores.

Data: scikit-learn's handwritten digits (shipped with scikit-learn, nothing is downloaded), upsampled
to 28x28 (MNIST size) and augmented (random shifts of up to 2 pixels, Gaussian noise) to ``--train``
training samples per epoch and ``--val`` validation samples. Model: a small CNN (two conv +
batch-norm + ReLU + max-pool blocks, 16 and 32 channels, a linear classifier), Adam, batch size 64, CPU
(``--accelerator gpu`` for CUDA).

    python benchmarks/callback_overhead.py --repeats 3                      # 12,000 training samples, 3 epochs
    python benchmarks/callback_overhead.py --repeats 1 --epochs 2 --train 2000   # a quick check
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
    """LRPCallback that times, per epoch, its hook on the training thread (probe fetch, LRP passes, the
    rest) and its worker's task, in wall and thread CPU seconds."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epochs: list[dict[str, float]] = []  # per explained epoch: hook, fetch, lrp (wall), hook_cpu
        self.worker: list[tuple[float, float]] = []  # per epoch task: wall, thread CPU
        self.wall = self.cpu = 0.0
        attribute = self._explainer.attribute

        def timed_attribute(module, batches, methods=None):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return attribute(module, self._timed_batches(batches), methods)
            finally:
                self._current["lrp"] += time.perf_counter() - start
                self._current["lrp_cpu"] += time.thread_time() - cpu

        self._explainer.attribute = timed_attribute
        self._current = {"fetch": 0.0, "lrp": 0.0, "lrp_cpu": 0.0}

    def _timed_batches(self, batches):
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                self._current["fetch"] += time.perf_counter() - start
                return
            self._current["fetch"] += time.perf_counter() - start
            yield batch

    def on_validation_epoch_end(self, trainer, pl_module):
        self._current = {"fetch": 0.0, "lrp": 0.0, "lrp_cpu": 0.0}
        wall, cpu = time.perf_counter(), time.thread_time()
        super().on_validation_epoch_end(trainer, pl_module)
        hook, hook_cpu = time.perf_counter() - wall, time.thread_time() - cpu
        self.wall += hook
        self.cpu += hook_cpu
        lrp = self._current["lrp"] - self._current["fetch"]  # attribute() consumed the fetch's generator
        self.epochs.append(
            {
                "hook": hook,
                "fetch": self._current["fetch"],
                "lrp": lrp,
                "hook_cpu": hook_cpu,
                "rest_cpu": hook_cpu - self._current["lrp_cpu"],
            }
        )

    def _finish_epoch(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return super()._finish_epoch(*args, **kwargs)
        finally:
            self.worker.append((time.perf_counter() - wall, time.thread_time() - cpu))


MODES = {"without": None, "background": {}, "hook": {"background_writes": False}}
"""The fits compared: no callback, the callback at its defaults, and everything in the hook."""


def fit_once(
    root: Path,
    train: TensorDataset,
    val: TensorDataset,
    epochs: int,
    mode: str,
    accelerator: str = "cpu",
    num_samples: int = 256,
) -> dict:
    """One fit; returns its wall and CPU seconds, the callback hook's share, and the trainer."""
    L.seed_everything(0, verbose=False)
    options = MODES[mode]
    callback = TimedLRPCallback(num_samples=num_samples, **options) if options is not None else None
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=TensorBoardLogger(root, name="", version=mode),
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
        "epochs": callback.epochs if callback else [],
        "worker": callback.worker if callback else [],
        "trainer": trainer,
    }


def per_epoch_lines(runs: list[dict], label: str) -> list[str]:
    """The training thread's time in the hook per epoch (medians over fits), split, and the worker's."""
    first = [run["epochs"][0] for run in runs]
    later = [epoch for run in runs for epoch in run["epochs"][1:]]
    lines = []
    for name, epochs in (("first epoch", first), ("later epochs", later)):
        if not epochs:
            continue

        def median(key: str, epochs=epochs) -> float:
            return statistics.median(epoch[key] for epoch in epochs) * 1000

        rest = statistics.median(epoch["hook"] - epoch["fetch"] - epoch["lrp"] for epoch in epochs) * 1000
        lines.append(
            f"  {label:<10} {name:<13} hook {median('hook'):7.1f} ms = fetch {median('fetch'):6.1f} + LRP "
            f"{median('lrp'):7.1f} + rest {rest:6.1f} ms; thread CPU: hook {median('hook_cpu'):6.1f}, rest "
            f"{median('rest_cpu'):6.1f} ms"
        )
    tasks = [task for run in runs for task in run["worker"]]
    if tasks:
        lines.append(
            f"  {label:<10} worker thread per epoch: {statistics.median(t[0] for t in tasks) * 1000:7.1f} ms wall, "
            f"{statistics.median(t[1] for t in tasks) * 1000:7.1f} ms thread CPU (overlaps with training)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=12_000, help="training samples per epoch (default 12,000)")
    parser.add_argument("--val", type=int, default=2_000, help="validation samples (default 2,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the three fits (default 3)")
    parser.add_argument("--num-samples", type=int, default=256, help="probe samples (default 256)")
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
        f"callback: LRPCallback(num_samples={args.num_samples}) every epoch (epsilon_gamma_box, log_images=16), "
        f"'background' = the default, 'hook' = background_writes=False; {args.epochs} epochs per fit, "
        f"{args.repeats} interleaved rounds of the three fits"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, lightning {L.__version__}, load average {os.getloadavg()[0]:.2f} at the start"
    )
    order = list(MODES)
    runs: dict[str, list[dict]] = {mode: [] for mode in order}
    stored_bytes = rows = probe_bytes = 0
    heatmap_shape = (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        # imports and first-call costs
        fit_once(Path(tmp) / "warmup", train, val, 1, "background", args.accelerator, args.num_samples)
        for repeat in range(args.repeats):
            rotated = order[repeat % 3 :] + order[: repeat % 3]  # rotate which fit runs first
            for mode in rotated:
                root = Path(tmp) / f"r{repeat}"
                runs[mode].append(fit_once(root, train, val, args.epochs, mode, args.accelerator, args.num_samples))
            line = ", ".join(
                f"{mode} {runs[mode][-1]['wall']:.2f} s ({runs[mode][-1]['cpu']:.2f} s CPU"
                + (f"; hook {runs[mode][-1]['hook_wall']:.2f} s)" if mode != "without" else ")")
                for mode in order
            )
            print(f"  round {repeat}: {line}  [load {os.getloadavg()[0]:.2f}]")
            store = RunStore(runs["background"][-1]["trainer"].log_dir)
            for info in store.epochs():
                stored_bytes += sum((store.store_dir / name).stat().st_size for name in info.files)
                rows += info.rows
            probe_bytes = (store.store_dir / "probe.parquet").stat().st_size
            heatmap_shape = store.heatmap_shape

    print()
    plain_wall = [run["wall"] for run in runs["without"]]
    plain_cpu = [run["cpu"] for run in runs["without"]]
    for mode in ("background", "hook"):
        for key, label, plain in (("wall", "wall time", plain_wall), ("cpu", "CPU time ", plain_cpu)):
            timed = [run[key] for run in runs[mode]]
            print(
                f"{mode:<10} fit {label}: without {statistics.median(plain):.2f} s, with "
                f"{statistics.median(timed):.2f} s (medians) -> overhead "
                f"{statistics.median(timed) / statistics.median(plain) - 1:+.1%}; fastest "
                f"{min(plain):.2f} s vs {min(timed):.2f} s -> {min(timed) / min(plain) - 1:+.1%}"
            )
        shares = [run["hook_wall"] / run["wall"] for run in runs[mode]]
        print(
            f"{mode:<10} time inside the hook / fit wall time: {statistics.median(shares):.1%} (median)  [target <= 5%]"
        )
    print("training thread inside the hook, per epoch (medians; the rest's target: <= 10 ms for 256 samples on CPU):")
    for mode in ("background", "hook"):
        for line in per_epoch_lines(runs[mode], mode):
            print(line)
    later = [epoch for run in runs["background"] for epoch in run["epochs"][1:]] or [
        epoch for run in runs["background"] for epoch in run["epochs"]
    ]
    lrp_per_sample = statistics.median(e["fetch"] + e["lrp"] for e in later) / args.num_samples
    tasks = [task for run in runs["background"] for task in run["worker"]]
    worker_per_sample = statistics.median(t[0] for t in tasks) / args.num_samples if tasks else float("nan")
    print(
        f"per probe sample and explained epoch: {lrp_per_sample * 1000:.2f} ms on the training thread (fetch + LRP), "
        f"{worker_per_sample * 1000:.2f} ms in the worker"
    )
    print(
        f"stored per sample per epoch: {stored_bytes / rows:.0f} bytes (relevance map {heatmap_shape[0]}x"
        f"{heatmap_shape[1]} float16 + columns, zstd, in attributions/); once per run in probe.parquet: "
        f"{probe_bytes / args.num_samples:.0f} bytes per probe sample (thumbnail PNG + ids)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
