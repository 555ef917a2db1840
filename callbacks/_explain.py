"""What :class:`LRPCallback` and :class:`LRPPredictionWriter` share: explaining batches of a model
during training without changing anything the training depends on.

* :func:`untouched_training_state` puts every submodule in eval mode and restores each one's flag,
  each parameter's ``.grad`` and the torch (CPU and CUDA), NumPy and Python RNG streams afterwards.
* :class:`ExplainedModel` presents a LightningModule to the LRP engine without its metrics and loss
  modules (they are never called in ``forward``, but a strict composite would ask for their rule).
* :class:`BatchExplainer` runs an attributor over batches and turns the relevance into the rows of
  the store: channel-summed maps (optionally sum-pooled to ``heatmap_size``), prediction, target,
  score, probability and relevance sum, plus the sums behind the logged scalars.
* :class:`ProbeMetrics` computes the explanation-quality metrics of :mod:`lrp_lightning.metrics` per
  sample of each explained batch (the values go into extra ``metric_<name>`` columns of the rows).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from lrp_lightning.attribution import Gradient
from lrp_lightning.composites import get_composite
from lrp_lightning.core import Composite, MissingRuleError
from lrp_lightning.metrics import ExplanationMetric, check_requirements, get_metric
from lrp_lightning.store import make_attribution_table

TargetSpec = str | Callable[[Tensor, Tensor | None], Tensor]
UnpackBatch = Callable[[Any], tuple[Tensor, Tensor | None] | tuple[Tensor, Tensor | None, Tensor | None]]
PreviousMaps = Callable[[np.ndarray], Tensor | None]

NO_LABEL = -1
"""Label stored for samples whose batches hold no labels."""

INPUT_KEYS = ("input", "inputs", "x", "image", "images", "img", "pixel_values", "data")
LABEL_KEYS = ("label", "labels", "y", "target", "targets", "class", "cls")
MASK_KEYS = ("mask", "masks")
METRIC_PREFIX = "metric_"
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
)


def sync_errors(trainer: Any, device: torch.device, error: BaseException | None, what: str, owner: str) -> None:
    """Collective on all ranks: raise everywhere when any rank failed, instead of leaving others waiting."""
    flag = torch.tensor([float(error is not None)], dtype=torch.float64, device=device)
    failures = float(trainer.strategy.reduce(flag, reduce_op="sum")[0])
    if error is not None:
        raise error
    if failures:
        raise RuntimeError(f"{owner}: {int(failures)} rank(s) failed while {what}; see their error messages")


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class, function or of an object's class."""
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"


