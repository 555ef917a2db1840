"""Explanation-quality metrics: faithfulness, localisation, complexity, stability and conservation.

Every metric is a :class:`torchmetrics.Metric`: ``update`` takes a batch, ``compute`` returns the mean over
all batches (and, under DDP, over all ranks: the states are sums reduced with ``"sum"``). Every metric
also gives one value per sample, so that a caller can store it next to the sample's heatmap::

    metric = Sparseness()
    values = metric.per_sample(relevance)      # (N,) tensor, the metric's state is not touched
    metric.update(values=values)               # accumulate what was computed already
    metric.update(relevance)                   # or compute and accumulate in one call
    metric.compute()                           # mean over every sample seen since the last reset()

All metrics share one keyword interface, so a caller can hand every metric the same batch; each metric
uses what it needs and ignores the rest:

``relevance``
    ``(N, C, H, W)`` attributions (summed over channels first) or ``(N, H, W)`` maps; ``(N, F)`` vectors
    count as ``(N, 1, F)`` maps.
``model``, ``inputs``
    The model and its ``(N, C, H, W)`` input batch (faithfulness metrics, :attr:`needs_model`).
``targets``
    What was explained, as in :mod:`lrp_lightning.attribution`: class indices, ``"prediction"``, a weight
    tensor shaped like the output or a callable on the output.
``outputs``
    The model's ``(N, classes)`` output for ``inputs`` (:class:`Conservation`, :attr:`needs_outputs`).
``masks``
    Boolean ``(N, H, W)`` ground-truth regions (localisation metrics, :attr:`needs_masks`);
    :func:`boxes_to_masks` turns bounding boxes into masks.
``previous``
    The same samples' maps from the previous epoch (:class:`Stability`, :attr:`needs_previous`).
``sample_ids``
    Optional ``(N,)`` integer ids of the samples (e.g. dataset indices). With an int ``seed``, the
    faithfulness metrics derive each sample's random patch order from ``(seed, sample id)`` alone, so a
    sample's value does not depend on the batching (batch size, order, DDP ranks); other metrics ignore them.

A per-sample value is NaN where the metric is undefined (e.g. the sparseness of an all-zero map, or a
localisation metric on an empty mask); ``compute`` averages the finite values only, and returns NaN
before any finite value was seen. Values are computed in float64 (float32 on Apple's ``mps``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._metric_base import (
    ExplanationMetric,
    _average_ranks,
    _float,
    _maps,
    _masks,
    _nan_where,
    _sample_ids,
    _sample_seed,
    _target_weights,
    boxes_to_masks,
)
from ._validation import argument_error, check_int
from .attribution import Target

Tensor = torch.Tensor
Baseline = str | float | Callable[[Tensor], Tensor]

__all__ = [
    "METRICS",
    "Conservation",
    "Entropy",
    "ExplanationMetric",
    "PixelFlipping",
    "PointingGame",
    "RegionPerturbation",
    "RelevanceMass",
    "RelevanceRankAccuracy",
    "Sparseness",
    "Stability",
    "boxes_to_masks",
    "check_requirements",
    "get_metric",
]


# --------------------------------------------------------------------------------------------------------------
# faithfulness


class RegionPerturbation(ExplanationMetric):
    r"""Faithfulness: how much faster the target score falls when the most relevant patches go first.

    The channel-summed relevance map is summed per ``patch_size × patch_size`` patch. In step
    :math:`k = 1..K` (``K = steps``), the :math:`k \cdot m` most relevant patches (``m = patches_per_step``)
    are replaced by the baseline in every channel ("most relevant first", MoRF), and the model's score of the
    target class :math:`s^{MoRF}_k` (the logit, or the weighted output for a weight-tensor target) is
    recorded; :math:`s_0` is the score of the unperturbed input. The same is done with a random order of the
    patches, :math:`s^{rand}_k`. The per-sample value is the difference of the areas over the two
    perturbation curves (AOPC, Samek et al. 2017):

    .. math::

        \mathrm{AOPC}_{MoRF} - \mathrm{AOPC}_{rand}
        = \frac{1}{K+1} \sum_{k=0}^{K} \left(s^{rand}_k - s^{MoRF}_k\right)

    It is positive when the relevance ranks patches better than chance, about 0 for a random map and
    negative for a misleading one. With ``random_baseline=False`` it is :math:`\mathrm{AOPC}_{MoRF}` alone,
    :math:`\frac{1}{K+1}\sum_k (s_0 - s^{MoRF}_k)`. With ``normalize=True`` it is divided by
    :math:`|s_0|`: a share of the initial score, comparable across epochs whose logits grow, but unstable
    for samples whose score is close to 0 (hence off by default: values are in logit units).

    Cost: ``1 + steps`` forward passes of the whole batch, ``1 + 2 * steps`` with the random baseline.
    Each pass runs under ``torch.no_grad()`` on the model as given: the metric never changes the model (not
    its mode either), so the caller puts it in eval mode (dropout and batch-norm statistics otherwise make
    the scores noisy). The random order comes from a ``torch.Generator``, never the global RNG.

    References: Samek et al., "Evaluating the visualization of what a deep neural network has learned",
    IEEE TNNLS 2017 (region perturbation, AOPC); Bach et al., "On pixel-wise explanations for non-linear
    classifier decisions by layer-wise relevance propagation", PLOS ONE 2015 (pixel flipping).

    Parameters
    ----------
    patch_size : int, default 4
        Side of the square patches, in input pixels (1 is pixel flipping). Maps are zero-padded to a
        multiple of it, so border patches may be smaller.
    steps : int, default 16
        Perturbation steps :math:`K`.
    patches_per_step : int, optional
        Patches removed per step; by default ``ceil(patches / steps)``, so that the last step removes all of
        them. Samek et al. remove one 9×9 patch per step (``patch_size=9, patches_per_step=1, steps=100``).
    baseline : "zero", "mean", float or callable, default "zero"
        Value of removed pixels: 0, each sample's per-channel mean, a constant, or ``inputs -> tensor``
        shaped like the inputs.
    random_baseline : bool, default True
        Subtract the area of the random-order curve.
    normalize : bool, default False
        Divide by :math:`|s_0|`.
    seed : int or torch.Generator, default 0
        Random patch orders. An int with ``sample_ids`` (see :meth:`curves`; the callback passes the dataset
        indices) seeds one generator per sample from ``(seed, sample id)``: a sample always gets the same
        order, whatever its batch, the batch size or the number of DDP ranks. An int without ``sample_ids``
        seeds a fresh generator in every call (the behaviour before ``sample_ids`` existed): a batch always
        gets the same orders (comparable across epochs), but a sample's order depends on its batch and its
        position there. A generator is used as is and advances (``sample_ids`` are then ignored).
    """

    name = "region_perturbation"
    needs_model = True
    higher_is_better = True

    def __init__(
        self,
        patch_size: int = 4,
        steps: int = 16,
        patches_per_step: int | None = None,
        baseline: Baseline = "zero",
        random_baseline: bool = True,
        normalize: bool = False,
        seed: int | torch.Generator = 0,
        **torchmetrics_kwargs: Any,
    ) -> None:
        super().__init__(**torchmetrics_kwargs)
        owner = type(self).__name__
        self.patch_size = check_int(patch_size, "patch_size", owner, 1)
        self.steps = check_int(steps, "steps", owner, 1)
        self.patches_per_step = (
            None if patches_per_step is None else check_int(patches_per_step, "patches_per_step", owner, 1)
        )
        if (isinstance(baseline, str) and baseline not in ("zero", "mean")) or not (
            isinstance(baseline, (str, int, float)) or callable(baseline)
        ):
            raise argument_error(owner, "baseline", "'zero', 'mean', a number or a callable inputs -> tensor", baseline)
        if not isinstance(seed, (int, torch.Generator)) or isinstance(seed, bool):
            raise argument_error(owner, "seed", "an int or a torch.Generator", seed)
        self.baseline = baseline
        self.random_baseline = random_baseline
        self.normalize = normalize
        self.seed = seed

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, steps={self.steps}, patches_per_step={self.patches_per_step}, "
            f"baseline={self.baseline!r}, random_baseline={self.random_baseline}, normalize={self.normalize}"
        )

    def _fill(self, inputs: Tensor) -> Tensor:
        if self.baseline == "zero":
            return torch.zeros_like(inputs)
        if self.baseline == "mean":
            return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
        if callable(self.baseline):
            fill = self.baseline(inputs)
            if not isinstance(fill, Tensor) or fill.shape != inputs.shape:
                raise ValueError(
                    f"metric {self.name}: the baseline callable must return a tensor shaped like the inputs "
                    f"{tuple(inputs.shape)}, got {getattr(fill, 'shape', type(fill).__name__)}"
                )
            return fill.to(inputs)
        return torch.full_like(inputs, float(self.baseline))

    def _generator(self) -> torch.Generator:
        if isinstance(self.seed, torch.Generator):
            return self.seed
        return torch.Generator().manual_seed(self.seed)

    def _random_keys(self, count: int, patches: int, sample_ids: list[int] | None) -> Tensor:
        """``(count, patches)`` uniform keys whose argsort is the random patch order of each sample."""
        if sample_ids is None or isinstance(self.seed, torch.Generator):
            return torch.rand((count, patches), generator=self._generator())
        generator = torch.Generator()
        keys = torch.empty((count, patches))
        for row, sample_id in enumerate(sample_ids):
            torch.rand(patches, generator=generator.manual_seed(_sample_seed(self.seed, sample_id)), out=keys[row])
        return keys

    def curves(
        self,
        relevance: Tensor,
        model: nn.Module,
        inputs: Tensor,
        targets: Target,
        sample_ids: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Perturbation curves ``(N, steps + 1)``: target scores after ``k = 0..steps`` steps.

        Returns the MoRF curve and the random-order curve (``None`` with ``random_baseline=False``).
        ``sample_ids`` (one int per sample) make the random orders depend on ``(seed, sample id)`` only (int
        ``seed``); without them a batch's orders come from one generator seeded in each call.
        """
        owner = f"metric {self.name}"
        maps = _maps(relevance, owner)
        ids = _sample_ids(sample_ids, maps.shape[0], owner)
        if not isinstance(inputs, Tensor) or inputs.ndim != 4:
            raise ValueError(
                f"{owner} perturbs image batches (N, C, H, W), got inputs of shape "
                f"{tuple(getattr(inputs, 'shape', ()))}"
            )
        if tuple(maps.shape) != (inputs.shape[0], *inputs.shape[2:]):
            raise ValueError(
                f"{owner}: relevance maps {tuple(maps.shape)} do not fit the inputs {tuple(inputs.shape)}; pass "
                "the relevance at the input's resolution (not sum-pooled heatmaps)"
            )
        count, _, height, width = inputs.shape
        size = self.patch_size
        rows, cols = -(-height // size), -(-width // size)
        padded = F.pad(maps, (0, cols * size - width, 0, rows * size - height))
        patch_relevance = padded.reshape(count, rows, size, cols, size).sum(dim=(2, 4)).flatten(1)
        patches = rows * cols
        per_step = self.patches_per_step or -(-patches // self.steps)

        order = patch_relevance.argsort(dim=1, descending=True, stable=True)
        positions = torch.arange(patches, device=maps.device).expand(count, patches)
        morf_rank = torch.empty_like(order).scatter_(1, order, positions)
        ranks = [morf_rank.to(inputs.device)]
        if self.random_baseline:
            random_rank = self._random_keys(count, patches, ids).argsort(dim=1)
            ranks.append(random_rank.to(inputs.device))

        with torch.no_grad():
            inputs = inputs.detach()
            output = model(inputs)
            if not isinstance(output, Tensor):
                raise TypeError(f"{owner}: the model returned {type(output).__name__}, not a tensor of scores")
            weights = _target_weights(owner, output, targets)
            reduce_dims = tuple(range(1, output.ndim))
            initial = (weights * output).sum(reduce_dims)
            fill = self._fill(inputs)
            curves = []
            for rank in ranks:
                scores = [initial]
                for step in range(1, self.steps + 1):
                    removed = (rank < step * per_step).reshape(count, rows, cols)
                    removed = removed.repeat_interleave(size, 1).repeat_interleave(size, 2)[:, None, :height, :width]
                    scores.append((weights * model(torch.where(removed, fill, inputs))).sum(reduce_dims))
                curves.append(_float(torch.stack(scores, dim=1)))
        return curves[0], (curves[1] if self.random_baseline else None)

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        morf, random = self.curves(
            batch["relevance"], batch["model"], batch["inputs"], batch["targets"], batch.get("sample_ids")
        )
        if random is None:
            values = (morf[:, :1] - morf).mean(dim=1)
        else:
            values = (random - morf).mean(dim=1)
        if self.normalize:
            values = values / morf[:, 0].abs()
        return values


class PixelFlipping(RegionPerturbation):
    """Faithfulness by pixel flipping (Bach et al. 2015): :class:`RegionPerturbation` with 1×1 patches.

    Same parameters, formula and cost as :class:`RegionPerturbation`; only ``patch_size`` defaults to 1.
    """

    name = "pixel_flipping"

    def __init__(self, patch_size: int = 1, **kwargs: Any) -> None:
        super().__init__(patch_size=patch_size, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# localisation


class RelevanceMass(ExplanationMetric):
    r"""Localisation: the share of positive relevance that falls inside the ground-truth mask.

    .. math:: \mu = \frac{\sum_{p \in M} \max(R_p, 0)}{\sum_{p} \max(R_p, 0)} \in [0, 1]

    on the channel-summed map :math:`R` and mask :math:`M`. NaN without positive relevance or with an empty
    mask. Reference: Arras, Osman and Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation
    of neural network explanations", Information Fusion 2022 (relevance mass accuracy).
    """

    name = "relevance_mass"
    needs_masks = True
    higher_is_better = True

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        masks = _masks(batch["masks"], maps.shape, f"metric {self.name}").to(maps.device)
        positive = maps.clamp(min=0).flatten(1)
        inside = (positive * masks.flatten(1)).sum(dim=1)
        return _nan_where(inside / positive.sum(dim=1), masks.flatten(1).sum(dim=1) == 0)


class RelevanceRankAccuracy(ExplanationMetric):
    r"""Localisation: the share of the :math:`K` most relevant pixels that lie inside the mask, :math:`K = |M|`.

    .. math:: \mathrm{RA} = \frac{|\mathrm{top}_K(R) \cap M|}{K}

    Pixels are ranked by their (signed) channel-summed relevance; ties at the :math:`K`-th place go to the
    earlier pixel in row-major order. NaN for an empty mask. Reference: Arras, Osman and Samek, CLEVR-XAI,
    Information Fusion 2022 (relevance rank accuracy).
    """

    name = "relevance_rank_accuracy"
    needs_masks = True
    higher_is_better = True

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        masks = _masks(batch["masks"], maps.shape, f"metric {self.name}").to(maps.device).flatten(1)
        flat = maps.flatten(1)
        order = flat.argsort(dim=1, descending=True, stable=True)
        positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
        rank = torch.empty_like(order).scatter_(1, order, positions)
        size = masks.sum(dim=1)
        hits = ((rank < size[:, None]) & masks).sum(dim=1).to(flat)
        return _nan_where(hits / size.clamp(min=1).to(flat), size == 0)


class PointingGame(ExplanationMetric):
    r"""Localisation: 1 if the most relevant pixel lies inside the mask (a hit), else 0; the mean is the hit rate.

    .. math:: \mathrm{hit} = [\arg\max_p R_p \in M_\tau]

    where :math:`M_\tau` is the mask grown by ``tolerance`` pixels (Euclidean distance; Zhang et al. use
    15 pixels on 224×224 images). Tied maxima: the first in row-major order counts. A constant map points
    nowhere and counts as a miss; an empty mask gives NaN (the sample is not counted). Reference: Zhang et
    al., "Top-down neural attention by excitation backprop", IJCV 2018.

    Parameters
    ----------
    tolerance : int, default 0
        Radius in pixels by which the mask is grown.
    """

    name = "pointing_game"
    needs_masks = True
    higher_is_better = True

    def __init__(self, tolerance: int = 0, **torchmetrics_kwargs: Any) -> None:
        super().__init__(**torchmetrics_kwargs)
        self.tolerance = check_int(tolerance, "tolerance", type(self).__name__, 0, note="in pixels")

    def extra_repr(self) -> str:
        return f"tolerance={self.tolerance}"

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        masks = _masks(batch["masks"], maps.shape, f"metric {self.name}").to(maps.device)
        empty = masks.flatten(1).sum(dim=1) == 0
        if self.tolerance:
            radius = self.tolerance
            offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float32)
            disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).float()[None, None]
            masks = F.conv2d(masks[:, None].float(), disc, padding=radius)[:, 0] > 0
        flat = maps.flatten(1)
        peak = flat.argmax(dim=1, keepdim=True)
        hits = masks.flatten(1).gather(1, peak)[:, 0].to(flat)
        constant = flat.amax(dim=1) == flat.amin(dim=1)
        return _nan_where(torch.where(constant, torch.zeros_like(hits), hits), empty)


# --------------------------------------------------------------------------------------------------------------
# complexity


class Sparseness(ExplanationMetric):
    r"""Complexity: the Gini index of the absolute channel-summed relevance, in :math:`[0, 1 - 1/d]`.

    With :math:`a_{(1)} \le \dots \le a_{(d)}` the sorted values of :math:`|R|` over the :math:`d` pixels:

    .. math:: G = \frac{\sum_{i=1}^{d} (2i - d - 1)\, a_{(i)}}{d \sum_{i=1}^{d} a_{(i)}}

    0 for a uniform map, :math:`1 - 1/d` when one pixel holds all relevance; NaN for an all-zero map.
    References: Chalasani et al., "Concise explanations of neural networks using adversarial training",
    ICML 2020; Hurley and Rickard, "Comparing measures of sparsity", IEEE Trans. Inf. Theory 2009.
    """

    name = "sparseness"
    higher_is_better = True

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        values = maps.flatten(1).abs().sort(dim=1).values
        size = values.shape[1]
        coefficients = 2 * torch.arange(1, size + 1, dtype=values.dtype, device=values.device) - size - 1
        return (values * coefficients).sum(dim=1) / (size * values.sum(dim=1))


class Entropy(ExplanationMetric):
    r"""Complexity: the Shannon entropy (in nats) of the normalised absolute relevance, :math:`p = |R| / \sum |R|`.

    .. math:: H = -\sum_{p} p_p \log p_p \qquad (0 \log 0 = 0)

    0 when one pixel holds all relevance, :math:`\log d` for a uniform map of :math:`d` pixels; NaN for an
    all-zero map. With ``normalize=True`` it is divided by :math:`\log d` (in :math:`[0, 1]`, comparable
    across resolutions). Reference: Shannon, "A mathematical theory of communication", 1948; as an
    explanation-complexity measure, e.g. Bhatt et al., "Evaluating and aggregating feature-based model
    explanations", IJCAI 2020.

    Parameters
    ----------
    normalize : bool, default False
    """

    name = "entropy"
    higher_is_better = False

    def __init__(self, normalize: bool = False, **torchmetrics_kwargs: Any) -> None:
        super().__init__(**torchmetrics_kwargs)
        self.normalize = normalize

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        magnitude = maps.flatten(1).abs()
        share = magnitude / magnitude.sum(dim=1, keepdim=True)
        entropy = torch.special.entr(share).sum(dim=1)
        if self.normalize and share.shape[1] > 1:
            entropy = entropy / math.log(share.shape[1])
        return entropy


# --------------------------------------------------------------------------------------------------------------
# stability over training


class Stability(ExplanationMetric):
    r"""Stability over training: Spearman's rank correlation of a sample's map with its previous-epoch map.

    .. math:: \rho = \frac{\operatorname{cov}(\mathrm{rk}(R^{(t)}), \mathrm{rk}(R^{(t-1)}))}
              {\sigma_{\mathrm{rk}(R^{(t)})}\, \sigma_{\mathrm{rk}(R^{(t-1)})}} \in [-1, 1]

    over the pixels of the channel-summed (signed) maps, tied values getting their mean rank. 1: the pixels
    keep their order; about 0: unrelated maps. NaN for a constant map or a previous map holding NaN (e.g. a
    sample that was not explained in the previous epoch). ``previous`` holds the same samples, in the same
    order, as ``(N, H, W)`` maps (e.g. read back from the store) or ``(N, C, H, W)`` attributions. Reference:
    Spearman, "The proof and measurement of association between two things", Am. J. Psychol. 1904.
    """

    name = "stability"
    needs_previous = True
    higher_is_better = True

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        previous = _maps(batch["previous"], f"metric {self.name}").to(maps.device)
        if previous.shape != maps.shape:
            raise ValueError(
                f"metric {self.name}: previous maps {tuple(previous.shape)} do not fit the relevance maps "
                f"{tuple(maps.shape)}; pass the previous epoch's maps of the same samples at the same size"
            )
        current, before = maps.flatten(1), previous.flatten(1)
        invalid = ~torch.isfinite(current).all(dim=1) | ~torch.isfinite(before).all(dim=1)
        ranks = [_average_ranks(torch.nan_to_num(x)) for x in (current, before)]
        centred = [r - r.mean(dim=1, keepdim=True) for r in ranks]
        covariance = (centred[0] * centred[1]).sum(dim=1)
        scale = (centred[0].square().sum(dim=1) * centred[1].square().sum(dim=1)).sqrt()
        return _nan_where(covariance / scale, invalid)


# --------------------------------------------------------------------------------------------------------------
# conservation


class Conservation(ExplanationMetric):
    r"""Conservation: the relevance summed over the input, divided by the relevance put in at the output.

    .. math:: c = \frac{\sum_i R_i}{\sum_j w_j}

    where :math:`w` = :func:`~lrp_lightning.attribution.output_weights` ``(outputs, targets)`` is the
    initial relevance the attributor starts from. For a class-index target (a one-hot :math:`w`, this
    library's and Zennit's default) the denominator is 1; for a target that starts from the score
    (``targets=lambda out: out * one_hot``) it is the target logit. LRP rules conserve relevance up to
    biases and stabilisers, so :math:`c` is close to 1 for a sound setup; values far from 1 (or of the wrong
    sign) flag numerically broken ones, e.g. a batch norm left unmerged by a missing canonizer or an
    epsilon that absorbs most of the relevance. Compare with the right denominator: with a one-hot target,
    relevance sum / logit is about 1 / logit, not 1. NaN where :math:`\sum_j w_j = 0`. Reference:
    Bach et al., PLOS ONE 2015 (the conservation property); Montavon et al., "Layer-wise relevance
    propagation: an overview", 2019.
    """

    name = "conservation"
    needs_outputs = True

    def _per_sample(self, maps: Tensor, **batch: Any) -> Tensor:
        outputs = batch["outputs"]
        weights = _float(_target_weights(f"metric {self.name}", outputs.detach(), batch["targets"]))
        initial = weights.flatten(1).sum(dim=1).to(maps.device)
        totals = maps.flatten(1).sum(dim=1)
        return _nan_where(totals / initial, initial == 0)


# --------------------------------------------------------------------------------------------------------------
# registry


METRICS: dict[str, type[ExplanationMetric]] = {
    "sparseness": Sparseness,
    "entropy": Entropy,
    "pixel_flipping": PixelFlipping,
    "region_perturbation": RegionPerturbation,
    "relevance_mass": RelevanceMass,
    "relevance_rank_accuracy": RelevanceRankAccuracy,
    "pointing_game": PointingGame,
    "stability": Stability,
    "conservation": Conservation,
}


def _metric_class(name: str) -> type[ExplanationMetric]:
    key = name.strip().lower().replace("-", "_")
    if key not in METRICS:
        close = difflib.get_close_matches(key, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown metric {name!r}{hint}; choose one of {sorted(METRICS)}")
    return METRICS[key]


def _not_a_metric(obj: Any) -> TypeError:
    return TypeError(
        f"a metric must be a name (one of {sorted(METRICS)}), an ExplanationMetric class or object, not "
        f"{type(obj).__name__}"
    )


def get_metric(name_or_obj: str | ExplanationMetric | type[ExplanationMetric], **kwargs: Any) -> ExplanationMetric:
    """A metric from its registered name (see :data:`METRICS`), a metric class, or a metric object as is.

    ``kwargs`` go to the constructor, e.g. ``get_metric("region_perturbation", patch_size=8, steps=10)``.
    Names are case-insensitive and may use ``-`` for ``_``.
    """
    if isinstance(name_or_obj, ExplanationMetric):
        if kwargs:
            raise TypeError(
                f"arguments {sorted(kwargs)} apply to a metric given by name or class; {name_or_obj!r} is "
                "constructed already"
            )
        return name_or_obj
    if isinstance(name_or_obj, type) and issubclass(name_or_obj, ExplanationMetric):
        return name_or_obj(**kwargs)
    if isinstance(name_or_obj, str):
        return _metric_class(name_or_obj)(**kwargs)
    raise _not_a_metric(name_or_obj)


def check_requirements(metrics: Iterable[str | ExplanationMetric | type[ExplanationMetric]], has_masks: bool) -> None:
    """Raise a :class:`ValueError` naming the first metric that needs masks when there are none.

    For callers such as a callback, which know before the first batch whether the probe samples carry
    masks. Unknown names raise :func:`get_metric`'s error.
    """
    for metric in metrics:
        if isinstance(metric, str):
            cls = _metric_class(metric)
        elif isinstance(metric, ExplanationMetric):
            cls = type(metric)
        elif isinstance(metric, type) and issubclass(metric, ExplanationMetric):
            cls = metric
        else:
            raise _not_a_metric(metric)
        if cls.needs_masks and not has_masks:
            raise ValueError(
                f"metric {cls.name} needs masks: give the probe dataset a 'mask' field or remove it from metrics"
            )
