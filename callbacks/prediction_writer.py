"""LRPPredictionWriter: explain every sample of a data set with ``Trainer.predict`` into a run store."""

from __future__ import annotations

import dataclasses
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
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lrp_lightning._model_io import OutputSpec, check_output_spec
from lrp_lightning._validation import argument_error, check_bool, check_callable, check_int, check_path
from lrp_lightning.attribution import Attributor
from lrp_lightning.composites import COMPOSITES
from lrp_lightning.core import Composite
from lrp_lightning.store import (
    MODALITY_TOKENS,
    RELEVANCE,
    TOKEN_RELEVANCE,
    PartWriter,
    RunStore,
    SchemaError,
    WriterLock,
    encode_relevance,
    make_probe_table,
    token_maps,
)

from ._batches import UnpackBatch, unpack
from ._config import (
    TargetSpec,
    check_class_names,
    check_heatmap_size,
    check_target,
    qualified_name,
    target_mode,
)
from ._explainer import BatchExplainer, Explained
from ._methods import BUILTIN_METHODS, Method, resolve_methods
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

    A rank holds at most ``flush_every`` rows in memory (one row per sample and method, about ``H * W * 4``
    bytes each; use ``heatmap_size`` to store smaller maps). Nothing of the epoch is visible to readers before
    rank 0 commits it at the end of prediction: a crash leaves earlier epochs as they were (the staged
    files are removed by the next commit of the epoch), and a re-run of the epoch replaces its rows. The
    sample id, label and thumbnail of each sample (for ``probe.parquet``) stay in memory until the end.

    Parameters
    ----------
    dirpath : path, optional
        Run directory of the store (files go to ``<dirpath>/plugins/lrp``) or a ``plugins/lrp`` directory.
        Default: ``trainer.log_dir``.
    composite : str, Composite class or Composite; or a list or dict of methods, default "epsilon_gamma_box"
        The attribution method(s), as for :class:`LRPCallback`: one LRP composite; a list of composites and
        built-in method names (``"gradient"``, ``"input_x_gradient"``, ``"integrated_gradients"``), e.g.
        ``["epsilon_gamma_box", "gradient"]``; or a dict ``{name: method}`` whose values may also be
        attributors (``model -> Attributor``, e.g. ``functools.partial(IntegratedGradients, n_iter=32)``).
        Every method explains every predicted batch; the store keeps each row's method
        (``RunStore.heatmaps(epoch, method=...)``, default the first).
    canonizers : "auto", None or list, default "auto"
        Canonizers of the composites given by name.
    composite_kwargs : dict, optional
        Arguments of the composites given by name, e.g. ``{"low": 0.0, "high": 1.0}`` (with several, each
        composite gets the arguments its constructor takes).
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
        Rows (one per sample and method) a rank collects before writing them to its part file.
    output : None, str, int or callable, optional
        Which part of the model's output holds the class scores, as for :class:`LRPCallback`.
    modality : {"image", "signal", "tabular", "tokens"}, optional
        What a sample is, as for :class:`LRPCallback`. Default: inferred from the first batch.
    feature_names : sequence of str, optional
        Tabular data: the name of each input feature.
    tokenizer : object with ``convert_ids_to_tokens``, or sequence of str, optional
        Token data: turns token ids into the token strings stored in ``probe.parquet``.

    Token data (integer token ids, or dict batches with ``"input_ids"``) is stored with its token ids
    and relevance per token, padding removed. Batches may be padded to different lengths: the fixed-size
    maps are as wide as the widest batch over all ranks (:attr:`RunStore.max_tokens`), each sample's map
    its whole relevance per token, zero beyond its tokens. When a batch wider than the first ones comes
    late, the rows written before it are rewritten once at the end, to the final width. Images and
    signals of other sizes than the first batch's need ``heatmap_size`` (maps sum-pooled to one size).

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
        composite: Any = "epsilon_gamma_box",
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
        self._methods = _resolve_methods(composite, canonizers, composite_kwargs)
        first = self._methods[0]
        self.methods = [method.name for method in self._methods]
        self.composite = first.composite
        self._composite_config = first.composite_config or {"name": first.name, "kwargs": {}}
        self._canonizer_config = first.canonizer_config
        self._explainer = BatchExplainer(
            self.composite,
            first.name,
            self.target,
            self.heatmap_size,
            OWNER,
            output=self.output,
            modality=self._modality,
            methods=self._methods,
        )
        self._run_dir: Path | None = None
        self._checkpoint: tuple[int, int] | None = None
        self._lock: WriterLock | None = None  # rank 0, during predict
        self._reset()

    def _reset(self) -> None:
        part = getattr(self, "_part", None)
        if part is not None:
            part.abort()  # a prediction that failed before finishing its part
        self._rows: list[tuple[str, Explained]] = []  # (method, rows): at most flush_every rows, not yet written
        self._buffered = 0
        self._part: PartWriter | None = None
        self._first: Explained | None = None  # no rows, but the shapes of this rank's maps
        self._width = 0  # token runs: the widest batch's maps so far (this rank)
        self._flush_error: BaseException | None = None
        self._seen: set[int] = set()
        self._ids: list[int] = []
        self._labels: list[int] = []
        self._thumbnails: list[bytes | None] = []
        self._token_ids: list[np.ndarray] = []
        self._start = time.perf_counter()

    @property
    def state_key(self) -> str:
        composite = self._composite_config["name"] if len(self.methods) == 1 else "+".join(self.methods)
        return self._generate_state_key(
            dirpath=None if self.dirpath is None else os.fspath(self.dirpath), composite=composite
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
            self._explainer.max_tokens = None  # token maps as wide as this batch; widened when written
            explained = self._explainer.run_methods(pl_module, [(ids, x, y)])
        by_method = {name: parts[0] for name, parts in explained.items()}
        rows = by_method[self.methods[0]]
        if not self._check_shape(trainer, rows, batch_idx):
            return
        self._seen.update(ids.tolist())
        self._ids.extend(rows.sample_id.tolist())
        self._labels.extend(rows.label.tolist())
        if self._first is None:
            self._first = _slice(rows, 0, 0)
        if rows.token_ids is not None:
            self._width = max(self._width, int(rows.maps.shape[-1]))
        for name, method_rows in by_method.items():
            for start in range(0, len(method_rows), self.flush_every):
                chunk = method_rows
                if len(method_rows) > self.flush_every:
                    chunk = _slice(method_rows, start, start + self.flush_every)
                if self._buffered + len(chunk) > self.flush_every:
                    self._flush(trainer)
                self._rows.append((name, chunk))
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
        width = _max_over_ranks(self._width, pl_module.device)  # token runs: the widest batch of every rank
        error, store = None, None
        if trainer.is_global_zero:
            try:
                store = self._create_store(pl_module, self._first, width)
            except Exception as exc:
                error = exc
        self._sync_errors(trainer, pl_module, error, "creating the store")
        try:
            store = store or RunStore(self._run_dir)
            self._flush(trainer, width)
            if self._flush_error is not None:
                raise self._flush_error
            if self._part is None:
                store.write_part(epoch, step, self._empty_table(store, epoch, step), rank=rank)
            elif store.modality == MODALITY_TOKENS and self._part.heatmap_shape[1] < width:
                part, self._part = self._part, None
                _widen_token_part(part, self._run_dir, width)
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
                f"{OWNER}: explained {info.rows} samples with {len(self.methods)} method(s) as epoch {epoch} in "
                f"{time.perf_counter() - self._start:.1f} s into {store.store_dir}"
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

    def _flush(self, trainer: pl.Trainer, final_width: int = 0) -> None:
        """Write the buffered rows to this rank's staged part; a failure is kept for on_predict_end to report.

        ``final_width``: the token maps' width over all ranks, known at the end (a part started then needs
        no widening).
        """
        if not self._rows or self._flush_error is not None:
            return
        chunks, self._rows, self._buffered = self._rows, [], 0
        try:
            epoch, step = self._epoch_and_step(trainer)
            if chunks[0][1].token_ids is not None:
                # token maps at the part's width: a wider row's map is cut here, and rebuilt whole from its
                # token relevance when on_predict_end widens the part to the widest batch of all ranks
                widest = max(final_width, *(rows.maps.shape[-1] for _, rows in chunks))
                width = self._part.heatmap_shape[1] if self._part else widest
                chunks = [(name, _with_width(rows, width)) for name, rows in chunks]
            tables = [
                Explained.concat(mine).to_table(epoch, step, method=self._method_column(name))
                for name in self.methods
                if (mine := [rows for method, rows in chunks if method == name])
            ]
            if self._part is None:
                self._part = PartWriter(
                    self._run_dir, epoch, step, heatmap_shape=chunks[0][1].maps.shape[1:], rank=trainer.global_rank
                )
            self._part.write(tables[0] if len(tables) == 1 else pa.concat_tables(tables))
        except Exception as exc:  # raised on all ranks together at the end, not in one rank's batch hook
            self._flush_error = exc

    def _method_column(self, name: str) -> str | None:
        """The rows' method column: the method's name in runs of several methods, none in runs of one."""
        return name if len(self.methods) > 1 else None

    def _empty_table(self, store: RunStore, epoch: int, step: int) -> pa.Table:
        """No rows (a rank that predicted nothing), with the columns of the other ranks' parts."""
        empty = Explained.empty(store.heatmap_shape, modality=store.modality)
        tables = [empty.to_table(epoch, step, method=self._method_column(name)) for name in self.methods]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _check_shape(self, trainer: pl.Trainer, rows: Explained, batch_idx: int) -> bool:
        """Whether the batch's maps have the shape of the first batch's (token maps may be of any width).

        Maps of another shape are an error, raised at once in a single process; under DDP it is kept for
        on_predict_end, which raises it on every rank together.
        """
        if self._first is None or rows.token_ids is not None:
            return True
        before, now = tuple(self._first.maps.shape[1:]), tuple(rows.maps.shape[1:])
        if before == now:
            return True
        smallest = tuple(min(a, b) for a, b in zip(before, now))
        words = "signals" if rows.modality == "signal" else "samples"
        error = ValueError(
            f"{OWNER}: the maps of batch {batch_idx} have shape {now}, but the earlier batches' have shape "
            f"{before}; the maps of a run have one shape. Pass heatmap_size={smallest} (or smaller) to sum-pool "
            f"every map to one size, or give all {words} one size (pad or crop them)"
        )
        if trainer.world_size == 1:
            raise error
        self._flush_error = self._flush_error or error
        return False

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

    def _create_store(self, pl_module: pl.LightningModule, rows: Explained | None, width: int) -> RunStore:
        if rows is None:
            raise RuntimeError(f"{OWNER}: rank 0 predicted no samples, so the size of the heatmaps is unknown")
        if self.class_names is not None and len(self.class_names) != rows.num_classes:
            raise ValueError(
                f"{OWNER}: class_names has {len(self.class_names)} names, but the model outputs {rows.num_classes} "
                "class scores; pass one name per class"
            )
        tokens = rows.modality == MODALITY_TOKENS
        return RunStore.create(
            self._run_dir,
            heatmap_shape=(1, width) if tokens else rows.maps.shape[1:],
            input_shape=(width,) if tokens else rows.input_shape,
            model_class=qualified_name(pl_module),
            composite=self._composite_config,
            canonizers=self._canonizer_config,
            class_names=self.class_names,
            target_mode=target_mode(self.target),
            probe={"selection": "dataset-wide"},
            metadata={"writer": OWNER},
            modality=rows.modality,
            feature_names=self.feature_names,
            max_tokens=width if tokens else None,
            methods=[method.config for method in self._methods],
        )


def _resolve_methods(composite: Any, canonizers: Any, composite_kwargs: Mapping[str, Any] | None) -> list[Method]:
    """The writer's methods (see :func:`resolve_methods`); an entry that names no method or is no method
    at all is named in the error, with what may be given instead."""
    if isinstance(composite, Mapping):
        entries = [(f"composite[{key!r}]", value) for key, value in composite.items()]
    elif isinstance(composite, Sequence) and not isinstance(composite, str):
        entries = [(f"composite[{index}]", value) for index, value in enumerate(composite)]
    else:
        entries = [("composite", composite)]
    names = f"a composite of {sorted(COMPOSITES)} or a built-in method of {list(BUILTIN_METHODS)}"
    for where, value in entries:
        if isinstance(value, str):
            if value not in BUILTIN_METHODS and value.strip().lower().replace("-", "_") not in COMPOSITES:
                raise argument_error(OWNER, where, f"the name of {names}", value, note=f"unknown composite {value!r}")
        elif not (
            isinstance(value, Composite)
            or isinstance(value, type)
            and issubclass(value, (Composite, Attributor))
            or callable(value)
            and not isinstance(value, type)
        ):
            raise argument_error(
                OWNER,
                where,
                f"{names} by name, a Composite (class or object), or in a dict a callable model -> Attributor",
                value,
                note="e.g. {'lrp': 'epsilon_gamma_box', 'ig': functools.partial(IntegratedGradients, n_iter=32)}",
            )
    return resolve_methods(composite, canonizers, composite_kwargs, OWNER)


def _with_width(rows: Explained, width: int) -> Explained:
    """Token rows with maps ``width`` wide: each row's relevance per token, zero-padded (or cut) to it."""
    if rows.maps.shape[-1] == width:
        return rows
    return dataclasses.replace(rows, maps=token_maps(rows.token_relevance, width))


def _widen_token_part(part: PartWriter, run_dir: Path, width: int) -> None:
    """Finish a token run's part with maps ``width`` wide, rebuilt from each row's relevance per token.

    The part was written at the width of this rank's first rows; it is staged, read back row group by row
    group (bounded memory) and staged again at ``width``, so every map holds its sample's whole relevance.
    """
    staged = part.close()
    widened = PartWriter(run_dir, part.epoch, part.global_step, heatmap_shape=(1, width), rank=part.rank)
    try:
        with pq.ParquetFile(staged) as source:
            for index in range(source.num_row_groups):
                table = source.read_row_group(index).replace_schema_metadata(None)
                column = table.column(TOKEN_RELEVANCE).combine_chunks()
                offsets = column.offsets.to_numpy()
                values = column.values.to_numpy(zero_copy_only=False)
                relevance = [values[offsets[row] : offsets[row + 1]] for row in range(len(column))]
                maps = encode_relevance(token_maps(relevance, width))
                widened.write(table.set_column(table.schema.get_field_index(RELEVANCE), RELEVANCE, maps))
    except BaseException:
        widened.abort()
        raise
    widened.close()


def _max_over_ranks(value: int, device: torch.device) -> int:
    """The largest ``value`` of all ranks (collective on all ranks under DDP)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


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
