"""Explain a whole data set from a checkpoint with ``Trainer.predict``, then analyse it.

The Clever-Hans digits of ``clever_hans_digits.py`` (half of the 3s carry a watermark) train a small
CNN for a few epochs; the best checkpoint is kept. Then ``Trainer.predict`` with ``LRPPredictionWriter``
explains every training sample from that checkpoint into a store of its own (one epoch, the
checkpoint's), and the SpRAy analysis runs over it: the watermarked 3s of the training set show up
as a flagged cluster. The same directory works with ``lrp-analyze`` and the TensorBoard tab.

    python examples/dataset_wide.py --out runs/dataset_wide
    lrp-analyze runs/dataset_wide/train_set
    tensorboard --logdir runs/dataset_wide
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clever_hans_digits as demo  # noqa: E402 - the demo's data and model, next to this file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dataset_wide"), help="output folder")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--samples-per-class", type=int, default=None, help="digits per class (default: all)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    start = time.perf_counter()
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from lrp_lightning import LRPPredictionWriter
    from lrp_lightning import store as S
    from lrp_lightning.analysis import SpRAy, analyze_run, load_analysis

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|log_every_n_steps).*")
    warnings.filterwarnings("ignore", message=".*when using `ckpt_path`, callbacks used to create.*")

    settings = demo.Settings(epochs=args.epochs, samples_per_class=args.samples_per_class)
    L.seed_everything(settings.seed, verbose=False)
    x_train, y_train, x_val, y_val, _, marked_train = demo.make_data(settings)

    # 1. train, keeping the best checkpoint
    checkpoint = ModelCheckpoint(dirpath=args.out / "checkpoints", monitor="val_loss", mode="min")
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[checkpoint],
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    generator = torch.Generator().manual_seed(settings.seed)
    trainer.fit(
        demo.make_module(),
        DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, generator=generator),
        DataLoader(TensorDataset(x_val, y_val), batch_size=256),
    )
    print(f"trained {settings.epochs} epochs; best checkpoint {checkpoint.best_model_path}")

    # 2. explain every training sample from the checkpoint (sample id = index in the training set)
    run_dir = args.out / "train_set"
    writer = LRPPredictionWriter(
        dirpath=run_dir, composite_kwargs={"low": 0.0, "high": 1.0}, class_names=[str(i) for i in range(10)]
    )
    predictor = L.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False, deterministic=True
    )
    predictor.predict(
        demo.make_module(),
        DataLoader(TensorDataset(x_train, y_train), batch_size=256),
        ckpt_path=checkpoint.best_model_path,
        return_predictions=False,
    )
    store = S.RunStore(run_dir)
    (info,) = store.epochs()
    print(f"explained {info.rows} training samples into {run_dir} (epoch {info.epoch}, the checkpoint's)")

    # 3. analyse the data set (what `lrp-analyze` does), with the demo's fast settings
    outcome = analyze_run(store, SpRAy.from_config(demo.ANALYSIS))
    for item, message in outcome.failures:
        print(f"analysis failed: {item}: {message}", file=sys.stderr)
    marked = {int(i) for i in marked_train}
    category = S.class_category(settings.watermark_class)
    tables = load_analysis(store, info.epoch)
    points = tables[S.POINTS_TABLE]
    rows = np.asarray(points.column(S.CATEGORY).to_pylist()) == category
    ids = points.column(S.SAMPLE_ID).to_numpy()[rows]
    best = (0.0, 0.0, None)
    for row in tables[S.CLUSTERS_TABLE].to_pylist():
        if row[S.CATEGORY] != category or not row[S.FLAGGED]:
            continue
        labels = points.column(S.cluster_column(row[S.CLUSTERING])).to_numpy(zero_copy_only=False)[rows]
        members = {int(i) for i in ids[labels == row[S.CLUSTER]]}
        recall, purity = len(members & marked) / len(marked), len(members & marked) / len(members)
        if recall * purity > best[0] * best[1]:
            best = (recall, purity, row)
    for finding in outcome.epochs[0].findings if outcome.epochs else []:
        print(f"finding: {finding.summary()}: {finding.reason}")
    recall, purity, row = best
    found = recall >= demo.MIN_RECALL and purity >= demo.MIN_PURITY
    if row is not None:
        print(
            f"{'FOUND' if found else 'weak match'}: {category} {row[S.CLUSTERING]} cluster {row[S.CLUSTER]} holds "
            f"{recall:.0%} of the {len(marked)} watermarked training samples of class {settings.watermark_class}, "
            f"purity {purity:.2f}"
        )
    else:
        print(f"NOT FOUND: no flagged cluster in {category}")
    print(f"total {time.perf_counter() - start:.1f} s")
    print(f"re-analyse: lrp-analyze {run_dir}    explore: tensorboard --logdir {args.out}")
    return 0 if found else 1


if __name__ == "__main__":
    raise SystemExit(main())
