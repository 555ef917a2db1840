"""What a sample is: the :class:`RunStore` methods that read a run's modality and its token data.

The manifest names the modality (image, signal, tabular or tokens, see "Modalities" in
:mod:`lrp_lightning.store.contract`), the feature names of tabular runs and the map width of token
runs. Token runs keep each sample's token ids (padding removed) and, when the writer had a tokenizer,
its token strings in ``probe.parquet``, and its relevance per token in every attribution row. Stores
written before format 2.1 have no modality: it is inferred from their input shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .contract import (
    FEATURE_NAMES_KEY,
    MAX_TOKENS_KEY,
    MODALITIES,
    MODALITY_KEY,
    MODALITY_TOKENS,
    SAMPLE_ID,
    TOKEN_IDS,
    TOKEN_RELEVANCE,
    TOKENS,
    infer_modality,
)
from .errors import CorruptFileError, SampleNotFoundError, SchemaError, StoreError

__all__: list[str] = []


def _check_modality_values(data: dict[str, Any], source: Path) -> None:
    """The manifest's modality keys hold what :meth:`RunStore.create` writes, or null (or are absent)."""
    modality = data.get(MODALITY_KEY)
    if modality is not None and modality not in MODALITIES:
        raise CorruptFileError(
            f"{source}: {MODALITY_KEY!r} must be one of {list(MODALITIES)} or null, got {modality!r}; the file "
            "was edited by hand or is damaged. Restore the value, or set it to null."
        )
    names = data.get(FEATURE_NAMES_KEY)
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CorruptFileError(
            f"{source}: {FEATURE_NAMES_KEY!r} must be a list of feature names (strings) or null, got {names!r}; "
            "the file was edited by hand or is damaged. Restore the value, or set it to null."
        )
    width = data.get(MAX_TOKENS_KEY)
    if width is not None and not (isinstance(width, int) and not isinstance(width, bool) and width > 0):
        raise CorruptFileError(
            f"{source}: {MAX_TOKENS_KEY!r} must be a positive integer or null, got {width!r}; the file was "
            "edited by hand or is damaged. Set it to the width of the stored maps (heatmap_shape[1])."
        )


