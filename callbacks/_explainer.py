"""Explaining batches: relevance of the explained class, turned into the rows of the run store.

* :class:`BatchExplainer` runs an attributor over batches and turns the relevance into the rows of
  the store: channel-summed maps (optionally sum-pooled to ``heatmap_size``), prediction, target,
  score, probability and relevance sum, plus the sums behind the logged scalars (:func:`scalars`).
* :class:`Explained` holds those rows (numpy, on the CPU) and makes the store's attribution table.
* :class:`ProbeMetrics` computes the explanation-quality metrics of :mod:`lrp_lightning.metrics` per
  sample of each explained batch (the values go into extra ``metric_<name>`` columns of the rows).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_lightning._model_io import OutputSpec
from lrp_lightning._validation import argument_error
from lrp_lightning.attribution import Gradient
from lrp_lightning.core import Composite, MissingRuleError
from lrp_lightning.metrics import ExplanationMetric, check_requirements, get_metric
from lrp_lightning.store import (
    CALLBACK_SCALAR_TAGS,
    METRIC_PREFIX,
    MODALITY_TOKENS,
    NONFINITE_SAMPLES_TAG,
    POSITIVE_SHARE_TAG,
    PROBE_ACCURACY_TAG,
    RELEVANCE_ABS_MEAN_TAG,
    RELEVANCE_SUM_MEAN_TAG,
    make_attribution_table,
    metric_column,
    metric_tag,
    token_maps,
)

from ._config import TargetSpec, qualified_name
from ._methods import INPUT_X_GRADIENT, Method, input_times_gradient
from ._modality import Modality, real_tokens
from ._training_state import ExplainedModel

PreviousMaps = Callable[[np.ndarray], Tensor | None]
"""``sample_ids -> `` the previous explained epoch's stored maps of those samples, or None."""

NO_LABEL = -1
"""Label stored for samples whose batches hold no labels."""

"""Extra attribution columns (``metric_<name>``) and scalars (``lrp/metric_<name>``) of the metrics."""

# Sums behind the logged scalars, in this order; summed over ranks with one all-reduce.
STAT_FIELDS = (
    "abs_sum",  # sum of |R| over all pixels of the channel-summed maps
    "pixels",  # number of those pixels
    "positive_sum",  # sum of the positive part of R
    "relevance_sum_total",  # sum over samples of relevance_sum (each sample gets relevance 1 at its class)
    "abs_score_sum",  # sum over samples of |score|
    "correct",  # samples whose prediction equals their label
    "labelled",  # samples with a label
    "samples",
    "nonfinite",  # samples whose output or relevance holds NaN or infinity: left out of all the sums above
)


def _with_context(exc: BaseException, message: str) -> BaseException:
    try:
        return type(exc)(message)
    except Exception:  # exception types whose constructor wants other arguments
        return RuntimeError(message)


class _TargetWeights:
    """The attributor's target: checks the output, picks each sample's class, keeps both for the rows."""

    def __init__(self, target: TargetSpec, labels: Tensor | None, sample_ids: np.ndarray, owner: str) -> None:
        self.target = target
        self.labels = labels
        self.sample_ids = sample_ids
        self.owner = owner
        self.output: Tensor | None = None
        self.classes: Tensor | None = None

    def __call__(self, output: Tensor) -> Tensor:
        if output.ndim != 2:
            raise ValueError(
                f"{self.owner} explains class scores of shape (batch, classes), but the model returned shape "
                f"{tuple(output.shape)}; make forward() return the logits (e.g. flatten the output or pool it "
                "over positions)"
            )
        count = output.shape[1]
        if self.target == "label":
            classes = self.labels
            source = "label"
        elif self.target == "prediction":
            classes = output.argmax(dim=1)
            source = "predicted class"
        else:
            classes = self.target(output, self.labels)
            source = f"class chosen by target={qualified_name(self.target)}"
            if not isinstance(classes, Tensor):
                classes = torch.as_tensor(classes)
            if classes.is_floating_point() or classes.shape != (output.shape[0],):
                raise ValueError(
                    f"{self.owner}: a callable target must return one class index per sample (an integer "
                    f"tensor of shape ({output.shape[0]},)), got {classes.dtype} of shape {tuple(classes.shape)}"
                )
        classes = classes.to(device=output.device, dtype=torch.long)
        bad = (classes < 0) | (classes >= count)
        if bool(bad.any()):
            position = int(bad.nonzero()[0, 0])
            hint = (
                "; the labels do not fit the model's output layer (check its number of classes)"
                if self.target == "label"
                else ""
            )
            raise ValueError(
                f"{self.owner}: the {source} {int(classes[position])} of sample {int(self.sample_ids[position])} "
                f"is out of range for a model with {count} class scores (valid: 0..{count - 1}){hint}"
            )
        self.output, self.classes = output, classes
        weights = torch.zeros_like(output)
        weights[torch.arange(output.shape[0], device=output.device), classes] = 1.0
        return weights


