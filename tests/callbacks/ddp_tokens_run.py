"""Token runs under DDP for test_ddp_tokens.py: a tiny transformer explained with AttnLRP by LRPCallback
(fit, then validate) and LRPPredictionWriter (predict). Lightning starts the second process by running this
script again. The single-process reference runs the same functions with ``devices=1``.

Usage: python ddp_tokens_run.py OUT_DIR {validate,predict}
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from callback_testing import trainer
from token_testing import VOCAB, TokenData, token_loader
from torch import nn

from lrp_lightning import LRPCallback, LRPPredictionWriter

WIDTH, MAX_LENGTH = 8, 12
EXPLAIN = dict(composite="attn_lrp", output="logits", tokenizer=VOCAB)


class TokenTransformer(L.LightningModule):
    """Token + position embeddings added with a plain ``+``, one encoder layer, a head on the first token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(len(VOCAB), WIDTH, padding_idx=0)
        self.positions = nn.Embedding(MAX_LENGTH, WIDTH)
        self.encoder = nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, input_ids, attention_mask=None):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        hidden = self.tokens(input_ids) + self.positions(positions)
        padding = None if attention_mask is None else attention_mask == 0
        return {"logits": self.head(self.encoder(hidden, src_key_padding_mask=padding)[:, 0])}

    def training_step(self, batch, batch_idx):
        logits = self(batch["input_ids"], batch["attention_mask"])["logits"]
        return nn.functional.cross_entropy(logits, batch["labels"])

    def validation_step(self, batch, batch_idx):
        logits = self(batch["input_ids"], batch["attention_mask"])["logits"]
        self.log("val_loss", nn.functional.cross_entropy(logits, batch["labels"]), batch_size=len(logits))

    def predict_step(self, batch, batch_idx):
        return self(batch["input_ids"], batch["attention_mask"])["logits"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def explain_run(out: Path, kind: str, model: TokenTransformer, **strategy) -> None:
    """LRPCallback in ``trainer.validate`` (``kind="validate"``) or LRPPredictionWriter in ``trainer.predict``."""
    if kind == "validate":
        callback = LRPCallback(num_samples=11, batch_size=4, dirpath=out, **EXPLAIN)
        trainer(out, callbacks=[callback], logger=False, **strategy).validate(
            model, token_loader(TokenData(20, seed=1), batch_size=4)
        )
    else:
        writer = LRPPredictionWriter(dirpath=out, epoch=2, **EXPLAIN)
        trainer(out, callbacks=[writer], logger=False, **strategy).predict(
            model, token_loader(TokenData(13, seed=2), batch_size=4), return_predictions=False
        )


def main(out: Path, kind: str) -> None:
    model = TokenTransformer()
    ddp = dict(strategy="ddp", devices=2)
    if kind == "validate":  # trained under DDP first; the reference run starts from these weights
        fit = trainer(out, max_epochs=1, logger=False, num_sanity_val_steps=0, **ddp)
        fit.fit(model, token_loader(TokenData(32), batch_size=8, shuffle=True))
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        torch.save(model.state_dict(), out / "model.pt")
    explain_run(out / "ddp", kind, model, **ddp)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
