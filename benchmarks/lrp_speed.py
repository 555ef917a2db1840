"""LRP speed and memory: lrp-lightning vs zennit 0.5.1 vs a plain input gradient, in one process.

For each model and composite, the three methods run interleaved (ours, zennit, gradient) for several
repeats on the same inputs; the median time of each is reported with the ratios
``ours / gradient``, ``zennit / gradient`` and ``zennit / ours`` (speed-up over zennit), plus the peak
extra memory of each method (CUDA: max_memory_allocated above the memory held before; CPU with
``--memory``: rise of the process's resident high-water mark VmHWM above the resident memory before
the method ran, in a fresh process per method, after resetting the mark through /proc/self/clear_refs).

    python benchmarks/lrp_speed.py --memory               # issue targets: batch 8, 224x224
    python benchmarks/lrp_speed.py --batch 2 --size 112 --repeats 3 --models vgg16
    python benchmarks/lrp_speed.py --small                # overhead-bound: ResNet-18 1x32 px, ResNet-50 1x64 px

``--small`` times each composite registered per call (as above) and registered once for all calls ("kept",
as the callback does for an epoch's probe set, and as a user attributing many batches would), reports the
median and the min-max spread of the ratios over the repeats, and counts the kernel-launching ATen
operations of one attribution (profiler; views and ``detach`` not counted) for ours, zennit and the gradient.

zennit is a peer used only here and in tests (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torchvision

from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite

COMPOSITES = ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"]


def peak_memory_subprocess(model_name: str, name: str, method: str, batch: int, size: int) -> int:
    """Peak extra memory of one attribution, measured in a fresh process (CPU: ru_maxrss growth)."""
    command = [sys.executable, __file__, "--measure-memory", model_name, name, method, str(batch), str(size)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def measure_memory(model_name: str, name: str, method: str, batch: int, size: int) -> None:
    """In a fresh process: build model and input, reset the high-water mark, run once, print its rise."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(num_classes=1000).eval()
    x = torch.randn(batch, 3, size, size)
    target = torch.eye(1000)[torch.arange(batch) % 1000]
    kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
    runners = {
        "ours": lambda: ours_runner(model, name, kwargs),
        "zennit": lambda: zennit_runner(model, name, kwargs, model_name),
        "grad": lambda: gradient_runner(model),
    }
    fn = runners[method]()
    with torch.no_grad():
        model(x)
    gc.collect()
    # reset the kernel's high-water mark (Linux >= 4.0) so model construction does not mask the peak
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status_kib("VmRSS")
    fn(x, target)
    print((_status_kib("VmHWM") - before) * 1024)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def zennit_runner(model, name, kwargs, model_name):
    from zennit import composites as zc
    from zennit import torchvision as ztv
    from zennit.attribution import Gradient as ZGradient

    canonizers = [ztv.ResNetCanonizer()] if model_name.startswith("resnet") else [ztv.VGGCanonizer()]
    composite = zc.COMPOSITES[name](canonizers=canonizers, **kwargs)

    def run(x, target):
        with ZGradient(model, composite) as attributor:
            return attributor(x, target)[1]

    return run


def kept_runner(model, name, kwargs, model_name, peer=False):
    """An attributor registered once (entered here, left when the process ends), called per repeat."""
    if peer:
        from zennit import composites as zc
        from zennit import torchvision as ztv
        from zennit.attribution import Gradient as ZGradient

        canonizers = [ztv.ResNetCanonizer()] if model_name.startswith("resnet") else [ztv.VGGCanonizer()]
        attributor = ZGradient(model, zc.COMPOSITES[name](canonizers=canonizers, **kwargs))
    else:
        attributor = Gradient(model, get_composite(name, canonizers="auto", **kwargs))
    attributor.__enter__()
    return lambda x, target: attributor(x, target)[1]


METADATA_OPS = {"detach", "expand", "select", "unsqueeze", "reshape", "flatten", "unflatten", "view", "to", "alias"}


