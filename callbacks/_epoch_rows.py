"""What :class:`LRPCallback` does with an explained epoch's relevance: rows, store, pictures and scalars.

A mixin of the callback (it reads the callback's arguments and state). Nothing here runs the model or
a collective, so that one process's epochs can be finished by :meth:`EpochRows._finish_epoch` in the
callback's worker thread (:class:`~callbacks._worker.EpochWorker`) while training goes on: the rows
and the metrics that need no forward pass, the store (created at the first epoch, with the probe
thumbnails), the part file and the commit, the maps kept for the stability metric, the heatmap grid,
the scalars, and the SpRAy analysis started after the commit. What needs the trainer (the loggers) is
handed back to the training thread with :meth:`~callbacks._worker.EpochWorker.post`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lrp_lightning.store import (
    CALLBACK_SCALAR_TAGS,
    HEATMAPS_IMAGE_TAG,
    METHODS_LAYOUT_CATEGORY,
    MODALITY_TOKENS,
    SAMPLE_ID,
    THUMBNAIL,
    RunStore,
    make_probe_table,
    method_tag,
    metric_column,
    metric_tag,
)

from ._config import qualified_name, target_mode
from ._explainer import STAT_FIELDS, Attributed, Explained, as_stored, scalars
from ._modality import real_tokens
from ._pictures import heatmap_grid, thumbnail_png

log = logging.getLogger(f"{__package__}.lrp_callback")

OWNER = "LRPCallback"
THUMBNAIL_SIZE = 128
"""Longest side, in pixels, of the input thumbnails stored in probe.parquet."""


class EpochRows:
    """Mixin of :class:`LRPCallback`: an explained epoch's rows, store, pictures and scalars (no model)."""

    # ------------------------------------------------------------------------------ one process's epoch

    def _finish_epoch(
        self,
        epoch: int,
        step: int,
        attributed: Mapping[str, list[Attributed]],
        settings: dict[str, Any] | None,
        loggers: Sequence[Any],
        logged_step: int,
        started: float,
    ) -> None:
        """The worker's task for an epoch of a single process: rows, store, commit, pictures, scalars.

        ``settings`` (the first epoch only) are the store's settings that :meth:`_store_settings` took from
        the model and the dataset on the training thread; the probe thumbnails come from the attributed
        inputs (one process explains every probe sample). The scalars and the image are posted to the
        training thread, which logs them with the steps the hook would have used: ``logged_step`` (that of
        ``self.log``) for the scalars, ``step`` (the global step) for the image.
        """
        names = list(attributed)
        previous = {
            name: self._previous_maps(epoch, self._probe_ids, name) if self._metrics.needs_previous else None
            for name in names
        }
        by_method = {
            name: Explained.concat([self._explainer.rows(batch, previous[name]) for batch in attributed[name]])
            for name in names
        }
        if self._run_store is None:
            inputs = (batch.inputs for batch in attributed[names[0]])
            self._create_store(by_method[names[0]], settings, inputs)
        store = self._run_store
        store.write_part(epoch, step, self._tables(by_method, epoch, step), rank=0)
        info = store.commit_epoch(epoch, step, world_size=1)
        if self._metrics.needs_previous:
            for name in names:
                self._remember_maps(epoch, by_method[name], name)
        sums = [[*by_method[name].stats, *self._metrics.sums(by_method[name].metrics)] for name in names]
        tags = self._scalar_tags(np.asarray(sums, np.float64))
        image = self._heatmap_image(epoch, by_method[names[0]], loggers)
        summary = None
        if image is not None:
            from torch.utils.tensorboard.summary import image as image_summary

            summary = image_summary(HEATMAPS_IMAGE_TAG, image, dataformats="HWC")  # the PNG, encoded here

        def log_epoch() -> None:  # on the training thread
            for logger in loggers:
                logger.log_metrics(tags, step=logged_step)
            if image is not None:
                for logger in loggers:
                    if isinstance(logger, TensorBoardLogger):
                        _add_image_summary(logger, image, summary, step)
            if len(names) > 1:
                self._log_method_layout(loggers)

        self._worker.post(log_epoch)
        if self._analysis is not None:
            self._analysis.submit(store.store_dir, epoch, step)  # after the commit
        message = (
            f"{OWNER}: explained {info.rows} probe samples of epoch {epoch} (step {step}) with {len(names)} "
            f"method(s) into {store.store_dir}; written {time.perf_counter() - started:.2f} s after the hook began"
        )
        (rank_zero_info if self.verbose else log.debug)(message)

    def _scalar_tags(self, totals: np.ndarray) -> dict[str, float]:
        """The logged scalars from each method's summed stats and metric sums (rows of ``totals``, in order)."""
        tags: dict[str, float] = {}
        for index, name in enumerate(self.methods[: len(totals)]):
            method_totals = totals[index]
            logged = {
                **scalars(method_totals[: len(STAT_FIELDS)]),
                **self._metrics.scalars(method_totals[len(STAT_FIELDS) :]),
            }
            if index == 0:
                tags.update(logged)
            if len(totals) > 1:  # every method's scalars also under a tag of its own, for one chart per scalar
                tags.update({method_tag(tag, name): value for tag, value in logged.items()})
        return tags

    def _log_method_layout(self, loggers: Sequence[Any]) -> None:
        """Once per run: a Custom Scalars layout with one chart per scalar holding every method's line."""
        if getattr(self, "_layout_logged", False):
            return
        self._layout_logged = True
        charts = {
            tag: ["Multiline", [method_tag(tag, name) for name in self.methods]]
            for tag in sorted({*CALLBACK_SCALAR_TAGS, *(metric_tag(n) for n in self._metrics.names)})
        }
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars({METHODS_LAYOUT_CATEGORY: charts})

    def _remember_maps(self, epoch: int, rows: Explained, method: str) -> None:
        """Keep this rank's stored maps of the last two explained epochs for the stability metric."""
        recent = self._recent_maps.setdefault(method, {})
        recent[epoch] = dict(zip(rows.sample_id.tolist(), as_stored(rows.maps)))
        for old in sorted(recent)[:-2]:
            del recent[old]

    def _previous_maps(
        self, epoch: int, share: np.ndarray, method: str | None = None
    ) -> Callable[[np.ndarray], torch.Tensor] | None:
        """``sample_ids -> maps`` of the latest explained epoch before ``epoch``, or None in the first.

        From memory when this rank explained that epoch, else read back from the store (after a resume);
        samples not found there get NaN maps.
        """
        store = self._run_store
        if store is None:
            try:
                store = RunStore(self._run_dir)
            except FileNotFoundError:  # no store yet: nothing was explained before
                store = None
        stored = [info.epoch for info in store.epochs() if info.epoch < epoch] if store is not None else []
        method = self.methods[0] if method is None else method
        recent = self._recent_maps.get(method, {})
        earlier = [e for e in recent if e < epoch] + stored
        if not earlier:
            return None
        before = max(earlier)
        found = recent.get(before, {})
        if not all(int(i) in found for i in share):
            ids, maps = store.heatmaps(before, method=method)
            found = dict(zip(ids.tolist(), maps))
        shape = next(iter(found.values())).shape if found else None

        def previous(sample_ids: np.ndarray) -> torch.Tensor:
            missing = np.full(shape, np.nan, np.float32) if shape is not None else None
            rows = [found.get(int(i), missing) for i in sample_ids]
            if any(row is None for row in rows):
                return None
            return torch.from_numpy(np.stack(rows).astype(np.float32))

        return previous

    # ------------------------------------------------------------------------------ store

    def _class_names(self, dataset: Any, num_classes: int | None) -> list[str] | None:
        if self.class_names is not None:
            if num_classes is not None and len(self.class_names) != num_classes:
                raise ValueError(
                    f"{OWNER}: class_names has {len(self.class_names)} names, but the model outputs {num_classes} "
                    "class scores; pass one name per class"
                )
            return self.class_names
        names = getattr(dataset, "classes", None)
        if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == num_classes:
            if all(isinstance(name, str) for name in names):
                return list(names)
        return None

    def _store_settings(self, pl_module: pl.LightningModule, dataset: Any, num_classes: int) -> dict[str, Any]:
        """Training thread, before the store exists: what the store takes from the model and the dataset
        (user code, e.g. a ``probe_metadata`` callable, runs here and not in the worker)."""
        try:
            probe_written = RunStore(self._run_dir).probe_path.exists()
        except FileNotFoundError:  # no store yet
            probe_written = False
        return {
            "model_class": qualified_name(pl_module),
            "class_names": self._class_names(dataset, num_classes),
            "probe_metadata": None if probe_written else self._probe_metadata_columns(dataset),
            "probe_written": probe_written,
        }

    def _create_store(self, first: Explained, settings: Mapping[str, Any], inputs: Iterable[Any]) -> None:
        """Rank 0: create (or reopen, when resuming) the store and write the probe set once.

        ``inputs`` are the probe samples' input batches in probe order (only read when the probe set is
        not written yet).
        """
        tokens = first.modality == MODALITY_TOKENS
        store = RunStore.create(
            self._run_dir,
            heatmap_shape=first.maps.shape[1:],
            input_shape=first.input_shape,
            model_class=settings["model_class"],
            composite=self._composite_config,
            canonizers=self._canonizer_config,
            class_names=settings["class_names"],
            target_mode=target_mode(self.target),
            probe=self._probe_config,
            metadata={"writer": OWNER},
            run_id=self._store_owner.run_id,
            adopt_unowned=self._store_owner.legacy,
            modality=first.modality,
            feature_names=self.feature_names,
            max_tokens=self._explainer.max_tokens if tokens else None,
            methods=[method.config for method in self._methods],
        )
        if not settings["probe_written"] and not store.probe_path.exists():
            thumbnails: list[bytes | None] = []
            token_ids: list[np.ndarray] = []
            for x in inputs:
                if tokens:
                    token_ids.extend(real_tokens(x)[0])
                else:
                    thumbnails.extend(thumbnail_png(sample, THUMBNAIL_SIZE) for sample in x)
            store.write_probe(
                make_probe_table(
                    sample_id=self._probe_ids,
                    dataset_index=self._probe_ids,
                    label=self._probe_labels,
                    thumbnail=None if tokens else thumbnails,
                    metadata=settings["probe_metadata"],
                    token_ids=token_ids if tokens else None,
                    tokens=self._modality.token_strings(token_ids) if tokens else None,
                )
            )
        self._run_store = store

    def _tables(self, by_method: Mapping[str, Explained], epoch: int, step: int):
        """This rank's rows of every method as one attribution table (a method column with several)."""
        tables = []
        for name, rows in by_method.items():
            metric_columns = {
                metric_column(metric): np.asarray(rows.metrics.get(metric, np.full(len(rows), np.nan)), np.float32)
                for metric in self._metrics.names
            }
            method = name if len(by_method) > 1 else None
            tables.append(rows.to_table(epoch, step, extra=metric_columns, method=method))
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    # ------------------------------------------------------------------------------ images

    def _image_ids(self) -> list[int]:
        """The first ``log_images`` probe samples taking classes in turn, so the grid shows every class."""
        by_label: dict[int, list[int]] = {}
        for sample_id, label in zip(self._probe_ids.tolist(), self._probe_labels.tolist()):
            by_label.setdefault(label, []).append(sample_id)
        queues = [by_label[label] for label in sorted(by_label)]
        chosen: list[int] = []
        for position in range(max(len(q) for q in queues)):
            chosen.extend(q[position] for q in queues if position < len(q))
        return chosen[: self.log_images]

    def _heatmap_image(self, epoch: int, local: Explained, loggers: Sequence[Any]) -> np.ndarray | None:
        """The grid of inputs and heatmaps logged for the epoch (HWC), or None when none is logged."""
        if not self.log_images or not any(isinstance(logger, TensorBoardLogger) for logger in loggers):
            return None
        store = self._run_store
        ids = self._image_ids()
        missing = [i for i in ids if i not in self._thumbnails]
        if missing:
            table = store.probe_table([SAMPLE_ID, THUMBNAIL])
            found = dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))
            self._thumbnails.update({i: found.get(i) for i in missing})
        position = {sample_id: row for row, sample_id in enumerate(local.sample_id.tolist())}
        if all(i in position for i in ids):  # explained here (always without DDP)
            maps = local.maps[[position[i] for i in ids]]
        else:  # other ranks explained some: read the committed epoch
            _, maps = store.heatmaps(epoch, sample_ids=ids)
        return np.asarray(heatmap_grid(maps, [self._thumbnails[i] for i in ids]))


def _add_image_summary(logger: TensorBoardLogger, image: np.ndarray, summary: Any, step: int) -> None:
    """Log an image whose summary (the encoded PNG) was made in the worker; else encode it now."""
    writer = logger.experiment
    file_writer = getattr(writer, "_get_file_writer", None)
    if summary is not None and callable(file_writer):
        file_writer().add_summary(summary, step)
    else:
        writer.add_image(HEATMAPS_IMAGE_TAG, image, global_step=step, dataformats="HWC")
