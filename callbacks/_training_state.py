"""Leaving training untouched: explaining a model mid-training without changing what training sees.

* :func:`untouched_training_state` puts every submodule in eval mode and restores each one's flag,
  each parameter's ``.grad`` and the torch (CPU and CUDA), NumPy and Python RNG streams afterwards.
* :class:`ExplainedModel` presents a LightningModule to the LRP engine without its metrics and loss
  modules (they are never called in ``forward``, but a strict composite would ask for their rule).
* :func:`sync_errors` makes a failure on one rank raise on every rank, so that no rank is left
  waiting at a collective of the training loop.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lrp_lightning._model_io import OutputSpec, call_model, select_output


def sync_errors(trainer: Any, device: torch.device, error: BaseException | None, what: str, owner: str) -> None:
    """Collective on all ranks: raise everywhere when any rank failed, instead of leaving others waiting."""
    flag = torch.tensor([float(error is not None)], dtype=torch.float64, device=device)
    failures = float(trainer.strategy.reduce(flag, reduce_op="sum")[0])
    if error is not None:
        raise error
    if failures:
        raise RuntimeError(f"{owner}: {int(failures)} rank(s) failed while {what}; see their error messages")


@contextlib.contextmanager
def untouched_training_state(module: nn.Module) -> Iterator[None]:
    """Run the body in eval mode; afterwards every mode flag, ``.grad`` and RNG stream is as before.

    Eval mode keeps batch-norm statistics fixed and dropout off. The RNG streams (torch CPU, CUDA of
    the module's devices, NumPy's global and Python's ``random``) are restored because fetching probe
    samples may run random augmentations, and training must draw the same numbers with or without
    the callback.
    """
    modes = [(child, child.training) for child in module.modules()]
    grads = [(param, param.grad) for param in module.parameters()]
    cuda_devices = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy global stream is what user code draws from
    python_state = random.getstate()
    with torch.random.fork_rng(devices=cuda_devices):
        module.eval()
        try:
            yield
        finally:
            for child, training in modes:
                child.training = training
            for param, grad in grads:
                if param.grad is not grad:
                    param.grad = grad
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)


def _is_auxiliary(module: nn.Module) -> bool:
    """Loss and metric modules: attributes of a LightningModule that ``forward`` does not call."""
    if isinstance(module, nn.modules.loss._Loss):
        return True
    metrics = sys.modules.get("torchmetrics")
    return metrics is not None and isinstance(module, (metrics.Metric, metrics.MetricCollection))


class ExplainedModel(nn.Module):
    """A view of ``module`` for the LRP engine: the same layers and ``forward``, minus losses and metrics,
    returning the class scores that ``output`` selects (:func:`lrp_lightning._model_io.select_output`).

    The children are the module's own (rules attach to them); the view owns no parameters of its own.
    Keyword inputs (a token batch) reach ``module.forward`` restricted to the names it accepts.
    """

    def __init__(self, module: nn.Module, output: OutputSpec = None, owner: str | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_lrp_explained", module)  # not registered: its metrics would need rules
        self._lrp_output = output
        self._lrp_owner = owner
        for name, child in module.named_children():
            if not _is_auxiliary(child):
                self.add_module(name, child)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        if kwargs:
            raw = call_model(self._lrp_explained, kwargs)
        else:
            raw = self._lrp_explained(*args)
        return select_output(raw, self._lrp_output, self._lrp_owner)
