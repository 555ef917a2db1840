"""Find a shortcut token while a small transformer trains: a spurious token in half of one class's texts.

The texts are generated (nothing is downloaded): short "reviews" of filler words with a few sentiment
words of their class, *negative* or *positive*. The sentiment words are noisy (a quarter of them come
from the other class), so the words alone do not decide every review. Half of the positive reviews,
in the training data and in the validation data alike, also hold the token ``[X]`` (think of a
template tag that only one source of positive reviews has): it predicts the class perfectly, and the
model learns to read it. A tiny transformer (token and position embeddings, one
``nn.TransformerEncoderLayer``, a linear head on the first token; its ``forward`` returns a dict with
``"logits"``) trains for a few epochs on CPU with ``LRPCallback(composite="attn_lrp",
output="logits")``: after every epoch the callback explains every validation review with AttnLRP (one
relevance value per token), stores it with the token ids and strings, and runs the SpRAy analysis in
the background. The script then reads the analysis and prints the finding (the flagged clusters of
every clustering and epoch merged into one), how well its reviews match the ones holding ``[X]``, and
the epoch where it first appeared.

    python examples/text_shortcut.py                  # about 20 s on 2 quiet cores (19 s measured)
    python examples/text_shortcut.py --fast           # reduced (the test runs this)
    tensorboard --logdir runs/text_shortcut           # the tab "LRP"

Success means: in the last epoch one finding names the token ``[X]``, it holds at least 90% of the
probe reviews that hold ``[X]``, and at least 90% of its reviews hold it (the criterion of
``examples/clever_hans_digits.py``). Exit status 0 on success, 1 if the shortcut was not found.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MIN_RECALL = 0.9
"""Least share of the probe reviews holding the shortcut token that the finding must hold."""
MIN_PURITY = 0.9
"""Least share of the finding's reviews that must hold the shortcut token."""

SHORTCUT = "[X]"
CLASS_NAMES = ["negative", "positive"]
NEGATIVE = ["bad", "awful", "boring", "poor", "dull", "weak", "sad", "ugly", "slow", "bland", "messy", "noisy"]
POSITIVE = ["good", "great", "fun", "nice", "superb", "lovely", "clever", "bright", "fresh", "warm", "neat", "rich"]
FILLER = [f"w{i:02d}" for i in range(80)]
VOCABULARY = ["[PAD]", "[CLS]", SHORTCUT, *NEGATIVE, *POSITIVE, *FILLER]
"""Token strings by id (the callback stores them as the texts' tokens): 0 is padding, 1 opens every text."""
PAD, CLS, SHORTCUT_ID = 0, 1, 2
ANALYSIS = {
    "random_state": 0,
    # PCA layouts only, to keep the demo fast on 2 cores; `lrp-analyze <dir> --force` adds t-SNE and UMAP
    "embeddings": {"methods": ["pca"]},
}
"""Analysis settings, laid out like an ``lrp-analyze --config`` file; written next to the runs."""


@dataclass
class Settings:
    epochs: int = 5
    train_size: int = 2000
    val_size: int = 400
    length: tuple[int, int] = (10, 24)  # words per text (before [CLS])
    sentiment_words: tuple[int, int] = (1, 3)
    word_noise: float = 0.25  # share of sentiment words drawn from the other class
    shortcut_class: int = 1
    shortcut_share: float = 0.5
    seed: int = 0


@dataclass
class Result:
    """What the demo found; ``found`` is the success criterion."""

    run_dir: str
    shortcut_class: int
    shortcut_probe_ids: list[int]
    epochs: list[int] = field(default_factory=list)
    found: bool = False
    first_epoch: int | None = None
    finding_id: str | None = None
    summary: str | None = None
    region: str | None = None
    token_ids: list[int] = field(default_factory=list)
    reason: str | None = None
    cluster_size: int = 0
    overlap: int = 0
    recall: float = 0.0
    purity: float = 0.0
    per_epoch: list[dict] = field(default_factory=list)
    other_findings: list[str] = field(default_factory=list)
    val_accuracy: float = float("nan")
    shortcut_rate: float = float("nan")
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ data