def channel_summed(relevance: Tensor) -> Tensor:
    """``(N, H, W)`` maps: images sum over channels; sequences ``(N, C, L)`` and vectors give ``(N, 1, L)``."""
    relevance = relevance.detach().float()
    if relevance.ndim == 2:
        return relevance[:, None, :]
    if relevance.ndim in (3, 4):
        summed = relevance.sum(dim=1)
        return summed[:, None, :] if relevance.ndim == 3 else summed
    raise ValueError(
        f"inputs of shape {tuple(relevance.shape)} are not supported: relevance is stored for images "
        "(N, C, H, W), sequences (N, C, L) and vectors (N, F)"
    )


def sum_pool(maps: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Resize ``(N, H, W)`` maps to ``size`` keeping each map's total (exactly when the sizes divide)."""
    if size is None or tuple(maps.shape[1:]) == size:
        return maps
    height, width = maps.shape[1:]
    if size[0] > height or size[1] > width:
        raise ValueError(
            f"heatmap_size {size} is larger than the relevance maps ({height}, {width}); maps are only "
            "sum-pooled down: pass heatmap_size=None to store them at the input's size"
        )
    pooled = F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]
    return pooled * (height * width / (size[0] * size[1]))


def as_stored(maps: np.ndarray) -> np.ndarray:
    """``maps`` as the store gives them back: rounded to float16 (out-of-range values become ±inf)."""
    with np.errstate(over="ignore"):
        return np.asarray(maps, np.float32).astype(np.float16).astype(np.float32)


