"""Two-process DDP run on CPU (gloo) for test_clarc_ddp.py: the digits fit with RR-ClArC, then with P-ClArC.

Each rank writes what it used (its record, its CAV, the penalties of its own training steps, P-ClArC's
projection of probe activations) to ``OUT/<method>-rank<r>.json``. Lightning starts the second process
by running this script again.

Usage: python clarc_ddp_run.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from clarc_digits import demo, fit

from lrp_lightning import ClArCCallback
from lrp_lightning.revise import layer_activations


class Recording(ClArCCallback):
    """Keeps the RR-ClArC penalty of each of this rank's training steps: (epoch, value)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[int, float]] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        before = len(self._penalties)
        super().on_before_backward(trainer, pl_module, loss)
        if len(self._penalties) > before:
            self.steps.append((trainer.current_epoch, self._penalties[-1]))


def main(out: Path) -> None:
    d = demo()
    for method in ("rrclarc", "pclarc"):
        trainer, model, clarc = fit(out, 2, method, callback_class=Recording, strategy="ddp", devices=2)
        model.eval()
        x_val = d.make_data(d.Settings(samples_per_class=40))[2][:64]  # any digits: the projection acts on all
        along = None
        if method == "pclarc" and clarc.pclarc is not None and clarc.pclarc.attached:
            with torch.no_grad():
                along = (layer_activations(model, d.LAYER, x_val).double() @ clarc.cav.direction.double()).tolist()
        rank = trainer.global_rank
        report = {
            "rank": rank,
            "log_dir": trainer.log_dir,
            "record": clarc.record,
            "cav": clarc.cav.state(),
            "steps": clarc.steps,
            "projection_along_cav": along,
            "weights_sum": float(sum(p.detach().double().sum() for p in model.parameters())),
        }
        (out / f"{method}-rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
