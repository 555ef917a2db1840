"""Find a Clever-Hans shortcut while a model trains: a watermark on half of one digit class.

scikit-learn's handwritten digits (shipped with scikit-learn, nothing is downloaded) are upsampled to
24x24. Half of the samples of one class (3 by default) get a small bright square in the top-left
corner, in the training data and in the validation data alike, so the watermark predicts the class
and the network learns to look at it. A small CNN trains for a few epochs with ``LRPCallback``: after
every epoch the callback explains every validation sample with LRP, stores the heatmaps next to the
TensorBoard logs and runs the SpRAy analysis in the background. The script then reads the analysis
and prints the finding (the flagged clusters of every clustering, category and epoch merged into one
artifact), how well its samples match the watermarked ones, and the epoch where it first appeared.

    python examples/clever_hans_digits.py                 # about 30-60 s on 2 CPU cores
    python examples/clever_hans_digits.py --fast          # reduced (the test runs this)
    tensorboard --logdir runs/clever_hans                 # the tab "LRP"
    python examples/clever_hans_digits.py --revise all --jobs 4   # and unlearn it: ClArC methods vs the targets

Success means: in the last epoch there is exactly one finding, it holds at least 90% of the
watermarked probe samples of the class, and at least 90% of its samples are watermarked. Exit status 0 on
success, 1 if the shortcut was not found.

With ``--revise rrclarc|pclarc|aclarc|all`` a ``ClArCCallback`` takes the finding of epoch 0 and unlearns
it from epoch 1 on; the script runs the unrevised reference too (``--revise none`` alone) and prints the
targets' table: watermark sensitivity <= 2%, clean accuracy within 1 point of the reference, and the
finding's corner share within 2x the rest of the class. Exit status 0 when every method meets every
target.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MIN_RECALL = 0.9
"""Least share of the watermarked probe samples of the class that the finding must hold."""
MIN_PURITY = 0.9
"""Least share of the finding's samples that must be watermarked."""

SIZE = 24
WATERMARK = (slice(1, 4), slice(1, 4))  # a 3x3 square, one pixel in from the top-left corner
LAYER = "net.6"
"""The layer of the artifact direction (CAV): the second conv block's pooled output, 32 x 6 x 6."""
REVISE = {
    "none": {"method": None, "layer": LAYER},
    "rrclarc": {"method": "rrclarc", "layer": LAYER, "strength": 10.0, "rr_target": "all"},
    "pclarc": {"method": "pclarc", "layer": LAYER},
    "aclarc": {"method": "aclarc", "layer": LAYER},
}
"""ClArCCallback settings per ``--revise`` method ("none": the unrevised reference, measured the same way)."""
ANALYSIS = {
    "random_state": 0,
    # PCA layouts only, to keep the demo fast on 2 cores (t-SNE of 11 categories takes about 12 s per
    # epoch); `lrp-analyze <dir> --force` adds t-SNE and UMAP with the default settings
    "embeddings": {"methods": ["pca"]},
}
"""Analysis settings, laid out like an ``lrp-analyze --config`` file; written next to the runs."""


@dataclass
class Settings:
    epochs: int = 5
    samples_per_class: int | None = None  # None: all of the digits (about 180 per class)
    watermark_class: int = 3
    watermark_share: float = 0.5
    val_share: float = 0.3
    seed: int = 0
    control: bool = False  # the watermark on part of every class: it predicts nothing, so nothing to flag
    revise: str | None = None  # "rrclarc", "pclarc", "aclarc" or "none" (measure only): adds a ClArCCallback
    layer: str = LAYER  # the layer of the artifact direction (with revise)


@dataclass
class Result:
    """What the demo found; ``found`` is the success criterion."""

    run_dir: str
    watermark_class: int
    watermarked_probe_ids: list[int]
    epochs: list[int] = field(default_factory=list)
    found: bool = False
    first_epoch: int | None = None
    finding_id: str | None = None
    summary: str | None = None
    category: str | None = None
    reason: str | None = None
    cluster_size: int = 0
    overlap: int = 0
    recall: float = 0.0
    purity: float = 0.0
    per_epoch: list[dict] = field(default_factory=list)
    other_findings: list[str] = field(default_factory=list)
    val_accuracy: float = float("nan")
    shortcut_rate: float = float("nan")
    clean_accuracy: float = float("nan")
    revision: dict | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ data


