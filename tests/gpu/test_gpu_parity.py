"""The LRP engine and LRPCallback on a CUDA device: the same numbers as on the CPU and as Zennit.

1. Every registered composite gives the same relevance on CUDA as on the CPU and as zennit 0.5.1 on CUDA (when
   installed), in float64 (VGG16 and ResNet50 with random weights); in float32 on CUDA, the same as zennit.
2. A Lightning fit on CUDA with ``LRPCallback`` ends with bitwise the same weights and RNG streams as the fit
   without it (``deterministic=True``); the relevance the callback stored from CUDA equals a CPU attribution
   of the final weights.

Skipped without CUDA. ``LRP_GPU_TESTS_ON_CPU=1`` runs the same checks on the CPU, to test this module on a
machine without a GPU. Speed on the GPU is measured by ``benchmarks/lrp_speed.py --device cuda`` and
``benchmarks/callback_overhead.py --accelerator gpu``.

Data: scikit-learn's digits (shipped with scikit-learn; nothing is downloaded), as in
``benchmarks/callback_overhead.py``, whose model and data this module reuses.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts

import copy  # noqa: E402
import random  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from lrp_lightning.attribution import Gradient, explain  # noqa: E402
from lrp_lightning.composites import COMPOSITES, get_composite  # noqa: E402

ON_CPU = os.environ.get("LRP_GPU_TESTS_ON_CPU") == "1"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (ON_CPU or torch.cuda.is_available()),
        reason="needs a CUDA device (LRP_GPU_TESTS_ON_CPU=1 runs the same checks on the CPU)",
    ),
]

DEVICE = torch.device("cpu" if ON_CPU else "cuda")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

try:
    from zennit import composites as zennit_composites
    from zennit import torchvision as zennit_torchvision
    from zennit.attribution import Gradient as ZennitGradient
except ImportError:
    zennit_composites = None

MODELS = [("vgg16", torch.float64), ("resnet50", torch.float64), ("vgg16", torch.float32)]
CASES = [
    pytest.param(model_name, dtype, name, id=f"{model_name}-{str(dtype)[6:]}-{name}")
    for model_name, dtype in MODELS
    for name in COMPOSITES
    # in float32 only zennit is the oracle, and it is none for beta_smooth (below)
    if not (dtype == torch.float32 and name == "beta_smooth")
]


@pytest.fixture(scope="module", autouse=True)
def _no_tf32():
    """float32 is compared in float32, not in TF32's 10-bit mantissa."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


_MODELS: dict[tuple[str, torch.dtype], torch.nn.Module] = {}


def _model(model_name: str, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight torchvision model in evaluation mode on the CPU (built once per module)."""
    key = (model_name, dtype)
    if key not in _MODELS:
        torch.manual_seed(0)
        model = getattr(torchvision.models, model_name)(num_classes=10).eval().to(dtype)
        for module in model.modules():  # zennit keeps a merged batch norm's eps (see test_zennit_parity.py)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 1e-12  # (CUDA refuses 0; zennit's 1 / sqrt(1 + eps) is then 1 - 5e-13)
        _MODELS[key] = model
    return _MODELS[key]


@pytest.mark.parametrize(("model_name", "dtype", "name"), CASES)
def test_composite_on_cuda_equals_cpu_and_zennit(model_name, dtype, name):
    """float64: ours on CUDA = ours on the CPU = zennit on CUDA (to 1e-9); float32 on CUDA: ours = zennit."""
    model = _model(model_name, dtype)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 64, 64, dtype=dtype, generator=generator)
    target = torch.eye(10, dtype=dtype)[[3, 7]]
    tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
    # zennit reads the input of in-place ReLUs after they overwrote it (beta_smooth): not an oracle there
    with_zennit = zennit_composites is not None and name in zennit_composites.COMPOSITES and name != "beta_smooth"
    if dtype == torch.float32 and not with_zennit:
        pytest.skip("float32 on CUDA is compared with zennit only, which is not installed or has no such composite")
    checks = {}
    cpu = None
    if dtype == torch.float64:  # float32 on cuDNN and on the CPU round differently (algorithms, TF32)
        with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
            cpu = attributor(x, target)[1]
    model.to(DEVICE)
    try:
        with Gradient(model, get_composite(name, canonizers="auto", **kwargs)) as attributor:
            ours = attributor(x.to(DEVICE), target.to(DEVICE))[1]
        if cpu is not None:
            checks["cuda vs cpu"] = ((ours.cpu() - cpu).abs().max() / cpu.abs().max()).item()
        if with_zennit:
            canonizer = (
                zennit_torchvision.ResNetCanonizer() if model_name == "resnet50" else zennit_torchvision.VGGCanonizer()
            )
            composite = zennit_composites.COMPOSITES[name](canonizers=[canonizer], **kwargs)
            with ZennitGradient(model, composite) as attributor:
                theirs = attributor(x.to(DEVICE), target.to(DEVICE))[1]
            checks["vs zennit on cuda"] = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    finally:
        model.cpu()
    assert torch.isfinite(ours).all()
    assert ours.abs().sum() > 0
    assert checks and all(value <= tolerance for value in checks.values()), f"max relative {checks} > {tolerance}"


def _fit(root: Path, train, val, with_callback: bool):
    import lightning as L
    from callback_overhead import DigitNet
    from torch.utils.data import DataLoader

    from lrp_lightning import LRPCallback

    L.seed_everything(0, verbose=False)
    callbacks = [LRPCallback(num_samples=64, composite_kwargs={"low": 0.0, "high": 1.0})] if with_callback else []
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu" if ON_CPU else "gpu",
        devices=1,
        deterministic=True,
        default_root_dir=root,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = DigitNet()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*|.*litlogger.*|.*litmodels.*")
        trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=128))
    cuda_draw = 0.0 if ON_CPU else torch.rand(1, device="cuda").item()
    draws = (torch.rand(1).item(), cuda_draw, float(np.random.rand()), random.random())  # noqa: NPY002
    state = {key: value.cpu() for key, value in copy.deepcopy(model.state_dict()).items()}
    return {**state, "draws": torch.tensor(draws, dtype=torch.float64)}, trainer, model


def test_fit_on_cuda_with_the_callback_is_bitwise_unchanged_and_stores_the_cpu_relevance(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from callback_overhead import make_data

    from lrp_lightning.store import RunStore

    train, val = make_data(2048, 512)
    without, _, _ = _fit(tmp_path / "without", train, val, False)
    with_callback, trainer, model = _fit(tmp_path / "with", train, val, True)
    assert [key for key in without if not torch.equal(without[key], with_callback[key])] == []
    store = RunStore(trainer.log_dir)
    epochs = [info.epoch for info in store.epochs()]
    assert epochs == [0, 1]
    table = store.attributions(epochs[-1])
    assert table.num_rows == 64
    ids, maps = store.heatmaps(epochs[-1])
    x = val.tensors[0][torch.as_tensor(np.asarray(ids), dtype=torch.long)]
    targets = torch.as_tensor(table.column("target").to_numpy(), dtype=torch.long)
    _, relevance = explain(
        model.cpu(), x, target=torch.eye(10)[targets], composite="epsilon_gamma_box", low=0.0, high=1.0
    )
    expected = relevance.sum(1).numpy()
    error = np.abs(maps - expected).max() / np.abs(expected).max()
    assert error <= 2e-3, f"max |stored - cpu| / max |cpu| = {error:.1e}"  # heatmaps are stored as float16
