"""LRPPredictionWriter: explain every sample of a data set with ``Trainer.predict`` into a run store."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lrp_lightning._model_io import OutputSpec, check_output_spec
from lrp_lightning._validation import check_bool, check_callable, check_int, check_path
from lrp_lightning.core import Composite
from lrp_lightning.store import MODALITY_TOKENS, PartWriter, RunStore, SchemaError, WriterLock, make_probe_table

from ._batches import UnpackBatch, unpack
from ._config import (
    TargetSpec,
    check_class_names,
    check_heatmap_size,
    check_target,
    qualified_name,
    resolve_composite,
    target_mode,
)
from ._explainer import BatchExplainer, Explained
from ._modality import Modality, check_feature_names, check_modality, check_tokenizer
from ._pictures import thumbnail_png
from ._training_state import sync_errors, untouched_training_state

log = logging.getLogger(__name__)

OWNER = "LRPPredictionWriter"


class LRPPredictionWriter(BasePredictionWriter):
    """Explain every sample that ``Trainer.predict`` sees and store the result as one epoch of a run store.

    Each rank explains the batches it predicts (``write_interval="batch"``; the sample id of a row is
    its index in the predicted dataset) and streams the rows into its own part file, ``flush_every`` rows
    at a time (as Parquet row groups of a hidden staging file); at the end of prediction each rank
    finishes its part, rank 0 then writes ``probe.parquet`` (one row per sample, with a thumbnail) and publishes the
    epoch. Samples that the distributed sampler gives to two ranks (it pads the last batch) are stored
    once: readers keep the first row of each sample id. Rank 0 holds the store's writer lock
    (:class:`lrp_lightning.store.WriterLock`) during ``predict``, so a second process writing into the same
    directory meanwhile gets :class:`~lrp_lightning.store.StoreLockedError`. The layout is that of
    :class:`LRPCallback`, so
    ``lrp-analyze``, :class:`lrp_lightning.store.RunStore` and the TensorBoard plugin read it the same
    way. Write each data set to a directory of its own, not into a training run's store.

    A rank holds at most ``flush_every`` rows in memory (about ``H * W * 2`` bytes per sample, float16
    maps; use ``heatmap_size`` to store smaller maps). Nothing of the epoch is visible to readers before
    rank 0 commits it at the end of prediction: a crash leaves earlier epochs as they were (the staged
    files are removed by the next commit of the epoch), and a re-run of the epoch replaces its rows. The
    sample id, label and thumbnail of each sample (for ``probe.parquet``) stay in memory until the end.

    Parameters
    ----------
    dirpath : path, optional
        Run directory of the store (files go to ``<dirpath>/plugins/lrp``) or a ``plugins/lrp`` directory.
        Default: ``trainer.log_dir``.
    composite : str, Composite class or Composite, default "epsilon_gamma_box"
        The LRP composite, as for :class:`LRPCallback`.
    canonizers : "auto", None or list, default "auto"
        Canonizers of a composite given by name.
    composite_kwargs : dict, optional
        Arguments of a composite given by name, e.g. ``{"low": 0.0, "high": 1.0}``.
    target : "label", "prediction" or callable, default "label"
        Which class's score is explained, as for :class:`LRPCallback`.
    heatmap_size : int or (int, int), optional
        Store maps sum-pooled to this size. Default: the input's size.
    epoch : int, optional
        Epoch number under which the attributions are stored. Default: the epoch of the checkpoint
        passed as ``trainer.predict(..., ckpt_path=...)``, else ``trainer.current_epoch``.
    thumbnail_size : int, default 64
        Longest side of the input thumbnails stored in ``probe.parquet``; 0 stores none.
    class_names : sequence of str, optional
        Name of each class, stored in the manifest.
    unpack_batch : callable, optional
        ``batch -> (inputs, labels)``, as for :class:`LRPCallback`.
    verbose : bool, default False
        Log a line when the epoch is written (rank 0).
    flush_every : int, default 4096
        Rows a rank collects before writing them to its part file.
    output : None, str, int or callable, optional
        Which part of the model's output holds the class scores, as for :class:`LRPCallback`.
    modality : {"image", "signal", "tabular", "tokens"}, optional
        What a sample is, as for :class:`LRPCallback`. Default: inferred from the first batch.
    feature_names : sequence of str, optional
        Tabular data: the name of each input feature.
    tokenizer : object with ``convert_ids_to_tokens``, or sequence of str, optional
        Token data: turns token ids into the token strings stored in ``probe.parquet``.

    Token data (integer token ids, or dict batches with ``"input_ids"``) is stored with its token ids
    and relevance per token, padding removed; the fixed-size maps are as wide as the first batch's
    tokens (longer samples keep all their token relevance, but their map is cut there).

    Examples
    --------
    >>> writer = LRPPredictionWriter(dirpath="runs/dataset_wide", composite_kwargs={"low": 0.0, "high": 1.0})
    >>> trainer = L.Trainer(accelerator="cpu", callbacks=[writer], logger=False)     # doctest: +SKIP
    >>> trainer.predict(model, DataLoader(dataset, batch_size=64), ckpt_path="best.ckpt",
    ...                 return_predictions=False)                                    # doctest: +SKIP
    >>> RunStore("runs/dataset_wide").epochs()[0].rows == len(dataset)              # doctest: +SKIP
    True
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        composite: str | Composite | type[Composite] = "epsilon_gamma_box",
        canonizers: Any = "auto",
        composite_kwargs: Mapping[str, Any] | None = None,
        target: TargetSpec = "label",
        heatmap_size: int | tuple[int, int] | None = None,
        epoch: int | None = None,
        thumbnail_size: int = 64,
        class_names: Sequence[str] | None = None,
        unpack_batch: UnpackBatch | None = None,
        verbose: bool = False,
        flush_every: int = 4096,
        output: OutputSpec = None,
        modality: str | None = None,
        feature_names: Sequence[str] | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.dirpath = check_path(dirpath, "dirpath", OWNER, allow_none=True)
        self.target = check_target(target, OWNER)
        self.heatmap_size = check_heatmap_size(heatmap_size, OWNER)
        self.epoch = None if epoch is None else check_int(epoch, "epoch", OWNER, 0)
        self.thumbnail_size = check_int(thumbnail_size, "thumbnail_size", OWNER, 0, note="0 stores no thumbnails")
        self.class_names = check_class_names(class_names, OWNER)
        self.unpack_batch = check_callable(
            unpack_batch, "unpack_batch", OWNER, "a callable batch -> (inputs, labels)", allow_none=True
        )
        self.verbose = check_bool(verbose, "verbose", OWNER)
        self.flush_every = check_int(flush_every, "flush_every", OWNER, 1)
        self.output = check_output_spec(output, OWNER)
        self.modality = check_modality(modality, OWNER)
        self.feature_names = check_feature_names(feature_names, self.modality, OWNER)
        self.tokenizer = check_tokenizer(tokenizer, self.modality, OWNER)
        self._modality = Modality(self.modality, self.feature_names, self.tokenizer, OWNER)
        self.composite, self._composite_config, self._canonizer_config = resolve_composite(
            composite, canonizers, composite_kwargs, OWNER
        )
        self._explainer = BatchExplainer(
            self.composite,
            self._composite_config["name"],
            self.target,
            self.heatmap_size,
            OWNER,
            output=self.output,
            modality=self._modality,
        )
        self._run_dir: Path | None = None
        self._checkpoint: tuple[int, int] | None = None
        self._lock: WriterLock | None = None  # rank 0, during predict
        self._reset()

    def _reset(self) -> None:
        part = getattr(self, "_part", None)
        if part is not None:
            part.abort()  # a prediction that failed before finishing its part
        self._rows: list[Explained] = []  # at most flush_every rows, not yet written
        self._buffered = 0
        self._part: PartWriter | None = None
        self._first: Explained | None = None  # no rows, but the shapes of this rank's maps
        self._flush_error: BaseException | None = None
        self._seen: set[int] = set()
        self._ids: list[int] = []
        self._labels: list[int] = []
        self._thumbnails: list[bytes | None] = []
        self._token_ids: list[np.ndarray] = []
        self._start = time.perf_counter()
        if hasattr(self, "_explainer"):
            self._explainer.max_tokens = None  # each prediction's first batch sets its width

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            dirpath=None if self.dirpath is None else os.fspath(self.dirpath), composite=self._composite_config["name"]
        )

    # ------------------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._checkpoint = None
        if stage == "predict":
            self._run_dir = Path(self.dirpath) if self.dirpath is not None else Path(trainer.log_dir)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
        if isinstance(epoch, int) and isinstance(step, int):
            self._checkpoint = (epoch, step)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.predict_dataloaders
        count = len(loaders) if isinstance(loaders, (list, tuple)) else 1
        if count != 1:
            raise ValueError(
                f"{OWNER} stores one data set per run directory, but predict got {count} dataloaders; call "
                "trainer.predict once per data set, each with a writer of its own dirpath"
            )
        self._reset()
        error = None
        if trainer.is_global_zero:  # one writer per store: another process writing here is an error now
            try:
                self._lock = WriterLock(self._run_dir).acquire()
            except Exception as exc:
                error = exc
        self._sync_errors(trainer, pl_module, error, "locking the store")

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not batch_indices:
            raise RuntimeError(
                f"{OWNER} needs the dataset index of every sample, which Lightning records only for a "
                "torch.utils.data.DataLoader with a batch size (it wraps the batch sampler); pass such a DataLoader"
            )
        ids = np.asarray(batch_indices, dtype=np.int64)
        with untouched_training_state(pl_module):
            x, y = unpack(batch, self.unpack_batch, len(ids), self.target == "label", OWNER)
            keep = np.array([int(i) not in self._seen for i in ids])  # padding of the distributed sampler
            if not keep.any():
                return
            if not keep.all():
                x, y, ids = _take(x, keep), None if y is None else y[torch.as_tensor(keep)], ids[keep]
            (rows,) = self._explainer.run(pl_module, [(ids, x, y)])
        self._seen.update(ids.tolist())
        self._ids.extend(rows.sample_id.tolist())
        self._labels.extend(rows.label.tolist())
        if self._first is None:
            self._first = _slice(rows, 0, 0)
        for start in range(0, len(rows), self.flush_every):
            chunk = rows if len(rows) <= self.flush_every else _slice(rows, start, start + self.flush_every)
            if self._buffered + len(chunk) > self.flush_every:
                self._flush(trainer)
            self._rows.append(chunk)
            self._buffered += len(chunk)
        if self._buffered >= self.flush_every:
            self._flush(trainer)
        if rows.token_ids is not None:
            self._token_ids.extend(rows.token_ids)
            self._thumbnails.extend([None] * len(ids))
        elif self.thumbnail_size:
            self._thumbnails.extend(thumbnail_png(sample, self.thumbnail_size) for sample in x)
        else:
            self._thumbnails.extend([None] * len(ids))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, step = self._epoch_and_step(trainer)
        rank, world = trainer.global_rank, trainer.world_size
        error, store = None, None
        if trainer.is_global_zero:
            try:
                store = self._create_store(pl_module, self._first)
            except Exception as exc:
                error = exc
        self._sync_errors(trainer, pl_module, error, "creating the store")
        try:
            store = store or RunStore(self._run_dir)
            if self._flush_error is not None:
                raise self._flush_error
            self._flush(trainer)
            if self._part is None:
                empty = Explained.empty(store.heatmap_shape, modality=store.modality)
                store.write_part(epoch, step, empty.to_table(epoch, step), rank=rank)
            elif tuple(self._part.heatmap_shape) != tuple(store.heatmap_shape):
                raise SchemaError(
                    f"rank {rank} explained maps of shape {self._part.heatmap_shape}, but the store holds maps of "
                    f"shape {store.heatmap_shape}"
                )
            else:
                self._part.close()
                self._part = None
        except Exception as exc:
            error = exc
        self._sync_errors(trainer, pl_module, error, "writing attributions")  # every part is written
        tokens = self._token_ids if store.modality == MODALITY_TOKENS else None
        probe = _gather_to_rank_zero((self._ids, self._labels, self._thumbnails, tokens), world)
        if trainer.is_global_zero:
            try:
                store.write_probe(_probe_table(probe, self._modality))
                info = store.commit_epoch(epoch, step, world_size=world)
            except Exception as exc:
                error = exc
        self._sync_errors(trainer, pl_module, error, "committing the epoch")
        if trainer.is_global_zero:
            message = (
                f"{OWNER}: explained {info.rows} samples as epoch {epoch} in {time.perf_counter() - self._start:.1f} s "
                f"into {store.store_dir}"
            )
            (rank_zero_info if self.verbose else log.debug)(message)
        self._reset()
        self._release()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._release()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------------------ helpers

    def _flush(self, trainer: pl.Trainer) -> None:
        """Write the buffered rows to this rank's staged part; a failure is kept for on_predict_end to report."""
        if not self._rows or self._flush_error is not None:
            return
        rows, self._rows, self._buffered = Explained.concat(self._rows), [], 0
        try:
            epoch, step = self._epoch_and_step(trainer)
            if self._part is None:
                self._part = PartWriter(
                    self._run_dir, epoch, step, heatmap_shape=rows.maps.shape[1:], rank=trainer.global_rank
                )
            self._part.write(rows.to_table(epoch, step))
        except Exception as exc:  # raised on all ranks together at the end, not in one rank's batch hook
            self._flush_error = exc

    def _epoch_and_step(self, trainer: pl.Trainer) -> tuple[int, int]:
        if self._checkpoint is not None:
            epoch, step = self._checkpoint
        else:
            epoch, step = trainer.current_epoch, trainer.global_step
        return (epoch if self.epoch is None else self.epoch), step

    def _sync_errors(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, error: BaseException | None, what: str
    ) -> None:
        sync_errors(trainer, pl_module.device, error, what, OWNER)

    def _create_store(self, pl_module: pl.LightningModule, rows: Explained | None) -> RunStore:
        if rows is None:
            raise RuntimeError(f"{OWNER}: rank 0 predicted no samples, so the size of the heatmaps is unknown")
        if self.class_names is not None and len(self.class_names) != rows.num_classes:
            raise ValueError(
                f"{OWNER}: class_names has {len(self.class_names)} names, but the model outputs {rows.num_classes} "
                "class scores; pass one name per class"
            )
        return RunStore.create(
            self._run_dir,
            heatmap_shape=rows.maps.shape[1:],
            input_shape=rows.input_shape,
            model_class=qualified_name(pl_module),
            composite=self._composite_config,
            canonizers=self._canonizer_config,
            class_names=self.class_names,
            target_mode=target_mode(self.target),
            probe={"selection": "dataset-wide"},
            metadata={"writer": OWNER},
            modality=rows.modality,
            feature_names=self.feature_names,
            max_tokens=self._explainer.max_tokens if rows.modality == MODALITY_TOKENS else None,
        )