def add_watermark(images):
    """Put the watermark (value 1.0) on images of shape (N, 1, H, W); returns a new tensor."""
    out = images.clone()
    out[:, :, WATERMARK[0], WATERMARK[1]] = 1.0
    return out


def make_data(settings: Settings, with_clean: bool = False):
    """``x_train, y_train, x_val, y_val, marked_val, marked_train``: the tensors, and the indices (into the
    validation and the training set) of the samples of the watermark class that carry the watermark.
    With ``with_clean``, the validation images without any watermark come last."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(settings.seed)
    keep = np.arange(len(labels))
    if settings.samples_per_class is not None:
        keep = np.concatenate(
            [np.sort(rng.permutation(np.flatnonzero(labels == c))[: settings.samples_per_class]) for c in range(10)]
        )
    images = torch.tensor(digits.images[keep] / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = labels[keep]
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=settings.val_share, random_state=settings.seed, stratify=labels
    )

    def plant(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        x, y = images[index].clone(), labels[index]
        classes = range(10) if settings.control else [settings.watermark_class]
        marked = np.sort(
            np.concatenate(
                [
                    rng.permutation(members)[: int(round(settings.watermark_share * members.size))]
                    for members in (np.flatnonzero(y == c) for c in classes)
                ]
            )
        )
        x[marked] = add_watermark(x[marked])
        return x, torch.from_numpy(y), marked[y[marked] == settings.watermark_class]

    x_train, y_train, marked_train = plant(train_idx)
    x_val, y_val, marked_val = plant(val_idx)
    if with_clean:
        return x_train, y_train, x_val, y_val, marked_val, marked_train, images[val_idx].clone()
    return x_train, y_train, x_val, y_val, marked_val, marked_train


# ------------------------------------------------------------------------------------------------ model


def make_module(lr: float = 2e-3):
    import lightning as L
    import torch
    from torch import nn

    class DigitNet(L.LightningModule):
        """A small CNN with batch norm (the callback's "auto" canonizers merge it for LRP)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(32 * (SIZE // 4) ** 2, 64),
                nn.ReLU(),
                nn.Linear(64, 10),
            )

        def forward(self, x):  # class scores: what the callback explains
            return self.net(x)

        def training_step(self, batch, batch_idx):
            loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            logits = self(batch[0])
            self.log("val_loss", nn.functional.cross_entropy(logits, batch[1]))
            self.log("val_acc", (logits.argmax(1) == batch[1]).float().mean())

        def predict_step(self, batch, batch_idx):
            return self(batch[0])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return DigitNet()


# ------------------------------------------------------------------------------------------------ evaluation


def _scored(findings: list, watermarked: set[int]) -> list[dict]:
    """An epoch's findings with their overlap with ``watermarked``, best match first."""
    out = []
    for finding in findings:
        members = {int(i) for i in finding.member_ids}
        overlap = len(members & watermarked)
        out.append(
            {
                "finding_id": finding.finding_id,
                "summary": finding.summary(),
                "category": finding.category,
                "region": finding.region,
                "reason": finding.reason,
                "first_epoch": finding.first_epoch,
                "size": len(members),
                "overlap": overlap,
                "recall": overlap / max(len(watermarked), 1),
                "purity": overlap / max(len(members), 1),
            }
        )
    return sorted(out, key=lambda c: -(c["recall"] * c["purity"]))


def _hit(candidate: dict | None) -> bool:
    if not candidate or "finding_id" not in candidate:
        return False
    return candidate["recall"] >= MIN_RECALL and candidate["purity"] >= MIN_PURITY