def jsonable(value: Any) -> Any:
    """A JSON value describing ``value`` that is the same in every process (no memory addresses)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
        return jsonable(array.tolist()) if array.size <= 16 else f"array{list(array.shape)}"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return qualified_name(value)


# --------------------------------------------------------------------------------------------------
# Configuration shared by both callbacks
# --------------------------------------------------------------------------------------------------


def resolve_composite(
    composite: Any, canonizers: Any, composite_kwargs: Mapping[str, Any] | None, owner: str
) -> tuple[Composite, dict[str, Any], Any]:
    """Build the composite once; return it with its manifest description and the canonizer config."""
    if composite_kwargs is not None and not isinstance(composite_kwargs, Mapping):
        raise TypeError(
            f"{owner}: composite_kwargs must be a dict of composite arguments, e.g. "
            f"{{'low': 0.0, 'high': 1.0}}, not {type(composite_kwargs).__name__}"
        )
    kwargs = dict(composite_kwargs or {})
    if not (canonizers is None or isinstance(canonizers, (str, list, tuple)) or hasattr(canonizers, "apply")):
        raise TypeError(
            f"{owner}: canonizers must be 'auto', None, or a list of canonizers or canonizer names, "
            f"not {type(canonizers).__name__}"
        )
    if isinstance(composite, Composite):
        if kwargs:
            raise ValueError(
                f"{owner}: composite_kwargs {sorted(kwargs)} only apply to a composite given by name; "
                "configure the composite object itself (e.g. EpsilonGammaBox(low=0.0, high=1.0)) or pass "
                "composite='epsilon_gamma_box'"
            )
        if canonizers != "auto":
            raise ValueError(
                f"{owner}: canonizers only apply to a composite given by name; pass them to the composite "
                "object itself, e.g. EpsilonGammaBox(canonizers=[SequentialMergeBatchNorm()])"
            )
        name = composite.name or qualified_name(composite)
        return composite, {"name": name, "kwargs": {}}, jsonable(composite.canonizers)
    if not (isinstance(composite, str) or isinstance(composite, type) and issubclass(composite, Composite)):
        raise TypeError(
            f"{owner}: composite must be a registered name such as 'epsilon_gamma_box', a Composite class "
            f"or a Composite object, not {type(composite).__name__}"
        )
    try:
        built = get_composite(composite, canonizers=canonizers, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"{owner}: composite_kwargs {sorted(kwargs)} do not fit composite {composite!r} ({exc}); "
            "see the composite's docstring for its arguments"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{owner}: {exc}") from exc
    name = composite if isinstance(composite, str) else (composite.name or qualified_name(composite))
    return built, {"name": name, "kwargs": jsonable(kwargs)}, jsonable(canonizers)


def check_target(target: Any, owner: str) -> TargetSpec:
    if isinstance(target, str) and target in ("label", "prediction"):
        return target
    if callable(target) and not isinstance(target, str):
        return target
    raise ValueError(
        f"{owner}: target must be 'label' (explain the true class), 'prediction' (the predicted class) or a "
        f"callable (output, labels) -> class indices, not {target!r}"
    )


def target_mode(target: TargetSpec) -> str:
    return target if isinstance(target, str) else f"callable:{qualified_name(target)}"


def check_heatmap_size(size: Any, owner: str) -> tuple[int, int] | None:
    if size is None:
        return None
    values = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        height, width = (int(v) for v in values)
        valid = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    except (TypeError, ValueError):
        valid = False
    if not valid or min(height, width) < 1:
        raise ValueError(
            f"{owner}: heatmap_size must be None (the input's size), a positive int (square maps) or "
            f"(height, width), not {size!r}"
        )
    return height, width


def check_int(value: Any, name: str, owner: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, not {value!r}{hint}")
    return int(value)


def check_class_names(class_names: Any, owner: str) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise TypeError(f"{owner}: class_names must be a list of str, one per class, not {class_names!r}")
    return [str(name) for name in class_names]


# --------------------------------------------------------------------------------------------------
# Leaving training untouched
# --------------------------------------------------------------------------------------------------


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
    metrics = __import__("sys").modules.get("torchmetrics")
    return metrics is not None and isinstance(module, (metrics.Metric, metrics.MetricCollection))


class ExplainedModel(nn.Module):
    """A view of ``module`` for the LRP engine: the same layers and ``forward``, minus losses and metrics.

    The children are the module's own (rules attach to them); the view owns no parameters of its own.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_lrp_explained", module)  # not registered: its metrics would need rules
        for name, child in module.named_children():
            if not _is_auxiliary(child):
                self.add_module(name, child)

    def forward(self, input: Tensor) -> Any:
        return self._lrp_explained(input)


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