def count_ops(fn, x, target) -> int:
    """Top-level kernel-launching ATen operations of one call (as tests/lrp/test_host_sync.py counts them)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(x, target)
    return sum(
        1
        for event in prof.events()
        if event.name.startswith("aten::")
        and event.name[6:] not in METADATA_OPS
        and (event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::"))
    )


def small(args, device) -> None:
    """Overhead-bound inputs: per-layer cost, not arithmetic, dominates."""
    print(f"median of {args.repeats} interleaved repeats; ratios to the gradient as median [min-max over repeats]")
    print(f"{'case':22s} {'composite':21s} {'method':12s} {'ms':>8s} {'x grad':>7s} {'spread':>13s} {'ops':>6s}")
    for model_name, size in (("resnet18", 32), ("resnet50", 64)):
        model = getattr(torchvision.models, model_name)(num_classes=1000).eval().to(device)
        x = torch.randn(1, 3, size, size, device=device)
        target = torch.eye(1000, device=device)[[7]]
        for name in args.composites:
            kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
            # each kept attributor on its own copy of the model: two registrations on one model would mix
            runners = {
                "grad": gradient_runner(model),
                "ours kept": kept_runner(copy.deepcopy(model), name, kwargs, model_name),
                "zennit kept": kept_runner(copy.deepcopy(model), name, kwargs, model_name, peer=True),
            }
            times = {key: [] for key in runners}
            for fn in runners.values():
                fn(x, target)
            for _ in range(args.repeats):
                for key, fn in runners.items():
                    elapsed, _ = timed(fn, x, target, device)
                    times[key].append(elapsed)
            grads = times["grad"]
            for key, values in times.items():
                ratios = [value / grad for value, grad in zip(values, grads)]
                print(
                    f"{model_name} 1x{size}px{'':8s} {name:21s} {key:12s} {statistics.median(values) * 1e3:8.2f} "
                    f"{statistics.median(ratios):7.2f} {min(ratios):6.2f}-{max(ratios):<6.2f} "
                    f"{count_ops(fn, x, target) if device.type == 'cpu' else -1:6d}",
                    flush=True,
                )


def ours_runner(model, name, kwargs):
    composite = get_composite(name, canonizers="auto", **kwargs)

    def run(x, target):
        with Gradient(model, composite) as attributor:
            return attributor(x, target)[1]

    return run


def gradient_runner(model):
    def run(x, target):
        leaf = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(leaf), leaf, target)
        return grad

    return run


def timed(fn, x, target, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(x, target)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--measure-memory":
        model_name, name, method, batch, size = sys.argv[2:]
        measure_memory(model_name, name, method, int(batch), int(size))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--composites", nargs="+", default=COMPOSITES)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory", action="store_true", help="CPU: peak memory per method in fresh processes")
    parser.add_argument("--small", action="store_true", help="ResNet-18 1x32 px and ResNet-50 1x64 px, kept")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
        + f", load average {os.getloadavg()[0]:.1f}"
    )
    if args.small:
        small(args, device)
        return
    print(f"inputs: batch {args.batch}, 3x{args.size}x{args.size}, float32, random weights; median of {args.repeats}")
    header = f"{'model':9s} {'composite':22s} {'ours s':>8s} {'zennit s':>9s} {'grad s':>8s} "
    header += f"{'ours/grad':>9s} {'zennit/grad':>11s} {'speed-up':>8s} "
    header += f"{'mem ours':>9s} {'mem zennit':>10s} {'mem grad':>9s}"
    print(header)
    for model_name in args.models:
        model = getattr(torchvision.models, model_name)(num_classes=1000).eval().to(device)
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        target = torch.eye(1000, device=device)[torch.arange(args.batch) % 1000]
        for name in args.composites:
            kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
            runners = {
                "ours": ours_runner(model, name, kwargs),
                "zennit": zennit_runner(model, name, kwargs, model_name),
                "grad": gradient_runner(model),
            }
            times = {key: [] for key in runners}
            memory = {}
            for key, fn in runners.items():  # warm-up; then peak memory of each method
                fn(x, target)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    fn(x, target)
                    torch.cuda.synchronize()
                    memory[key] = torch.cuda.max_memory_allocated() - base
                elif args.memory:
                    memory[key] = peak_memory_subprocess(model_name, name, key, args.batch, args.size)
                else:
                    memory[key] = float("nan")
            for _ in range(args.repeats):
                for key, fn in runners.items():
                    elapsed, _ = timed(fn, x, target, device)
                    times[key].append(elapsed)
            med = {key: statistics.median(values) for key, values in times.items()}
            print(
                f"{model_name:9s} {name:22s} {med['ours']:8.3f} {med['zennit']:9.3f} {med['grad']:8.3f} "
                f"{med['ours'] / med['grad']:9.2f} {med['zennit'] / med['grad']:11.2f} "
                f"{med['zennit'] / med['ours']:8.2f} {memory['ours'] / 2**20:8.0f}M {memory['zennit'] / 2**20:9.0f}M "
                f"{memory['grad'] / 2**20:8.0f}M",
                flush=True,
            )


if __name__ == "__main__":
    main()