def evaluate(run_dir: Path, settings: Settings, watermarked: list[int]) -> Result:
    """Analyse the run (the callback's analyses are reused when current) and score its findings.

    Every epoch's findings are compared with the watermarked probe samples of the class; the best
    match counts. The demo succeeds when the last epoch has exactly one finding and it meets the
    criterion; ``first_epoch`` is the finding's first epoch.
    """
    from lrp_lightning import store as S
    from lrp_lightning.analysis import SpRAy, analyze_run

    store = S.RunStore(run_dir)
    options = {k: v for k, v in ANALYSIS.items() if k in ("include_all", "category_by", "nonfinite")}
    spray = SpRAy.from_config({k: v for k, v in ANALYSIS.items() if k not in options})
    outcome = analyze_run(store, spray, **options)
    for item, message in outcome.failures:
        print(f"analysis failed: {item}: {message}", file=sys.stderr)
    marked = {int(i) for i in watermarked}
    result = Result(str(run_dir), settings.watermark_class, sorted(marked))
    for epoch_outcome in outcome.epochs:
        epoch = epoch_outcome.epoch
        result.epochs.append(epoch)
        candidates = _scored(epoch_outcome.findings, marked)
        best = candidates[0] if candidates else None
        result.per_epoch.append({"epoch": epoch, **(best or {})})
        for other in candidates[1:]:
            result.other_findings.append(f"epoch {epoch}: {other['summary']}")
    last = result.per_epoch[-1] if result.per_epoch else {}
    if "finding_id" in last:
        result.finding_id, result.summary, result.category = last["finding_id"], last["summary"], last["category"]
        result.reason, result.cluster_size, result.overlap = last["reason"], last["size"], last["overlap"]
        result.recall, result.purity, result.first_epoch = last["recall"], last["purity"], last["first_epoch"]
    alone = not any(line.startswith(f"epoch {result.epochs[-1]}:") for line in result.other_findings)
    result.found = _hit(last) and alone
    return result


# ------------------------------------------------------------------------------------------------ revision

MAX_SENSITIVITY = 0.02
"""Target: at most this share of other classes' digits classified as the class with the watermark."""
MAX_ACCURACY_DROP = 0.01
"""Target: clean validation accuracy at most this far below the unrevised run's."""
MAX_SHARE_RATIO = 2.0
"""Target: the finding's samples' relevance share in the corner at most this many times the rest's."""


def revision_row(method: str, result: Result) -> dict:
    """The last epoch's measures of a run with ``--revise``: the table's row."""
    from lrp_lightning import store as S

    record = result.revision or {}
    epochs = record.get(S.REVISION_EPOCHS) or []
    last = epochs[-1] if epochs else {}
    share, rest = last.get("finding_share"), last.get("rest_share")
    return {
        "method": method,
        "status": record.get(S.REVISION_STATUS),
        "finding_id": record.get(S.REVISION_FINDING_ID),
        "found_epoch": record.get(S.REVISION_FOUND_EPOCH),
        "cav_auc": (record.get(S.REVISION_CAV) or {}).get("heldout_auc"),
        "sensitivity": result.shortcut_rate,
        "flip_rate": last.get("artifact_sensitivity"),
        "clean_accuracy": result.clean_accuracy,
        "finding_share": share,
        "rest_share": rest,
        "share_ratio": share / rest if share is not None and rest else None,
    }