def default_unpack_batch(batch: Any) -> tuple[Any, Any]:
    """``(input, labels)`` of a collated batch: a tensor, ``(x, y, ...)`` or a dict with common keys."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0], batch[1] if len(batch) > 1 else None
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        if x is None:
            raise ValueError(
                f"cannot find the model input in a batch with keys {sorted(batch)} (looked for {list(INPUT_KEYS)}); "
                "pass unpack_batch=lambda batch: (batch['<input key>'], batch['<label key>'])"
            )
        return x, y
    raise ValueError(
        f"cannot unpack a batch of type {type(batch).__name__}; batches must be a tensor, a tuple (x, y) or "
        "a dict, or pass unpack_batch=lambda batch: (inputs, labels)"
    )


def unpack(
    batch: Any, unpack_batch: UnpackBatch | None, size: int, need_labels: bool, owner: str, with_masks: bool = False
):
    """Checked ``(x, labels or None)`` of a batch of ``size`` samples; ``(x, labels, masks or None)`` with masks.

    Masks are a dict batch's ``"mask"`` (or ``"masks"``) entry, or the optional third element that
    ``unpack_batch`` returns.
    """
    parts = (unpack_batch or default_unpack_batch)(batch)
    if not isinstance(parts, (tuple, list)) or len(parts) not in (2, 3):
        raise ValueError(
            f"{owner}: unpack_batch must return (inputs, labels) or (inputs, labels, masks), got "
            f"{type(parts).__name__}{f' of {len(parts)} items' if isinstance(parts, (tuple, list)) else ''}"
        )
    x, y = parts[0], parts[1]
    masks = parts[2] if len(parts) == 3 else None
    if masks is None and unpack_batch is None and isinstance(batch, Mapping):
        masks = next((batch[k] for k in MASK_KEYS if k in batch), None)
    if masks is not None and not isinstance(masks, Tensor):
        masks = torch.as_tensor(masks)
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] != size:
        described = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"{owner}: the model input of a batch of {size} samples must be a floating point tensor of shape "
            f"({size}, ...), got {described}; pass unpack_batch=lambda batch: (inputs, labels)"
        )
    if y is not None and not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            y = None
    if y is not None and (y.is_floating_point() or y.dtype == torch.bool or y.shape != (size,)):
        if need_labels:
            raise ValueError(
                f"{owner}: target='label' needs one class index per sample, but the batch's labels are a "
                f"{y.dtype} tensor of shape {tuple(y.shape)}; pass unpack_batch=lambda batch: (inputs, "
                "class_indices), or target='prediction'"
            )
        y = None
    if y is None and need_labels:
        raise ValueError(
            f"{owner}: target='label' needs labels, but the batches hold none (the model input alone); "
            "pass target='prediction', or return (inputs, labels) from the dataset, or pass "
            "unpack_batch=lambda batch: (inputs, labels)"
        )
    if with_masks:
        if masks is not None and (masks.ndim < 2 or masks.shape[0] != size):
            raise ValueError(
                f"{owner}: the masks of a batch of {size} samples must be a tensor of shape ({size}, H, W), got "
                f"shape {tuple(masks.shape)}"
            )
        return x, y, masks
    return x, y


# --------------------------------------------------------------------------------------------------
# Explaining
# --------------------------------------------------------------------------------------------------


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
            raise TypeError(
                f"{owner}: metrics must be a list of metric names or ExplanationMetric objects (e.g. "
                f"['sparseness', 'pixel_flipping']), not {type(metrics).__name__}"
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
        return [METRIC_PREFIX + name for name in self.names]

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
    ) -> dict[str, np.ndarray]:
        """Per-sample values of each metric, as float32 arrays keyed by metric name."""
        values: dict[str, np.ndarray] = {}
        count = int(relevance.shape[0])
        for metric in self.metrics:
            if metric.needs_previous:
                if previous is None:
                    values[metric.name] = np.full(count, np.nan, np.float32)
                    continue
                result = metric.per_sample(torch.from_numpy(as_stored(stored)), previous=previous.cpu())
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
            f"lrp/{METRIC_PREFIX}{name}": float(sums[2 * i] / sums[2 * i + 1])
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

    @classmethod
    def empty(cls, heatmap_shape: tuple[int, int], metric_names: Sequence[str] = ()) -> Explained:
        ints = np.empty(0, np.int64)
        floats = np.empty(0, np.float32)
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
        )

    def to_table(self, epoch: int, global_step: int, extra: Mapping[str, np.ndarray] | None = None):
        """These rows as an attribution table of the run store (extra columns, e.g. metrics, appended)."""
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
        )

    def __len__(self) -> int:
        return int(self.sample_id.size)


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
    """

    def __init__(
        self,
        composite: Composite,
        composite_label: str,
        target: TargetSpec,
        heatmap_size: tuple[int, int] | None,
        owner: str,
        metrics: ProbeMetrics | None = None,
    ) -> None:
        self.composite = composite
        self.composite_label = composite_label
        self.target = target
        self.heatmap_size = heatmap_size
        self.owner = owner
        self.metrics = metrics if metrics else None

    def run(
        self,
        module: nn.Module,
        batches: Iterable[tuple[Any, ...]],
        previous: PreviousMaps | None = None,
    ) -> list[Explained]:
        """Explain ``(sample_ids, inputs, labels[, masks])`` batches; the composite is registered once for all.

        ``previous(sample_ids)`` gives the previous explained epoch's stored maps of those samples (NaN
        maps where missing), or None when there is no previous epoch; metrics that need it get NaN then.
        """
        model = ExplainedModel(module)
        name = type(module).__name__
        attributor = Gradient(model=model, composite=self.composite)

        def register() -> None:
            try:
                attributor.__enter__()
            except (MissingRuleError, ValueError, TypeError) as exc:
                raise _with_context(
                    exc, f"{self.owner} cannot explain {name} with composite {self.composite_label!r}: {exc}"
                ) from exc

        register()
        registered = True
        results = []
        try:
            for sample_ids, x, labels, *rest in batches:
                sample_ids = np.asarray(sample_ids, np.int64)
                try:
                    explained, (x, relevance, output) = self._explain(attributor, name, sample_ids, x, labels)
                except MissingRuleError as exc:  # raised when the forward pass reaches a layer without a rule
                    raise _with_context(
                        exc, f"{self.owner} cannot explain {name} with composite {self.composite_label!r}: {exc}"
                    ) from exc
                if self.metrics is not None:
                    if self.metrics.needs_model:  # faithfulness runs the model as it is, without the composite
                        attributor.__exit__(None, None, None)
                        registered = False
                    explained.metrics = self.metrics.compute(
                        module,
                        relevance=relevance,
                        inputs=x,
                        outputs=output,
                        classes=torch.as_tensor(explained.target, device=output.device),
                        masks=rest[0] if rest else None,
                        stored=explained.maps,
                        previous=None if previous is None else previous(sample_ids),
                        sample_ids=sample_ids,
                    )
                    if not registered:
                        register()
                        registered = True
                results.append(explained)
        finally:
            if registered:
                attributor.__exit__(None, None, None)
        return results

    def _explain(
        self, attributor: Gradient, name: str, sample_ids: np.ndarray, x: Tensor, labels: Tensor | None
    ) -> tuple[Explained, tuple[Tensor, Tensor, Tensor]]:
        """The rows of a batch, and the (possibly cast) inputs, full relevance and output for the metrics."""
        parameter = next((p for p in attributor.model.parameters() if p.is_floating_point()), None)
        if parameter is not None and x.dtype != parameter.dtype:
            x = x.to(parameter.dtype)  # e.g. Trainer(precision="bf16-true")
        weights = _TargetWeights(self.target, labels, sample_ids, self.owner)
        try:
            output, relevance = attributor(x, weights)
        except NotImplementedError as exc:
            raise NotImplementedError(
                f"{self.owner} explains {name}(inputs), but {name} defines no forward(); define forward() to "
                "return the class scores (logits)"
            ) from exc
        except TypeError as exc:
            if "returned" not in str(exc):
                raise
            raise TypeError(f"{self.owner}: {name}.forward(): {exc}") from exc
        classes = weights.classes
        output = output.detach().float()
        full = channel_summed(relevance)
        stored = sum_pool(full, self.heatmap_size)
        rows = torch.arange(output.shape[0], device=output.device)
        score = output[rows, classes]
        probability = torch.softmax(output, dim=1)[rows, classes]
        relevance_sum = relevance.detach().double().flatten(1).sum(dim=1)
        prediction = output.argmax(dim=1)
        full64 = full.double()
        score64 = score.double()
        if labels is None:
            label = torch.full_like(prediction, NO_LABEL)
            correct = labelled = 0
        else:
            label = labels.to(device=prediction.device, dtype=torch.long)
            correct, labelled = int((prediction == label).sum()), len(label)
        stats = np.array(
            [
                float(full64.abs().sum()),
                float(full64.numel()),
                float(full64.clamp(min=0).sum()),
                float(relevance_sum.double().sum()),
                float(score64.abs().sum()),
                correct,
                labelled,
                len(sample_ids),
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
            input_shape=tuple(int(v) for v in x.shape[1:]),
            num_classes=int(output.shape[1]),
        )
        return explained, (x, relevance.detach(), output)


def scalars(stats: np.ndarray) -> dict[str, float]:
    """The logged scalars from summed :data:`STAT_FIELDS`."""
    values = dict(zip(STAT_FIELDS, (float(v) for v in stats)))
    result = {
        "lrp/relevance_abs_mean": values["abs_sum"] / values["pixels"] if values["pixels"] else float("nan"),
        "lrp/positive_share": values["positive_sum"] / values["abs_sum"] if values["abs_sum"] else float("nan"),
        # conservation: the explained class gets relevance 1 at the output, so a conserving explanation sums
        # to about 1 per sample (biases and stabilizers absorb the rest; a missing canonizer shows up here)
        "lrp/relevance_sum_mean": (
            values["relevance_sum_total"] / values["samples"] if values["samples"] else float("nan")
        ),
    }
    if values["labelled"]:
        result["lrp/probe_accuracy"] = values["correct"] / values["labelled"]
    return result


# --------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------


def thumbnail_png(sample: Tensor | np.ndarray, max_side: int) -> bytes:
    """PNG of one model input, min-max scaled; images keep 1 or 3 channels, others are averaged to gray."""
    from lrp_lightning.image import to_png_bytes

    array = sample.detach().float().cpu().numpy() if isinstance(sample, Tensor) else np.asarray(sample, np.float32)
    if array.ndim == 1:
        array = array[None, None]
    elif array.ndim == 2:
        array = array.mean(axis=0, keepdims=True)[None]  # (C, L) -> (1, 1, L)
    elif array.ndim != 3:
        array = array.reshape(-1, *array.shape[-2:])
    if array.shape[0] not in (1, 3):
        array = array.mean(axis=0, keepdims=True)
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    pixels = np.round(scaled * 255).astype(np.uint8).transpose(1, 2, 0)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return to_png_bytes(image)


def heatmap_grid(maps: np.ndarray, thumbnails: Sequence[bytes | None], cell: int = 64) -> Image.Image:
    """One image: per sample, its input next to its heatmap (``bwr``: red for the class, blue against)."""
    import io

    from lrp_lightning.image import grid, heatmap

    pairs = []
    for relevance, png in zip(maps, thumbnails):
        height, width = relevance.shape
        scale = max(1, -(-cell // max(height, width)))
        size = (width * scale, height * scale)
        picture = heatmap(np.nan_to_num(relevance, nan=0.0, posinf=0.0, neginf=0.0), cmap="bwr").resize(
            size, Image.Resampling.NEAREST
        )
        pair = Image.new("RGB", (size[0] * 2 + 1, size[1]), (255, 255, 255))
        if png is not None:
            pair.paste(Image.open(io.BytesIO(png)).convert("RGB").resize(size, Image.Resampling.NEAREST), (0, 0))
        pair.paste(picture, (size[0] + 1, 0))
        pairs.append(pair)
    columns = max(1, min(len(pairs), round(np.sqrt(len(pairs) / 2)) or 1))
    return grid(pairs, nrow=columns, padding=3, fill=(255, 255, 255))
