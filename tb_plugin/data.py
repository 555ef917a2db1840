"""Data layer of the LRP plugin: cached reads through ``RunStore``, PNG rendering, binary columns.

Everything here reads through :mod:`lrp_lightning.store` (the one owner of the on-disk format) and
renders through :mod:`lrp_lightning.image` (the one owner of colour maps). Nothing here knows about
HTTP: methods take already validated values and raise :class:`NotFound` (the item does not exist or
cannot be read, with a message for the user) or :class:`BadArgument` (a value that names nothing in
this run, e.g. an unknown clustering).

Caching
-------
Every cache key holds the epoch's commit id (:attr:`lrp_lightning.store.EpochInfo.commit`), so a
re-written epoch is never served from a stale entry, and new epochs of a running training appear
as soon as the manifest lists them. One byte-bounded LRU holds decoded tables, relevance maps of
whole epochs (float16, as stored), rendered PNGs and encoded binary payloads.

Modules
-------
This module holds :class:`PluginData` (runs, samples, timelines and the reads every part shares) and
its cache; the rest of its methods are mixins, one module per part, and every public name is
importable from here:

================  ==============================================================================
_data_common      limits and defaults, :class:`NotFound`, :class:`BadArgument`, the binary column
                  format (:func:`encode_columns`, its layout in that module's docstring), decoded
                  pieces of a run
_data_images      relevance maps, the probe set, heatmap and overlay PNGs
_data_analysis    an epoch's analysis: summary, embeddings, clusters, prototypes, lineage
_data_findings    findings and their maps, :func:`findings_json`
_data_sequences   relevance of signal, tabular and token runs as values with their colours
================  ==============================================================================
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from lrp_lightning import image as lrp_image
from lrp_lightning import store as lrp_store
from lrp_lightning.store import (
    LABEL,
    PREDICTION,
    PROBABILITY,
    RELEVANCE_SUM,
    RUN_INFO_KEYS,
    SAMPLE_ID,
    SCORE,
    TARGET,
    EpochInfo,
    RunStore,
    StoreError,
)

from ._data_analysis import MAX_LISTED_SAMPLES, _AnalysisViews
from ._data_common import (
    _SAFE_INTEGER,
    DEFAULT_CMAP,
    HEATMAP_KINDS,
    MAX_REQUEST_TEXT,
    SAMPLE_COLUMNS,
    SAMPLE_METADATA,
    SPECTRAL_EMBEDDING,
    BadArgument,
    NotFound,
    Payload,
    Selected,
    _finite_or_none,
    _Probe,
    _Samples,
    compact_int,
    decode_columns,
    encode_columns,
)
from ._data_findings import _Findings, findings_json
from ._data_images import NONFINITE_COLORS, OVERLAY_ALPHA, _Images, mark_nonfinite
from ._data_sequences import SEQUENCE_MODALITIES, _Sequences
from .discovery import RunIndex, RunNotFound, RunUnreadable

__all__ = [
    "DEFAULT_CMAP",
    "HEATMAP_KINDS",
    "MAX_LISTED_SAMPLES",
    "MAX_REQUEST_TEXT",
    "NONFINITE_COLORS",
    "OVERLAY_ALPHA",
    "SAMPLE_COLUMNS",
    "SAMPLE_METADATA",
    "SEQUENCE_MODALITIES",
    "SPECTRAL_EMBEDDING",
    "BadArgument",
    "ByteLRU",
    "NotFound",
    "Selected",
    "Payload",
    "PluginData",
    "compact_int",
    "decode_columns",
    "encode_columns",
    "findings_json",
    "mark_nonfinite",
]

# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def _size_of(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, pa.Table):
        return value.nbytes
    if isinstance(value, Payload):
        return value.nbytes + len(value.raw)  # room for the gzipped copy
    size = getattr(value, "nbytes", None)
    return int(size) if size is not None else 1024


class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes of its values.

    ``get_or_make(key, make)`` calls ``make()`` outside the lock; two threads that miss the same key
    at once may both compute it (harmless: the values are equal).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
            self.misses += 1
        value = make()
        size = _size_of(value)
        if size <= self.max_bytes:
            with self._lock:
                old = self._items.pop(key, None)
                if old is not None:
                    self._bytes -= old[1]
                self._items[key] = (value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


# --------------------------------------------------------------------------------------------------
# The data layer
# --------------------------------------------------------------------------------------------------


class PluginData(_Images, _AnalysisViews, _Findings, _Sequences):
    """Reads, caches and renders what the plugin's routes serve.

    Runs, samples and timelines, and the reads every part shares (``_store``, ``_epoch``, ``_read``),
    are defined here; maps and images, the analysis views, the findings and the relevance values of
    non-image runs come from the mixins ``_Images`` (:mod:`._data_images`), ``_AnalysisViews``
    (:mod:`._data_analysis`), ``_Findings`` (:mod:`._data_findings`) and ``_Sequences``
    (:mod:`._data_sequences`), which use this class's cache and reads.

    Parameters
    ----------
    index : RunIndex
        The runs the plugin found.
    cache_bytes : int, optional
        Budget of the shared LRU cache (default 512 MiB).
    epoch_maps_bytes : int, optional
        Largest epoch whose maps are cached whole (default 64 MiB of float16); larger epochs are read
        one sample at a time.
    """

    def __init__(self, index: RunIndex, cache_bytes: int = 512 * 2**20, epoch_maps_bytes: int = 64 * 2**20) -> None:
        self.index = index
        self.cache = ByteLRU(cache_bytes)
        self.epoch_maps_bytes = int(epoch_maps_bytes)

    # ------------------------------------------------------------------------------ helpers

    def _store(self, run: str) -> RunStore:
        """The run's store; for a :class:`Selected` run, the view of its method and named analysis."""
        try:
            store = self.index.get(str(run))
        except RunNotFound:
            raise NotFound(f"no run {run!r} with LRP data below the logdir; known runs: {self.index.names()}") from None
        except RunUnreadable as exc:
            raise NotFound(f"run {run!r} cannot be read: {exc}") from None
        method, analysis = getattr(run, "method", None), getattr(run, "analysis", None)
        if method is None and analysis is None:
            return store
        try:
            return store.select(method=method, analysis=analysis)
        except ValueError as exc:
            raise BadArgument(f"run {str(run)!r}: {exc}") from None

    def _epoch(self, run: str, store: RunStore, epoch: int) -> EpochInfo:
        try:
            return store.epoch_info(epoch)
        except lrp_store.EpochNotFoundError:
            complete = [info.epoch for info in store.epochs()]
            raise NotFound(
                f"epoch {epoch} is not a complete epoch of run {run!r}; complete epochs: {complete}"
            ) from None
        except (StoreError, OSError) as exc:
            raise self._unreadable(f"run {run!r}", exc) from exc

    def _unreadable(self, what: str, exc: BaseException) -> NotFound:
        return NotFound(f"{what} cannot be read: {self.index.redact(str(exc))}")

    def _read(self, what: str, read: Callable[[], Any]) -> Any:
        """Run a store read, turning damaged or vanished files into :class:`NotFound` for that item."""
        try:
            return read()
        except (lrp_store.EpochNotFoundError, lrp_store.SampleNotFoundError, lrp_store.AnalysisNotFoundError) as exc:
            raise NotFound(self.index.redact(str(exc))) from exc
        except (StoreError, OSError, pa.ArrowException, ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(what, exc) from exc

    # ------------------------------------------------------------------------------ runs

    def runs(self) -> list[dict[str, Any]]:
        """Every run the last scan found: name, number of complete epochs, or why it cannot be read."""
        result = []
        for name in self.index.names():
            entry: dict[str, Any] = {"run": name, "epochs": 0, "error": None}
            if len(name) > MAX_REQUEST_TEXT or not name.isprintable():
                # the routes refuse such a name, so the run cannot be opened: say so instead of listing it as healthy
                entry["error"] = (
                    f"the run's directory name is longer than {MAX_REQUEST_TEXT} characters or holds control "
                    "characters, which requests cannot carry; rename the run's directory"
                )
                result.append(entry)
                continue
            try:
                entry["epochs"] = len(self._store(name).epochs())
            except NotFound as exc:
                entry["error"] = str(exc)
            except (StoreError, OSError) as exc:
                entry["error"] = str(self._unreadable(f"run {name!r}", exc))
            result.append(entry)
        return result

    def run_info(self, run: str) -> dict[str, Any]:
        """Run metadata, modality and feature names, its complete epochs (and which have an analysis), colour maps.

        ``modality`` is ``image``, ``signal``, ``tabular`` or ``tokens``: the frontend draws image
        runs as pictures and the others from :meth:`relevance` values.
        """
        store = self._store(run)
        manifest = self._read(f"run {run!r}", lambda: store.manifest)
        epochs = []
        for info in self._read(f"run {run!r}", store.epochs):
            config_hash, analysis_error = self._analysis_state(store, info)
            epochs.append(
                {
                    "epoch": info.epoch,
                    "global_step": info.global_step,
                    "rows": info.rows,
                    "version": info.commit[:12],  # goes into image URLs, so browsers may cache them
                    "analysis": config_hash is not None,
                    "analysis_error": analysis_error,
                }
            )
        try:
            thumbnails = any(t is not None for t in self._probe(run, store).thumbnails)
        except NotFound:
            thumbnails = False
        modality = self._modality(run, store)
        return {
            "run": str(run),
            **{key: manifest.get(key) for key in RUN_INFO_KEYS},
            "modality": modality,
            "feature_names": self._read(f"run {run!r}", lambda: store.feature_names),
            "methods": store.methods,  # the method picker: the first is the default
            "method": store.method,
            "analyses": self._read(f"run {run!r}", store.analyses) or [lrp_store.DEFAULT_ANALYSIS],
            "analysis_name": store.analysis_name,
            "thumbnails": thumbnails,
            "epochs": epochs,
            "colormaps": sorted(lrp_image.COLOR_MAPS),
            "default_cmap": DEFAULT_CMAP,
        }

    # ------------------------------------------------------------------------------ samples

    def _samples(self, run: str, store: RunStore, info: EpochInfo) -> _Samples:
        def make() -> _Samples:
            table = self._read(
                f"epoch {info.epoch} of run {run!r}", lambda: store.attributions(info.epoch, list(SAMPLE_COLUMNS))
            )
            return _Samples.from_table(table)

        return self.cache.get_or_make(("samples", run, info.epoch, info.commit), make)

    def samples(self, run: str, epoch: int) -> Payload:
        """Per-sample columns of an epoch (:data:`SAMPLE_COLUMNS`) as binary columns.

        The header's ``meta`` holds, under :data:`SAMPLE_METADATA`, the probe set's user metadata
        columns (``LRPCallback(probe_metadata=...)``) as ``{name: [value per row of the payload]}``:
        JSON values (bool, int, float, str, null for NaN or a sample missing from the probe set);
        an empty mapping for a run without metadata.
        """
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        try:
            probe: _Probe | None = self._probe(run, store)
        except NotFound:
            probe = None  # no probe set (yet): the samples without metadata

        def make() -> Payload:
            samples = self._samples(run, store, info)
            c = samples.columns
            ids = compact_int(c[SAMPLE_ID])
            columns = {
                SAMPLE_ID: ids,
                LABEL: compact_int(c[LABEL]),
                PREDICTION: compact_int(c[PREDICTION]),
                TARGET: compact_int(c[TARGET]),
                SCORE: c[SCORE].astype(np.float32),
                PROBABILITY: c[PROBABILITY].astype(np.float32),
                RELEVANCE_SUM: c[RELEVANCE_SUM].astype(np.float32),
            }
            meta = {"run": run, "epoch": info.epoch, "global_step": info.global_step}
            meta["ids_exact"] = bool(ids.dtype != np.float64 or np.all(np.abs(c[SAMPLE_ID]) < _SAFE_INTEGER))
            meta[SAMPLE_METADATA] = self._sample_metadata(probe, c[SAMPLE_ID])
            return Payload(encode_columns(columns, meta))

        key = ("samples-payload", run, info.epoch, info.commit, probe.key if probe is not None else None)
        return self.cache.get_or_make(key, make)

    @staticmethod
    def _sample_metadata(probe: _Probe | None, sample_ids: np.ndarray) -> dict[str, list[Any]]:
        """The probe metadata columns in the order of ``sample_ids`` (None where a sample is not in the probe)."""
        if probe is None or not probe.metadata:
            return {}
        known = probe.ids.sorted_ids
        positions = np.minimum(np.searchsorted(known, sample_ids), max(known.size - 1, 0))
        found = (known[positions] == sample_ids) if known.size else np.zeros(len(sample_ids), bool)
        rows = [int(probe.ids.order[p]) if f else None for p, f in zip(positions.tolist(), found.tolist())]
        return {name: [None if row is None else values[row] for row in rows] for name, values in probe.metadata.items()}

    def timeline(self, run: str, sample_id: int) -> dict[str, Any]:
        """One sample in every complete epoch: label, prediction, score, probability, relevance sum.

        Epochs that cannot be read are left out and listed under ``unreadable`` with the reason.
        """
        store = self._store(run)
        rows: dict[str, list[Any]] = {key: [] for key in ("epoch", "global_step", *SAMPLE_COLUMNS[2:])}
        label = None
        unreadable = []
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                samples = self._samples(run, store, info)
            except NotFound as exc:  # one damaged epoch leaves the others readable
                unreadable.append({"epoch": info.epoch, "error": str(exc)})
                continue
            row = samples.row(sample_id)
            if row is None:
                continue
            label = int(samples.columns[LABEL][row])
            rows["epoch"].append(info.epoch)
            rows["global_step"].append(info.global_step)
            for name in SAMPLE_COLUMNS[2:]:
                value = samples.columns[name][row]
                rows[name].append(int(value) if name in (PREDICTION, TARGET) else _finite_or_none(value))
        if not rows["epoch"]:
            if unreadable:
                raise NotFound(f"sample {sample_id}: {'; '.join(u['error'] for u in unreadable)}")
            raise NotFound(f"sample {sample_id} is in no complete epoch of run {run!r}")
        return {"run": run, "sample_id": sample_id, "label": label, **rows, "unreadable": unreadable}

    # ------------------------------------------------------------------------------ first view

    def first_view(self, run: str | None = None, epoch: int | None = None) -> dict[str, Any]:
        """What the tab's first view asks for before its samples, in one answer (the ``/first_view`` route).

        The tab opens ``run`` when it is listed and readable, else the first readable run; of that run
        the epoch ``epoch`` when it is complete, else the last. The answer holds :meth:`runs`
        (``runs``), the opened run's name (``run``, None when no run is readable) and :meth:`run_info`
        (``info``, with the default method and analysis), the epoch opened (``epoch``, None without
        complete epochs) and its :meth:`analysis` (``analysis``: None when the epoch has none), and the
        run's :meth:`findings` (``findings``). A value whose read failed is None: its own route then
        reports why. Each value is the one the individual route gives, from the same cache.
        """
        runs = self.runs()
        usable = [entry["run"] for entry in runs if entry["error"] is None]
        chosen = run if run in usable else (usable[0] if usable else None)
        answer: dict[str, Any] = {
            "runs": runs,
            "run": chosen,
            "info": None,
            "epoch": None,
            "analysis": None,
            "findings": None,
        }
        if chosen is None:
            return answer
        info = answer["info"] = self.run_info(chosen)
        try:
            answer["findings"] = self.findings(chosen)
        except (NotFound, BadArgument):
            pass  # the tab asks /findings, which says why
        if not info["epochs"]:
            return answer
        entry = next((e for e in info["epochs"] if e["epoch"] == epoch), info["epochs"][-1])
        answer["epoch"] = entry["epoch"]
        if entry["analysis"]:
            try:
                answer["analysis"] = self.analysis(chosen, entry["epoch"])
            except (NotFound, BadArgument):
                pass  # the tab asks /analysis, which says why
        return answer

    def prepare_first_view(self) -> str | None:
        """Read, into the cache, what the tab's first view of the first readable run asks for.

        That is the run the tab opens when the URL names none (the first of :meth:`runs`), with its
        default method and analysis: its :meth:`first_view` answer (its ``/run`` answer, its last
        epoch's analysis summary, the run's findings) and that epoch's samples. The plugin calls this
        in the background at start, so that the first visit finds them read; the answers are the ones
        the routes give, from the same cache. Returns the run, or None when no run is readable yet.

        Raises
        ------
        NotFound, BadArgument
            As the routes would for the same reads (the caller, a background thread, ignores them).
        """
        view = self.first_view()
        run = view["run"]
        if run is None:
            return None
        if view["epoch"] is not None:
            self.samples(run, view["epoch"])
        return run
