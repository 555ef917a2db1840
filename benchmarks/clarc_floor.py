"""The floor of the corner share: how much relevance a watermark gets from a model that never used it.

The README's "find and fix a shortcut" table judges each ClArC method by the corner share: the
relevance share in the finding's corner region of the watermarked 3s against the clean 3s. This
script measures what that ratio is when nothing rewards the watermark, so that the table's ratios
can be read against it. It trains two runs of the digits demo (examples/clever_hans_digits.py),
same seed and settings:

* **unrevised**: the watermark on half of the 3s (a shortcut), measured by ``ClArCCallback(None)``,
  which records the finding's corner cells on the analysis grid;
* **control** (``--control``): the watermark on half of *every* class, so it predicts nothing.

For both, the last epoch's stored heatmaps of class 3 give each sample's share of absolute
relevance in the finding's corner cells (:func:`lrp_lightning.revise.region_share`, the callback's
measure); the script prints the mean share of the watermarked and of the clean 3s and their ratio.

    python benchmarks/clarc_floor.py                 # the README's figures: 5 epochs, all digits
    python benchmarks/clarc_floor.py --fast          # 3 epochs, 80 digits per class (a smoke run)

No timing is measured; the machine's load is printed only because the runs take minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import multiprocessing
import os
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _demo():
    name = "clever_hans_digits"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "clever_hans_digits.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the script is executed
        spec.loader.exec_module(module)
    return sys.modules[name]


def _run(out: Path, settings: dict) -> dict:
    """One demo run (a top-level function of plain values: ``--jobs`` runs it in a worker process)."""
    import torch

    if os.environ.get("LRP_DEMO_THREADS"):
        torch.set_num_threads(int(os.environ["LRP_DEMO_THREADS"]))
    demo = _demo()
    result = demo.run(out, demo.Settings(**settings), verbose=False)
    keep = ("run_dir", "watermarked_probe_ids", "revision", "shortcut_rate", "clean_accuracy")
    return {key: getattr(result, key) for key in keep}


def corner_shares(run_dir: str, watermarked: list[int], cells: list[int], grid: list[int], label: int = 3):
    """Mean share of absolute relevance in ``cells``, last stored epoch: (watermarked, clean) samples of ``label``."""
    from lrp_lightning import store as S
    from lrp_lightning.revise import region_share

    store = S.RunStore(run_dir)
    probe = store.probe_table([S.SAMPLE_ID, S.LABEL]).to_pydict()
    ids = np.asarray(probe[S.SAMPLE_ID])[np.asarray(probe[S.LABEL]) == label]
    last = store.epochs()[-1].epoch
    stored_ids, maps = store.heatmaps(last, ids)
    shares = region_share(maps, cells, grid)
    marked = np.isin(stored_ids, watermarked)
    if not marked.any() or marked.all():
        raise RuntimeError(f"class {label} of {run_dir} needs watermarked and clean probe samples")
    return float(shares[marked].mean()), float(shares[~marked].mean()), last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (default 5, the demo's)")
    parser.add_argument(
        "--samples-per-class", type=int, default=None, help="digits per class (default: all, about 180)"
    )
    parser.add_argument("--fast", action="store_true", help="3 epochs, 80 digits per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="run the two trainings in this many processes")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    demo = _demo()
    base = demo.Settings(epochs=args.epochs, samples_per_class=args.samples_per_class, seed=args.seed)
    if args.fast:
        base = replace(base, epochs=3, samples_per_class=80)
    settings = {"unrevised": asdict(replace(base, revise="none")), "control": asdict(replace(base, control=True))}
    out = args.out or Path(tempfile.mkdtemp(prefix="clarc_floor_"))
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average); runs in {out}")
    if args.jobs > 1:
        os.environ["LRP_DEMO_THREADS"] = "1"
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {name: pool.submit(_run, out / name, s) for name, s in settings.items()}
            results = {name: f.result() for name, f in futures.items()}
    else:
        results = {name: _run(out / name, s) for name, s in settings.items()}

    from lrp_lightning import store as S

    record = results["unrevised"]["revision"]
    if not record or not record.get(S.REVISION_REGION_CELLS):
        print("the unrevised run found no watermark finding, so there is no corner to measure; try more epochs")
        return 1
    cells, grid = record[S.REVISION_REGION_CELLS], record[S.REVISION_GRID]
    print(
        f"\ncorner region: finding {record[S.REVISION_FINDING_ID]} ({record[S.REVISION_REGION]}, "
        f"{len(cells)} cells of the {grid[0]}x{grid[1]} analysis grid)"
    )
    print("| run | watermark predicts | watermarked 3s | clean 3s | ratio | shortcut check |")
    print("|---|---|---:|---:|---:|---:|")
    for name, what in (("unrevised", "class 3"), ("control", "nothing (on half of every class)")):
        result = results[name]
        marked, clean, last = corner_shares(result["run_dir"], result["watermarked_probe_ids"], cells, grid)
        print(
            f"| {name} | {what} | {marked:.1%} | {clean:.1%} | {marked / clean:.1f}x | {result['shortcut_rate']:.1%} |"
        )
    print(
        f"(last epoch {last}; share of absolute relevance in the corner cells, mean over the probe samples of class "
        "3; shortcut check: other digits classified as 3 once the watermark is added)"
    )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
