"""Findings quality: no false alarms on clean runs, one finding per planted artifact.

Trains small models on CPU with ``LRPCallback`` (nothing downloaded: scikit-learn's digits and
generated data), analyses every epoch with the default findings settings and prints a table:

* clean runs (digits without a watermark, three seeds; the ResNet-18 synthetic example; a 1-D
  signal CNN, two seeds; a tabular MLP, two seeds): findings over all their epochs (target: at most
  1 in total);
* planted-artifact runs (the digits demo's watermark on 50%, 25% and 10% of class 3, the 10% also
  with another seed; a fixed pulse on 50% of one class of the 1-D signal data set, two seeds): in
  the last epoch, the number of findings and the recall and purity of the finding that matches the
  planted samples (target: exactly 1 finding per artifact, recall and purity >= 0.9).

The defaults of ``Findings`` were chosen on the first 14 cases; the last four were held out.
``--reuse`` re-analyses runs already below ``--out`` (training is deterministic, so only the
analysis is repeated).

    python benchmarks/findings_quality.py [--out DIR] [--only NAME ...]

Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS = {"random_state": 0, "embeddings": {"methods": ["pca"]}}  # layouts do not enter findings
MAX_CLEAN_FINDINGS = 1
MIN_RECALL = MIN_PURITY = 0.9


def _example(name: str):
    """An example script of examples/ as a module, loaded once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _demo():
    return _example("clever_hans_digits")


def _resnet():
    return _example("resnet_synthetic")


# ------------------------------------------------------------------------------------------------ data


def signal_data(n: int, seed: int, planted_share: float = 0.0, planted_class: int = 1):
    """1-D signals of length 128, 3 classes: a bump at a class-specific place (jittered) in noise.

    With ``planted_share``, that share of ``planted_class`` gets a fixed square pulse at time steps
    96-103 (in training and validation alike), a shortcut. Returns ``x, y, planted indices``.
    """
    import torch

    rng = np.random.default_rng(seed)
    length = 128
    y = np.arange(n) % 3
    t = np.arange(length)
    centres = np.array([24, 56, 80])[y] + rng.integers(-6, 7, size=n)
    x = 0.3 * rng.normal(size=(n, length)) + np.exp(-0.5 * ((t[None] - centres[:, None]) / 4.0) ** 2)
    planted = np.empty(0, dtype=np.int64)
    if planted_share:
        members = np.flatnonzero(y == planted_class)
        planted = np.sort(rng.permutation(members)[: int(round(planted_share * members.size))])
        x[planted, 96:104] = 2.0
    return torch.tensor(x[:, None], dtype=torch.float32), torch.tensor(y), planted


def tabular_data(n: int, seed: int):
    """A standardised 12-feature, 3-class classification problem (scikit-learn's make_classification)."""
    import torch
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=12, n_informative=5, n_redundant=2, n_classes=3, random_state=seed
    )
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _module(net, lr: float = 2e-3):
    import lightning as L
    import torch
    from torch import nn

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return Module()


def signal_module():
    from torch import nn

    return _module(
        nn.Sequential(
            nn.Conv1d(1, 8, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(8, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Flatten(),
            nn.Linear(16 * 8, 3),
        )
    )


def tabular_module():
    from torch import nn

    return _module(nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3)))


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class Case:
    name: str
    data_set: str
    planted: bool
    epochs: int = 3


@dataclass
class Row:
    case: Case
    epochs: int
    findings_total: int  # distinct findings over all epochs
    findings_last: int
    recall: float = float("nan")
    purity: float = float("nan")
    matched: str = ""
    seconds: float = 0.0
    ok: bool = False


REUSE = False
"""Set by ``--reuse``: a case whose run exists below ``--out`` is analysed again, not trained again."""