def _targets(row: dict, reference: dict) -> dict[str, bool]:
    return {
        "sensitivity": row["sensitivity"] <= MAX_SENSITIVITY,
        "accuracy": row["clean_accuracy"] >= reference["clean_accuracy"] - MAX_ACCURACY_DROP - 1e-9,
        "share": row["share_ratio"] is not None and row["share_ratio"] <= MAX_SHARE_RATIO,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_table(rows: list[dict], epochs: int) -> None:
    reference = rows[0]
    print(f"\nlast epoch ({epochs - 1}) of each run, same seed and data:")
    print(
        "| run | watermark sensitivity | clean val. accuracy | corner share: finding / rest of class (ratio) "
        "| targets |"
    )
    print("|---|---:|---:|---|---|")
    for row in rows:
        ratio = "-" if row["share_ratio"] is None else f"{row['share_ratio']:.1f}x"
        shares = f"{_pct(row['finding_share'])} / {_pct(row['rest_share'])} ({ratio})"
        if row["method"] == "none":
            met = "reference"
        else:
            hits = _targets(row, reference)
            met = "all met" if all(hits.values()) else "missed: " + ", ".join(k for k, v in hits.items() if not v)
        name = "unrevised" if row["method"] == "none" else row["method"]
        print(f"| {name} | {row['sensitivity']:.1%} | {row['clean_accuracy']:.3f} | {shares} | {met} |")
    print(
        f"targets: sensitivity <= {MAX_SENSITIVITY:.0%}, clean accuracy within {MAX_ACCURACY_DROP * 100:.0f} point "
        f"of the unrevised run, corner share within {MAX_SHARE_RATIO:.0f}x the rest of the class"
    )


def _revision_run(out: Path, settings: Settings) -> Result:
    """One run of ``--revise`` (a top-level function: ``--jobs`` runs it in worker processes)."""
    import torch

    if os.environ.get("LRP_DEMO_THREADS"):
        torch.set_num_threads(int(os.environ["LRP_DEMO_THREADS"]))
    return run(out, settings, verbose=False)


def revise_main(args: argparse.Namespace, settings: Settings) -> int:
    """``--revise``: the unrevised reference run, then the chosen method(s), and the table of targets."""
    from dataclasses import replace

    methods = ["rrclarc", "pclarc", "aclarc"] if args.revise == "all" else [args.revise]
    runs = ["none", *[m for m in methods if m != "none"]]
    settings_of = {method: replace(settings, revise=method) for method in runs}
    if args.jobs > 1:  # the runs are independent and seeded alike: worker processes give the same results
        import concurrent.futures
        import multiprocessing

        os.environ["LRP_DEMO_THREADS"] = "1"
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {m: pool.submit(_revision_run, args.out, settings_of[m]) for m in runs}
            done = {m: f.result() for m, f in futures.items()}
    else:
        done = {m: _revision_run(args.out, settings_of[m]) for m in runs}
    rows, results = [], {}
    for method in runs:
        print(f"\n=== run: {'unrevised (measured only)' if method == 'none' else method} ===")
        result = done[method]
        record = result.revision or {}
        print(
            f"finding {record.get('finding_id')} from epoch {record.get('found_epoch')}; "
            f"status: {record.get('status')}; watermark sensitivity {result.shortcut_rate:.1%}, "
            f"clean accuracy {result.clean_accuracy:.3f} ({result.seconds:.0f} s)"
        )
        results[method] = result
        rows.append(revision_row(method, result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rows": rows, "runs": {k: asdict(v) for k, v in results.items()}}, indent=2) + "\n"
        )
    if settings.control:
        reference = rows[0]
        ok = all(
            row["status"] == "nothing to revise"
            and abs(row["clean_accuracy"] - reference["clean_accuracy"]) <= MAX_ACCURACY_DROP
            for row in rows
        )
        print(
            "\ncontrol (the watermark on every class predicts nothing): "
            + ("nothing to revise in every run, accuracy unchanged" if ok else "a revision happened or accuracy moved")
        )
        for row in rows:
            print(f"  {row['method']}: {row['status']}, clean accuracy {row['clean_accuracy']:.3f}")
        return 0 if ok else 1
    print_table(rows, settings.epochs)
    revised = [row for row in rows if row["method"] != "none"]
    return 0 if revised and all(all(_targets(row, rows[0]).values()) for row in revised) else 1


# ------------------------------------------------------------------------------------------------ main


def run(out: Path, settings: Settings, verbose: bool = True) -> Result:
    """Train with ``LRPCallback``, analyse and return what was found."""
    start = time.perf_counter()
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from lrp_lightning import LRPCallback

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*(GPU|TPU|HPU).*available.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")

    L.seed_everything(settings.seed, verbose=False)
    x_train, y_train, x_val, y_val, marked, _, x_clean = make_data(settings, with_clean=True)
    c = settings.watermark_class
    say = print if verbose else (lambda *a, **k: None)
    where = "every class (control run: it predicts nothing)" if settings.control else f"class {c}"
    say(
        f"data: {len(x_train)} training and {len(x_val)} validation digits ({SIZE}x{SIZE}); a bright 3x3 "
        f"watermark in the top-left corner on {settings.watermark_share:.0%} of {where}, "
        f"{marked.size} watermarked validation samples of class {c} in the probe set"
    )

    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(ANALYSIS, indent=2) + "\n")
    callback = LRPCallback(
        num_samples=len(x_val),  # the whole validation set is the probe set; sample ids = validation indices
        composite="epsilon_gamma_box",
        composite_kwargs={"low": 0.0, "high": 1.0},  # the inputs lie in [0, 1]
        class_names=[str(i) for i in range(10)],
        analyze=ANALYSIS,
        seed=settings.seed,
        # a probe.parquet column: which validation samples of the class carry the mark
        probe_metadata={f"watermarked_class_{c}": np.isin(np.arange(len(x_val)), marked).tolist()},
    )
    callbacks = [callback]
    if settings.revise is not None:
        from lrp_lightning import ClArCCallback

        # the CAV lives in the second conv block's pooled output (32 x 6 x 6): the papers' late conv layer
        callbacks.append(ClArCCallback(**{**REVISE[settings.revise], "layer": settings.layer}, verbose=verbose))
    logger = TensorBoardLogger(save_dir=str(out), name=settings.revise or "digits")
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    model = make_module()
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, generator=generator)
    val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
    fit_start = time.perf_counter()
    trainer.fit(model, train_loader, val_loader)
    run_dir = Path(trainer.log_dir)

    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
        others = x_val[y_val != c]
        shortcut = float((model(add_watermark(others)).argmax(1) == c).float().mean())
        clean_accuracy = float((model(x_clean).argmax(1) == y_val).float().mean())
    say(
        f"trained {settings.epochs} epochs in {time.perf_counter() - fit_start:.1f} s (LRP of {len(x_val)} probe "
        f"samples and SpRAy after every epoch included): validation accuracy {accuracy:.3f}"
    )
    say(
        f"shortcut check: with the watermark added, {shortcut:.0%} of the validation digits of other classes "
        f"are classified as {c}"
    )

    result = evaluate(run_dir, settings, marked.tolist())
    result.val_accuracy, result.shortcut_rate, result.clean_accuracy = accuracy, shortcut, clean_accuracy
    if settings.revise is not None:
        from lrp_lightning import store as S

        revisions = S.RunStore(run_dir).revisions()
        result.revision = revisions[0] if revisions else None
    result.seconds = time.perf_counter() - start
    if verbose:
        report(result, out)
    return result


