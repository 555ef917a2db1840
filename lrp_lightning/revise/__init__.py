"""Reveal to Revise: unlearn an artifact that the analysis found (no Lightning needed here).

The life cycle of Pahde et al. (MICCAI 2023): the SpRAy findings *reveal* an artifact (a group of a
class's samples that put their relevance on the same region, with the same inputs there); the
artifact's direction in a layer is fitted as a concept activation vector (:func:`fit_cav`), and a
Class Artifact Compensation method *revises* the model:

* :class:`PClArC`: project the direction out at inference (a reversible hook, no training);
* :class:`AClArC`: fine-tune with the artifact added (in the layer) to samples of other classes;
* :class:`RRClArC`: a loss term penalising the output's gradient along the direction.

:mod:`lrp_lightning.revise.metrics` measures the result (relevance share in the region, artifact
sensitivity, clean accuracy). ``lrp_lightning.callbacks.ClArCCallback`` runs the loop while a model
trains: reveal in epoch k, revise from epoch k + 1.
"""

from .cav import CAV, CAV_METHODS, find_layer, fit_cav, layer_activations
from .methods import METHODS, RR_TARGETS, AClArC, PClArC, RRClArC, project
from .metrics import ArtifactPaste, accuracy, artifact_sensitivity, predict, region_share

__all__ = [
    "CAV",
    "CAV_METHODS",
    "METHODS",
    "RR_TARGETS",
    "AClArC",
    "ArtifactPaste",
    "PClArC",
    "RRClArC",
    "accuracy",
    "artifact_sensitivity",
    "find_layer",
    "fit_cav",
    "layer_activations",
    "predict",
    "project",
    "region_share",
]