def _train(out: Path, name: str, module, train, val, *, epochs: int, seed: int, composite_kwargs=None) -> Path:
    existing = out / name / "version_0"
    if REUSE and (existing / "plugins" / "lrp" / "manifest.json").exists():
        return existing
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from lrp_lightning import LRPCallback

    L.seed_everything(seed, verbose=False)
    callback = LRPCallback(
        num_samples=len(val[0]), composite="epsilon_gamma_box", composite_kwargs=composite_kwargs, seed=seed
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(save_dir=str(out), name=name),
        callbacks=[callback],
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    generator = torch.Generator().manual_seed(seed)
    trainer.fit(
        module,
        DataLoader(TensorDataset(*train), batch_size=32, shuffle=True, generator=generator),
        DataLoader(TensorDataset(*val), batch_size=256),
    )
    return Path(trainer.log_dir)


def run_case(case: Case, out: Path) -> tuple[Path, np.ndarray]:
    """Train one case; returns the run directory and the planted probe sample ids (empty if clean)."""
    import torch

    seed = int(case.name.rsplit("seed", 1)[1]) if "seed" in case.name else 0
    torch.manual_seed(seed)
    if case.data_set == "digits":
        demo = _demo()
        share = 0.0 if not case.planted else float(case.name.split("-")[1].rstrip("%")) / 100
        settings = demo.Settings(epochs=case.epochs, watermark_share=share, val_share=0.5, seed=seed)
        x_train, y_train, x_val, y_val, marked, _ = demo.make_data(settings)
        run_dir = _train(
            out, case.name, demo.make_module(), (x_train, y_train), (x_val, y_val),
            epochs=case.epochs, seed=seed, composite_kwargs={"low": 0.0, "high": 1.0},
        )  # fmt: skip
        return run_dir, (marked if share else np.empty(0, np.int64))
    if case.data_set == "resnet":
        resnet = _resnet()
        x_train, y_train, _ = resnet.make_data(512, seed=0)
        x_val, y_val, _ = resnet.make_data(128, seed=1)
        run_dir = _train(
            out, case.name, resnet.make_module(), (x_train, y_train), (x_val, y_val),
            epochs=case.epochs, seed=seed, composite_kwargs={"low": 0.0, "high": 1.0},
        )  # fmt: skip
        return run_dir, np.empty(0, np.int64)
    if case.data_set == "signal":
        share = 0.5 if case.planted else 0.0
        x, y, planted = signal_data(1200, seed, planted_share=share)
        train, val = slice(0, 900), slice(900, 1200)
        run_dir = _train(
            out, case.name, signal_module(), (x[train], y[train]), (x[val], y[val]), epochs=case.epochs, seed=seed
        )
        return run_dir, planted[planted >= 900] - 900
    if case.data_set == "tabular":
        x, y = tabular_data(1200, seed)
        run_dir = _train(
            out, case.name, tabular_module(), (x[:900], y[:900]), (x[900:], y[900:]), epochs=case.epochs, seed=seed
        )
        return run_dir, np.empty(0, np.int64)
    raise ValueError(case.data_set)


def evaluate(case: Case, run_dir: Path, planted: np.ndarray, seconds: float, force: bool = False) -> Row:
    from lrp_lightning.analysis import SpRAy, analyze_run

    outcome = analyze_run(run_dir, SpRAy.from_config(ANALYSIS), log_scalars=False, force=force)
    for item, message in outcome.failures:
        print(f"analysis failed: {item}: {message}", file=sys.stderr)
    last = outcome.epochs[-1].findings if outcome.epochs else []
    row = Row(case, len(outcome.epochs), len(outcome.findings), len(last), seconds=seconds)
    if not case.planted:
        return row
    marked = set(int(i) for i in planted)
    best = (0.0, 0.0, "")
    for finding in last:
        members = set(finding.member_ids.tolist())
        overlap = len(members & marked)
        score = (overlap / max(len(marked), 1), overlap / max(len(members), 1), finding.summary())
        best = max(best, score, key=lambda s: s[0] * s[1])
    row.recall, row.purity, row.matched = best
    return row


CASES = [
    Case("digits-clean-seed0", "digits", False),
    Case("digits-clean-seed1", "digits", False),
    Case("resnet18-synthetic", "resnet", False, epochs=2),
    Case("signal-clean-seed0", "signal", False),
    Case("tabular-clean-seed0", "tabular", False),
    Case("tabular-clean-seed1", "tabular", False),
    Case("digits-50%-watermark", "digits", True),
    Case("digits-25%-watermark", "digits", True),
    Case("digits-10%-watermark", "digits", True),
    Case("signal-50%-pulse", "signal", True),
    Case("digits-clean-seed2", "digits", False),
    Case("signal-clean-seed1", "signal", False),
    Case("digits-10%-watermark-seed1", "digits", True),
    Case("signal-50%-pulse-seed1", "signal", True),
    # held out: not looked at while the defaults of Findings were chosen
    Case("digits-clean-seed3", "digits", False),
    Case("signal-clean-seed2", "signal", False),
    Case("tabular-clean-seed2", "tabular", False),
    Case("digits-10%-watermark-seed2", "digits", True),
]


def table(rows: list[Row]) -> str:
    header = ("run", "kind", "epochs", "findings (all epochs)", "findings (last)", "recall", "purity", "s")
    lines = []
    for r in rows:
        recall = "" if np.isnan(r.recall) else f"{r.recall:.2f}"
        purity = "" if np.isnan(r.purity) else f"{r.purity:.2f}"
        kind = "planted" if r.case.planted else "clean"
        lines.append(
            (r.case.name, kind, str(r.epochs), str(r.findings_total), str(r.findings_last), recall, purity,
             f"{r.seconds:.0f}")
        )  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells) -> str:
        return " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(header), "-|-".join("-" * w for w in widths), *(fmt(line) for line in lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these cases (names as in the table)")
    parser.add_argument(
        "--reuse", action="store_true", help="re-analyse the runs already below --out instead of training them again"
    )
    args = parser.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cases = [c for c in CASES if args.only is None or c.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for case in cases:
            start = time.perf_counter()
            run_dir, planted = run_case(case, out)
            row = evaluate(case, run_dir, planted, 0.0, force=args.reuse)
            row.seconds = time.perf_counter() - start
            rows.append(row)
            print(f"{case.name}: {row.findings_total} finding(s) over {row.epochs} epochs; {row.matched}", flush=True)
    print()
    print(table(rows))
    clean = [r for r in rows if not r.case.planted]
    planted = [r for r in rows if r.case.planted]
    clean_total = sum(r.findings_total for r in clean)
    good_planted = [r for r in planted if r.findings_last == 1 and r.recall >= MIN_RECALL and r.purity >= MIN_PURITY]
    print(
        f"\nclean runs: {clean_total} finding(s) in total over {len(clean)} runs (target <= {MAX_CLEAN_FINDINGS}); "
        f"planted runs: {len(good_planted)} of {len(planted)} with exactly 1 finding, recall and purity >= 0.9"
    )
    return 0 if clean_total <= MAX_CLEAN_FINDINGS and len(good_planted) == len(planted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
