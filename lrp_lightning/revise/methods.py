"""Class Artifact Compensation (ClArC): three ways to make a model unlearn an artifact direction.

All three act on one layer's outputs through forward hooks that :meth:`~_LayerHook.remove` takes off
again: the model's modules and parameters are never replaced or edited. ``v`` is the CAV's unit
direction (:class:`~lrp_lightning.revise.cav.CAV`), ``a`` a sample's activation in the layer.

P-ClArC (Anders et al., Information Fusion 2022), :class:`PClArC`
    Projective: ``a' = a - (v·a - c) v`` with ``c`` the clean samples' mean projection. Every sample
    is moved onto the clean samples' position along the artifact direction, so the layers above can
    no longer see the artifact. No training; applied at inference (and, when attached during
    training, in training too).
A-ClArC (Anders et al. 2022), :class:`AClArC`
    Augmentative: during fine-tuning, samples of *other* classes get the artifact added in the layer,
    ``a' = a - (v·a - c_artifact) v`` with ``c_artifact`` the artifact samples' mean projection, so
    the artifact stops predicting the class. Only in training mode; the model is evaluated without it.
RR-ClArC (Dreyer et al., AAAI 2024), :class:`RRClArC`
    Right Reason: a loss term ``strength * mean_i (∇_a y_i · v)^2`` that penalises the gradient of the
    output ``y`` along the CAV, so the output stops changing when the activation moves along the
    artifact direction. ``target`` chooses which output: the artifact's class (``"artifact"``), the
    sample's label, a seeded random class per sample, or every class (``"all"``: the squared
    directional derivative of each logit, summed; two extra backward passes whatever the number of
    classes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._validation import argument_error, check_choice, check_float, check_int
from .cav import CAV, find_layer

__all__ = ["AClArC", "METHODS", "PClArC", "RRClArC", "RR_TARGETS", "project"]

METHODS = ("pclarc", "aclarc", "rrclarc")
"""Names of the three methods (``ClArCCallback(method=...)``)."""
RR_TARGETS = ("artifact", "label", "random", "all")
"""Which output RR-ClArC's gradient penalty differentiates."""


def project(activation: torch.Tensor, direction: torch.Tensor, reference: float) -> torch.Tensor:
    """``a - (v·a - reference) v`` per sample: move each sample to ``reference`` along the unit ``v``."""
    flat = activation.flatten(1)
    v = direction.to(device=flat.device, dtype=flat.dtype)
    coefficient = flat @ v - reference
    return (flat - coefficient[:, None] * v[None, :]).view_as(activation)


