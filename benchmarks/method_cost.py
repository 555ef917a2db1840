"""Per-epoch cost of each attribution method of LRPCallback(composite=[...]), against the default composite.

The callback explains its probe set (``--samples``, default 256, batches of 64) once per explained epoch
with every method. This measures that explanation (the callback's ``run_methods``, with its default
metrics) for each method alone and for all methods in one call, on the model of
``benchmarks/callback_overhead.py`` (digits upsampled to 28x28, two conv + batch-norm blocks), and prints
each time as a ratio to ``epsilon_gamma_box`` alone (the callback's default, the named peer). The
shared-pass saving shows in ``gradient+input_x_gradient``: the two read one plain-gradient pass per batch.

With ``--fit``, one short fit per configuration (the default callback, then all methods) also times the
callback's whole validation-epoch hook (explanation, metrics, store write and commit, scalars) per epoch.

    python benchmarks/method_cost.py                     # 256 samples, 7 repeats
    python benchmarks/method_cost.py --fit --epochs 2
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from callback_overhead import DigitNet, make_data  # noqa: E402

from lrp_lightning import LRPCallback  # noqa: E402
from lrp_lightning.attribution import IntegratedGradients  # noqa: E402
from lrp_lightning.callbacks._training_state import untouched_training_state  # noqa: E402

warnings.filterwarnings("ignore", ".*does not have many workers.*|.*litlogger.*|.*litmodels.*")

METHODS = {
    "epsilon_gamma_box": "epsilon_gamma_box",
    "epsilon_plus_flat": "epsilon_plus_flat",
    "gradient": "gradient",
    "input_x_gradient": "input_x_gradient",
    "integrated_gradients": functools.partial(IntegratedGradients, n_iter=8),
}
PEER = "epsilon_gamma_box"


class TimedLRPCallback(LRPCallback):
    """LRPCallback that records the wall time of each validation-epoch-end hook."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    def on_validation_epoch_end(self, trainer, pl_module):
        start = time.perf_counter()
        super().on_validation_epoch_end(trainer, pl_module)
        self.times.append(time.perf_counter() - start)


def time_explanation(callback: LRPCallback, model: DigitNet, batches: list, names: list[str], repeats: int) -> float:
    """Median wall seconds of explaining ``batches`` with the methods ``names`` of ``callback``."""
    methods = [m for m in callback._methods if m.name in names]
    times = []
    for _ in range(repeats):
        with untouched_training_state(model):
            start = time.perf_counter()
            callback._explainer.run_methods(model, batches, methods=methods)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_hook_times(root: Path, composite, train, val, epochs: int) -> list[float]:
    L.seed_everything(0, verbose=False)
    callback = TimedLRPCallback(composite=composite, log_images=0, composite_kwargs={"low": 0.0, "high": 1.0})
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(root, name="", version=str(len(list(root.glob("*"))))),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(DigitNet(), DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))
    return callback.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="probe samples (default 256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per configuration (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--fit", action="store_true", help="also time the callback hook in short fits")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each --fit (default 2)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, val = make_data(2_000, args.samples)
    x, y = val.tensors
    batches = [(np.arange(i, min(i + 64, len(y))), x[i : i + 64], y[i : i + 64]) for i in range(0, len(y), 64)]
    model = DigitNet()
    callback = LRPCallback(composite=METHODS, composite_kwargs={"low": 0.0, "high": 1.0})
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"explaining {len(y)} probe samples (batches of 64) with the default metrics, median of {args.repeats}")
    time_explanation(callback, model, batches, list(METHODS), 1)  # warm-up
    rows = {name: time_explanation(callback, model, batches, [name], args.repeats) for name in METHODS}
    pair = ["gradient", "input_x_gradient"]
    rows["gradient+input_x_gradient (shared pass)"] = time_explanation(callback, model, batches, pair, args.repeats)
    rows["all 5 methods in one call"] = time_explanation(callback, model, batches, list(METHODS), args.repeats)
    peer = rows[PEER]
    print(f"{'method':42s} {'s/epoch':>8s} {'vs ' + PEER:>22s}")
    for name, seconds in rows.items():
        print(f"{name:42s} {seconds:8.3f} {seconds / peer:21.2f}x")
    alone = rows["gradient"] + rows["input_x_gradient"]
    print(
        f"shared pass: gradient+input_x_gradient take {rows[pair[0] + '+' + pair[1] + ' (shared pass)'] / alone:.2f}x "
        "the sum of the two alone"
    )
    print(
        f"all methods: {rows['all 5 methods in one call'] / sum(rows[n] for n in METHODS):.2f}x the sum of each alone"
    )
    if args.fit:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            single = fit_hook_times(root, PEER, train, val, args.epochs)
            many = fit_hook_times(root, METHODS, train, val, args.epochs)
        one, five = statistics.median(single), statistics.median(many)
        print(
            f"callback hook per epoch (fit, {len(y)} samples): {PEER} {one:.3f} s, "
            f"all 5 methods {five:.3f} s ({five / one:.2f}x)"
        )


if __name__ == "__main__":
    main()
