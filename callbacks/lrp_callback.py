"""LRPCallback: explain a fixed probe set of validation samples with LRP while a model trains."""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lrp_lightning._model_io import OutputSpec, check_output_spec
from lrp_lightning._validation import argument_error, check_bool, check_callable, check_int, check_path
from lrp_lightning.core import Composite
from lrp_lightning.metrics import ExplanationMetric
from lrp_lightning.store import (
    HEATMAPS_IMAGE_TAG,
    RunStore,
)

from ._background import BackgroundAnalysis, load_analysis
from ._batches import UnpackBatch
from ._config import (
    TargetSpec,
    check_class_names,
    check_heatmap_size,
    check_target,
    jsonable,
    target_mode,
)
from ._epoch_rows import EpochRows
from ._explainer import (
    BatchExplainer,
    Explained,
    ProbeMetrics,
)
from ._methods import analyze_each_method, resolve_methods
from ._modality import Modality, check_feature_names, check_modality, check_tokenizer
from ._probe import as_probe
from ._probe_set import ProbeSet
from ._store_owner import StoreOwner
from ._training_state import sync_errors, untouched_training_state
from ._worker import EpochWorker

log = logging.getLogger(__name__)

OWNER = "LRPCallback"
DEFAULT_METRICS = ("sparseness", "entropy", "conservation", "stability")
"""Metrics computed by default: cheap (no forward passes), no masks needed."""


