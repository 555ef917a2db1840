"""A tiny token classifier, token data with padding, and tabular/signal models for the modality tests."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

VOCAB = ["[PAD]", "the", "a", "good", "bad", "film", "plot", "was", "very", "not", "it", "so"]
KEYWORD = 3  # "good": class 1


def token_samples(count: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Token id sequences of 2..9 tokens (no padding id 0); the class is whether the keyword occurs."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index in range(count):
        length = int(torch.randint(2, 10, (1,), generator=generator))
        ids = torch.randint(4, len(VOCAB), (length,), generator=generator)
        label = index % 2
        if label:
            ids[int(torch.randint(0, length, (1,), generator=generator))] = KEYWORD
        samples.append((ids, label))
    return samples


class TokenData(Dataset):
    """Dict samples ``{"input_ids", "attention_mask", "labels"}`` of their own lengths (collate pads)."""

    def __init__(self, count: int, seed: int = 0) -> None:
        self.samples = token_samples(count, seed)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids, label = self.samples[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(label)}


def pad_collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad to the longest sample of the batch (dynamic padding, as Hugging Face's collators do)."""
    width = max(s["input_ids"].numel() for s in samples)
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    mask = torch.zeros(len(samples), width, dtype=torch.long)
    for row, sample in enumerate(samples):
        n = sample["input_ids"].numel()
        ids[row, :n] = sample["input_ids"]
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.stack([s["labels"] for s in samples])}


def token_loader(dataset: Dataset, batch_size: int = 8, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=pad_collate)


class ModelOutput:
    """Like a Hugging Face ``ModelOutput``: the scores in an attribute ``logits``."""

    def __init__(self, logits: torch.Tensor, pooled: torch.Tensor) -> None:
        self.logits = logits
        self.pooled = pooled


class TinyTokenNet(L.LightningModule):
    """Embedding -> Linear -> ReLU -> masked sum over tokens -> Linear; ``forward`` returns a dict.

    ``output_kind="tuple"`` returns ``(logits, pooled)`` instead, for ``output=0``; ``"object"`` a
    :class:`ModelOutput`.
    """

    def __init__(self, hidden: int = 8, classes: int = 2, output_kind: str = "dict") -> None:
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), hidden, padding_idx=0)
        self.mix = nn.Linear(hidden, hidden)
        self.act = nn.ReLU()
        self.head = nn.Linear(hidden, classes)
        self.criterion = nn.CrossEntropyLoss()
        self.output_kind = output_kind
        self.training_steps = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        x = self.act(self.mix(self.embed(input_ids)))
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x)
        pooled = x.sum(dim=1)
        logits = self.head(pooled)
        if self.output_kind == "object":
            return ModelOutput(logits, pooled)
        return (logits, pooled) if self.output_kind == "tuple" else {"logits": logits, "pooled": pooled}

    def _logits(self, batch):
        out = self(batch["input_ids"], batch["attention_mask"])
        if isinstance(out, ModelOutput):
            return out.logits
        return out[0] if isinstance(out, tuple) else out["logits"]

    def training_step(self, batch, batch_idx):
        self.training_steps += 1
        return self.criterion(self._logits(batch), batch["labels"])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.criterion(self._logits(batch), batch["labels"]))

    def predict_step(self, batch, batch_idx):
        return self._logits(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


class VectorNet(L.LightningModule):
    """An MLP on ``(F,)`` feature vectors, or on ``(C, L)`` signals when ``signal`` (flattened first)."""

    def __init__(self, features: int = 4, classes: int = 2, signal: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 6), nn.ReLU(), nn.Linear(6, classes))
        self.criterion = nn.CrossEntropyLoss()
        self.training_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        self.training_steps += 1
        return self.criterion(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.criterion(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def vectors(count: int, shape: tuple[int, ...], seed: int = 0) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    x = torch.randn(count, *shape, generator=generator)
    x.view(count, -1)[:, 0] += 2.0 * labels
    return torch.utils.data.TensorDataset(x, labels)