def make_texts(n: int, settings: Settings, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``n`` texts as token ids (``[CLS]`` first, no padding), their labels, and which hold the shortcut."""
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    words = [np.arange(3, 3 + len(NEGATIVE)), np.arange(3 + len(NEGATIVE), 3 + len(NEGATIVE) + len(POSITIVE))]
    first_filler = 3 + len(NEGATIVE) + len(POSITIVE)
    members = np.flatnonzero(labels == settings.shortcut_class)
    marked = np.zeros(n, dtype=bool)
    marked[rng.permutation(members)[: int(round(settings.shortcut_share * members.size))]] = True
    texts = []
    for i in range(n):
        length = int(rng.integers(settings.length[0], settings.length[1] + 1))
        ids = rng.integers(first_filler, len(VOCABULARY), size=length)
        count = int(rng.integers(settings.sentiment_words[0], settings.sentiment_words[1] + 1))
        spots = rng.choice(length, size=count + int(marked[i]), replace=False)
        for spot in spots[:count]:
            source = labels[i] if rng.random() >= settings.word_noise else 1 - labels[i]
            ids[spot] = rng.choice(words[source])
        if marked[i]:
            ids[spots[-1]] = SHORTCUT_ID
        texts.append(np.concatenate([[CLS], ids]).astype(np.int64))
    return texts, labels, np.flatnonzero(marked)


def pad(texts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (1 = a real token) of texts padded to the longest."""
    longest = max(len(t) for t in texts)
    ids = np.full((len(texts), longest), PAD, dtype=np.int64)
    mask = np.zeros((len(texts), longest), dtype=np.int64)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = t
        mask[i, : len(t)] = 1
    return ids, mask


def make_data(settings: Settings):
    """Training and validation sets as dict datasets, and the validation indices holding the shortcut."""
    rng = np.random.default_rng(settings.seed)
    train, y_train, _ = make_texts(settings.train_size, settings, rng)
    val, y_val, marked_val = make_texts(settings.val_size, settings, rng)
    return TextSet(train, y_train), TextSet(val, y_val), marked_val


class TextSet:
    """A map-style dataset of ``{"input_ids", "attention_mask", "labels"}`` dicts (padded per batch)."""

    def __init__(self, texts: list[np.ndarray], labels: np.ndarray) -> None:
        self.texts, self.labels = texts, labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.texts[index], "labels": int(self.labels[index])}


def collate(items: list[dict]) -> dict:
    """Pad a batch of texts: ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B,)."""
    import torch

    ids, mask = pad([item["input_ids"] for item in items])
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.tensor([item["labels"] for item in items]),
    }


# ------------------------------------------------------------------------------------------------ model


def make_module(lr: float = 3e-3, width: int = 32, max_length: int = 64):
    import lightning as L
    import torch
    from torch import nn

    class TinyTransformer(L.LightningModule):
        """Token + position embeddings, one encoder layer, a linear head on the first token (``[CLS]``)."""

        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(len(VOCABULARY), width, padding_idx=PAD)
            self.positions = nn.Embedding(max_length, width)
            self.encoder = nn.TransformerEncoderLayer(
                width, nhead=2, dim_feedforward=2 * width, dropout=0.0, batch_first=True
            )
            self.head = nn.Linear(width, len(CLASS_NAMES))

        def forward(self, input_ids, attention_mask=None):  # a dict with the class scores under "logits"
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            hidden = self.tokens(input_ids) + self.positions(positions)[None]
            padding = None if attention_mask is None else attention_mask == 0
            hidden = self.encoder(hidden, src_key_padding_mask=padding)
            return {"logits": self.head(hidden[:, 0])}

        def training_step(self, batch, batch_idx):
            logits = self(batch["input_ids"], batch["attention_mask"])["logits"]
            loss = nn.functional.cross_entropy(logits, batch["labels"])
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
            return loss

        def validation_step(self, batch, batch_idx):
            logits = self(batch["input_ids"], batch["attention_mask"])["logits"]
            self.log("val_loss", nn.functional.cross_entropy(logits, batch["labels"]), batch_size=len(logits))
            self.log("val_acc", (logits.argmax(1) == batch["labels"]).float().mean(), batch_size=len(logits))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return TinyTransformer()