class LRPCallback(ProbeSet, EpochRows, Callback):
    """Explain a fixed probe set of validation samples with LRP at the end of validation epochs.

    At the first explained epoch the callback chooses the probe set (``num_samples`` validation
    samples, stratified by class, seeded) and stores it with input thumbnails in ``probe.parquet``.
    At every ``every_n_epochs``-th validation epoch it explains the probe set with an LRP composite,
    writes one row per sample (channel-summed relevance map, prediction, target, score, probability,
    relevance sum) into the run's Parquet store (:mod:`lrp_lightning.store`), logs scalars
    (``lrp/relevance_abs_mean``, ``lrp/positive_share``, ``lrp/relevance_sum_mean``,
    ``lrp/probe_accuracy``) and a grid of inputs and heatmaps (TensorBoard's Images tab). The
    explanation-quality ``metrics`` (:mod:`lrp_lightning.metrics`) are stored per sample as extra
    ``metric_<name>`` columns and logged as ``lrp/metric_<name>`` (the mean over the probe set).

    Training is left exactly as it would be without the callback: the explanation runs in eval mode,
    and every submodule's mode, the parameters' ``.grad``, batch-norm statistics and the torch,
    NumPy and Python RNG streams are as before. Under DDP each rank explains its share of the probe
    set and writes its own part file; rank 0 publishes the epoch once all parts are written. The
    probe set is part of the callback's checkpoint state, so a resumed run explains the same samples,
    and an epoch explained again replaces its rows.

    A store belongs to one training. The callback holds the store's writer lock on rank 0 for the
    whole ``fit`` or ``validate`` (:class:`lrp_lightning.store.WriterLock`; a second process writing
    into the same directory gets :class:`~lrp_lightning.store.StoreLockedError` at its start), and the
    manifest names the training's run id, which the checkpoint state carries. Only a resume from a
    checkpoint (``trainer.fit(model, ckpt_path=...)``) continues a store; a new training into a
    directory that holds another training's store fails before training with
    :class:`~lrp_lightning.store.IncompatibleRunError`, even with equal settings. A resume goes on
    writing into the store recorded in the checkpoint, also when the logger starts a new
    ``version_N`` directory (Lightning's default): the run's epochs stay in one store, next to the
    first version's event files, while the logger's scalars go to the new version. ``dirpath``, when
    given, always wins.

    In ``trainer.validate()`` the probe set is explained every time, as epoch ``trainer.current_epoch``
    (or the epoch of the checkpoint given as ``ckpt_path``). With ``val_check_interval < 1`` every
    validation of an epoch explains the probe set, and the last one's rows replace the earlier ones.
    Sanity checking is skipped; under ``fast_dev_run`` the callback does nothing and says so.

    Parameters
    ----------
    composite : str, Composite class or Composite; or a list or dict of methods, default "epsilon_gamma_box"
        The LRP composite: a registered name (see :data:`lrp_lightning.composites.COMPOSITES`), a class,
        or a configured object. Several attribution methods: a list of those and of the built-in names
        ``"gradient"``, ``"input_x_gradient"`` and ``"integrated_gradients"`` (e.g. ``["epsilon_gamma_box",
        "epsilon_plus_flat", "gradient"]``), or a dict ``{name: method}`` whose values may also be an
        :class:`~lrp_lightning.attribution.Attributor` class or a callable ``model -> Attributor`` (e.g.
        ``{"ig": functools.partial(IntegratedGradients, n_iter=32)}``). Every method explains the same probe
        set in the same epoch; the store keeps each row's method (``RunStore.heatmaps(epoch, method=...)``,
        default the first), the metrics are computed per method, and every scalar is also logged per method
        as ``<tag>/<method>`` (the first method's also as ``<tag>``), with a Custom Scalars layout that
        draws each scalar of all methods in one chart. Cost: ``"gradient"`` and ``"input_x_gradient"``
        share one forward and backward pass per batch; each LRP composite needs its own pass (its rules
        are hooks registered on the model for that pass), integrated gradients one per step.
    canonizers : "auto", None or list, default "auto"
        Canonizers of the composites given by name; ``"auto"`` merges batch norms into the layer before them.
    num_samples : int, default 256
        Size of the probe set chosen from the validation data. Ignored when ``probe`` is given.
    probe : sequence of int or Dataset, optional
        The probe set: indices into the validation dataset, or a dataset of its own (all of whose
        samples are explained; sample ids are its indices). Default: chosen from the validation data.
    every_n_epochs : int, default 1
        Explain at the end of every n-th validation epoch of ``fit`` (epochs ``n - 1, 2n - 1, ...``, as
        ``Trainer(check_val_every_n_epoch=n)`` counts).
    target : "label", "prediction" or callable, default "label"
        Which class's score is explained: the true label, the predicted class, or
        ``target(output, labels) -> class indices`` (``labels`` is None without labels).
    heatmap_size : int or (int, int), optional
        Store maps sum-pooled to this size (an int gives square maps). Default: the input's size.
    log_images : int, default 16
        Number of probe samples shown (input and heatmap) in the image logged to each
        ``TensorBoardLogger`` per explained epoch; 0 logs none.
    dirpath : path, optional
        Run directory of the store (files go to ``<dirpath>/plugins/lrp``), or a ``plugins/lrp``
        directory. Default: ``trainer.log_dir``, so TensorBoard finds the store next to the event files.
    analyze : bool, dict or SpRAy, default False
        Run the SpRAy analysis (:func:`lrp_lightning.analysis.analyze_epoch`) of each written epoch in a
        background thread of rank 0 and log its indicator scalars: True for the default pipeline, a
        ``SpRAy`` object, or a dict laid out like an ``lrp-analyze --config`` file (e.g.
        ``{"random_state": 0, "clusterings": {"k_range": [2, 6]}}``). A failed analysis warns and
        training goes on. The analysis never holds training up: when it is slower than an epoch, the
        next epoch waits for it and an older waiting one is skipped with a logged note
        (``lrp-analyze`` analyses skipped epochs afterwards).
    batch_size : int, default 64
        Samples explained at once.
    composite_kwargs : dict, optional
        Arguments of a composite given by name, e.g. ``{"low": 0.0, "high": 1.0}`` (the input range for
        the ZBox rule of ``epsilon_gamma_box``; default: each sample's minimum and maximum). With several
        methods each composite given by name gets the arguments its constructor takes.
    seed : int, default 0
        Seed of the probe selection (a ``numpy.random.Generator`` of its own; the global RNG is unused).
    class_names : sequence of str, optional
        Name of each class, stored in the manifest. Default: the validation dataset's ``classes``
        attribute when it has one name per output, else none.
    unpack_batch : callable, optional
        ``batch -> (inputs, labels)`` for a collated batch, or ``(inputs, labels, masks)`` with ground-truth
        masks for the localisation metrics. Default: tensors, ``(x, y, ...)`` tuples and dicts with keys
        such as ``"image"``/``"input"``, ``"label"``/``"target"`` and ``"mask"``.
    metrics : sequence of str, ExplanationMetric class or object; or None
        Explanation-quality metrics of :mod:`lrp_lightning.metrics`, default ``("sparseness", "entropy",
        "conservation", "stability")``: cheap, no forward passes. Faithfulness (``"pixel_flipping"``,
        ``"region_perturbation"``) is opt-in: it costs ``1 + 2 * steps`` forward passes per probe batch
        (``steps=16`` by default) each explained epoch. Localisation metrics need masks (see
        ``unpack_batch``). ``stability`` compares with the previous explained epoch's stored maps and is NaN
        in the first. ``None`` or ``[]``: no metrics.
    dataloader_idx : int, default 0
        Which validation dataloader the probe set comes from.
    verbose : bool, default False
        Log a line per explained epoch (rank 0).
    background_writes : bool, default True
        In a single process's ``fit``, finish each explained epoch in a worker thread of the callback while
        training goes on: everything after the relevance (host copies, rows, the metrics that need no forward
        pass, the probe thumbnails, the Parquet write and the commit, the heatmap grid), in epoch order. Only
        the LRP passes (and metrics that run the model) hold the training thread up. The scalars and the image
        are logged to the loggers with the epoch's step once the epoch is committed (at a later hook), so they
        are not in ``trainer.callback_metrics``; an error in the worker is raised at the next hook or at the end
        of ``fit``. A crash loses at most the epoch in flight; earlier epochs stay readable. ``False`` (and
        always under DDP, whose ranks gather at the commit, and in ``validate``) does all of it in the hook and
        logs the scalars with ``self.log``, so that they can be monitored (e.g.
        ``ModelCheckpoint(monitor="lrp/probe_accuracy")``).
    output : None, str, int or callable, optional
        Which part of the model's output holds the class scores: a key or attribute (``"logits"``), an index
        into a tuple, or a callable ``output -> scores``. Default: the output itself when it is a tensor, else
        its ``"logits"`` key or ``.logits`` attribute (Hugging Face model outputs).
    modality : {"image", "signal", "tabular", "tokens"}, optional
        What a sample is, stored in the manifest. Default: inferred from the first batch: token ids (an
        integer tensor, or a dict batch with ``"input_ids"``) are tokens, ``(C, H, W)`` an image, ``(C, L)`` a
        signal, ``(F,)`` tabular (pass ``"signal"`` for a 1-D signal without a channel axis).
    feature_names : sequence of str, optional
        Tabular runs: the name of each input feature, stored in the manifest.
    tokenizer : object with ``convert_ids_to_tokens``, or sequence of str, optional
        Token runs: turns token ids into the token strings stored in ``probe.parquet`` (a Hugging Face
        tokenizer, or a vocabulary indexed by token id). Default: token ids only.
    probe_metadata : mapping or callable, optional
        Extra columns of ``probe.parquet``, kept with the probe set (e.g. which samples carry a
        watermark); the plugin lists them in a sample's details and can colour the embedding by them: a
        mapping ``{column: values
        indexed by dataset index}`` or a callable ``(dataset, sample_ids) -> {column: one value per
        sample id}``. Default: none.

    Token inputs: a dict batch such as ``{"input_ids", "attention_mask", "labels"}`` works as it is (the
    labels are found by name; the model is called with the other keys that its ``forward`` accepts); the
    relevance is per token, padding (``attention_mask == 0``) left out; token ids given as one integer
    tensor ``(batch, tokens)`` have no mask, so every position counts as a token. ``probe.parquet`` keeps each
    sample's token ids (and strings, with ``tokenizer``), each row its relevance per token; the fixed-size
    maps are as wide as the longest probe sample.

    The model is checked on a few probe samples when training starts (its output, the target, a rule
    for every layer that runs, the input type), so that a mistake fails before the first epoch.

    Raises
    ------
    ValueError, TypeError
        At construction, for invalid arguments; when training starts or during it, for a model whose
        output is not ``(batch, classes)`` scores (or not what ``output`` names), targets out of range, a
        probe set larger than the validation data, or batches without labels when ``target="label"``.
    lrp_lightning.core.MissingRuleError
        When the composite has no rule for a layer of the model (the message names it).

    Examples
    --------
    A complete script: a tiny CNN on random 8x8 images of 3 classes, trained for 2 epochs::

        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from lrp_lightning import LRPCallback
        from lrp_lightning.store import RunStore


        class Net(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(
                    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(256, 3)
                )

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

            def validation_step(self, batch, batch_idx):
                self.log("val_loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)


        data = TensorDataset(torch.rand(60, 1, 8, 8), torch.arange(60) % 3)
        callback = LRPCallback(num_samples=12, composite_kwargs={"low": 0.0, "high": 1.0})
        trainer = L.Trainer(max_epochs=2, callbacks=[callback], default_root_dir="runs/example", accelerator="cpu")
        trainer.fit(Net(), DataLoader(data, batch_size=20), DataLoader(data, batch_size=20))

        store = RunStore(trainer.log_dir)  # the files are in <log_dir>/plugins/lrp
        print([info.epoch for info in store.epochs()])  # [0, 1]
        sample_ids, maps = store.heatmaps(epoch=1)  # maps: float32 of shape (12, 8, 8)
    """

    def __init__(
        self,
        composite: str | Composite | type[Composite] = "epsilon_gamma_box",
        canonizers: Any = "auto",
        num_samples: int = 256,
        probe: Sequence[int] | Any | None = None,
        every_n_epochs: int = 1,
        target: TargetSpec = "label",
        heatmap_size: int | tuple[int, int] | None = None,
        log_images: int = 16,
        dirpath: str | os.PathLike[str] | None = None,
        analyze: bool | Mapping[str, Any] = False,
        batch_size: int = 64,
        composite_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        unpack_batch: UnpackBatch | None = None,
        dataloader_idx: int = 0,
        verbose: bool = False,
        metrics: Sequence[str | ExplanationMetric | type[ExplanationMetric]] | None = DEFAULT_METRICS,
        probe_metadata: Mapping[str, Sequence[Any]] | Callable[[Any, list[int]], Mapping[str, Any]] | None = None,
        output: OutputSpec = None,
        modality: str | None = None,
        feature_names: Sequence[str] | None = None,
        tokenizer: Any = None,
        background_writes: bool = True,
    ) -> None:
        if probe_metadata is not None and not (isinstance(probe_metadata, Mapping) or callable(probe_metadata)):
            raise argument_error(
                OWNER,
                "probe_metadata",
                "a mapping {column: values by dataset index}, a callable (dataset, sample_ids) -> "
                "{column: values}, or None",
                probe_metadata,
            )
        self.probe_metadata = probe_metadata
        self.num_samples = check_int(
            num_samples, "num_samples", OWNER, 1, note="the number of validation samples to explain, e.g. 256"
        )
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", OWNER, 1, note="1 explains every epoch")
        self.log_images = check_int(log_images, "log_images", OWNER, 0, note="0 logs no images")
        self.batch_size = check_int(batch_size, "batch_size", OWNER, 1)
        self.seed = check_int(seed, "seed", OWNER, 0)
        self.dataloader_idx = check_int(dataloader_idx, "dataloader_idx", OWNER, 0)
        self.target = check_target(target, OWNER)
        self.heatmap_size = check_heatmap_size(heatmap_size, OWNER)
        self.probe = as_probe(probe, OWNER)
        self.class_names = check_class_names(class_names, OWNER)
        self.dirpath = check_path(dirpath, "dirpath", OWNER, allow_none=True)
        self.unpack_batch = check_callable(
            unpack_batch, "unpack_batch", OWNER, "a callable batch -> (inputs, labels)", allow_none=True
        )
        self.verbose = check_bool(verbose, "verbose", OWNER)
        self.background_writes = check_bool(background_writes, "background_writes", OWNER)
        self.output = check_output_spec(output, OWNER)
        self.modality = check_modality(modality, OWNER)
        self.feature_names = check_feature_names(feature_names, self.modality, OWNER)
        self.tokenizer = check_tokenizer(tokenizer, self.modality, OWNER)
        self._modality = Modality(self.modality, self.feature_names, self.tokenizer, OWNER)
        self._methods = resolve_methods(composite, canonizers, composite_kwargs, OWNER)
        first = self._methods[0]
        self.methods = [method.name for method in self._methods]
        self.composite = first.composite
        self._composite_config = first.composite_config or {"name": first.name, "kwargs": {}}
        self._canonizer_config = first.canonizer_config
        analysis = load_analysis(analyze)
        if analysis is not None and len(self._methods) > 1:
            analysis = functools.partial(analyze_each_method, analysis, tuple(self.methods))
        self.analyze = analysis is not None
        self._analysis = None if analysis is None else BackgroundAnalysis(analysis)
        self._metrics = ProbeMetrics(metrics, OWNER)
        self.metrics = list(self._metrics.names)
        self._explainer = BatchExplainer(
            self.composite,
            first.name,
            self.target,
            self.heatmap_size,
            OWNER,
            self._metrics,
            output=self.output,
            modality=self._modality,
            methods=self._methods,
        )
        # method -> epoch -> sample id -> stored map (this rank)
        self._recent_maps: dict[str, dict[int, dict[int, np.ndarray]]] = {}
        self._probe_ids: np.ndarray | None = None
        self._probe_labels: np.ndarray | None = None
        self._probe_config: dict[str, Any] | None = None
        self._run_dir: Path | None = None
        self._run_store: RunStore | None = None
        self._worker = EpochWorker(OWNER)  # finishes one process's epochs off the training thread
        self._in_flight: tuple[int, int, int] | None = None  # (epoch, step, logged step) last given to the worker
        self._uncommitted: tuple[int, int, int] | None = None  # from a checkpoint saved before its commit
        self._thumbnails: dict[int, bytes | None] = {}
        self._checkpoint_epoch: int | None = None
        self._warned_fast_dev_run = False
        self._store_owner = StoreOwner(OWNER)  # the run id, the recorded store and (rank 0) the writer lock

    # ------------------------------------------------------------------------------ Lightning hooks

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            composite=self._composite_config["name"] if len(self.methods) == 1 else "+".join(self.methods),
            target=target_mode(self.target),
            dirpath=None if self.dirpath is None else os.fspath(self.dirpath),
            dataloader_idx=self.dataloader_idx,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._checkpoint_epoch = None
        if trainer.fast_dev_run:
            if not self._warned_fast_dev_run:
                self._warned_fast_dev_run = True
                warnings.warn(
                    f"{OWNER} does nothing under Trainer(fast_dev_run=...): a fast dev run is a smoke test without "
                    "logger or store, so no attributions are written. Run without fast_dev_run (e.g. with "
                    "max_epochs=1 and limit_train_batches) to explain the probe set.",
                    UserWarning,
                    stacklevel=2,
                )
            return
        self._store_owner.claimed = False  # the store is chosen once the checkpoint (if any) is loaded: _claim_store

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.strategy.restore_checkpoint_after_setup:  # else the checkpoint is not loaded yet
            self._claim_store(trainer, pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._claim_store(trainer, pl_module)
        if not trainer.fast_dev_run:
            self._check_model(trainer, pl_module)
            self._complete_uncommitted_epoch(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._claim_store(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._worker.busy:  # log what a finished epoch posted, raise its error (a check of a flag otherwise)
            self._worker.flush()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._worker.wait()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._worker.wait()  # the last epochs are committed and logged when fit returns

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            self._worker.wait()  # the epochs already explained are written before the lock goes
        except Exception as error:  # the exception being raised wins; this one is reported alongside
            log.error("%s: writing an epoch in the background failed as well: %r", OWNER, error)
        finally:
            self._worker.close()
            self._release_store()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        epoch = checkpoint.get("epoch")
        self._checkpoint_epoch = int(epoch) if isinstance(epoch, int) else None

    def state_dict(self) -> dict[str, Any]:
        if self._probe_ids is None and self._store_owner.run_id is None:
            return {}
        state = self._store_owner.state_dict(self._run_dir)
        if self._probe_ids is not None:
            state["probe_ids"] = [int(i) for i in self._probe_ids]
            state["probe_labels"] = [int(i) for i in self._probe_labels]
            state["probe_config"] = jsonable(self._probe_config)
        if self._worker.busy and self._in_flight is not None:
            # the checkpoint holds the weights that this epoch was explained with, but its commit may not be
            # done yet: a resume from the checkpoint explains it again if the store lacks it
            state["uncommitted_epoch"] = list(self._in_flight)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._store_owner.load_state_dict(state_dict)
        uncommitted = state_dict.get("uncommitted_epoch")
        self._uncommitted = tuple(int(v) for v in uncommitted) if uncommitted else None
        if "probe_ids" not in state_dict:
            return
        ids = np.asarray(state_dict["probe_ids"], dtype=np.int64)
        config = dict(state_dict["probe_config"])
        requested = self._requested_probe_config()
        differs = {k: v for k, v in requested.items() if config.get(k) != v}
        if isinstance(self.probe, np.ndarray) and not np.array_equal(self.probe, ids):
            differs["probe"] = "other indices"
        if differs:
            warnings.warn(
                f"{OWNER}: the probe set is restored from the checkpoint ({config}); the settings given now "
                f"({differs}) are ignored so that the resumed run explains the same samples",
                UserWarning,
                stacklevel=2,
            )
        self._probe_ids = ids
        self._probe_labels = np.asarray(state_dict["probe_labels"], dtype=np.int64)
        self._probe_config = config

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if self._analysis is not None and trainer.is_global_zero:
            self._analysis.collect(trainer.loggers)
        self._explain_epoch(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        try:
            self._worker.drain()  # normally done at on_fit_end; the analysis of the last epoch starts there
        finally:
            if self._analysis is not None and trainer.is_global_zero:
                self._analysis.close(trainer.loggers)
            self._release_store()

    @property
    def _store(self) -> RunStore | None:
        """The run store, with every epoch explained so far committed (waits for the worker).

        Other callbacks read it (e.g. :class:`ClArCCallback` at the same hook); the callback's own code,
        which also runs in the worker, uses ``_run_store``.
        """
        if not self._worker.in_worker():
            self._worker.wait()
        return self._run_store

    @_store.setter
    def _store(self, store: RunStore | None) -> None:
        self._run_store = store

    # ------------------------------------------------------------------------------ for companion callbacks

    @property
    def run_store(self) -> RunStore | None:
        """The run store, with every epoch explained so far committed; ``None`` before fitting starts.

        For callbacks that build on this one's run, such as :class:`ClArCCallback`: reading it waits
        for the background writes, so what it returns is complete up to the last explained epoch.
        """
        return self._store

    def finish_analysis(self, trainer: pl.Trainer) -> None:
        """Wait for the background analysis of every epoch submitted so far and log its results.

        Does nothing when the callback runs no analysis (``analyze=None``) or on ranks other than 0.
        """
        if self._analysis is not None and trainer.is_global_zero:
            self._analysis.collect(trainer.loggers, wait=True)

    # ------------------------------------------------------------------------------ the store's owner

    def _claim_store(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Choose the store and take its writer lock (rank 0), see :meth:`StoreOwner.claim`; collective."""
        store_dir = self._store_owner.claim(
            trainer, self.dirpath, lambda error, what: self._sync_errors(trainer, pl_module, error, what)
        )
        if store_dir is not None and store_dir != self._run_dir:
            self._worker.wait()  # a previous training's epochs go into its own store
            self._run_dir, self._run_store, self._thumbnails, self._recent_maps = store_dir, None, {}, {}

    def _release_store(self) -> None:
        self._store_owner.release()

    # ------------------------------------------------------------------------------ the epoch

    def _epoch(self, trainer: pl.Trainer) -> int:
        if trainer.state.fn == TrainerFn.FITTING or self._checkpoint_epoch is None:
            return trainer.current_epoch
        return self._checkpoint_epoch

    def _explain_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._claim_store(trainer, pl_module)  # a no-op after on_fit_start / on_validation_start
        if self.background_writes and trainer.world_size == 1 and trainer.state.fn == TrainerFn.FITTING:
            self._explain_in_background(trainer, pl_module)
            return
        self._worker.wait()  # (background_writes switched off between two fits)
        start = time.perf_counter()
        epoch, step = self._epoch(trainer), trainer.global_step
        rank, world = trainer.global_rank, trainer.world_size
        dataset, collate = self._probe_source(trainer)
        with untouched_training_state(pl_module):
            self._ensure_probe(trainer, pl_module, dataset, collate)
            self._fix_max_tokens(trainer, dataset, collate)
            share = self._probe_ids[rank::world]
            names = self.methods
            explained: dict[str, Explained] | None = None
            error = None
            try:
                previous = (
                    {name: self._previous_maps(epoch, share, name) for name in names}
                    if self._metrics.needs_previous
                    else None
                )
                batches = self._fetch(
                    trainer, dataset, collate, share, self.target == "label", masks=self._metrics.needs_masks
                )
                parts = self._explainer.run_methods(pl_module, batches, previous=previous)
                explained = {name: Explained.concat(parts[name]) for name in names} if parts[names[0]] else None
                if trainer.is_global_zero and self._run_store is None:
                    first = explained[names[0]]
                    settings = self._store_settings(pl_module, dataset, first.num_classes)
                    inputs = (x for _, x, _ in self._fetch(trainer, dataset, collate, self._probe_ids, False))
                    self._create_store(first, settings, inputs)
            except Exception as exc:
                error = exc
            # each _sync_errors is an all-reduce: a barrier that also tells every rank whether any failed
            self._sync_errors(trainer, pl_module, error, "explaining the probe set")  # rank 0 created the store
            by_method = explained
            try:
                if self._run_store is None:
                    self._run_store = RunStore(self._run_dir)
                if by_method is None:  # more ranks than probe samples
                    empty = Explained.empty(
                        self._run_store.heatmap_shape, self._metrics.names, self._run_store.modality
                    )
                    by_method = {name: empty for name in names}
                self._run_store.write_part(epoch, step, self._tables(by_method, epoch, step), rank=rank)
            except Exception as exc:
                error = exc
            self._sync_errors(trainer, pl_module, error, "writing attributions")  # every part is written
            if trainer.is_global_zero:
                try:
                    info = self._run_store.commit_epoch(epoch, step, world_size=world)
                except Exception as exc:
                    error = exc
            sums = [v for name in names for v in (*by_method[name].stats, *self._metrics.sums(by_method[name].metrics))]
            totals = trainer.strategy.reduce(
                torch.tensor([*sums, float(error is not None)], dtype=torch.float64, device=pl_module.device),
                reduce_op="sum",
            )  # one all-reduce: the stats and the metrics' [sum, count] of every method and rank
            if error is not None:
                raise error
            if float(totals[-1]):
                raise RuntimeError(f"{OWNER}: rank 0 failed to commit epoch {epoch}; see its error message")
        rows = by_method[names[0]]
        if self._metrics.needs_previous:
            for name in names:
                self._remember_maps(epoch, by_method[name], name)
        totals = totals[:-1].cpu().numpy().reshape(len(names), -1)
        for tag, value in self._scalar_tags(totals).items():  # the same names on every rank: the totals are reduced
            pl_module.log(tag, value, on_step=False, on_epoch=True, sync_dist=True)
        if trainer.is_global_zero:
            image = self._heatmap_image(epoch, rows, trainer.loggers)
            if image is not None:
                for logger in trainer.loggers:
                    if isinstance(logger, TensorBoardLogger):
                        logger.experiment.add_image(HEATMAPS_IMAGE_TAG, image, global_step=step, dataformats="HWC")
            if len(names) > 1:
                self._log_method_layout(trainer.loggers)
            if self._analysis is not None:
                self._analysis.submit(self._run_store.store_dir, epoch, step)
            message = (
                f"{OWNER}: explained {info.rows} probe samples of epoch {epoch} (step {step}) with "
                f"{len(names)} method(s) in {time.perf_counter() - start:.2f} s into {self._run_store.store_dir}"
            )
            (rank_zero_info if self.verbose else log.debug)(message)

    def _complete_uncommitted_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At a resume: explain again the epoch whose commit was under way when the checkpoint was saved,
        if the store lacks it (the process died before the worker committed it). The checkpoint's weights
        are the ones it was explained with: nothing trained between its explanation and the checkpoint."""
        uncommitted, self._uncommitted = self._uncommitted, None
        if uncommitted is None or trainer.world_size != 1:
            return
        epoch, step, logged_step = uncommitted
        try:
            committed = {info.epoch for info in RunStore(self._run_dir).epochs()}
        except FileNotFoundError:  # the first epoch's store was never created
            committed = set()
        if epoch in committed:
            return
        if trainer.global_step != step:
            warnings.warn(
                f"{OWNER}: epoch {epoch} was being written when the checkpoint was saved and is not in the store; "
                f"the checkpoint's weights (step {trainer.global_step}) are not those it was explained with (step "
                f"{step}), so it stays missing",
                UserWarning,
                stacklevel=2,
            )
            return
        rank_zero_info(f"{OWNER}: explaining epoch {epoch} again: the process ended before its commit")
        self._explain_in_background(trainer, pl_module, (epoch, step, logged_step))

    def _explain_in_background(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, at: tuple[int, int, int] | None = None
    ) -> None:
        """One process: the LRP passes here, the rest in the worker (:meth:`EpochRows._finish_epoch`).

        The training thread waits only for the previous epoch's task (at most one epoch is in flight, so
        memory stays bounded and epochs commit in order) and raises its error, if any. ``at`` gives the
        ``(epoch, step, logged step)`` of an epoch explained again at a resume.
        """
        started = time.perf_counter()
        self._worker.flush()  # an earlier epoch's error is raised before more work is done
        epoch, step = self._epoch(trainer), trainer.global_step
        logged_step = _logged_step(trainer)
        if at is not None:
            epoch, step, logged_step = at
        dataset, collate = self._probe_source(trainer)
        with untouched_training_state(pl_module):
            self._ensure_probe(trainer, pl_module, dataset, collate)
            self._fix_max_tokens(trainer, dataset, collate)
            batches = self._fetch(
                trainer, dataset, collate, self._probe_ids, self.target == "label", masks=self._metrics.needs_masks
            )
            attributed = self._explainer.attribute(pl_module, batches)
            # what the worker reads must not change with training: the inputs are copied, the rest is ours
            attributed = {name: [batch.owned() for batch in parts] for name, parts in attributed.items()}
            settings = None
            if self._run_store is None:
                self._worker.wait()  # (a store created by an earlier task is not seen as None here)
            if self._run_store is None:
                first = attributed[self.methods[0]][0]
                settings = self._store_settings(pl_module, dataset, int(first.output.shape[1]))
        self._worker.wait()  # the previous epoch is committed: this one follows it
        loggers = list(trainer.loggers)
        self._in_flight = (epoch, step, logged_step)
        self._worker.submit(
            epoch, lambda: self._finish_epoch(epoch, step, attributed, settings, loggers, logged_step, started)
        )

    def _sync_errors(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, error: BaseException | None, what: str
    ) -> None:
        sync_errors(trainer, pl_module.device, error, what, OWNER)


def _logged_step(trainer: pl.Trainer) -> int:
    """The step of the metrics that ``self.log`` would log in this hook (what the scalars of an epoch finished
    in the worker are logged with): Lightning's count of optimizer steps of the epoch loop, which at the end of
    a validation that ends a training epoch lags ``global_step`` by one."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(epoch_loop, "_batches_that_stepped", None)
    return int(step) if isinstance(step, int) else trainer.global_step
