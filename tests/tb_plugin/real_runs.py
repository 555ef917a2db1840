"""Real runs for the README's plugin pictures: the digits demo explained by three methods.

The browser tests draw the tab on synthetic runs (their values are known, so they can be checked);
the README's pictures of the method picker, the methods x epochs grid and the import of findings
come from a run that ``LRPCallback`` wrote while a model trained, made by this script::

    python tests/tb_plugin/real_runs.py --out runs/plugin_pictures          # about 3 min on 2 cores
    python tests/tb_plugin/real_runs.py --out runs/plugin_pictures --fast   # about 1 min
    python examples/clever_hans_digits.py --revise rrclarc --out runs/plugin_pictures/revise
    python tests/tb_plugin/screenshot_real_runs.py runs/plugin_pictures     # the pictures

The data, model and analysis settings are those of ``examples/clever_hans_digits.py`` (a watermark
on half of the digits 3), and the run is explained with ``epsilon_gamma_box``, ``epsilon_plus_flat``
and the plain gradient, each analysed on its own, with a second named analysis ("coarse") beside the
default one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

METHODS = ["epsilon_gamma_box", "epsilon_plus_flat", "gradient"]
COARSE = {
    "random_state": 0,
    "clusterings": {"k_range": [2, 4], "methods": ["kmeans"]},
    "embeddings": {"methods": ["pca"]},
}
"""A second, named analysis ("coarse": fewer clusters) beside the default one, for the Analysis picker."""


def coarse_analysis(run: Path) -> None:
    """``lrp-analyze <run> --name coarse --config coarse.json --method all``, as a user runs it."""
    import json
    import subprocess

    config = run / "coarse.json"
    config.write_text(json.dumps(COARSE) + "\n")
    command = [sys.executable, "-m", "lrp_lightning.cli", str(run), "--name", "coarse", "--config", str(config)]
    subprocess.run([*command, "--method", "all", "--quiet", "--no-scalars"], check=True)


def train(out: Path, epochs: int, fast: bool) -> Path:
    """Train the digits demo's model with ``LRPCallback(composite=METHODS)``; returns the run directory."""
    import clever_hans_digits as demo
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from lrp_lightning import LRPCallback

    settings = demo.Settings(epochs=epochs, samples_per_class=60 if fast else None)
    L.seed_everything(settings.seed, verbose=False)
    x_train, y_train, x_val, y_val, marked, *_ = demo.make_data(settings)
    callback = LRPCallback(
        num_samples=len(x_val),
        composite=METHODS,
        composite_kwargs={"low": 0.0, "high": 1.0},  # the inputs lie in [0, 1] (epsilon_gamma_box only)
        class_names=[str(i) for i in range(10)],
        analyze=demo.ANALYSIS,
        seed=settings.seed,
        probe_metadata={"watermarked_class_3": np.isin(np.arange(len(x_val)), marked).tolist()},
    )
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(save_dir=str(out), name="methods"),
        callbacks=[callback],
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, generator=generator)
    trainer.fit(demo.make_module(), train_loader, DataLoader(TensorDataset(x_val, y_val), batch_size=256))
    return Path(trainer.log_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/plugin_pictures"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fast", action="store_true", help="60 digits per class instead of all")
    options = parser.parse_args(argv)
    start = time.perf_counter()
    run = train(options.out, options.epochs, options.fast)
    coarse_analysis(run)
    print(f"{run}: {options.epochs} epochs x {len(METHODS)} methods in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
