"""GPU check of the LRP engine and LRPCallback on a CUDA machine (prints one PASS/FAIL line per check).

1. Every registered composite gives the same relevance on CUDA as on the CPU and as zennit 0.5.1 on CUDA (when
   installed), in float64 (VGG16 and ResNet50 with random weights); in float32 on CUDA, the same as zennit.
2. A Lightning fit on CUDA with ``LRPCallback`` ends with bitwise the same weights and RNG streams as the fit
   without it (``deterministic=True``); the relevance the callback stored from CUDA equals a CPU attribution
   of the final weights.

    python benchmarks/gpu_check.py                    # --cpu-dry-run: the same on the CPU (tests this script)
    python benchmarks/lrp_speed.py --device cuda          # speed and memory against zennit on the GPU
    python benchmarks/callback_overhead.py --accelerator gpu

Data: scikit-learn's digits (shipped with scikit-learn; nothing is downloaded), as in callback_overhead.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts

import copy  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from callback_overhead import DigitNet, make_data  # noqa: E402

from lrp_lightning import LRPCallback  # noqa: E402
from lrp_lightning.attribution import Gradient, explain  # noqa: E402
from lrp_lightning.composites import COMPOSITES, get_composite  # noqa: E402
from lrp_lightning.store import RunStore  # noqa: E402

warnings.filterwarnings("ignore", ".*does not have many workers.*|.*litlogger.*|.*litmodels.*")
FAILURES: list[str] = []


def report(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILURES.append(name)


def check_composites(device: torch.device) -> None:
    """float64: ours on CUDA = ours on the CPU = zennit on CUDA (to 1e-9); float32 on CUDA: ours = zennit (VGG16)."""
    torch.backends.cudnn.allow_tf32 = False  # float32 is compared in float32, not in TF32's 10-bit mantissa
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        from zennit import composites as zennit_composites
        from zennit import torchvision as zennit_torchvision
        from zennit.attribution import Gradient as ZennitGradient
    except ImportError:
        zennit_composites = None
    for model_name, dtype in (("vgg16", torch.float64), ("resnet50", torch.float64), ("vgg16", torch.float32)):
        torch.manual_seed(0)
        model = getattr(torchvision.models, model_name)(num_classes=10).eval().to(dtype)
        for module in model.modules():  # zennit keeps a merged batch norm's eps (see test_zennit_parity.py)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 1e-12  # (CUDA refuses 0; zennit's 1 / sqrt(1 + eps) is then 1 - 5e-13)
        x = torch.randn(2, 3, 64, 64, dtype=dtype)
        target = torch.eye(10, dtype=dtype)[[3, 7]]
        tolerance = 1e-9 if dtype == torch.float64 else 1e-4
        for name in COMPOSITES:
            if dtype == torch.float32 and name == "beta_smooth":
                continue  # in float32 only zennit is the oracle, and it is none for beta_smooth (below)
            kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
            checks = []
            if dtype == torch.float64:  # float32 on cuDNN and on the CPU round differently (algorithms, TF32)
                with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
                    cpu = attributor(x, target)[1]
            model.to(device)
            with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
                gpu = attributor(x.to(device), target.to(device))[1]
            if dtype == torch.float64:
                checks.append(("cuda vs cpu", ((gpu.cpu() - cpu).abs().max() / cpu.abs().max()).item()))
            # zennit reads the input of in-place ReLUs after they overwrote it (beta_smooth): not an oracle there
            if zennit_composites is not None and name in zennit_composites.COMPOSITES and name != "beta_smooth":
                canonizer = (
                    zennit_torchvision.ResNetCanonizer()
                    if model_name == "resnet50"
                    else zennit_torchvision.VGGCanonizer()
                )
                with ZennitGradient(model, zennit_composites.COMPOSITES[name](canonizers=[canonizer], **kwargs)) as z:
                    theirs = z(x.to(device), target.to(device))[1]
                checks.append(("vs zennit on cuda", ((gpu - theirs).abs().max() / theirs.abs().max()).item()))
            model.cpu()
            ok = bool(torch.isfinite(gpu).all()) and bool(checks) and all(value <= tolerance for _, value in checks)
            detail = ", ".join(f"{label} {value:.1e}" for label, value in checks) + f" (max relative, <= {tolerance})"
            report(f"{model_name} {str(dtype)[6:]} {name} cuda", ok, detail)


def fit(root: Path, train, val, with_callback: bool, accelerator: str) -> tuple[dict, L.Trainer, L.LightningModule]:
    L.seed_everything(0, verbose=False)
    callbacks = [LRPCallback(num_samples=64, composite_kwargs={"low": 0.0, "high": 1.0})] if with_callback else []
    trainer = L.Trainer(
        max_epochs=2,
        accelerator=accelerator,
        devices=1,
        deterministic=True,
        default_root_dir=root,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = DigitNet()
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=128))
    cuda_draw = torch.rand(1, device="cuda").item() if accelerator == "gpu" else 0.0
    draws = (torch.rand(1).item(), cuda_draw, float(np.random.rand()), random.random())  # noqa: NPY002
    state = {key: value.cpu() for key, value in copy.deepcopy(model.state_dict()).items()}
    return {**state, "draws": torch.tensor(draws, dtype=torch.float64)}, trainer, model


def check_callback(accelerator: str) -> None:
    train, val = make_data(2048, 512)
    with tempfile.TemporaryDirectory() as tmp:
        without, _, _ = fit(Path(tmp) / "without", train, val, False, accelerator)
        with_callback, trainer, model = fit(Path(tmp) / "with", train, val, True, accelerator)
        differing = [key for key in without if not torch.equal(without[key], with_callback[key])]
        report("fit on cuda bitwise identical with LRPCallback", not differing, f"differing entries: {differing}")
        store = RunStore(trainer.log_dir)
        epochs = [info.epoch for info in store.epochs()]
        table = store.attributions(epochs[-1])
        ids, maps = store.heatmaps(epochs[-1])
        x = val.tensors[0][torch.as_tensor(np.asarray(ids), dtype=torch.long)]
        targets = torch.as_tensor(table.column("target").to_numpy(), dtype=torch.long)
        _, relevance = explain(
            model.cpu(), x, target=torch.eye(10)[targets], composite="epsilon_gamma_box", low=0.0, high=1.0
        )
        expected = relevance.sum(1).numpy()
        error = np.abs(maps - expected).max() / np.abs(expected).max()
        report(
            "callback on cuda stores the CPU relevance",
            epochs == [0, 1] and table.num_rows == 64 and error <= 2e-3,  # heatmaps are stored as float16
            f"epochs {epochs}, {table.num_rows} rows, max |stored - cpu| / max |cpu| = {error:.1e}",
        )


def main() -> None:
    dry_run = "--cpu-dry-run" in sys.argv  # the same checks on the CPU, to test this script without a GPU
    if not (dry_run or torch.cuda.is_available()):
        raise SystemExit("no CUDA device: this check needs a GPU (or --cpu-dry-run)")
    device = torch.device("cpu" if dry_run else "cuda")
    name = "cpu" if dry_run else torch.cuda.get_device_name()
    print(f"device {name}, torch {torch.__version__}, lightning {L.__version__}")
    for check, args in ((check_composites, (device,)), (check_callback, ("cpu" if dry_run else "gpu",))):
        try:
            check(*args)
        except Exception as error:  # report and go on with the next check
            report(check.__name__, False, f"{type(error).__name__}: {error}")
    print(f"{len(FAILURES)} failed" + (f": {FAILURES}" if FAILURES else ""))
    raise SystemExit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
