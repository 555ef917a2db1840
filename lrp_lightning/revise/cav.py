"""Concept activation vectors (CAVs): the direction of an artifact in a layer's activations.

A CAV is fitted on the activations of *artifact* samples (e.g. a finding's members) and *clean*
samples (the rest of the class). Two estimators from the ClArC papers:

``"pattern"`` (default)
    The signal or pattern CAV recommended by Dreyer et al. (AAAI 2024, RR-ClArC) and Pahde et al.
    (2025, "Navigating neural space"): the covariance of the activations with the artifact label,
    ``cov(a, t) / var(t)``, which for a binary label is the difference of the two groups' mean
    activations. It points where the artifact moves the activations, and ignores directions that
    merely help to tell the groups apart (noise a classifier's filter direction picks up).
``"linear"``
    The filter direction of an L2-regularised logistic regression (Kim et al. 2018; used by Anders et
    al., Information Fusion 2022, for A- and P-ClArC).

The CAV's *quality* is measured on held-out samples: a seeded, stratified share of both groups is
left out of the fit, the held-out samples are scored by their projection on the CAV, and the area
under the ROC curve (1.0: the groups are perfectly separated, 0.5: chance) and the accuracy of the
midpoint threshold between the two fitted groups' mean projections are reported. The CAV that is
returned is then fitted on all samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._validation import argument_error, check_choice, check_float, check_int

__all__ = ["CAV", "CAV_METHODS", "find_layer", "fit_cav", "layer_activations"]

OWNER = "fit_cav"
CAV_METHODS = ("pattern", "linear")
"""The CAV estimators of :func:`fit_cav`."""


@dataclass
class CAV:
    """A unit direction in a layer's activations, with the groups' mean projections on it.

    Attributes
    ----------
    layer : str
        Name of the layer (as in ``model.named_modules()``) whose outputs the CAV lives in.
    direction : torch.Tensor
        Unit vector of float32, shape ``(D,)`` with ``D`` the flattened size of one sample's activation.
    shape : tuple of int
        Shape of one sample's activation (the direction reshaped to it is ``direction.view(shape)``).
    method : str
        ``"pattern"`` or ``"linear"``.
    clean_projection, artifact_projection : float
        Mean projection ``a · direction`` of the clean and of the artifact samples.
    auc, accuracy : float
        Held-out quality (see the module docstring); NaN when a group was too small to hold out.
    n_artifact, n_clean : int
        Number of samples of each group it was fitted on.
    """

    layer: str
    direction: torch.Tensor
    shape: tuple[int, ...]
    method: str
    clean_projection: float
    artifact_projection: float
    auc: float = float("nan")
    accuracy: float = float("nan")
    n_artifact: int = 0
    n_clean: int = 0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The CAV's settings and quality as JSON-friendly values (what the manifest records)."""
        return {
            "layer": self.layer,
            "method": self.method,
            "dimension": int(self.direction.numel()),
            "n_artifact": self.n_artifact,
            "n_clean": self.n_clean,
            "heldout_auc": _finite(self.auc),
            "heldout_accuracy": _finite(self.accuracy),
            "clean_projection": float(self.clean_projection),
            "artifact_projection": float(self.artifact_projection),
        }

    def state(self) -> dict:
        """Everything of the CAV as plain Python values (a checkpoint's callback state); :meth:`from_state` inverts it.

        The direction's float32 values round-trip exactly (through Python floats).
        """
        return {
            "layer": self.layer,
            "direction": [float(v) for v in self.direction.float().reshape(-1).tolist()],
            "shape": [int(s) for s in self.shape],
            "method": self.method,
            "clean_projection": float(self.clean_projection),
            "artifact_projection": float(self.artifact_projection),
            "auc": float(self.auc),
            "accuracy": float(self.accuracy),
            "n_artifact": int(self.n_artifact),
            "n_clean": int(self.n_clean),
        }

    @classmethod
    def from_state(cls, state: dict) -> CAV:
        """The CAV that :meth:`state` described."""
        needed = {"layer", "direction", "shape", "method", "clean_projection", "artifact_projection"}
        missing = sorted(needed - set(state))
        if missing:
            raise ValueError(f"CAV.from_state: the state misses {missing}; pass a dict made by CAV.state()")
        return cls(
            layer=str(state["layer"]),
            direction=torch.tensor(state["direction"], dtype=torch.float32),
            shape=tuple(int(s) for s in state["shape"]),
            method=str(state["method"]),
            clean_projection=float(state["clean_projection"]),
            artifact_projection=float(state["artifact_projection"]),
            auc=float(state.get("auc", float("nan"))),
            accuracy=float(state.get("accuracy", float("nan"))),
            n_artifact=int(state.get("n_artifact", 0)),
            n_clean=int(state.get("n_clean", 0)),
        )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def find_layer(model: nn.Module, layer: str | nn.Module, owner: str) -> tuple[str, nn.Module]:
    """``(name, module)`` of ``layer`` (a name from ``model.named_modules()`` or a submodule of ``model``)."""
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise argument_error(owner, "layer", "a submodule of the model", type(layer).__name__)
    if not isinstance(layer, str) or layer not in modules or layer == "":
        names = [n for n in modules if n][:12]
        raise argument_error(
            owner, "layer", f"the name of a submodule of {type(model).__name__} (e.g. one of {names})", layer
        )
    return layer, modules[layer]


