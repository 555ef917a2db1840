"""Relevance as values for the runs that are not images: 1-D signals, tabular features and tokens.

An image run's maps go to the browser as PNGs (:mod:`._data_images`); a signal, tabular or token
run's relevance goes as numbers with their colours, and the frontend draws it as people expect: a
signal as a line over relevance-coloured time steps, tabular samples as one bar per named feature,
text as tokens highlighted by relevance. Each value's colour is computed here with
:func:`lrp_lightning.image.heatmap` (symmetric around 0, scaled per sample and epoch), so a value has
exactly the colour that the run's heatmap PNG gives it.

What goes with the values:

* signals: the input as a line, decoded from the stored thumbnail (channels averaged, min-max
  scaled to ``[0, 1]`` within the sample, 8-bit, at most the thumbnail's width of points);
* tabular: the feature names of the run (``feature i`` where the run recorded none);
* tokens: the sample's token strings (or, without a tokenizer, its token ids) and the relevance per
  token, padding removed.

A cluster's prototype (the mean of its members' L1-normalised maps on the analysis grid) goes the same
way (:meth:`_Sequences.prototype_values`): a signal's as relevance over time bins, a tabular one per
named feature, and a token run's per vocabulary column (the analysis's bag of tokens), named by the
token, each value the members' mean signed share of their relevance on that token.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lrp_lightning import image as lrp_image
from lrp_lightning.store import (
    CLUSTER,
    CLUSTERS_TABLE,
    META_TOKEN_VOCABULARY,
    MODALITY_IMAGE,
    MODALITY_SIGNAL,
    MODALITY_TABULAR,
    MODALITY_TOKENS,
    PROTOTYPE,
    EpochInfo,
    RunStore,
)

from ._data_common import BadArgument, NotFound, _finite_or_none

__all__: list[str] = []

OTHER_TOKENS = "other tokens"
"""Name of the bag of tokens' last column: every token outside the epoch's vocabulary columns."""

SEQUENCE_MODALITIES = (MODALITY_SIGNAL, MODALITY_TABULAR, MODALITY_TOKENS)
"""Modalities whose relevance the plugin sends as values (images go as PNGs)."""


def run_modality(store: RunStore) -> str:
    """The run's modality (:attr:`RunStore.modality`); a run whose input shape is unknown too is an
    image when its maps have more than one row, else a signal."""
    modality = store.modality
    if modality is not None:
        return modality
    return MODALITY_IMAGE if store.heatmap_shape[0] > 1 else MODALITY_SIGNAL


def colors_of(values: np.ndarray, cmap: str) -> list[str | None]:
    """``#rrggbb`` of each value as :func:`lrp_lightning.image.heatmap` draws it; None for NaN and infinities."""
    values = np.asarray(values, np.float32).reshape(-1)
    if values.size == 0:
        return []
    finite = np.isfinite(values)
    pixels = np.asarray(lrp_image.heatmap(np.where(finite, values, 0.0)[None, :], cmap=cmap))[0]
    return [f"#{r:02x}{g:02x}{b:02x}" if ok else None for (r, g, b), ok in zip(pixels.tolist(), finite.tolist())]


def peaks(values: np.ndarray, bins: int) -> list[int]:
    """Per run of ``len(values) / bins`` values (``bins`` equal runs), the index of its value of largest magnitude.

    NaN and infinities count as the largest (they are marked, never hidden).
    """
    values = np.asarray(values, np.float64).reshape(-1)
    magnitude = np.where(np.isfinite(values), np.abs(values), np.inf)
    edges = (np.arange(bins + 1) * values.size) // bins
    return [int(start + np.argmax(magnitude[start:stop])) for start, stop in zip(edges[:-1], edges[1:])]


def _values(values: np.ndarray) -> list[float | None]:
    return [_finite_or_none(v) for v in np.asarray(values, np.float32).tolist()]


