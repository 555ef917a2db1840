"""Explain a digit classifier with LRP and save heatmaps.

Trains a small CNN for a few seconds on scikit-learn's handwritten digits (shipped with scikit-learn,
nothing is downloaded), explains test digits with the ``epsilon_gamma_box`` composite and writes a
picture: inputs, heatmaps (red: evidence for the predicted class, blue: against) and overlays. A
second picture (``--montage``) shows the same digits explained with every registered composite.

    python examples/explain_image.py --out out/heatmap.png --montage out/composites.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lrp_lightning import COMPOSITES, explain
from lrp_lightning.image import grid, heatmap, overlay

SIZE = 32  # the 8x8 digits are upsampled so that heatmaps are readable


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 32, 32) tensors in [0, 1] with integer labels: train and test split."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=seed, stratify=labels.numpy()
    )
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/heatmap.png"), help="PNG to write")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--samples", type=int, default=8, help="test digits to explain (default 8)")
    parser.add_argument("--composite", default="epsilon_gamma_box", help="LRP composite name")
    parser.add_argument(
        "--montage",
        type=Path,
        default=Path("out/composites.png"),
        help="PNG of the same digits explained with every registered composite (one row each)",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_data()
    model = make_model()
    start = time.perf_counter()
    train(model, x_train, y_train, args.epochs)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"trained on {len(x_train)} digits in {time.perf_counter() - start:.1f}s, test accuracy {accuracy:.3f}")

    x = x_test[: args.samples]
    kwargs = {"low": 0.0, "high": 1.0} if args.composite == "epsilon_gamma_box" else {}
    output, relevance = explain(model, x, target="prediction", composite=args.composite, **kwargs)
    predictions = output.argmax(1)
    # the target puts relevance 1 on the predicted class: a conserving explanation sums to about 1
    # (biases and stabilizers absorb the rest)
    total = relevance.flatten(1).sum(1)
    for i in range(len(x)):
        print(
            f"digit {i}: label {int(y_test[i])}, predicted {int(predictions[i])}, "
            f"relevance sum = {float(total[i]):.3f} (1 put in at the output)"
        )

    tiles = [overlay(x[i, 0].numpy(), relevance[i, 0].numpy(), alpha=0.0) for i in range(len(x))]
    tiles += [heatmap(relevance[i, 0].numpy(), cmap="bwr") for i in range(len(x))]
    tiles += [overlay(x[i, 0].numpy(), relevance[i, 0].numpy(), alpha=0.6, cmap="bwr") for i in range(len(x))]
    picture = grid(tiles, nrow=len(x), padding=2, fill=(255, 255, 255))
    picture = picture.resize((picture.width * 3, picture.height * 3), resample=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    print(f"wrote {args.out} (rows: input, heatmap, overlay)")

    montage = composite_montage(model, x)
    args.montage.parent.mkdir(parents=True, exist_ok=True)
    montage.save(args.montage)
    print(f"wrote {args.montage} (rows: input, then one row per composite: {', '.join(sorted(COMPOSITES))})")
    return 0


def composite_montage(model: nn.Module, x: torch.Tensor, scale: int = 3) -> Image.Image:
    """The inputs in the first row, then their heatmaps under every registered composite, one row each."""
    names = sorted(COMPOSITES)
    rows = [[overlay(sample[0].numpy(), sample[0].numpy(), alpha=0.0) for sample in x]]
    for name in names:
        kwargs = {"low": 0.0, "high": 1.0} if name == "epsilon_gamma_box" else {}
        _, relevance = explain(model, x, target="prediction", composite=name, **kwargs)
        rows.append([heatmap(map_[0].numpy(), cmap="bwr") for map_ in relevance])
    tiles = grid([tile for row in rows for tile in row], nrow=len(x), padding=2, fill=(255, 255, 255))
    tiles = tiles.resize((tiles.width * scale, tiles.height * scale), resample=0)
    label_width = 190
    picture = Image.new("RGB", (tiles.width + label_width, tiles.height), (255, 255, 255))
    picture.paste(tiles, (label_width, 0))
    draw = ImageDraw.Draw(picture)
    row_height = tiles.height / len(rows)
    for index, label in enumerate(["input", *names]):
        draw.text((6, index * row_height + row_height / 2 - 5), label, fill=(0, 0, 0))
    return picture


if __name__ == "__main__":
    raise SystemExit(main())
