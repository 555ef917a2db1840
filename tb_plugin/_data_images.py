"""Relevance maps and images of the plugin's data layer: the :class:`~lrp_lightning.tb_plugin.data.PluginData` methods.

Reads relevance maps (whole epochs cached as stored, float16, when small enough; else one sample at a
time), the probe set's input thumbnails and metadata, and renders heatmaps and overlays as PNG
through :mod:`lrp_lightning.image`.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from lrp_lightning import image as lrp_image
from lrp_lightning.store import (
    PROBE_COLUMNS,
    SAMPLE_ID,
    THUMBNAIL,
    EpochInfo,
    RunStore,
)

from ._data_common import HEATMAP_KINDS, BadArgument, NotFound, _EpochMaps, _json_column, _Probe, _Samples

__all__: list[str] = []

OVERLAY_ALPHA = 0.5
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

NONFINITE_COLORS = ((0, 0, 0), (255, 255, 0))
"""Checkerboard (black and yellow, in no colour map) drawn on the pixels of a map that hold NaN or
infinity: a map of a sample whose output was NaN shows as marked, not as a blank (all-zero) map."""


def mark_nonfinite(picture: Image.Image, bad: np.ndarray) -> Image.Image:
    """Paint the pixels where ``bad`` (an ``(H, W)`` mask) is True with the :data:`NONFINITE_COLORS` checkerboard."""
    if not bad.any():
        return picture
    pixels = np.array(picture.convert("RGB"))
    rows, columns = np.nonzero(bad)
    pixels[rows, columns] = np.asarray(NONFINITE_COLORS, np.uint8)[(rows + columns) % 2]
    return Image.fromarray(pixels, "RGB")


class _Images:
    """Mixin of :class:`~lrp_lightning.tb_plugin.data.PluginData`: relevance maps, the probe set, PNGs."""

    def _map(self, run: str, store: RunStore, info: EpochInfo, sample_id: int) -> np.ndarray:
        what = f"epoch {info.epoch} of run {run!r}"
        height, width = self._read(what, lambda: store.heatmap_shape)
        if info.rows * height * width * 2 <= self.epoch_maps_bytes:

            def make_epoch() -> _EpochMaps:
                ids, maps = self._read(what, lambda: store.heatmaps(info.epoch))
                table = pa.table({SAMPLE_ID: ids})
                return _EpochMaps(_Samples.from_table(table), maps.astype(np.float16))

            cached = self.cache.get_or_make(("maps", run, info.epoch, info.commit), make_epoch)
            row = cached.samples.row(sample_id)
            if row is None:
                raise NotFound(f"sample {sample_id} is not in epoch {info.epoch} of run {run!r}")
            return cached.maps[row].astype(np.float32)

        def make_one() -> np.ndarray:
            _, maps = self._read(what, lambda: store.heatmaps(info.epoch, [sample_id]))
            return maps[0]

        return self.cache.get_or_make(("map", run, info.epoch, info.commit, sample_id), make_one)

    def _probe(self, run: str, store: RunStore) -> _Probe:
        path = store.probe_path
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"run {run!r} has no probe set yet (written at the first validation epoch)") from None

        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)

        def make() -> _Probe:
            table = self._read(f"the probe set of run {run!r}", store.probe_table)
            extra = [name for name in table.column_names if name not in PROBE_COLUMNS]
            converted = self._read(
                f"the metadata columns of the probe set of run {run!r}",
                lambda: {name: _json_column(table.column(name)) for name in extra},
            )
            metadata = {name: values for name, values in converted.items() if values is not None}
            thumbnails = table.column(THUMBNAIL).to_pylist()
            return _Probe(_Samples.from_table(table.select([SAMPLE_ID])), thumbnails, metadata, key)

        return self.cache.get_or_make(("probe", run, *key), make)

    def input_png(self, run: str, sample_id: int) -> bytes:
        """The stored input thumbnail (PNG) of a probe sample."""
        store = self._store(run)
        probe = self._probe(run, store)
        row = probe.ids.row(sample_id)
        if row is None:
            raise NotFound(f"sample {sample_id} is not in the probe set of run {run!r}")
        thumbnail = probe.thumbnails[row]
        if thumbnail is None:
            raise NotFound(f"sample {sample_id} of run {run!r} has no input thumbnail")
        if not thumbnail.startswith(_PNG_SIGNATURE):
            raise NotFound(f"the input thumbnail of sample {sample_id} of run {run!r} is not a PNG image (damaged)")
        return thumbnail

    def _input_image(self, run: str, store: RunStore, sample_id: int, size: tuple[int, int]) -> np.ndarray:
        png = self.input_png(run, sample_id)
        try:
            with Image.open(io.BytesIO(png)) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NotFound(
                f"the input thumbnail of sample {sample_id} of run {run!r} cannot be decoded ({exc})"
            ) from exc
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb)

    def heatmap_png(self, run: str, epoch: int, sample_id: int, cmap: str, kind: str) -> bytes:
        """A sample's relevance map of an epoch, colour-mapped (symmetric around 0) or over its input."""
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        if kind not in HEATMAP_KINDS:
            raise BadArgument(f"unknown kind {kind!r}; known: {list(HEATMAP_KINDS)}")
        store = self._store(run)
        info = self._epoch(run, store, epoch)

        def make() -> bytes:
            raw = self._map(run, store, info, sample_id)
            relevance = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
            if kind == "overlay":
                height, width = relevance.shape
                base = self._input_image(run, store, sample_id, (width, height))
                picture = lrp_image.overlay(base, relevance, alpha=OVERLAY_ALPHA, cmap=cmap)
            else:
                picture = lrp_image.heatmap(relevance, cmap=cmap)
            return lrp_image.to_png_bytes(mark_nonfinite(picture, ~np.isfinite(raw)))

        return self.cache.get_or_make(("png", run, info.epoch, info.commit, sample_id, cmap, kind), make)