def _slice(rows: Explained, start: int, stop: int) -> Explained:
    """Rows ``start:stop`` (the metrics stay per-sample; the stats go with the first slice)."""
    names = ("sample_id", "label", "prediction", "target", "score", "probability", "relevance_sum", "maps")
    return Explained(
        *(getattr(rows, name)[start:stop] for name in names),
        stats=rows.stats if start == 0 else np.zeros_like(rows.stats),
        input_shape=rows.input_shape,
        num_classes=rows.num_classes,
        metrics={name: values[start:stop] for name, values in rows.metrics.items()},
        modality=rows.modality,
        token_ids=None if rows.token_ids is None else rows.token_ids[start:stop],
        token_relevance=None if rows.token_relevance is None else rows.token_relevance[start:stop],
    )


def _take(x: Any, keep: np.ndarray) -> Any:
    """The kept samples of a model input: a tensor, or each tensor of a token batch's dict."""
    index = torch.as_tensor(keep)
    if isinstance(x, Mapping):
        return {
            key: value[index.to(value.device)] if isinstance(value, torch.Tensor) else value for key, value in x.items()
        }
    return x[index.to(x.device)]


def _gather_to_rank_zero(value: Any, world_size: int) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on rank 0 (``[]`` elsewhere); collective on all ranks."""
    if world_size == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    gathered: list[Any] | None = [None] * world_size if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(value, gathered, dst=0)
    return gathered or []


def _probe_table(parts: Sequence[tuple[list[int], list[int], list[bytes | None], Any]], modality: Modality) -> pa.Table:
    """One row per sample id over all ranks' parts (the first occurrence wins, as for readers)."""
    ids: list[int] = []
    labels: list[int] = []
    thumbnails: list[bytes | None] = []
    token_ids: list[np.ndarray] | None = None if not parts or parts[0][3] is None else []
    seen: set[int] = set()
    for part_ids, part_labels, part_thumbnails, part_tokens in parts:
        for row, (sample_id, label, thumbnail) in enumerate(zip(part_ids, part_labels, part_thumbnails)):
            if sample_id not in seen:
                seen.add(sample_id)
                ids.append(sample_id)
                labels.append(label)
                thumbnails.append(thumbnail)
                if token_ids is not None:
                    token_ids.append(part_tokens[row])
    if not ids:
        warnings.warn(f"{OWNER}: no samples were predicted; the epoch is written empty", RuntimeWarning, stacklevel=2)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    return make_probe_table(
        sample_id=np.asarray(ids, dtype=np.int64)[order],
        dataset_index=np.asarray(ids, dtype=np.int64)[order],
        label=np.asarray(labels, dtype=np.int64)[order],
        thumbnail=[thumbnails[i] for i in order],
        token_ids=None if token_ids is None else [token_ids[i] for i in order],
        tokens=None if token_ids is None else modality.token_strings([token_ids[i] for i in order]),
    )