def _ragged_to_dict(ids: np.ndarray, column: pa.ChunkedArray, dtype: Any) -> dict[int, np.ndarray]:
    """``{sample id: values}`` of a list column, one numpy array per row."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return {int(i): values[offsets[r] : offsets[r + 1]].copy() for r, i in enumerate(ids)}


class _Modalities:
    """Mixin of :class:`~lrp_lightning.store.RunStore`: the modality and the token data of a run."""

    @property
    def modality(self) -> str | None:
        """What a sample is: ``"image"``, ``"signal"``, ``"tabular"`` or ``"tokens"`` (see
        :data:`~lrp_lightning.store.MODALITIES`). Stores without the key (format < 2.1) get it inferred
        from ``input_shape`` (:func:`~lrp_lightning.store.infer_modality`); None when that is unknown too."""
        data = self._manifest_data()
        value = data.get(MODALITY_KEY)
        if value is not None:
            return str(value)
        return infer_modality(data.get("input_shape"))

    @property
    def feature_names(self) -> list[str] | None:
        """The name of each feature of a tabular run, or None when not recorded."""
        names = self._manifest_data().get(FEATURE_NAMES_KEY)
        return None if names is None else list(names)

    @property
    def max_tokens(self) -> int | None:
        """Width of a token run's maps (``heatmap_shape == (1, max_tokens)``); None for other modalities."""
        value = self._manifest_data().get(MAX_TOKENS_KEY)
        return None if value is None else int(value)

    def _require_tokens(self, what: str) -> None:
        if self.modality != MODALITY_TOKENS:
            raise StoreError(
                f"{what} exist only in token runs, but {self._store_dir} holds a run of modality "
                f"{self.modality!r}; its relevance maps are in heatmaps(epoch)"
            )

    def _probe_rows(self, column: str, sample_ids: Sequence[int] | np.ndarray | None) -> tuple[np.ndarray, Any]:
        """``(ids, column)`` of ``probe.parquet``, restricted to and ordered as ``sample_ids`` when given."""
        table = self.probe_table()
        if column not in table.column_names:
            raise CorruptFileError(
                f"{self.probe_path} of a token run has no {column!r} column; the file was written by another "
                "tool or is damaged. Restore it from a backup of the run."
            )
        ids = table.column(SAMPLE_ID).to_numpy()
        values = table.column(column)
        if sample_ids is None:
            return ids, values
        wanted = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        position = {int(i): row for row, i in enumerate(ids)}
        absent = [int(i) for i in wanted if int(i) not in position][:10]
        if absent:
            raise SampleNotFoundError(f"sample id(s) {absent} are not in the probe set of {self._store_dir}")
        rows = pa.array([position[int(i)] for i in wanted], type=pa.int64())
        return wanted, values.take(rows)

    def token_ids(self, sample_ids: Sequence[int] | np.ndarray | None = None) -> dict[int, np.ndarray]:
        """Each probe sample's token ids, padding removed (token runs).

        Parameters
        ----------
        sample_ids : sequence of int, optional
            Samples to read. Default: the whole probe set.

        Returns
        -------
        dict of int to numpy.ndarray
            ``{sample id: int64 array of token ids}``, in the order of ``sample_ids`` (or stored order).

        Raises
        ------
        StoreError
            If the run is not a token run, or the probe set was not written yet.
        SampleNotFoundError
            If a requested sample id is not in the probe set.
        """
        self._require_tokens("token ids")
        ids, column = self._probe_rows(TOKEN_IDS, sample_ids)
        return _ragged_to_dict(ids, column, np.int64)

    def tokens(self, sample_ids: Sequence[int] | np.ndarray | None = None) -> dict[int, list[str]] | None:
        """Each probe sample's token strings, one per token id; None when written without a tokenizer.

        Parameters and errors as for :meth:`token_ids`.
        """
        self._require_tokens("token strings")
        if TOKENS not in self.probe_table().column_names:
            return None
        ids, column = self._probe_rows(TOKENS, sample_ids)
        if column.null_count == len(column):
            return None
        return {int(i): (value if value is not None else []) for i, value in zip(ids, column.to_pylist())}

    def token_relevance(
        self, epoch: int, sample_ids: Sequence[int] | np.ndarray | None = None
    ) -> dict[int, np.ndarray]:
        """Each sample's relevance per token in a complete epoch (token runs).

        Parameters
        ----------
        epoch : int
            A complete epoch.
        sample_ids : sequence of int, optional
            Samples to read. Default: all of the epoch.

        Returns
        -------
        dict of int to numpy.ndarray
            ``{sample id: float32 array}``, as long as the sample's :meth:`token_ids`, in the order of
            ``sample_ids`` (or stored order).

        Raises
        ------
        StoreError
            If the run is not a token run.
        SampleNotFoundError
            If a requested sample id is not in the epoch.
        """
        self._require_tokens("token relevance")
        table = self.attributions(epoch, [SAMPLE_ID, TOKEN_RELEVANCE])
        ids = table.column(0).to_numpy()
        column = table.column(1)
        if sample_ids is not None:
            wanted = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
            position = {int(i): row for row, i in enumerate(ids)}
            absent = [int(i) for i in wanted if int(i) not in position][:10]
            if absent:
                raise SampleNotFoundError(f"sample id(s) {absent} are not in epoch {epoch} of {self._store_dir}")
            column = column.take(pa.array([position[int(i)] for i in wanted], type=pa.int64()))
            ids = wanted
        return _ragged_to_dict(ids, column, np.float32)

    def _check_token_rows(self, table: pa.Table) -> None:
        """A token run's attribution rows hold relevance per token, as many values as the sample's
        token ids (checked once the probe set is written; the prediction writer writes it last)."""
        if self.modality != MODALITY_TOKENS:
            if TOKEN_RELEVANCE in table.column_names:
                raise SchemaError(
                    f"column {TOKEN_RELEVANCE!r} belongs to token runs, but this store holds a run of modality "
                    f"{self.modality!r}; create the store with modality='tokens'"
                )
            return
        if TOKEN_RELEVANCE not in table.column_names:
            raise SchemaError(
                f"the attribution rows of a token run need the column {TOKEN_RELEVANCE!r} (relevance per token); "
                "pass token_relevance to make_attribution_table"
            )
        if not table.num_rows or not self.probe_path.exists():
            return
        lengths = getattr(self, "_token_lengths", None)
        if lengths is None:
            probe = self.probe_table([SAMPLE_ID, TOKEN_IDS])
            counts = pc.list_value_length(probe.column(1)).to_numpy(zero_copy_only=False)
            lengths = self._token_lengths = dict(zip(probe.column(0).to_numpy().tolist(), counts.tolist()))
        ids = table.column(SAMPLE_ID).to_numpy()
        found = pc.list_value_length(table.column(TOKEN_RELEVANCE)).to_numpy(zero_copy_only=False)
        for sample_id, count in zip(ids.tolist(), found.tolist()):
            expected = lengths.get(sample_id)
            if expected is not None and expected != count:
                raise SchemaError(
                    f"sample {sample_id} has {expected} token ids in probe.parquet but {count} relevance values in "
                    f"{TOKEN_RELEVANCE!r}; store the relevance of each real token (padding removed)"
                )
