"""LRP speed: lrp-lightning vs zennit 0.5.1 vs a plain input gradient, in one process.

For each model and composite, the three methods run interleaved (ours, zennit, gradient) for several
repeats on the same inputs; the median time of each is reported with the ratios
``ours / gradient``, ``zennit / gradient`` and ``zennit / ours`` (speed-up over zennit). On CUDA the peak
extra memory of each method is printed too (max_memory_allocated above the memory held before); the CPU's
peak memory is measured by ``benchmarks/lrp_memory.py`` (a fresh process per method).

    python benchmarks/lrp_speed.py                        # issue targets: batch 8, 224x224, VGG16 and ResNet50
    python benchmarks/lrp_speed.py --models vgg16 --composites epsilon_gamma_box --repeats 3
    python benchmarks/lrp_speed.py --models resnet50 --peer-repeats 3   # zennit timed in 3 of the 5 rounds
    python benchmarks/lrp_speed.py --small                # overhead-bound: ResNet-18 1x32 px, ResNet-50 1x64 px
    python benchmarks/lrp_speed.py --small --compile      # also ours with compiled rule kernels, and the ratio
    python benchmarks/lrp_speed.py --transformers         # vit_b_16 and a text encoder: AttnLRP vs gradient vs LXT

``--small`` times ours and zennit each registered once for all calls ("kept", on its own copy of the model,
as the callback does for an epoch's probe set, and as a user attributing many batches would) against the
gradient, reports the median and the min-max spread of the ratios over the repeats, and counts the
kernel-launching ATen operations of one attribution (profiler; views and ``detach`` not counted). With
``--compile`` it adds "ours compiled" (the rule kernels under ``torch.compile``, see
:func:`lrp_lightning.core.set_compile_kernels`; compilation happens in the warm-up, not timed) and prints the
median of compiled / uncompiled over the repeats.

``--transformers`` times torchvision's ``vit_b_16`` (random init, batch 8, 224x224; LXT with its ViT map,
cp_LRP, so our CP-LRP is timed too as ``ours_cp``) and a BERT-base-sized encoder (12 layers, hidden 768,
12 heads, random init, batch 8, 128 tokens): AttnLRP (composite ``attn_lrp``, which picks
:class:`~lrp_lightning.huggingface.BertCanonizer`), the plain gradient x input of the token embeddings, and
LXT 2.1 (its patches applied around each of its runs and removed after).

Every mode prints the machine's load average at its start and its own wall time at the end.
zennit is a peer used only here and in tests (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import os
import platform
import statistics
import sys
import time
import warnings

import torch
import torchvision

from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.core import compile_kernels

COMPOSITES = ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"]


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
    print(f"{'case':22s} {'composite':21s} {'method':13s} {'ms':>8s} {'x grad':>7s} {'spread':>13s} {'ops':>6s}")
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
            if args.compile:
                runners["ours compiled"] = compiled_runner(kept_runner(copy.deepcopy(model), name, kwargs, model_name))
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
                    f"{model_name} 1x{size}px{'':8s} {name:21s} {key:13s} {statistics.median(values) * 1e3:8.2f} "
                    f"{statistics.median(ratios):7.2f} {min(ratios):6.2f}-{max(ratios):<6.2f} "
                    f"{count_ops(runners[key], x, target) if device.type == 'cpu' else -1:6d}",
                    flush=True,
                )
            if args.compile:
                ratios = [c / u for c, u in zip(times["ours compiled"], times["ours kept"])]
                print(
                    f"{model_name} 1x{size}px{'':8s} {name:21s} compiled / uncompiled: {statistics.median(ratios):.2f} "
                    f"[{min(ratios):.2f}-{max(ratios):.2f}]",
                    flush=True,
                )


def compiled_runner(run):
    """``run`` with the rule kernels compiled (:func:`lrp_lightning.core.compile_kernels`)."""

    def compiled(x, target):
        with compile_kernels(True):
            return run(x, target)

    return compiled


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


def _interleaved(label: str, runners: dict, repeats: int, device: torch.device) -> None:
    """Run ``runners`` (ours, grad, lxt) interleaved ``repeats`` times after a warm-up; print medians, spread."""
    times: dict[str, list[float]] = {key: [] for key in runners}
    for fn in runners.values():  # warm-up
        fn()
    for _ in range(repeats):
        for key, fn in runners.items():
            elapsed, _ = timed(lambda x, t, fn=fn: fn(), None, None, device)
            times[key].append(elapsed)
            print(f"  {label} {key}: {elapsed:.3f} s", file=sys.stderr, flush=True)
    med = {key: statistics.median(values) for key, values in times.items()}
    print(f"{label}; median of {repeats}")
    print(f"  {'method':8s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for key, values in times.items():
        print(f"  {key:8s} {med[key]:9.3f} {min(values):7.3f} {max(values):7.3f}")
    print(
        f"  AttnLRP / gradient: {med['ours'] / med['grad']:.2f}   AttnLRP / LXT: {med['ours'] / med['lxt']:.2f}",
        flush=True,
    )
    if "ours_cp" in med:  # LXT's ViT map is CP-LRP: the like-for-like ratio
        print(f"  CP-LRP / LXT: {med['ours_cp'] / med['lxt']:.2f}", flush=True)


def _relevance_runners(model, composite, make_input, seed, lxt_model, lxt_context, call):
    """ours (LRP relevance), grad (gradient x input) and lxt (gradient x input inside LXT's patches)."""

    def ours():
        leaf = make_input().requires_grad_(True)
        with composite.context(model):
            (relevance,) = torch.autograd.grad(call(model, leaf), leaf, seed)
        return relevance

    def gradient():
        leaf = make_input().requires_grad_(True)
        (grad,) = torch.autograd.grad(call(model, leaf), leaf, seed)
        return grad * leaf

    def lxt():
        with lxt_context():
            leaf = make_input().requires_grad_(True)
            (grad,) = torch.autograd.grad(call(lxt_model, leaf), leaf, seed)
        return grad * leaf

    return {"ours": ours, "grad": gradient, "lxt": lxt}


@contextlib.contextmanager
def _lxt_vit_patched():
    """LXT 2.1's torchvision-ViT patches (cp_LRP: GELU, LayerNorm, MultiheadAttention), removed afterwards."""
    from lxt.efficient import monkey_patch
    from torchvision.models import vision_transformer

    classes = (torch.nn.GELU, torch.nn.LayerNorm, torch.nn.MultiheadAttention)
    saved = [(cls, dict(cls.__dict__)) for cls in classes]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monkey_patch(vision_transformer)
        yield
    finally:
        for cls, attributes in saved:
            for name in ("forward", "original_forward"):
                if name in attributes:
                    setattr(cls, name, attributes[name])
                elif name in cls.__dict__:
                    delattr(cls, name)


def transformer_rows(args, device) -> None:
    """AttnLRP vs gradient vs LXT 2.1 on vit_b_16 and a BERT-base-sized encoder, interleaved."""
    import transformers

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "lrp"))
    from hf_testing import lxt_patched

    batch = args.batch
    if "vit" in args.transformer_models:
        torch.manual_seed(0)
        vit = torchvision.models.vit_b_16(num_classes=1000, image_size=args.size).eval().to(device)
        images = torch.randn(batch, 3, args.size, args.size, device=device)
        target = torch.eye(1000, device=device)[torch.arange(batch) % 1000]
        runners = _relevance_runners(
            vit,
            get_composite("attn_lrp", canonizers="auto"),  # picks VisionTransformerCanonizer
            images.clone,
            target,
            vit,  # LXT patches classes: the same model runs its forward inside the patches
            _lxt_vit_patched,
            lambda model, leaf: model(leaf),
        )
        # LXT's ViT map holds the attention weights constant (CP-LRP), which skips the queries' and keys'
        # backward that AttnLRP (and the gradient) compute: our CP-LRP is the like-for-like peer
        cp_composite = get_composite("cp_lrp", canonizers="auto")
        runners["ours_cp"] = _relevance_runners(
            vit, cp_composite, images.clone, target, vit, _lxt_vit_patched, lambda model, leaf: model(leaf)
        )["ours"]
        label = f"ViT: vit_b_16, batch {batch}, 3x{args.size}x{args.size}, float32 (LXT: its ViT map, cp_LRP)"
        _interleaved(label, runners, args.repeats, device)
    if "bert" in args.transformer_models:
        length = args.tokens
        config = transformers.BertConfig(num_labels=2, attn_implementation="eager")
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config).eval().to(device)
        with lxt_patched("bert") as modeling:
            lxt_model = modeling.BertForSequenceClassification(config).eval().to(device)
            lxt_model.load_state_dict(model.state_dict())
        ids = torch.randint(1000, config.vocab_size, (batch, length), device=device)
        embeds = model.get_input_embeddings()(ids).detach()
        seed = torch.zeros(batch, 2, device=device)
        seed[:, 0] = 1.0
        runners = _relevance_runners(
            model,
            get_composite("attn_lrp", canonizers="auto"),  # picks BertCanonizer
            embeds.clone,
            seed,
            lxt_model,
            functools.partial(lxt_patched, "bert"),
            lambda model, leaf: model(inputs_embeds=leaf).logits,
        )
        _interleaved(
            f"text encoder: BERT-base config, batch {batch}, {length} tokens, float32", runners, args.repeats, device
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--composites", nargs="+", default=COMPOSITES)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--peer-repeats",
        type=int,
        default=None,
        help="time zennit in the first N interleaved repeats only (default: all); it is the slowest method",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="ResNet-18 1x32 px and ResNet-50 1x64 px, kept")
    parser.add_argument("--compile", action="store_true", help="with --small: also ours with compiled rule kernels")
    parser.add_argument("--transformers", action="store_true", help="time a BERT-base-sized text encoder instead")
    parser.add_argument("--tokens", type=int, default=128, help="sequence length of --transformers")
    parser.add_argument(
        "--transformer-models", nargs="+", default=["vit", "bert"], choices=["vit", "bert"], help="with --transformers"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.transformers:
        transformer_rows(args, device)
        return
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
    peer_repeats = args.repeats if args.peer_repeats is None else max(1, min(args.peer_repeats, args.repeats))
    print(
        f"inputs: batch {args.batch}, 3x{args.size}x{args.size}, float32, random weights; median of {args.repeats} "
        f"(zennit: {peer_repeats})"
    )
    header = f"{'model':9s} {'composite':22s} {'ours s':>8s} {'zennit s':>9s} {'grad s':>8s} "
    header += f"{'ours/grad':>9s} {'zennit/grad':>11s} {'speed-up':>8s} "
    if device.type == "cuda":
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
            for repeat in range(args.repeats):
                for key, fn in runners.items():
                    if key == "zennit" and repeat >= peer_repeats:
                        continue  # the slowest method: timed in the first rounds only (--peer-repeats)
                    elapsed, _ = timed(fn, x, target, device)
                    times[key].append(elapsed)
            med = {key: statistics.median(values) for key, values in times.items()}
            print(
                f"{model_name:9s} {name:22s} {med['ours']:8.3f} {med['zennit']:9.3f} {med['grad']:8.3f} "
                f"{med['ours'] / med['grad']:9.2f} {med['zennit'] / med['grad']:11.2f} "
                f"{med['zennit'] / med['ours']:8.2f} "
                + (
                    f"{memory['ours'] / 2**20:8.0f}M {memory['zennit'] / 2**20:9.0f}M {memory['grad'] / 2**20:8.0f}M"
                    if device.type == "cuda"
                    else ""
                ),
                flush=True,
            )


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"wall time {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