def report(result: Result, out: Path) -> None:
    c, total = result.watermark_class, len(result.watermarked_probe_ids)
    print(f"\nanalysis of {result.run_dir} ({len(result.epochs)} epochs):")
    for entry in result.per_epoch:
        if "finding_id" in entry:
            print(
                f"  epoch {entry['epoch']}: finding {entry['finding_id']} ({entry['summary']}): {entry['overlap']} "
                f"of {total} watermarked (recall {entry['recall']:.2f}, purity {entry['purity']:.2f})"
            )
        else:
            print(f"  epoch {entry['epoch']}: no finding")
    if result.other_findings:
        print(f"  other findings ({len(result.other_findings)} over all epochs):")
        for line in result.other_findings:
            print(f"    {line}")
    if result.found:
        print(f"\nFOUND the Clever-Hans shortcut of class {c}: {result.summary}")
        print(f"  finding {result.finding_id}: {result.reason}")
        print(
            f"  overlap: it holds {result.overlap} of the {total} watermarked probe samples of class {c} "
            f"({result.recall:.0%}); purity {result.purity:.2f} ({result.overlap} of its {result.cluster_size} "
            "samples are watermarked)"
        )
    else:
        print(
            f"\nNOT FOUND: no single finding of class {c} holds >= {MIN_RECALL:.0%} of the {total} watermarked "
            f"probe samples with purity >= {MIN_PURITY} (best: recall {result.recall:.2f}, purity {result.purity:.2f})"
        )
    print(f"\ntotal {result.seconds:.1f} s. Explore it:  tensorboard --logdir {out}   (tab LRP)")
    print(f"re-analyse offline:  lrp-analyze {out} --config {out / 'analysis.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/clever_hans"), help="log dir (default runs/clever_hans)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 5; 3 with --fast)")
    parser.add_argument("--fast", action="store_true", help="reduced mode for tests: fewer samples and epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed of data split, watermark and training")
    parser.add_argument(
        "--control",
        action="store_true",
        help="control run: the watermark on half of every class, so it is no shortcut (expect exit status 1)",
    )
    parser.add_argument(
        "--revise",
        choices=[*REVISE, "all"],
        default=None,
        help="also unlearn the found watermark with ClArCCallback from the epoch after it is found: a ClArC method, "
        "'none' (the unrevised reference, measured the same way) or 'all' (the reference and the three methods, "
        "then a table of the targets)",
    )
    parser.add_argument(
        "--layer", default=LAYER, help=f"with --revise: the layer of the artifact direction (default {LAYER})"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="with --revise: run the runs in this many worker processes (default 1)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    settings = Settings(seed=args.seed, control=args.control)
    if args.fast:
        settings.epochs, settings.samples_per_class = 3, 120
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error("--epochs must be at least 1")
        settings.epochs = args.epochs
    if args.revise is not None:
        settings.layer = args.layer
        return revise_main(args, settings)
    result = run(args.out, settings)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0 if result.found else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
