"""Peak extra memory of one attribution: lrp-lightning vs zennit 0.5.1 vs a plain input gradient.

For each model (torchvision, random init) and method, one attribution of a batch (default 8 images of
224x224) runs in a fresh process; the peak memory it needs above the model and the input is printed,
with the ratio to zennit's for the same composite, and the bytes of lrp-lightning's weight cache (w+, w-,
gamma and batch-norm-merged weights, :func:`lrp_lightning.core.derived_param`) relative to the model's
parameter bytes. Each attribution registers its composite and removes it afterwards, as one call of
``with Gradient(model, composite) as attributor`` does; the cache is built inside the measured call.

How the CPU peak is measured, and why this way:

* **Kernel high-water mark (VmHWM), reset before the call.** After building the model and input and one
  warm-up attribution (one-time allocations: oneDNN primitives, thread pools), the process writes ``5`` to
  ``/proc/self/clear_refs`` (Linux >= 4.0), which resets VmHWM to the current resident size; the peak is
  VmHWM after the call minus VmRSS before it. This sees every byte the call touches: tensors, autograd's
  saved tensors, oneDNN scratch buffers, allocations outside PyTorch's allocator.
* **glibc returns freed memory at once.** The child runs with ``MALLOC_MMAP_THRESHOLD_=65536`` (which also
  switches off glibc's dynamic threshold) and ``MALLOC_TRIM_THRESHOLD_=0``, so every tensor over 64 KiB is
  its own mapping, returned to the kernel when freed. Without this, memory freed before the call (the
  warm-up's activations) stays resident and is reused silently, and the rise above VmRSS under-counts
  the call by up to hundreds of MB.
* **Cross-check, PyTorch's allocator.** ``--tensor-peak`` adds the peak of live CPU tensor bytes during the
  call from the profiler's allocation events (``profile_memory=True``); it misses memory outside PyTorch's
  allocator but is exact for tensors. The two agree when the measure is sound (ResNet-18, batch 4,
  112 px, epsilon_gamma_box: 108 MiB both for ours, 125 MiB both for zennit).

A peak RSS sampled from outside (psutil polling) would miss short peaks, and ``ru_maxrss`` cannot be
reset, so it reports the model construction's peak when that is higher. On CUDA the peak is
``torch.cuda.max_memory_allocated()`` above ``memory_allocated()`` before the call.

    python benchmarks/lrp_memory.py                        # VGG16 and ResNet50, batch 8, 224x224, CPU
    python benchmarks/lrp_memory.py --models resnet50 --batch 2 --size 112 --tensor-peak

zennit is a peer used only here and in tests (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

import torch
import torchvision

COMPOSITES = ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"]
MiB = 2**20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _runner(model: torch.nn.Module, model_name: str, method: str, composite: str | None):
    """One attribution (registration included) or one plain input gradient."""
    kwargs = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
    if method == "grad":

        def run(x, target):
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(leaf), leaf, target)
            return grad

        return run
    if method == "zennit":
        from zennit import composites as zc
        from zennit import torchvision as ztv
        from zennit.attribution import Gradient as ZGradient

        canonizer = ztv.ResNetCanonizer() if model_name.startswith("resnet") else ztv.VGGCanonizer()
        zennit_composite = zc.COMPOSITES[composite](canonizers=[canonizer], **kwargs)

        def run(x, target):
            with ZGradient(model, zennit_composite) as attributor:
                return attributor(x, target)[1]

        return run
    from lrp_lightning.attribution import Gradient
    from lrp_lightning.composites import get_composite

    ours = get_composite(composite, canonizers="auto", **kwargs)

    def run(x, target):
        with Gradient(model, ours) as attributor:
            return attributor(x, target)[1]

    return run


def _tensor_peak(run, x, target) -> int:
    """Peak of live CPU tensor bytes allocated during ``run`` (the profiler's allocation events)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(x, target)
    changes: list[tuple[int, int]] = []
    pending = list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        node = pending.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            changes.append((node.start_time_ns, node.extra_fields.alloc_size))  # negative: a free
        pending.extend(node.children)
    live = peak = 0
    for _, change in sorted(changes):
        live += change
        peak = max(peak, live)
    return peak


def _cache_bytes(model: torch.nn.Module, model_name: str, composite: str) -> int:
    """Bytes of lrp-lightning's weight cache after one attribution, with the composite still registered."""
    from lrp_lightning import core
    from lrp_lightning.attribution import Gradient
    from lrp_lightning.composites import get_composite

    kwargs = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
    with Gradient(model, get_composite(composite, canonizers="auto", **kwargs)) as attributor:
        attributor(torch.randn(1, 3, 64, 64), torch.eye(1000)[[0]])
        return core.derived_bytes(model)


def measure(model_name: str, method: str, composite: str | None, batch: int, size: int, device: str, tensor: bool):
    """In a fresh process: one method's peak extra memory (and the cache's bytes for ours), as JSON."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = getattr(torchvision.models, model_name)(num_classes=1000).eval().to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    target = torch.eye(1000, device=dev)[torch.arange(batch) % 1000]
    run = _runner(model, model_name, method, composite)
    run(x, target)  # warm-up: one-time allocations are not the method's
    gc.collect()
    result: dict[str, float] = {}
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run(x, target)
        torch.cuda.synchronize()
        result["peak"] = torch.cuda.max_memory_allocated() - before
    else:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS
        before = _status_kib("VmRSS")
        run(x, target)
        result["peak"] = (_status_kib("VmHWM") - before) * 1024
        if tensor:
            gc.collect()
            result["tensor_peak"] = _tensor_peak(run, x, target)
    if method == "ours":
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        result["cache_ratio"] = _cache_bytes(model.cpu(), model_name, composite) / params
    print(json.dumps(result))


def _child(model_name: str, method: str, composite: str | None, args) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, __file__, "--child", model_name, method, composite or "-", str(args.batch)]
    command += [str(args.size), args.device, "1" if args.tensor_peak else "0"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 9 and sys.argv[1] == "--child":
        model_name, method, composite, batch, size, device, tensor = sys.argv[2:]
        measure(
            model_name, method, None if composite == "-" else composite, int(batch), int(size), device, tensor == "1"
        )
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--composites", nargs="+", default=COMPOSITES, choices=COMPOSITES)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tensor-peak", action="store_true", help="CPU: also the profiler's live-tensor peak")
    args = parser.parse_args()
    measure_name = "max_memory_allocated" if args.device.startswith("cuda") else "VmHWM rise, glibc mmap >= 64 KiB"
    print(
        f"peak extra memory of one attribution (MiB), batch {args.batch}, 3x{args.size}x{args.size}, float32, "
        f"random weights; device {args.device} ({measure_name}); load average {os.getloadavg()[0]:.1f}"
    )
    tensor_head = f" {'tensors ours':>12s} {'tensors zen':>11s}" if args.tensor_peak else ""
    print(
        f"{'model':9s} {'composite':21s} {'grad':>7s} {'ours':>7s} {'zennit':>7s} {'ours/zennit':>11s} "
        f"{'ours/grad':>9s} {'cache/params':>12s}{tensor_head}",
        flush=True,
    )
    for model_name in args.models:
        grad = _child(model_name, "grad", None, args)
        for composite in args.composites:
            ours = _child(model_name, "ours", composite, args)
            zennit = _child(model_name, "zennit", composite, args)
            tensor_cells = (
                f" {ours['tensor_peak'] / MiB:12.0f} {zennit['tensor_peak'] / MiB:11.0f}" if args.tensor_peak else ""
            )
            print(
                f"{model_name:9s} {composite:21s} {grad['peak'] / MiB:7.0f} {ours['peak'] / MiB:7.0f} "
                f"{zennit['peak'] / MiB:7.0f} {ours['peak'] / zennit['peak']:11.2f} "
                f"{ours['peak'] / grad['peak']:9.2f} {ours['cache_ratio']:12.2f}{tensor_cells}",
                flush=True,
            )


if __name__ == "__main__":
    main()