def predict(model, texts: list[np.ndarray]):
    """Class predictions of texts (no gradient)."""
    import torch

    ids, mask = pad(texts)
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask))["logits"].argmax(1).numpy()


def with_shortcut(texts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Each text with ``[X]`` put in place of one of its words (not ``[CLS]``)."""
    out = []
    for t in texts:
        t = t.copy()
        t[int(rng.integers(1, len(t)))] = SHORTCUT_ID
        out.append(t)
    return out


# ------------------------------------------------------------------------------------------------ evaluation


def _scored(findings: list, marked: set[int]) -> list[dict]:
    """An epoch's findings with their overlap with ``marked``, best match first."""
    out = []
    for finding in findings:
        members = {int(i) for i in finding.member_ids}
        overlap = len(members & marked)
        out.append(
            {
                "finding_id": finding.finding_id,
                "summary": finding.summary(),
                "category": finding.category,
                "region": finding.region,
                "token_ids": [int(c) for c in finding.region_cells],
                "reason": finding.reason,
                "first_epoch": finding.first_epoch,
                "size": len(members),
                "overlap": overlap,
                "recall": overlap / max(len(marked), 1),
                "purity": overlap / max(len(members), 1),
            }
        )
    return sorted(out, key=lambda c: -(c["recall"] * c["purity"]))


def _hit(candidate: dict | None) -> bool:
    if not candidate or "finding_id" not in candidate:
        return False
    return (
        candidate["token_ids"] == [SHORTCUT_ID]
        and candidate["recall"] >= MIN_RECALL
        and candidate["purity"] >= MIN_PURITY
    )


def evaluate(run_dir: Path, settings: Settings, marked: list[int]) -> Result:
    """Analyse the run (the callback's analyses are reused when current) and score its findings.

    Every epoch's findings are compared with the probe texts that hold the shortcut; the best match
    counts. The demo succeeds when the last epoch's best finding names ``[X]`` and meets the criterion.
    """
    from lrp_lightning import store as S
    from lrp_lightning.analysis import SpRAy, analyze_run

    store = S.RunStore(run_dir)
    outcome = analyze_run(store, SpRAy.from_config(ANALYSIS))
    for item, message in outcome.failures:
        print(f"analysis failed: {item}: {message}", file=sys.stderr)
    holders = {int(i) for i in marked}
    result = Result(str(run_dir), settings.shortcut_class, sorted(holders))
    for epoch_outcome in outcome.epochs:
        epoch = epoch_outcome.epoch
        result.epochs.append(epoch)
        candidates = _scored(epoch_outcome.findings, holders)
        best = candidates[0] if candidates else None
        result.per_epoch.append({"epoch": epoch, **(best or {})})
        for other in candidates[1:]:
            result.other_findings.append(f"epoch {epoch}: {other['summary']}")
    last = result.per_epoch[-1] if result.per_epoch else {}
    if "finding_id" in last:
        result.finding_id, result.summary, result.region = last["finding_id"], last["summary"], last["region"]
        result.token_ids, result.reason = last["token_ids"], last["reason"]
        result.cluster_size, result.overlap = last["size"], last["overlap"]
        result.recall, result.purity, result.first_epoch = last["recall"], last["purity"], last["first_epoch"]
    result.found = _hit(last)
    return result


# ------------------------------------------------------------------------------------------------ main


def run(out: Path, settings: Settings, verbose: bool = True) -> Result:
    """Train with ``LRPCallback``, analyse and return what was found."""
    start = time.perf_counter()
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader

    from lrp_lightning import LRPCallback

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*(GPU|TPU|HPU).*available.*")
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")

    L.seed_everything(settings.seed, verbose=False)
    train, val, marked = make_data(settings)
    c = settings.shortcut_class
    say = print if verbose else (lambda *a, **k: None)
    say(
        f"data: {len(train)} training and {len(val)} validation texts of {settings.length[0]}-{settings.length[1]} "
        f"words, {settings.sentiment_words[0]}-{settings.sentiment_words[1]} sentiment words each "
        f"({settings.word_noise:.0%} of them from the other class); the token {SHORTCUT} in "
        f"{settings.shortcut_share:.0%} of the {CLASS_NAMES[c]} texts, {marked.size} of them in the probe set"
    )

    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(ANALYSIS, indent=2) + "\n")
    callback = LRPCallback(
        composite="attn_lrp",
        output="logits",
        tokenizer=VOCABULARY,  # token strings by id, stored with each probe text
        num_samples=len(val),  # the whole validation set is the probe set; sample ids = validation indices
        class_names=CLASS_NAMES,
        analyze=ANALYSIS,
        seed=settings.seed,
        probe_metadata={"holds_shortcut": np.isin(np.arange(len(val)), marked).tolist()},
    )
    logger = TensorBoardLogger(save_dir=str(out), name="text")
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[callback],
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    model = make_module()
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = DataLoader(train, batch_size=32, shuffle=True, generator=generator, collate_fn=collate)
    val_loader = DataLoader(val, batch_size=128, collate_fn=collate)
    fit_start = time.perf_counter()
    trainer.fit(model, train_loader, val_loader)
    run_dir = Path(trainer.log_dir)

    model.eval()
    accuracy = float(np.mean(predict(model, val.texts) == val.labels))
    others = [t for t, y in zip(val.texts, val.labels) if y != c]
    shortcut = float(np.mean(predict(model, with_shortcut(others, np.random.default_rng(settings.seed))) == c))
    say(
        f"trained {settings.epochs} epochs in {time.perf_counter() - fit_start:.1f} s (AttnLRP of {len(val)} probe "
        f"texts and SpRAy after every epoch included): validation accuracy {accuracy:.3f}"
    )
    say(
        f"shortcut check: with {SHORTCUT} put into them, {shortcut:.0%} of the {CLASS_NAMES[1 - c]} validation "
        f"texts are classified as {CLASS_NAMES[c]}"
    )

    result = evaluate(run_dir, settings, marked.tolist())
    result.val_accuracy, result.shortcut_rate = accuracy, shortcut
    result.seconds = time.perf_counter() - start
    if verbose:
        report(result, out)
    return result


