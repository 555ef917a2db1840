"""The probe set of :class:`LRPCallback`: choosing it, fetching its batches, and the model check.

A mixin of the callback (it reads the callback's arguments and state): the probe set is chosen once
(rank 0, seeded, stratified; see :mod:`callbacks._probe`) and shared; its samples are fetched from the
validation dataset in collated batches on the model's device. :meth:`ProbeSet._check_model` explains a
few of them when training starts, so that a model the callback cannot explain fails at once, and
:meth:`ProbeSet._fix_max_tokens` sets the map width of token runs from the longest probe sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import IterableDataset
from torch.utils.data._utils.collate import default_collate
from tqdm import tqdm

from lrp_lightning.store import RunStore

from ._batches import unpack
from ._config import qualified_name
from ._explainer import NO_LABEL
from ._modality import is_token_input, real_tokens
from ._probe import dataset_labels, select_probe
from ._training_state import untouched_training_state

log = logging.getLogger(__name__)

OWNER = "LRPCallback"


class ProbeSet:
    """Mixin of :class:`LRPCallback`: the probe set's selection and batches, and the model check."""

    # ------------------------------------------------------------------------------ the model's contract

    def _check_model(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Explain a few probe samples once when training starts (the validation data is set up then), so
        that a wrong output, target, input or a layer without a rule fails now, not after an epoch."""
        error = None
        try:
            if trainer.val_dataloaders is not None or (
                self.probe is not None and not isinstance(self.probe, np.ndarray)
            ):
                dataset, collate = self._probe_source(trainer)
                ids = self._probe_ids if self._probe_ids is not None else self.probe
                ids = np.arange(len(dataset)) if ids is None or not isinstance(ids, np.ndarray) else ids
                self._check_probe_range(ids, len(dataset))
                ids = ids[: min(self.batch_size, 8)]
                need_masks = self._metrics.needs_masks
                width = self._explainer.max_tokens
                with untouched_training_state(pl_module):
                    try:
                        batches = self._fetch(trainer, dataset, collate, ids, self.target == "label", masks=need_masks)
                        self._explainer.run_methods(pl_module, batches)  # every method, on a few samples
                    finally:
                        self._explainer.max_tokens = width  # the run's width comes from the whole probe set
        except Exception as exc:
            error = exc
        self._sync_errors(trainer, pl_module, error, "checking the model on probe samples at the start of training")

    def _fix_max_tokens(self, trainer: pl.Trainer, dataset: Any, collate: Callable) -> None:
        """Token runs: maps as wide as the longest probe sample (the store's width when resuming)."""
        if self._explainer.max_tokens is not None or getattr(self, "_probe_not_tokens", False):
            return
        try:
            store = self._run_store or RunStore(self._run_dir)
        except FileNotFoundError:
            store = None
        if store is not None and store.max_tokens is not None:
            self._explainer.max_tokens = store.max_tokens
            return
        longest = 0
        for _, x, _ in self._fetch(trainer, dataset, collate, self._probe_ids, need_labels=False):
            if not is_token_input(x):
                self._probe_not_tokens = True  # the probe set is fixed: its first batch is not fetched again
                return
            longest = max([longest, *(row.size for row in real_tokens(x)[0])])
        self._explainer.max_tokens = max(longest, 1)

    # ------------------------------------------------------------------------------ probe set

    def _requested_probe_config(self) -> dict[str, Any]:
        if self.probe is None:
            return {
                "selection": "stratified",
                "num_samples": self.num_samples,
                "seed": self.seed,
                "dataloader_idx": self.dataloader_idx,
            }
        if isinstance(self.probe, np.ndarray):
            return {"selection": "indices", "num_samples": int(self.probe.size), "dataloader_idx": self.dataloader_idx}
        return {"selection": "dataset", "dataset": qualified_name(self.probe), "num_samples": len(self.probe)}

    def probe_tensors(self, trainer: pl.Trainer) -> tuple[np.ndarray, Any, Any]:
        """The whole probe set as ``(sample_ids, inputs, labels)``, concatenated, on the model's device.

        For callbacks that build on this one's run (e.g. :class:`ClArCCallback` measures on the same
        samples). Tensor inputs only; raises before the probe set is chosen (the first explained epoch).
        """
        import torch

        if self._probe_ids is None:
            raise RuntimeError(
                f"{OWNER}: the probe set is chosen at the first explained validation epoch; "
                "call probe_tensors after it (e.g. from on_validation_epoch_end)"
            )
        dataset, collate = self._probe_source(trainer)
        parts = list(self._fetch(trainer, dataset, collate, self._probe_ids, True))
        if not all(isinstance(p[1], torch.Tensor) for p in parts):
            raise TypeError(f"{OWNER}: probe_tensors needs tensor inputs; this probe set's inputs are dicts or tuples")
        ids = np.concatenate([p[0] for p in parts])
        return ids, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])

    def _probe_source(self, trainer: pl.Trainer) -> tuple[Any, Callable[[list], Any]]:
        loaders = trainer.val_dataloaders
        if isinstance(loaders, Mapping):
            loaders = list(loaders.values())
        elif loaders is not None and not isinstance(loaders, (list, tuple)):
            loaders = [loaders]
        loader = None
        if loaders:
            if self.dataloader_idx >= len(loaders):
                raise ValueError(
                    f"{OWNER}: dataloader_idx={self.dataloader_idx}, but there are {len(loaders)} validation "
                    f"dataloaders; pass dataloader_idx between 0 and {len(loaders) - 1}"
                )
            loader = loaders[self.dataloader_idx]
        collate = getattr(loader, "collate_fn", None)
        if collate is None or not getattr(loader, "_auto_collation", True):
            collate = default_collate
        if self.probe is not None and not isinstance(self.probe, np.ndarray):
            return self.probe, collate
        dataset = getattr(loader, "dataset", None)
        if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"{OWNER} takes its probe samples by index from the validation DataLoader's dataset, but the "
                f"validation data is {type(dataset if dataset is not None else loader).__name__}, which cannot "
                "be indexed; pass probe=<a map-style Dataset of the samples to explain>"
            )
        return dataset, collate

    def _fetch(
        self,
        trainer: pl.Trainer,
        dataset: Any,
        collate: Callable,
        ids: Sequence[int],
        need_labels: bool,
        masks: bool = False,
    ):
        """Yield ``(sample_ids, inputs, labels)`` batches of ``dataset[ids]``, collated and on the device.

        With ``masks``, yield ``(sample_ids, inputs, labels, masks)`` and raise the metrics' error when a
        batch holds no masks.
        """
        for start in range(0, len(ids), self.batch_size):
            chunk = [int(i) for i in ids[start : start + self.batch_size]]
            batch = collate([dataset[i] for i in chunk])
            batch = trainer.strategy.batch_to_device(batch, dataloader_idx=self.dataloader_idx)
            log.debug("%s: explaining samples %d..%d of %d", OWNER, start, start + len(chunk), len(ids))
            if masks:
                x, y, m = unpack(batch, self.unpack_batch, len(chunk), need_labels, OWNER, with_masks=True)
                self._metrics.check_masks(m is not None)
                yield np.asarray(chunk, dtype=np.int64), x, y, m
            else:
                x, y = unpack(batch, self.unpack_batch, len(chunk), need_labels, OWNER)
                yield np.asarray(chunk, dtype=np.int64), x, y

    def _read_labels(self, trainer: pl.Trainer, dataset: Any, collate: Callable, ids: Sequence[int]):
        """Labels of ``dataset[ids]`` in batches; the one long step of a run (once), so it shows progress."""
        progress = tqdm(
            total=len(ids),
            desc=f"{OWNER}: reading labels to choose the probe set",
            unit="samples",
            leave=False,
            disable=None if len(ids) > 1000 else True,  # on a terminal, for long scans
        )
        with progress:
            for sample_ids, _, labels in self._fetch(trainer, dataset, collate, ids, self.target == "label"):
                progress.update(len(sample_ids))
                yield None if labels is None else labels.cpu().numpy()

    def _ensure_probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dataset: Any, collate: Callable):
        """Choose the probe set once (rank 0) and share it; collective on all ranks."""
        if self._probe_ids is not None:
            self._check_probe_range(self._probe_ids, len(dataset))
            return
        payload: Any = None
        error = None
        if trainer.is_global_zero:
            try:
                payload = ("ok", *self._select_probe(trainer, dataset, collate))
            except Exception as exc:
                error = exc
                payload = ("error", f"{type(exc).__name__}: {exc}")
        payload = trainer.strategy.broadcast(payload, src=0)
        if error is not None:
            raise error
        if payload[0] == "error":
            raise RuntimeError(f"{OWNER}: rank 0 failed to choose the probe set: {payload[1]}")
        _, ids, labels, config = payload
        self._probe_ids = np.asarray(ids, dtype=np.int64)
        self._probe_labels = np.asarray(labels, dtype=np.int64)
        self._probe_config = config

    @staticmethod
    def _check_probe_range(ids: np.ndarray, length: int) -> None:
        if ids.size and int(ids.max()) >= length:
            raise ValueError(
                f"{OWNER}: probe index {int(ids.max())} is out of range for the validation dataset of "
                f"{length} samples; pass indices below {length}"
            )

    def _select_probe(self, trainer: pl.Trainer, dataset: Any, collate: Callable):
        length = len(dataset)
        config = self._requested_probe_config()
        known = dataset_labels(dataset)
        if self.probe is None:
            if self.num_samples > length:
                raise ValueError(
                    f"{OWNER}: num_samples={self.num_samples} is larger than the validation dataset "
                    f"({length} samples); pass num_samples={length} (or fewer)"
                )
            ids, labels = select_probe(
                length,
                self.num_samples,
                self.seed,
                known,
                lambda indices: self._read_labels(trainer, dataset, collate, indices),
            )
        else:
            ids = self.probe if isinstance(self.probe, np.ndarray) else np.arange(length, dtype=np.int64)
            self._check_probe_range(ids, length)
            if known is not None:
                labels = known[ids]
            else:
                parts = list(self._read_labels(trainer, dataset, collate, ids.tolist()))
                labels = (
                    np.full(ids.size, NO_LABEL, np.int64) if any(p is None for p in parts) else np.concatenate(parts)
                )
        return ids.tolist(), np.asarray(labels, dtype=np.int64).tolist(), config

    def _probe_metadata_columns(self, dataset: Any) -> dict[str, list[Any]] | None:
        if self.probe_metadata is None:
            return None
        ids = [int(i) for i in self._probe_ids]
        if callable(self.probe_metadata):
            columns = dict(self.probe_metadata(dataset, ids))
        else:
            columns = {}
            for name, values in self.probe_metadata.items():
                try:
                    columns[name] = [values[i] for i in ids]
                except (IndexError, KeyError) as error:
                    raise ValueError(
                        f"{OWNER}: probe_metadata[{name!r}] has no value for dataset index {error}; give one value "
                        "per sample of the validation dataset"
                    ) from None
        for name, values in columns.items():
            if len(values) != len(ids):
                raise ValueError(
                    f"{OWNER}: probe_metadata column {name!r} has {len(values)} values for {len(ids)} probe samples"
                )
        return {name: list(values) for name, values in columns.items()}