class ProbeMetrics:
    """Explanation-quality metrics (:mod:`lrp_lightning.metrics`) computed per sample of explained batches.

    Parameters
    ----------
    metrics : iterable of str, ExplanationMetric class or object; or None
        Resolved with :func:`~lrp_lightning.metrics.get_metric` (unknown names list the known ones).
    owner : str
        Name of the calling callback, shown in errors.

    Every metric gets the full-resolution relevance, the inputs, the explained classes as ``targets``,
    the model's outputs, the masks (where the batches hold them) and, for faithfulness metrics, the model
    as it is (in eval mode, without the composite). Metrics that need the previous epoch's maps compare
    the stored maps (sum-pooled to ``heatmap_size``, rounded to float16 as in the store) with the previous
    explained epoch's, and give NaN where there are none (the first explained epoch). The metrics' own
    states are never updated: the caller sums the per-sample values (:meth:`sums`).
    """

    def __init__(self, metrics: Iterable[Any] | None, owner: str) -> None:
        self.owner = owner
        if metrics is None:
            metrics = ()
        elif isinstance(metrics, (str, ExplanationMetric)) or isinstance(metrics, type):
            metrics = (metrics,)
        elif not isinstance(metrics, Iterable):
            raise argument_error(
                owner,
                "metrics",
                "a list of metric names or ExplanationMetric objects, or None",
                metrics,
                note="e.g. ['sparseness', 'pixel_flipping']",
            )
        resolved: list[ExplanationMetric] = []
        for metric in metrics:
            try:
                resolved.append(get_metric(metric))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{owner}: metrics: {exc}") from exc
        names = [metric.name for metric in resolved]
        if any(not name or not isinstance(name, str) for name in names):
            unnamed = next(m for m in resolved if not m.name or not isinstance(m.name, str))
            raise ValueError(
                f"{owner}: metric {type(unnamed).__name__} has no name; set the class attribute `name` (it names "
                "the metric's column and scalar)"
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"{owner}: metrics {repeated} are given more than once; each metric gives one column "
                f"'{METRIC_PREFIX}<name>', so pass each once"
            )
        self.metrics = resolved
        self.names = names
        self.needs_model = any(metric.needs_model for metric in resolved)
        self.needs_masks = any(metric.needs_masks for metric in resolved)
        self.needs_previous = any(metric.needs_previous for metric in resolved)

    def __bool__(self) -> bool:
        return bool(self.metrics)

    @property
    def columns(self) -> list[str]:
        return [metric_column(name) for name in self.names]

    def check_masks(self, has_masks: bool) -> None:
        """The error of :func:`~lrp_lightning.metrics.check_requirements`, naming the callback and the fixes."""
        try:
            check_requirements(self.metrics, has_masks=has_masks)
        except ValueError as exc:
            raise ValueError(
                f"{self.owner}: {exc} (probe samples that are dicts with a 'mask' entry of shape (H, W), or "
                "unpack_batch=lambda batch: (inputs, labels, masks))"
            ) from exc

    def compute(
        self,
        module: nn.Module,
        *,
        relevance: Tensor,
        inputs: Tensor,
        outputs: Tensor,
        classes: Tensor,
        masks: Tensor | None,
        stored: np.ndarray,
        previous: Tensor | None,
        sample_ids: np.ndarray | None = None,
        token_relevance: list[np.ndarray] | None = None,
        needs_model: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-sample values of each metric, as float32 arrays keyed by metric name.

        Token runs (``token_relevance`` given) compute each sample's value on its real tokens only (padding
        would change e.g. the Gini index); metrics that perturb or localise inputs do not apply to tokens.
        ``needs_model`` True or False computes only the metrics that run the model, or only the others (those
        run off the training thread); None computes all.
        """
        values: dict[str, np.ndarray] = {}
        count = int(relevance.shape[0])
        for metric in self.metrics:
            if needs_model is not None and bool(metric.needs_model) != needs_model:
                continue
            if metric.needs_previous:
                if previous is None:
                    values[metric.name] = np.full(count, np.nan, np.float32)
                    continue
                result = metric.per_sample(torch.from_numpy(as_stored(stored)), previous=previous.cpu())
            elif token_relevance is not None:
                if metric.needs_model or metric.needs_masks:
                    raise ValueError(
                        f"{self.owner}: metric {metric.name!r} perturbs or localises image inputs and does not apply "
                        "to token inputs; leave it out of metrics (e.g. metrics=['sparseness', 'entropy', "
                        "'conservation', 'stability'])"
                    )
                result = torch.cat(
                    [
                        metric.per_sample(
                            torch.from_numpy(row)[None],
                            targets=classes[index : index + 1],
                            outputs=outputs[index : index + 1],
                        ).cpu()
                        for index, row in enumerate(token_relevance)
                    ]
                )
            else:
                result = metric.per_sample(
                    relevance,
                    model=module if metric.needs_model else None,
                    inputs=inputs,
                    targets=classes,
                    outputs=outputs,
                    masks=masks,
                    sample_ids=sample_ids,  # faithfulness: random orders from (seed, dataset index), batch-free
                )
            values[metric.name] = result.detach().reshape(-1).cpu().numpy().astype(np.float32)
        return values

    def sums(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """``[sum, count]`` of the finite values of each metric, flattened: what the ranks all-reduce."""
        result = []
        for name in self.names:
            column = np.asarray(columns.get(name, ()), np.float64)
            finite = column[np.isfinite(column)]
            result.extend((float(finite.sum()), float(finite.size)))
        return np.asarray(result, np.float64)

    def scalars(self, sums: np.ndarray) -> dict[str, float]:
        """``lrp/metric_<name>``: the mean of the finite values over all ranks; none where there were none."""
        return {
            metric_tag(name): float(sums[2 * i] / sums[2 * i + 1])
            for i, name in enumerate(self.names)
            if sums[2 * i + 1] > 0
        }


@dataclass
class Explained:
    """Rows of explained samples (numpy, on the CPU) and the sums behind the logged scalars."""

    sample_id: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    target: np.ndarray
    score: np.ndarray
    probability: np.ndarray
    relevance_sum: np.ndarray
    maps: np.ndarray
    stats: np.ndarray
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-sample metric values (float32) keyed by metric name."""
    modality: str | None = None
    token_ids: list[np.ndarray] | None = None
    """Token runs: each sample's token ids, padding removed."""
    token_relevance: list[np.ndarray] | None = None
    """Token runs: each sample's relevance per token, padding removed (``maps`` holds it padded)."""

    @classmethod
    def empty(
        cls, heatmap_shape: tuple[int, int], metric_names: Sequence[str] = (), modality: str | None = None
    ) -> Explained:
        ints = np.empty(0, np.int64)
        floats = np.empty(0, np.float32)
        tokens = modality == MODALITY_TOKENS
        return cls(
            ints,
            ints,
            ints,
            ints,
            floats,
            floats,
            floats,
            np.empty((0, *heatmap_shape), np.float32),
            np.zeros(len(STAT_FIELDS)),
            metrics={name: floats for name in metric_names},
            modality=modality,
            token_ids=[] if tokens else None,
            token_relevance=[] if tokens else None,
        )

    def to_table(
        self, epoch: int, global_step: int, extra: Mapping[str, np.ndarray] | None = None, method: str | None = None
    ):
        """These rows as an attribution table of the run store (extra columns, e.g. metrics, appended;
        ``method`` names the rows' method in runs of several)."""
        return make_attribution_table(
            epoch=epoch,
            global_step=global_step,
            sample_id=self.sample_id,
            label=self.label,
            prediction=self.prediction,
            target=self.target,
            score=self.score,
            probability=self.probability,
            relevance=self.maps,
            relevance_sum=self.relevance_sum,
            extra=dict(extra) if extra else None,
            token_relevance=self.token_relevance,
            method=method,
        )

    @classmethod
    def concat(cls, parts: Sequence[Explained]) -> Explained:
        first = parts[0]
        return cls(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in (
                    "sample_id",
                    "label",
                    "prediction",
                    "target",
                    "score",
                    "probability",
                    "relevance_sum",
                    "maps",
                )
            ),
            stats=np.sum([p.stats for p in parts], axis=0),
            input_shape=first.input_shape,
            num_classes=first.num_classes,
            metrics={name: np.concatenate([p.metrics[name] for p in parts]) for name in first.metrics},
            modality=first.modality,
            token_ids=None if first.token_ids is None else [row for p in parts for row in p.token_ids],
            token_relevance=None if first.token_relevance is None else [r for p in parts for r in p.token_relevance],
        )

    def __len__(self) -> int:
        return int(self.sample_id.size)