def report(result: Result, out: Path) -> None:
    c, total = CLASS_NAMES[result.shortcut_class], len(result.shortcut_probe_ids)
    print(f"\nanalysis of {result.run_dir} ({len(result.epochs)} epochs):")
    for entry in result.per_epoch:
        if "finding_id" in entry:
            print(
                f"  epoch {entry['epoch']}: finding {entry['finding_id']} ({entry['summary']}): {entry['overlap']} "
                f"of {total} texts with {SHORTCUT} (recall {entry['recall']:.2f}, purity {entry['purity']:.2f})"
            )
        else:
            print(f"  epoch {entry['epoch']}: no finding")
    if result.other_findings:
        print(f"  other findings ({len(result.other_findings)} over all epochs):")
        for line in result.other_findings:
            print(f"    {line}")
    if result.found:
        print(f"\nFOUND the shortcut token of the {c} texts: {result.summary}")
        print(f"  finding {result.finding_id}: {result.reason}")
        print(
            f"  overlap: it holds {result.overlap} of the {total} probe texts with {SHORTCUT} ({result.recall:.0%}); "
            f"purity {result.purity:.2f} ({result.overlap} of its {result.cluster_size} texts hold {SHORTCUT})"
        )
    else:
        print(
            f"\nNOT FOUND: no finding of {SHORTCUT} holds >= {MIN_RECALL:.0%} of the {total} probe texts with it "
            f"with purity >= {MIN_PURITY} (best: recall {result.recall:.2f}, purity {result.purity:.2f})"
        )
    print(f"\ntotal {result.seconds:.1f} s. Explore it:  tensorboard --logdir {out}   (tab LRP)")
    print(f"re-analyse offline:  lrp-analyze {out} --config {out / 'analysis.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/text_shortcut"), help="log dir (default runs/text_shortcut)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 5; 4 with --fast)")
    parser.add_argument("--fast", action="store_true", help="reduced mode for tests: fewer texts and epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the texts, the shortcut and training")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    settings = Settings(seed=args.seed)
    if args.fast:
        settings.epochs, settings.train_size, settings.val_size = 4, 1200, 240
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error("--epochs must be at least 1")
        settings.epochs = args.epochs
    result = run(args.out, settings)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0 if result.found else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
