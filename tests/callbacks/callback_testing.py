"""Tiny models, data sets and trainers shared by the callback tests and their subprocess scripts."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchmetrics
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

CLASSES = 3
SIZE = 8

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*litlogger.*|.*litmodels.*")


def images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] whose class is a bright quadrant (learnable in a few steps), labels 0, 1, 2, 0, ..."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % CLASSES
    x = torch.rand(count, 1, SIZE, SIZE, generator=generator) * 0.5
    for i, label in enumerate(labels.tolist()):
        row, column = divmod(label, 2)
        x[i, :, row * 4 : row * 4 + 4, column * 4 : column * 4 + 4] += 0.5
    return x, labels


class ImageData(Dataset):
    """``(x, y)`` pairs; with ``augment`` each access draws from torch, NumPy and Python's RNGs."""

    def __init__(self, count: int, seed: int = 0, augment: bool = False, labels: bool = True) -> None:
        self.x, self.y = images(count, seed)
        self.augment = augment
        self.with_labels = labels

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        x = self.x[index]
        if self.augment:
            x = x + 0.01 * torch.rand(1) + 0.01 * float(np.random.rand()) + 0.01 * random.random()  # noqa: NPY002
        return (x, self.y[index]) if self.with_labels else x


class DictData(ImageData):
    def __getitem__(self, index: int):
        x, y = super().__getitem__(index)
        return {"image": x, "label": y, "name": f"sample-{index}"}


class TinyNet(L.LightningModule):
    """Conv + BatchNorm + Dropout + Linear; also holds a loss and a metric module, as Lightning users do."""

    def __init__(self, classes: int = CLASSES, lr: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten()
        )
        self.classifier = nn.Linear(4 * SIZE * SIZE, classes)
        self.criterion = nn.CrossEntropyLoss()
        self.accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=classes)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch if not isinstance(batch, dict) else (batch["image"], batch["label"])
        logits = self(x)
        self.accuracy(logits, y)
        self.log("val_acc", self.accuracy, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loader(dataset: Dataset, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def trainer(root: Path, **kwargs) -> L.Trainer:
    options = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(root, name="", version=0),
        num_sanity_val_steps=2,
    )
    options.update(kwargs)
    return L.Trainer(**options)