@dataclass
class Attributed:
    """One batch explained by one method, before its rows are made: tensors on the model's device."""

    sample_ids: np.ndarray
    inputs: Any
    """The inputs as the model got them (cast to its dtype); a tensor, or a dict of tensors for tokens."""
    labels: Tensor | None
    relevance: Tensor
    output: Tensor
    """The class scores, float32."""
    classes: Tensor
    """The explained class of each sample."""
    modality: str
    masks: Tensor | None = None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """Values of the metrics that run the model (computed with the attribution)."""

    def owned(self) -> Attributed:
        """A copy whose tensors nothing else holds: the inputs and labels come from the caller's batch,
        which may share memory with a dataset; relevance, output and classes are the explainer's own."""

        def copy(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value.detach().clone()
            if isinstance(value, Mapping):
                return {key: copy(item) for key, item in value.items()}
            return value

        return Attributed(
            sample_ids=self.sample_ids.copy(),
            inputs=copy(self.inputs),
            labels=copy(self.labels),
            relevance=self.relevance,
            output=self.output,
            classes=self.classes,
            modality=self.modality,
            masks=copy(self.masks),
            metrics=dict(self.metrics),
        )


class BatchExplainer:
    """Explains batches of a LightningModule with one composite; call inside :func:`untouched_training_state`.

    Parameters
    ----------
    composite : Composite
    composite_label : str
        Name shown in errors.
    target : "label", "prediction" or callable
    heatmap_size : (int, int) or None
    owner : str
        Name of the calling callback, shown in errors.
    metrics : ProbeMetrics, optional
        Explanation-quality metrics computed per batch (their values go to :attr:`Explained.metrics`).
    output : None, str, int or callable, optional
        Which part of the model's output holds the class scores
        (:func:`lrp_lightning._model_io.select_output`).
    modality : Modality, optional
        The ``modality``, ``feature_names`` and ``tokenizer`` arguments. Default: inferred, none.

    Token inputs get relevance per token (padding removed, :attr:`Explained.token_relevance`); their
    maps are that relevance zero-padded to :attr:`max_tokens`, which the caller sets (else the first
    batch's width fixes it).
    """

    def __init__(
        self,
        composite: Composite | None,
        composite_label: str,
        target: TargetSpec,
        heatmap_size: tuple[int, int] | None,
        owner: str,
        metrics: ProbeMetrics | None = None,
        output: OutputSpec = None,
        modality: Modality | None = None,
        methods: Sequence[Method] | None = None,
    ) -> None:
        self.methods = list(methods) if methods else [Method(composite_label, "lrp", composite=composite)]
        self.composite = self.methods[0].composite
        self.composite_label = self.methods[0].name
        self.target = target
        self.heatmap_size = heatmap_size
        self.owner = owner
        self.metrics = metrics if metrics else None
        self.output = output
        self.modality = modality or Modality(None, None, None, owner)
        self.max_tokens: int | None = None

    def run(
        self,
        module: nn.Module,
        batches: Iterable[tuple[Any, ...]],
        previous: PreviousMaps | None = None,
    ) -> list[Explained]:
        """Explain ``(sample_ids, inputs, labels[, masks])`` batches with the first method.

        ``previous(sample_ids)`` gives the previous explained epoch's stored maps of those samples (NaN
        maps where missing), or None when there is no previous epoch; metrics that need it get NaN then.
        """
        first = self.methods[0]
        return self.run_methods(module, batches, {first.name: previous}, methods=[first])[first.name]

    def run_methods(
        self,
        module: nn.Module,
        batches: Iterable[tuple[Any, ...]],
        previous: Mapping[str, PreviousMaps | None] | None = None,
        methods: Sequence[Method] | None = None,
    ) -> dict[str, list[Explained]]:
        """Explain the batches with every method (default: all of :attr:`methods`), batch by batch.

        Each batch is fetched once and explained by each method in turn. The gradient-type methods share
        one plain-gradient pass; an LRP composite is registered for its own pass only (for all batches
        when it is the only method and no metric runs the model as it is). This is :meth:`attribute`
        followed at once by :meth:`rows` of each batch.
        """
        previous = previous or {}
        attributed = self.attribute(module, batches, methods)
        return {name: [self.rows(batch, previous.get(name)) for batch in parts] for name, parts in attributed.items()}

    def attribute(
        self,
        module: nn.Module,
        batches: Iterable[tuple[Any, ...]],
        methods: Sequence[Method] | None = None,
    ) -> dict[str, list[Attributed]]:
        """The part of :meth:`run_methods` that runs the model: relevance, outputs and the metrics that need
        the model, per method and batch, left on the model's device (:meth:`rows` makes the rows)."""
        methods = list(methods or self.methods)
        model = ExplainedModel(module, self.output, self.owner)
        name = type(module).__name__
        keep = len(methods) == 1 and not (self.metrics is not None and self.metrics.needs_model)
        attributors = {m.name: m.attributor(model) for m in methods if not m.shares_gradient}
        plain = Gradient(model=model)
        registered: set[str] = set()

        def register(method: Method) -> None:
            if method.composite is None or method.name in registered:
                return
            try:
                attributors[method.name].__enter__()
            except (MissingRuleError, ValueError, TypeError) as exc:
                raise _with_context(
                    exc, f"{self.owner} cannot explain {name} with method {method.name!r}: {exc}"
                ) from exc
            registered.add(method.name)

        def unregister(method: Method) -> None:
            if method.name in registered:
                registered.discard(method.name)
                attributors[method.name].__exit__(None, None, None)

        results: dict[str, list[Attributed]] = {m.name: [] for m in methods}
        try:
            for sample_ids, x, labels, *rest in batches:
                sample_ids = np.asarray(sample_ids, np.int64)
                shared: dict[str, Any] = {}  # this batch's plain gradient, for the gradient-type methods
                for method in methods:
                    register(method)
                    attribute = self._attribute(method, attributors.get(method.name), plain, shared)
                    try:
                        batch = self._attribute_batch(attribute, model, name, sample_ids, x, labels)
                    except MissingRuleError as exc:  # raised when the forward pass reaches a layer without a rule
                        raise _with_context(
                            exc, f"{self.owner} cannot explain {name} with method {method.name!r}: {exc}"
                        ) from exc
                    if not keep:  # metrics (faithfulness) and the next method run the model as it is
                        unregister(method)
                    batch.masks = rest[0] if rest else None
                    if self.metrics is not None and self.metrics.needs_model:
                        batch.metrics = self.metrics.compute(
                            module,
                            relevance=batch.relevance,
                            inputs=batch.inputs,
                            outputs=batch.output,
                            classes=batch.classes,
                            masks=batch.masks,
                            stored=None,
                            previous=None,
                            sample_ids=sample_ids,
                            needs_model=True,
                        )
                    results[method.name].append(batch)
        finally:
            for method in methods:
                unregister(method)
        return results

    @staticmethod
    def _attribute(
        method: Method, attributor: Any, plain: Gradient, shared: dict[str, Any]
    ) -> Callable[[Any, Any], tuple[Tensor, Tensor]]:
        """``(inputs, weights) -> (output, relevance)`` of ``method``; gradient-type methods share ``shared``."""
        if not method.shares_gradient:
            return attributor

        def attribute(x: Any, weights: Any) -> tuple[Tensor, Tensor]:
            if "gradient" not in shared:
                shared["gradient"] = plain(x, weights)
            else:
                weights(shared["gradient"][0])  # the explained classes of this method's rows
            output, gradient = shared["gradient"]
            if method.kind == INPUT_X_GRADIENT:
                gradient = input_times_gradient(x, gradient)
            return output, gradient

        return attribute

    def _attribute_batch(
        self,
        attribute: Callable[[Any, Any], tuple[Tensor, Tensor]],
        model: nn.Module,
        name: str,
        sample_ids: np.ndarray,
        x: Any,
        labels: Tensor | None,
    ) -> Attributed:
        """One batch's relevance, output and explained classes (on the model's device)."""
        modality = self.modality.of(x)
        tokens = modality == MODALITY_TOKENS
        if tokens and self.heatmap_size is not None:
            raise ValueError(
                f"{self.owner}: heatmap_size applies to images and signals; token runs store one value per token "
                "(leave heatmap_size=None)"
            )
        parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
        if not tokens and parameter is not None and x.dtype != parameter.dtype:
            x = x.to(parameter.dtype)  # e.g. Trainer(precision="bf16-true")
        weights = _TargetWeights(self.target, labels, sample_ids, self.owner)
        try:
            output, relevance = attribute(x, weights)
        except NotImplementedError as exc:
            raise NotImplementedError(
                f"{self.owner} explains {name}(inputs), but {name} defines no forward(); define forward() to "
                "return the class scores (logits)"
            ) from exc
        except TypeError as exc:
            if "returned" not in str(exc) or str(exc).startswith(f"{self.owner}:"):
                raise
            raise TypeError(f"{self.owner}: {name}.forward(): {exc}") from exc
        return Attributed(
            sample_ids=sample_ids,
            inputs=x,
            labels=labels,
            relevance=relevance.detach(),
            output=output.detach().float(),
            classes=weights.classes,
            modality=modality,
        )

    def rows(self, batch: Attributed, previous: PreviousMaps | None = None) -> Explained:
        """The rows of an attributed batch, with every metric that does not run the model.

        Needs no model: :class:`LRPCallback` runs it off the training thread. ``previous(sample_ids)``
        gives the previous explained epoch's stored maps (see :meth:`run`).
        """
        tokens = batch.modality == MODALITY_TOKENS
        x, labels, relevance, output, classes = batch.inputs, batch.labels, batch.relevance, batch.output, batch.classes
        modality, sample_ids = batch.modality, batch.sample_ids

        token_ids = token_relevance = None
        if tokens:
            token_ids, token_relevance = real_tokens(x, relevance)
            if self.max_tokens is None:
                self.max_tokens = int(relevance.shape[1])
            full = relevance.detach().float()[:, None, :]  # padding is exactly 0
            stored = torch.from_numpy(token_maps(token_relevance, self.max_tokens))
        else:
            full = channel_summed(relevance)
            stored = sum_pool(full, self.heatmap_size)
        rows = torch.arange(output.shape[0], device=output.device)
        score = output[rows, classes]
        probability = torch.softmax(output, dim=1)[rows, classes]
        relevance_sum = relevance.detach().double().flatten(1).sum(dim=1)
        prediction = output.argmax(dim=1)
        # a NaN or infinity (in the inputs, the model, or the rules) would make every scalar NaN, and
        # argmax(NaN) would count as class 0: such samples are left out of the sums and counted instead
        finite = (
            torch.isfinite(full.flatten(1)).all(dim=1)
            & torch.isfinite(output).all(dim=1)
            & torch.isfinite(relevance_sum).to(output.device)
        )
        full64 = full.double()[finite]
        score64 = score.double()[finite]
        if labels is None:
            label = torch.full_like(prediction, NO_LABEL)
            correct = labelled = 0
        else:
            label = labels.to(device=prediction.device, dtype=torch.long)
            correct, labelled = int(((prediction == label) & finite).sum()), int(finite.sum())
        # pixels, or real tokens (padding left out)
        values = full64.numel() if not tokens else sum(int(r.size) for r, f in zip(token_ids, finite.tolist()) if f)
        stats = np.array(
            [
                float(full64.abs().sum()),
                float(values),
                float(full64.clamp(min=0).sum()),
                float(relevance_sum.double()[finite.to(relevance_sum.device)].sum()),
                float(score64.abs().sum()),
                correct,
                labelled,
                int(finite.sum()),
                int((~finite).sum()),
            ]
        )
        explained = Explained(
            sample_id=sample_ids,
            label=label.cpu().numpy().astype(np.int64),
            prediction=prediction.cpu().numpy().astype(np.int64),
            target=classes.cpu().numpy().astype(np.int64),
            score=score.cpu().numpy().astype(np.float32),
            probability=probability.cpu().numpy().astype(np.float32),
            relevance_sum=relevance_sum.cpu().numpy().astype(np.float32),
            maps=stored.cpu().numpy().astype(np.float32),
            stats=stats,
            input_shape=(self.max_tokens,) if tokens else tuple(int(v) for v in x.shape[1:]),
            num_classes=int(output.shape[1]),
            modality=modality,
            token_ids=token_ids,
            token_relevance=token_relevance,
        )
        if self.metrics is not None:
            explained.metrics = {
                **batch.metrics,
                **self.metrics.compute(
                    None,
                    relevance=relevance,
                    inputs=x,
                    outputs=output,
                    classes=classes,
                    masks=batch.masks,
                    stored=explained.maps,
                    previous=None if previous is None else previous(sample_ids),
                    sample_ids=sample_ids,
                    token_relevance=explained.token_relevance,
                    needs_model=False,
                ),
            }
            explained.metrics = {name: explained.metrics[name] for name in self.metrics.names}  # their order
        return explained


def scalars(stats: np.ndarray) -> dict[str, float]:
    """The logged scalars from summed :data:`STAT_FIELDS`."""
    values = dict(zip(STAT_FIELDS, (float(v) for v in stats)))
    result = {
        RELEVANCE_ABS_MEAN_TAG: values["abs_sum"] / values["pixels"] if values["pixels"] else float("nan"),
        POSITIVE_SHARE_TAG: values["positive_sum"] / values["abs_sum"] if values["abs_sum"] else float("nan"),
        # conservation: the explained class gets relevance 1 at the output, so a conserving explanation sums
        # to about 1 per sample (biases and stabilizers absorb the rest; a missing canonizer shows up here)
        RELEVANCE_SUM_MEAN_TAG: (
            values["relevance_sum_total"] / values["samples"] if values["samples"] else float("nan")
        ),
    }
    if values["labelled"]:
        result[PROBE_ACCURACY_TAG] = values["correct"] / values["labelled"]
    if values["nonfinite"]:  # logged when it happens, so a healthy run gets no chart of zeros
        result[NONFINITE_SAMPLES_TAG] = values["nonfinite"]
        warnings.warn(
            f"{int(values['nonfinite'])} probe sample(s) have NaN or infinite outputs or relevance; they are "
            f"left out of {', '.join(CALLBACK_SCALAR_TAGS)} and counted in {NONFINITE_SAMPLES_TAG}. Their maps "
            "are stored as computed (the plugin marks them). Check the inputs and the model for NaN, or use a "
            "larger epsilon in the composite.",
            RuntimeWarning,
            stacklevel=2,
        )
    return result
