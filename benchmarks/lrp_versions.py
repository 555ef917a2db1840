"""This checkout's LRP engine against other commits' engines, interleaved in one process, each as a ratio to a gradient.

Answers "is it a regression or the run-to-run spread?" for a change of the engine: every engine attributes
the same model and inputs, registered per call (as ``lrp_speed.py``'s batch-8 table does), in rotating
order, each round between two gradients whose mean is that round's reference. It prints, per composite,
the median and min-max over the rounds of each engine's ratio to the gradient, and of each engine's time
over the first reference commit's in the same round (paired: the machine's load moves both), plus the
kernel-launching ATen operations of one attribution (profiler; deterministic) and the machine's load.

    python benchmarks/lrp_versions.py --ref b21fbdb d0bbbf9 --models resnet50     # batch 8, 224 px
    python benchmarks/lrp_versions.py --ref b21fbdb --models resnet18 --batch 1 --size 32 --repeats 9
    OMP_NUM_THREADS=1 python benchmarks/lrp_versions.py --ref b21fbdb --threads 1 --cpu-time

Each ``--ref`` commit's ``lrp_lightning`` package is extracted with ``git archive`` into a temporary folder
under another name (``lrp_<commit>``; the engine imports itself relatively), so the engines share one
process, torch and thread pool. ``--cpu-time`` times with the process's CPU time instead of the wall clock:
on a shared machine, time spent waiting for a core then does not count (use it with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lrp_speed import COMPOSITES, count_ops, gradient_runner  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def extract(commit: str, folder: str) -> str:
    """``commit``'s ``lrp_lightning`` as the package ``lrp_<commit>`` in ``folder``; return the package name."""
    name = "lrp_" + commit.replace("-", "_").replace(".", "_").replace("/", "_")
    target = os.path.join(folder, commit)
    os.makedirs(target)
    archive = subprocess.run(
        ["git", "-C", REPO, "archive", commit, "lrp_lightning"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    os.rename(os.path.join(target, "lrp_lightning"), os.path.join(folder, name))
    # rules written for Zennit are told from ours by their module's top-level package name
    protocol = os.path.join(folder, name, "_hook_protocol.py")
    if os.path.exists(protocol):
        with open(protocol) as handle:
            text = handle.read()
        with open(protocol, "w") as handle:
            handle.write(text.replace('== "lrp_lightning"', '== __name__.split(".")[0]'))
    return name


def runner(package: str, model: torch.nn.Module, name: str, kwargs: dict):
    composites = importlib.import_module(package + ".composites")
    attribution = importlib.import_module(package + ".attribution")

    def run(x, target):
        with attribution.Gradient(model, composites.get_composite(name, canonizers="auto", **kwargs)) as attributor:
            return attributor(x, target)[1]

    return run


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", nargs="+", required=True, help="commits whose engines to compare with this one")
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--composites", nargs="+", default=COMPOSITES)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpu-time", action="store_true", help="the process's CPU time instead of wall time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    folder = tempfile.mkdtemp(prefix="lrp_versions_")
    try:
        compare(args, clock, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compare(args: argparse.Namespace, clock, folder: str) -> None:
    sys.path.insert(0, folder)
    engines = {commit: extract(commit, folder) for commit in args.ref}
    engines["this"] = "lrp_lightning"
    labels = list(engines)
    print(
        f"inputs: batch {args.batch}, 3x{args.size}x{args.size}; {torch.get_num_threads()} threads; "
        f"{'CPU' if args.cpu_time else 'wall'} time; {args.repeats} rounds; load average {os.getloadavg()}",
        flush=True,
    )
    for model_name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, model_name)(num_classes=1000).eval()
        x = torch.randn(args.batch, 3, args.size, args.size)
        target = torch.eye(1000)[torch.arange(args.batch) % 1000]
        gradient = gradient_runner(model)
        gradient(x, target)
        for name in args.composites:
            kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
            runs = {label: runner(engines[label], model, name, kwargs) for label in labels}
            first = {label: run(x, target) for label, run in runs.items()}  # warm-up
            differs = {
                label: float((value - first[labels[0]]).abs().max())
                for label, value in first.items()
                if label != labels[0]
            }
            ops = {label: count_ops(run, x, target) for label, run in runs.items()}
            ratios: dict[str, list[float]] = {label: [] for label in labels}
            for repeat in range(args.repeats):
                order = labels[repeat % len(labels) :] + labels[: repeat % len(labels)]
                start = clock()
                gradient(x, target)
                reference = clock() - start
                times = {}
                for label in order:
                    start = clock()
                    runs[label](x, target)
                    times[label] = clock() - start
                start = clock()
                gradient(x, target)
                reference = (reference + clock() - start) / 2
                for label in labels:
                    ratios[label].append(times[label] / reference)
            print(f"{model_name} {name} (gradient: {count_ops(gradient, x, target)} ops)", flush=True)
            for label in labels:
                paired = [r / b for r, b in zip(ratios[label], ratios[labels[0]])]
                print(
                    f"  {label:10s} x gradient {spread(ratios[label])}   / {labels[0]} {spread(paired)}   "
                    f"ops {ops[label]:5d}   max |R - R_{labels[0]}| {differs.get(label, 0.0):.2g}",
                    flush=True,
                )
            print(f"  load average now {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"wall time {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