@torch.no_grad()
def layer_activations(
    model: nn.Module, layer: str | nn.Module, inputs: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The outputs of ``layer`` for ``inputs`` (in the model's current mode), flattened per sample.

    Returns
    -------
    torch.Tensor
        Shape ``(N, D)``, on the CPU, float32; ``.activation_shape`` of the result holds one sample's shape.
    """
    _, module = find_layer(model, layer, "layer_activations")
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output.detach())

    handle = module.register_forward_hook(keep)
    try:
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size])
    finally:
        handle.remove()
    if not captured:
        raise ValueError("layer_activations: inputs must hold at least one sample, got none")
    shape = tuple(captured[0].shape[1:])
    out = torch.cat([c.flatten(1).float().cpu() for c in captured])
    out.activation_shape = shape  # type: ignore[attr-defined]
    return out


def _direction(x: np.ndarray, t: np.ndarray, method: str, regularization: float, seed: int) -> np.ndarray:
    if method == "pattern":
        # cov(a, t) / var(t) for binary t: the difference of the groups' means
        v = x[t].mean(axis=0) - x[~t].mean(axis=0)
    else:
        from sklearn.linear_model import LogisticRegression

        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
        clf = LogisticRegression(C=1.0 / regularization, max_iter=2000, random_state=seed)
        clf.fit((x - mean) / scale, t)
        v = clf.coef_[0] / scale  # the filter direction in the unstandardised activations
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(
            f"{OWNER}: the artifact and the clean samples have the same activations in this layer, so there is no "
            "direction to fit; choose another layer or other samples"
        )
    return v / norm


def _auc(scores: np.ndarray, t: np.ndarray) -> float:
    """Area under the ROC curve (ties count half): P(score of an artifact sample > score of a clean one)."""
    pos, neg = scores[t], scores[~t]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def fit_cav(
    activations: torch.Tensor | np.ndarray,
    is_artifact: Sequence[bool] | np.ndarray,
    *,
    layer: str = "",
    shape: Sequence[int] | None = None,
    method: str = "pattern",
    holdout: float = 0.3,
    regularization: float = 1.0,
    seed: int = 0,
) -> CAV:
    """Fit a CAV that separates artifact from clean samples, and measure it on held-out samples.

    Parameters
    ----------
    activations : tensor or array, shape (N, D)
        Flattened layer activations (:func:`layer_activations`).
    is_artifact : sequence of bool, length N
        True for the artifact samples, False for the clean ones; both groups must hold at least 2.
    layer : str, default ""
        Name of the layer, recorded with the CAV.
    shape : sequence of int, optional
        Shape of one sample's activation. Default: ``activations.activation_shape`` or ``(D,)``.
    method : {"pattern", "linear"}, default "pattern"
        The estimator (see the module docstring).
    holdout : float in [0, 0.9], default 0.3
        Share of each group left out to measure the quality; 0 skips the measurement (NaN quality).
    regularization : float > 0, default 1.0
        L2 strength (``1 / C``) of the ``"linear"`` estimator.
    seed : int, default 0
        Seed of the held-out split (and of the logistic regression).

    Returns
    -------
    CAV
    """
    method = check_choice(method, "method", OWNER, CAV_METHODS)
    holdout = check_float(holdout, "holdout", OWNER, 0.0, 0.9)
    regularization = check_float(regularization, "regularization", OWNER, 1e-12, None, note="e.g. 1.0")
    seed = check_int(seed, "seed", OWNER, 0)
    x = (
        activations.detach().double().cpu().numpy()
        if isinstance(activations, torch.Tensor)
        else np.asarray(activations)
    )
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(is_artifact, dtype=bool).reshape(-1)
    if x.ndim != 2 or x.shape[0] != t.size:
        raise argument_error(
            OWNER, "activations", f"a (N, D) array with one row per is_artifact entry ({t.size})", tuple(x.shape)
        )
    if t.sum() < 2 or (~t).sum() < 2:
        raise ValueError(
            f"{OWNER}: is_artifact must mark at least 2 artifact and 2 clean samples, got {int(t.sum())} artifact and "
            f"{int((~t).sum())} clean; pass more samples"
        )
    if shape is None:
        shape = getattr(activations, "activation_shape", None) or (x.shape[1],)
    auc = accuracy = float("nan")
    if holdout > 0:
        rng = np.random.default_rng(seed)
        held = np.zeros(t.size, dtype=bool)
        for group in (np.flatnonzero(t), np.flatnonzero(~t)):
            count = int(round(holdout * group.size))
            if count >= 1 and group.size - count >= 1:
                held[rng.permutation(group)[:count]] = True
        fit = ~held
        if held[t].any() and held[~t].any() and fit[t].any() and fit[~t].any():
            v = _direction(x[fit], t[fit], method, regularization, seed)
            scores = x[held] @ v
            threshold = 0.5 * ((x[fit & t] @ v).mean() + (x[fit & ~t] @ v).mean())
            auc = _auc(scores, t[held])
            accuracy = float(((scores > threshold) == t[held]).mean())
    v = _direction(x, t, method, regularization, seed)
    projections = x @ v
    return CAV(
        layer=layer,
        direction=torch.from_numpy(v).float(),
        shape=tuple(int(s) for s in shape),
        method=method,
        clean_projection=float(projections[~t].mean()),
        artifact_projection=float(projections[t].mean()),
        auc=auc,
        accuracy=accuracy,
        n_artifact=int(t.sum()),
        n_clean=int((~t).sum()),
    )
