"""A reduced Clever-Hans digits fit with LRPCallback + ClArCCallback, shared by the resume and the DDP tests.

The data and the model are the demo's (examples/clever_hans_digits.py: a watermark on half of the 3s,
found at epoch 0); the training order comes from :class:`EpochShuffle`, a sampler seeded by the epoch,
so that a run resumed from a checkpoint sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lrp_lightning import ClArCCallback, LRPCallback

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_PER_CLASS = 60

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*litlogger.*|.*litmodels.*")


def demo():
    """The digits demo as a module (examples/ is not a package)."""
    name = "clever_hans_digits"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "clever_hans_digits.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the script is executed
        spec.loader.exec_module(module)
    return sys.modules[name]


class EpochShuffle(Sampler):
    """A permutation of the data set drawn from ``seed + epoch`` (Lightning calls ``set_epoch``)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def fit(
    root: Path,
    epochs: int,
    method: str | None = "rrclarc",
    ckpt_path: str | None = None,
    checkpoints: Path | None = None,
    callback_class: type[ClArCCallback] = ClArCCallback,
    **trainer_kwargs,
):
    """Train the demo's CNN for ``epochs`` with the two callbacks; returns ``(trainer, model, clarc)``."""
    d = demo()
    L.seed_everything(0, verbose=False)
    x_train, y_train, x_val, y_val, *_ = d.make_data(d.Settings(samples_per_class=SAMPLES_PER_CLASS))
    lrp = LRPCallback(
        num_samples=len(x_val),
        composite="epsilon_gamma_box",
        composite_kwargs={"low": 0.0, "high": 1.0},
        analyze=d.ANALYSIS,
        seed=0,
    )
    options = {"strength": 100.0, "rr_target": "random"} if method == "rrclarc" else {}
    clarc = callback_class(method, layer=d.LAYER, refit_cav=True, **options)
    callbacks = [lrp, clarc]
    if checkpoints is not None:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=-1))
    trainer_kwargs.setdefault("devices", 1)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(save_dir=str(root), name=f"clarc_{method}", version=0),
        callbacks=callbacks,
        deterministic=True,
        enable_checkpointing=checkpoints is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=5,
        **trainer_kwargs,
    )
    model = d.make_module()
    data = TensorDataset(x_train, y_train)
    # DDP puts a DistributedSampler (seeded, set_epoch) in place of this one
    train = DataLoader(data, batch_size=32, sampler=EpochShuffle(len(data)))
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return trainer, model, clarc


def cav_state(clarc: ClArCCallback) -> dict:
    return clarc.cav.state()


def weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}