@dataclass
class _TokenTexts:
    ids: dict[int, np.ndarray]
    strings: dict[int, list[str]] | None

    @property
    def nbytes(self) -> int:
        strings = sum(len(s) for tokens in (self.strings or {}).values() for s in tokens)
        return sum(a.nbytes + 64 for a in self.ids.values()) + 2 * strings


class _Sequences:
    """Mixin of :class:`~lrp_lightning.tb_plugin.data.PluginData`: relevance of non-image runs as values."""

    def _modality(self, run: str, store: RunStore) -> str:
        return self._read(f"run {run!r}", lambda: run_modality(store))

    def _sequence_store(self, run: str) -> tuple[RunStore, str]:
        store = self._store(run)
        modality = self._modality(run, store)
        if modality not in SEQUENCE_MODALITIES:
            raise BadArgument(
                f"run {run!r} holds {modality} relevance, which the plugin shows as pictures (/heatmap); "
                f"/relevance serves runs of {', '.join(SEQUENCE_MODALITIES)}"
            )
        return store, modality

    def _relevance_values(
        self, run: str, store: RunStore, info: EpochInfo, modality: str, sample_id: int
    ) -> np.ndarray:
        """A sample's relevance in one epoch as a 1-D array: per time step, feature or token."""
        if modality == MODALITY_TOKENS:
            what = f"the token relevance of epoch {info.epoch} of run {run!r}"

            def make() -> dict[int, np.ndarray]:
                return self._read(what, lambda: store.token_relevance(info.epoch))

            per_sample = self.cache.get_or_make(("token-relevance", run, info.epoch, info.commit), make)
            if sample_id not in per_sample:
                raise NotFound(f"sample {sample_id} is not in epoch {info.epoch} of run {run!r}")
            return np.asarray(per_sample[sample_id], np.float32)
        return self._map(run, store, info, sample_id).reshape(-1)

    def _sample_context(self, run: str, store: RunStore, modality: str, sample_id: int) -> dict[str, Any]:
        """What a sample's relevance is drawn over: the signal's input line, feature names, or its tokens."""
        if modality == MODALITY_TABULAR:
            return {"labels": store.feature_names, "input": None, "token_ids": None}
        if modality == MODALITY_TOKENS:
            token_ids, strings = self._tokens(run, store)
            if sample_id not in token_ids:
                raise NotFound(f"sample {sample_id} is not in the probe set of run {run!r}")
            labels = [str(t) for t in strings[sample_id]] if strings and sample_id in strings else None
            return {"labels": labels, "input": None, "token_ids": [int(v) for v in token_ids[sample_id].tolist()]}
        return {"labels": None, "input": self._signal_line(run, store, sample_id), "token_ids": None}

    def _tokens(self, run: str, store: RunStore) -> tuple[dict[int, np.ndarray], dict[int, list[str]] | None]:
        """Token ids and strings (None without a tokenizer) of every probe sample of a token run, cached."""
        key = self._probe(run, store).key  # NotFound before the probe set is written

        def make() -> _TokenTexts:
            what = f"the tokens of the probe set of run {run!r}"
            return _TokenTexts(self._read(what, store.token_ids), self._read(what, store.tokens))

        texts = self.cache.get_or_make(("tokens", run, *key), make)
        return texts.ids, texts.strings

    def _signal_line(self, run: str, store: RunStore, sample_id: int) -> list[float] | None:
        """The signal's input from its thumbnail: ``[0, 1]`` per point, or None without a thumbnail."""
        try:
            png = self.input_png(run, sample_id)
        except NotFound:
            return None
        try:
            with Image.open(io.BytesIO(png)) as picture:
                gray = np.asarray(picture.convert("L"), np.float32)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return [round(v, 4) for v in (gray.mean(axis=0) / 255.0).tolist()]

    def relevance(self, run: str, epoch: int, sample_id: int, cmap: str, bins: int = 0) -> dict[str, Any]:
        """One sample's relevance in one epoch as values with their colours (signal, tabular and token runs).

        Returns
        -------
        dict
            ``run``, ``epoch``, ``sample_id``, ``modality``; ``relevance`` (a number per time step,
            feature or token; None for NaN or infinity), ``colors`` (``#rrggbb`` each, None where the
            value is not finite), ``scale`` (the largest absolute value, which gets the map's end
            colours); ``input`` (signals: the input line in ``[0, 1]``, or None), ``labels`` (feature
            names or token strings, or None) and ``token_ids`` (token runs); ``length``, the number
            of values before binning.

        Parameters
        ----------
        bins : int, optional
            Signals longer than this many time steps are reduced to ``bins`` equal runs of steps, each
            given by its value of largest magnitude (so a peak stays visible) and that value's colour;
            0 (default) sends every value. Drawings of a few hundred pixels need no more.
        """
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store, modality = self._sequence_store(run)
        info = self._epoch(run, store, epoch)

        def make() -> dict[str, Any]:
            values = self._relevance_values(run, store, info, modality, sample_id)
            context = self._sample_context(run, store, modality, sample_id)
            colored = self._binned(self._colored(values, cmap), values, modality, bins)
            return {
                "run": run,
                "epoch": info.epoch,
                "sample_id": sample_id,
                "modality": modality,
                "length": int(values.size),
                **colored,
                **context,
            }

        return self.cache.get_or_make(("relevance", run, info.epoch, info.commit, sample_id, cmap, bins), make)

    @staticmethod
    def _binned(colored: dict[str, Any], values: np.ndarray, modality: str, bins: int) -> dict[str, Any]:
        """A long signal's values and colours reduced to their peaks in ``bins`` runs of steps (see :func:`peaks`)."""
        if modality != MODALITY_SIGNAL or not 0 < bins < values.size:
            return colored
        chosen = peaks(values, bins)
        return {
            **colored,
            "relevance": [colored["relevance"][i] for i in chosen],
            "colors": [colored["colors"][i] for i in chosen],
        }

    @staticmethod
    def _colored(values: np.ndarray, cmap: str) -> dict[str, Any]:
        finite = values[np.isfinite(values)]
        return {
            "relevance": _values(values),
            "colors": colors_of(values, cmap),
            "scale": float(np.abs(finite).max()) if finite.size else 0.0,
        }

    def relevance_timeline(self, run: str, sample_id: int, cmap: str, bins: int = 0) -> dict[str, Any]:
        """One sample's relevance in every complete epoch that holds it (signal, tabular and token runs).

        Returns
        -------
        dict
            ``run``, ``sample_id``, ``modality``, ``input``, ``labels``, ``token_ids`` as in
            :meth:`relevance`; ``epochs`` (the epochs that hold the sample) and, one entry per epoch,
            ``relevance``, ``colors`` and ``scale`` (each epoch scaled on its own, as its heatmap is);
            ``unreadable``: epochs left out with the reason; ``length``, the number of values before
            binning. ``bins`` reduces a long signal as in :meth:`relevance`.
        """
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store, modality = self._sequence_store(run)
        result: dict[str, Any] = {"epochs": [], "relevance": [], "colors": [], "scale": [], "unreadable": []}
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                if self._samples(run, store, info).row(sample_id) is None:
                    continue  # an epoch without this sample
                values = self._relevance_values(run, store, info, modality, sample_id)
            except NotFound as exc:  # one damaged epoch leaves the others readable
                result["unreadable"].append({"epoch": info.epoch, "error": str(exc)})
                continue
            colored = self._binned(self._colored(values, cmap), values, modality, bins)
            result["length"] = int(values.size)
            result["epochs"].append(info.epoch)
            for key in ("relevance", "colors", "scale"):
                result[key].append(colored[key])
        if not result["epochs"]:
            reasons = "; ".join(u["error"] for u in result["unreadable"])
            raise NotFound(reasons or f"sample {sample_id} is in no complete epoch of run {run!r}")
        context = self._sample_context(run, store, modality, sample_id)
        return {"run": run, "sample_id": sample_id, "modality": modality, **context, **result}

    def _token_names(self, run: str, store: RunStore) -> dict[int, str]:
        """Token string of every token id of the probe set (empty without a tokenizer or vocabulary)."""
        token_ids, strings = self._tokens(run, store)
        names: dict[int, str] = {}
        for sample_id, ids in token_ids.items():
            for token_id, text in zip(ids.tolist(), (strings or {}).get(sample_id) or []):
                names.setdefault(int(token_id), str(text))
        return names

    def prototype_values(
        self, run: str, epoch: int, category: str, clustering: str, cluster: int, cmap: str
    ) -> dict[str, Any]:
        """A cluster's prototype as values with their colours, for signal, tabular and token runs.

        Returns
        -------
        dict
            ``run``, ``epoch``, ``category``, ``clustering``, ``cluster``, ``modality``; ``relevance``
            (the prototype: the members' mean L1-normalised signed map, so each value is a signed share
            of a member's relevance), ``colors`` and ``scale`` as in :meth:`relevance`; ``labels``:
            feature names (tabular), token strings per vocabulary column with :data:`OTHER_TOKENS` last
            (tokens; ``#id`` without a tokenizer), else None; ``token_ids``: the token id of each column
            (tokens; None for the last), else None; ``length``, the number of values.
        """
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store, modality = self._sequence_store(run)
        info = self._epoch(run, store, epoch)
        analysis = self._analysis(run, store, info)

        def make() -> dict[str, Any]:
            rows = self._rows(self._cluster_rows(run, analysis, info, category, clustering), **{CLUSTER: cluster})
            if rows.num_rows == 0:
                raise NotFound(f"no cluster {cluster} in clustering {clustering!r} of category {category!r}")
            values = np.asarray(rows.column(PROTOTYPE)[0].as_py() or [], dtype=np.float32)
            if values.size == 0:
                raise NotFound(f"cluster {cluster} of clustering {clustering!r} has no prototype")
            labels: list[str] | None = None
            token_ids: list[int | None] | None = None
            if modality == MODALITY_TABULAR:
                names = store.feature_names
                labels = list(names) if names and len(names) == values.size else None
            elif modality == MODALITY_TOKENS:
                token_ids = self._vocabulary(analysis.tables[CLUSTERS_TABLE], values.size)
                known = self._token_names(run, store)
                labels = [OTHER_TOKENS if t is None else known.get(t, f"#{t}") for t in token_ids]
            return {
                "run": str(run),
                "epoch": info.epoch,
                "category": category,
                "clustering": clustering,
                "cluster": cluster,
                "modality": modality,
                "length": int(values.size),
                **self._colored(values, cmap),
                "labels": labels,
                "token_ids": token_ids,
                "input": None,
            }

        key = ("prototype-values", run, info.epoch, info.commit, analysis.config_hash, category, clustering, cluster)
        return self.cache.get_or_make((*key, cmap), make)

    @staticmethod
    def _vocabulary(clusters: Any, columns: int) -> list[int | None]:
        """The token id of each bag-of-tokens column (None: the last, every other token), from the table's metadata."""
        raw = (clusters.schema.metadata or {}).get(META_TOKEN_VOCABULARY)
        try:
            vocabulary = [int(v) for v in json.loads(raw)] if raw else None
        except (ValueError, TypeError):
            vocabulary = None
        if vocabulary is None or len(vocabulary) + 1 != columns:
            raise NotFound(
                f"the clusters table names no token for its {columns} prototype columns "
                f"(vocabulary metadata: {raw!r}); analyse the run again with lrp-analyze --force"
            )
        return [*vocabulary, None]