class _LayerHook:
    """A forward hook on the CAV's layer that :meth:`remove` takes off again (also a context manager)."""

    owner = "ClArC"

    def __init__(self, cav: CAV) -> None:
        if not isinstance(cav, CAV):
            raise argument_error(self.owner, "cav", "a CAV (lrp_lightning.revise.fit_cav)", cav)
        self.cav = cav
        self._handles: list[Any] = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, model: nn.Module) -> _LayerHook:
        """Hook the CAV's layer of ``model`` (its name is ``cav.layer``); returns self."""
        if self.attached:
            raise RuntimeError(f"{self.owner}: already attached; call remove() first")
        _, module = find_layer(model, self.cav.layer, self.owner)
        self._handles.append(module.register_forward_hook(self._hook))
        return self

    def remove(self) -> None:
        """Take the hook off: the model computes exactly as before it was attached."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> _LayerHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError


class PClArC(_LayerHook):
    """P-ClArC: project the artifact direction out of the layer's outputs (to the clean samples' mean).

    Parameters
    ----------
    cav : CAV
        The artifact direction and the layer.

    Examples
    --------
    >>> with PClArC(cav).attach(model):   # doctest: +SKIP
    ...     logits = model(x)               # the artifact direction is projected out
    """

    owner = "PClArC"

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return project(output, self.cav.direction, self.cav.clean_projection)


class AClArC(_LayerHook):
    """A-ClArC: in training, add the artifact (in the layer) to the samples of other classes.

    Parameters
    ----------
    cav : CAV
        The artifact direction and the layer.
    artifact_class : int
        The class the artifact predicts; its own samples are left as they are (``classes="others"``).
    classes : {"others", "all"}, default "others"
        Which samples get the artifact: those labelled with another class, or every sample.

    Call :meth:`set_labels` with the batch's labels before each training forward pass (the
    :class:`~lrp_lightning.callbacks.ClArCCallback` does); in eval mode the hook does nothing.
    """

    owner = "AClArC"

    def __init__(self, cav: CAV, artifact_class: int, classes: str = "others") -> None:
        super().__init__(cav)
        self.artifact_class = check_int(artifact_class, "artifact_class", self.owner, 0)
        self.classes = check_choice(classes, "classes", self.owner, ("others", "all"))
        self._labels: torch.Tensor | None = None

    def set_labels(self, labels: torch.Tensor | None) -> None:
        """The labels of the next training batch (None forgets them)."""
        self._labels = labels

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        added = project(output, self.cav.direction, self.cav.artifact_projection)
        if self.classes == "all":
            return added
        labels = self._labels
        if labels is None or labels.shape[0] != output.shape[0]:
            raise RuntimeError(
                f"{self.owner}: call set_labels(labels) with the batch's labels before the training forward pass "
                f"(classes='others' adds the artifact to samples of other classes only), or use classes='all'"
            )
        other = (labels.to(output.device) != self.artifact_class).view(-1, *([1] * (output.dim() - 1)))
        return torch.where(other, added, output)


class RRClArC(_LayerHook):
    """RR-ClArC: a loss term penalising the output's gradient along the CAV in the layer.

    Parameters
    ----------
    cav : CAV
        The artifact direction and the layer.
    artifact_class : int
        The artifact's class (the output differentiated with ``target="artifact"``).
    strength : float >= 0, default 1.0
        The penalty's weight ``lambda`` (Dreyer et al. tune it per data set; larger unlearns more and
        may cost accuracy).
    target : {"artifact", "label", "random", "all"}, default "all"
        Which output's gradient is penalised (see the module docstring).
    seed : int, default 0
        Seed of ``target="random"`` (its own generator: the global RNG streams are not touched).

    :meth:`attach` keeps the layer's output of each forward pass that records gradients;
    :meth:`penalty` then takes the model's output of that pass and returns the loss term.
    """

    owner = "RRClArC"

    def __init__(
        self, cav: CAV, artifact_class: int, strength: float = 1.0, target: str = "all", seed: int = 0
    ) -> None:
        super().__init__(cav)
        self.artifact_class = check_int(artifact_class, "artifact_class", self.owner, 0)
        self.strength = check_float(strength, "strength", self.owner, 0.0, None, note="e.g. 1.0")
        self.target = check_choice(target, "target", self.owner, RR_TARGETS)
        self.seed = check_int(seed, "seed", self.owner, 0)
        self._generator = torch.Generator().manual_seed(self.seed)
        self.activation: torch.Tensor | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled() and output.requires_grad:
            self.activation = output
        return None

    def remove(self) -> None:
        super().remove()
        self.activation = None

    def directional_derivatives(self, output: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``∇_a y · v`` per sample, shape (N,) (per sample and class, (N, C), for ``target="all"``)."""
        activation = self.activation
        if activation is None:
            raise RuntimeError(
                f"{self.owner}: no activation of layer {self.cav.layer!r} was recorded; attach() the hook and run a "
                "training forward pass (with gradients) before asking for the penalty"
            )
        if output.dim() != 2 or output.shape[0] != activation.shape[0]:
            raise ValueError(
                f"{self.owner}: output must be the model's (N, classes) output of the same forward pass as the "
                f"recorded activation ({activation.shape[0]} samples), got shape {tuple(output.shape)}"
            )
        v = self.cav.direction.to(device=activation.device, dtype=activation.dtype)
        if self.target == "all":
            # forward-mode product by double backward: g(u) = J^T u is linear in u, so d(g·v)/du = J v
            u = torch.zeros_like(output, requires_grad=True)
            (g,) = torch.autograd.grad(output, activation, grad_outputs=u, create_graph=True)
            (jv,) = torch.autograd.grad((g.flatten(1) @ v).sum(), u, create_graph=True)
            return jv
        if self.target == "artifact":
            index = torch.full((output.shape[0],), self.artifact_class, dtype=torch.long, device=output.device)
        elif self.target == "label":
            if labels is None:
                raise ValueError(f"{self.owner}: target='label' needs the batch's labels; pass labels=")
            index = labels.to(device=output.device, dtype=torch.long).view(-1)
        else:
            index = torch.randint(output.shape[1], (output.shape[0],), generator=self._generator).to(output.device)
        selected = output.gather(1, index[:, None]).sum()
        (g,) = torch.autograd.grad(selected, activation, create_graph=True)
        return g.flatten(1) @ v

    def penalty(self, output: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The loss term ``strength * mean over samples of the squared directional derivative(s)``."""
        d = self.directional_derivatives(output, labels)
        squared = d.pow(2)
        if squared.dim() == 2:
            squared = squared.sum(1)
        return self.strength * squared.mean()


def check_method(method: Any, owner: str) -> str:
    """``method`` lower-cased if it is one of :data:`METHODS`."""
    value = method.lower().replace("-", "") if isinstance(method, str) else method
    if value not in METHODS:
        raise argument_error(owner, "method", f"one of {', '.join(repr(m) for m in METHODS)}", method)
    return value
