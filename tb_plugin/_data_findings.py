"""Findings of the plugin's data layer: PluginData methods and :func:`findings_json`.

The findings table's name and columns are the store contract's (:data:`lrp_lightning.store.FINDINGS_SCHEMA`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lrp_lightning import image as lrp_image
from lrp_lightning import store as lrp_store
from lrp_lightning.store import (
    CATEGORY,
    CLASS_INDEX,
    CLASS_NAME,
    MODALITY_TABULAR,
    MODALITY_TOKENS,
    SPECTRUM_TABLE,
    EpochInfo,
    RunStore,
    StoreError,
)

from ._data_common import _SAFE_INTEGER, BadArgument, NotFound, _finite_or_none
from ._data_sequences import OTHER_TOKENS

__all__: list[str] = []

FINDING_TOKENS = 20
"""The most relevant tokens a token finding's values name one by one (/finding_values); the rest are summed."""


class _Findings:
    """Mixin of :class:`~lrp_lightning.tb_plugin.data.PluginData`: the run's findings and their maps."""

    def _epoch_findings(self, run: str, store: RunStore, info: EpochInfo) -> list[dict[str, Any]] | None:
        """The rows of an epoch's ``findings`` table as dicts, or None when the epoch has no current one.

        None means "no analysis" or "an analysis that predates findings" (no such table for this
        configuration); an epoch whose table exists but cannot be read raises :class:`NotFound`.
        """
        try:
            analysis = self._analysis(run, store, info)
        except NotFound:
            return None

        def make() -> _Rows:
            try:
                table = store.read_analysis_table(
                    info.epoch, lrp_store.FINDINGS_TABLE, config_hash=analysis.config_hash
                )
            except lrp_store.AnalysisNotFoundError:
                return _Rows(None)
            except (StoreError, OSError, pa.ArrowException) as exc:
                raise self._unreadable(f"the findings of epoch {info.epoch} of run {run!r}", exc) from exc
            missing = [name for name in _REQUIRED_FINDING_COLUMNS if name not in table.column_names]
            if missing:
                raise NotFound(
                    f"the findings table of epoch {info.epoch} of run {run!r} lacks columns {missing}; "
                    "analyse the run again with this version (lrp-analyze)"
                )
            return _Rows(table.to_pylist())

        key = ("findings", run, info.epoch, info.commit, analysis.config_hash)
        return self.cache.get_or_make(key, make).rows

    def _category_names(self, run: str, store: RunStore, info: EpochInfo) -> dict[str, str]:
        """Category → words ("digit 3", "all samples"), from the epoch's spectrum table, else the manifest."""
        names = {lrp_store.CATEGORY_ALL: "all samples"}
        class_names = self._read(f"run {run!r}", lambda: store.manifest).get("class_names") or []
        for index, name in enumerate(class_names):
            names[lrp_store.class_category(index)] = str(name)
        try:
            spectrum = self._analysis(run, store, info).tables[SPECTRUM_TABLE]
        except NotFound:
            return names
        for category, name, index in zip(
            spectrum.column(CATEGORY).to_pylist(),
            spectrum.column(CLASS_NAME).to_pylist(),
            spectrum.column(CLASS_INDEX).to_pylist(),
        ):
            if name:
                names[category] = str(name)
            elif index is not None and category not in names:
                names[category] = f"class {index}"
        return names

    def findings(self, run: str) -> dict[str, Any]:
        """The run's findings with their lineage over the analysed epochs (see :func:`findings_json`).

        An epoch whose findings table cannot be read is left out and listed under ``unreadable``
        (``{epoch, error}``); a run without analysis, or analysed before findings existed, has none.
        """
        store = self._store(run)
        per_epoch: list[tuple[int, list[dict[str, Any]]]] = []
        without: list[int] = []
        unreadable: list[dict[str, Any]] = []
        named: EpochInfo | None = None  # the last epoch with findings: its category names are shown
        for info in self._read(f"run {run!r}", store.epochs):
            try:
                rows = self._epoch_findings(run, store, info)
            except NotFound as exc:  # one damaged table leaves the other epochs' findings readable
                unreadable.append({"epoch": info.epoch, "error": str(exc)})
                continue
            if rows is None:
                if self._analysis_state(store, info)[0] is not None:
                    without.append(info.epoch)  # analysed before findings existed
                continue
            per_epoch.append((info.epoch, rows))
            if rows:
                named = info
        names = self._category_names(run, store, named) if named is not None else {}
        revisions = revisions_json(self._read(f"run {run!r}", store.revisions))
        return {**findings_json(run, per_epoch, without, names), "unreadable": unreadable, "revisions": revisions}

    def _finding_members(self, run: str, store: RunStore, info: EpochInfo, finding_id: str) -> list[int]:
        """Sample ids of a finding's members in one epoch (NotFound: no findings table, finding or members)."""
        epoch = info.epoch
        rows = self._epoch_findings(run, store, info)
        if rows is None:
            raise NotFound(f"epoch {epoch} of run {run!r} has no findings table; run `lrp-analyze` on the run")
        row = next((r for r in rows if r[lrp_store.FINDING_ID] == finding_id), None)
        if row is None:
            known = [r[lrp_store.FINDING_ID] for r in rows]
            raise NotFound(f"no finding {finding_id!r} in epoch {epoch} of run {run!r}; its findings: {known[:20]}")
        members = [int(i) for i in row[lrp_store.MEMBER_IDS]]
        if not members:
            raise NotFound(f"finding {finding_id!r} has no members in epoch {epoch} of run {run!r}")
        return members

    def _finding_mean(self, run: str, store: RunStore, info: EpochInfo, members: list[int]) -> np.ndarray:
        """The members' mean relevance map, each map L1-normalised first (every member weighs the same)."""
        what = f"epoch {info.epoch} of run {run!r}"
        _, maps = self._read(what, lambda: store.heatmaps(info.epoch, members))
        maps = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = np.abs(maps).reshape(len(maps), -1).sum(axis=1)
        return (maps / np.where(scale > 0, scale, 1.0)[:, None, None]).mean(axis=0)

    def finding_prototype_png(self, run: str, finding_id: str, epoch: int, cmap: str) -> bytes:
        """Mean relevance map of a finding's members in one epoch (each map L1-normalised), colour-mapped."""
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store = self._store(run)
        info = self._epoch(run, store, epoch)
        members = self._finding_members(run, store, info, finding_id)

        def make() -> bytes:
            mean = self._finding_mean(run, store, info, members)
            return lrp_image.to_png_bytes(lrp_image.heatmap(mean, cmap=cmap))

        analysis = self._analysis(run, store, info)
        key = ("finding-png", run, info.epoch, info.commit, analysis.config_hash, finding_id, cmap)
        return self.cache.get_or_make(key, make)

    def finding_values(self, run: str, finding_id: str, epoch: int, cmap: str) -> dict[str, Any]:
        """A finding's members' mean relevance in one epoch as values, for signal, tabular and token runs.

        Each member's relevance is L1-normalised first, so a value is a signed share of a member's
        relevance, as in a cluster's prototype (:meth:`prototype_values`). A signal's values are per time
        step, a table's per feature (``labels``: the feature names); a text's per token: the
        :data:`FINDING_TOKENS` tokens of largest mean share over the members (``labels`` their strings,
        ``#id`` without a tokenizer; ``token_ids`` their ids), the rest summed under :data:`OTHER_TOKENS`.

        Returns
        -------
        dict
            ``run``, ``epoch``, ``finding``, ``modality``, ``length``, ``relevance``, ``colors``,
            ``scale``, ``labels``, ``token_ids``, ``input`` (None), as :meth:`prototype_values`.
        """
        if cmap not in lrp_image.COLOR_MAPS:
            raise BadArgument(f"unknown colour map {cmap!r}; known: {sorted(lrp_image.COLOR_MAPS)}")
        store, modality = self._sequence_store(run)
        info = self._epoch(run, store, epoch)
        members = self._finding_members(run, store, info, finding_id)

        def make() -> dict[str, Any]:
            labels: list[str] | None = None
            token_ids: list[int | None] | None = None
            if modality == MODALITY_TOKENS:
                values, token_ids = self._token_shares(run, store, info, members)
                names = self._token_names(run, store)
                labels = [OTHER_TOKENS if t is None else names.get(t, f"#{t}") for t in token_ids]
            else:
                values = self._finding_mean(run, store, info, members).reshape(-1).astype(np.float32)
                names = store.feature_names if modality == MODALITY_TABULAR else None
                labels = list(names) if names and len(names) == values.size else None
            return {
                "run": str(run),
                "epoch": info.epoch,
                "finding": finding_id,
                "modality": modality,
                "length": int(values.size),
                **self._colored(values, cmap),
                "labels": labels,
                "token_ids": token_ids,
                "input": None,
            }

        analysis = self._analysis(run, store, info)
        key = ("finding-values", run, info.epoch, info.commit, analysis.config_hash, finding_id, cmap)
        return self.cache.get_or_make(key, make)

    def _token_shares(
        self, run: str, store: RunStore, info: EpochInfo, members: list[int]
    ) -> tuple[np.ndarray, list[int | None]]:
        """Per token id, the members' mean share of their relevance (signed), the largest first, the rest summed."""
        token_ids, _ = self._tokens(run, store)
        shares: dict[int, float] = {}
        for sample_id in members:
            relevance = self._relevance_values(run, store, info, MODALITY_TOKENS, sample_id).astype(np.float64)
            relevance = np.nan_to_num(relevance, nan=0.0, posinf=0.0, neginf=0.0)
            ids = token_ids.get(sample_id, np.empty(0, np.int64))[: relevance.size]
            total = np.abs(relevance[: ids.size]).sum()
            for token, value in zip(ids.tolist(), (relevance[: ids.size] / (total or 1.0)).tolist()):
                shares[int(token)] = shares.get(int(token), 0.0) + value / len(members)
        order = sorted(shares, key=lambda t: -abs(shares[t]))
        top, rest = order[:FINDING_TOKENS], order[FINDING_TOKENS:]
        values = [shares[t] for t in top] + [sum(shares[t] for t in rest)]
        return np.asarray(values, np.float32), [*top, None]


@dataclass
class _Rows:
    """A cached table read as rows; ``rows`` None when the table does not exist."""

    rows: list[dict[str, Any]] | None

    @property
    def nbytes(self) -> int:
        return 256 * (len(self.rows) if self.rows else 1)


_REQUIRED_FINDING_COLUMNS = (
    lrp_store.FINDING_ID,
    lrp_store.CATEGORY,
    lrp_store.FINDING_KIND,
    lrp_store.FINDING_REGION,
    lrp_store.FIRST_EPOCH,
    lrp_store.EPOCHS_SEEN,
    lrp_store.MEMBER_IDS,
    lrp_store.FINDING_REASON,
)
"""Columns of the findings table that the plugin cannot do without (the others may be absent)."""


def findings_json(
    run: str,
    per_epoch: Sequence[tuple[int, Sequence[Mapping[str, Any]]]],
    without_findings: Sequence[int],
    category_names: Mapping[str, str],
) -> dict[str, Any]:
    """The ``/findings`` answer from the ``findings`` rows of each analysed epoch (the one place that reads columns).

    Parameters
    ----------
    run : str
    per_epoch : sequence of (epoch, rows)
        Each epoch that has a findings table, ascending, with its rows as dicts of the table's columns.
    without_findings : sequence of int
        Analysed epochs whose analysis predates findings (no findings table).
    category_names : mapping of str to str
        Category → words.

    Returns
    -------
    dict
        ``{"run", "epochs": [epochs with a findings table], "without_findings": [...], "ids_exact",
        "findings": [...]}``; each finding: ``finding_id``, ``category``, ``category_name``, ``kind``,
        ``region``, ``region_detail``, ``first_epoch``, ``last_epoch``, ``epochs_seen`` (from the
        last epoch's row), the last epoch's ``n_members``, ``member_ids``, ``strength``, ``share``,
        ``rest_share``, ``input_spread``, ``p_value``, ``q_value``, ``clusters`` and ``reason``, and
        ``history``: one ``{epoch, n_members, strength, share, rest_share, q_value}`` per epoch the
        finding has a row in. Ordered: seen most recently first, then by q value, then by strength.
    """
    history: dict[str, list[dict[str, Any]]] = {}
    last: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for epoch, rows in per_epoch:
        for row in rows:
            finding_id = row[lrp_store.FINDING_ID]
            history.setdefault(finding_id, []).append(
                {
                    "epoch": epoch,
                    "n_members": len(row[lrp_store.MEMBER_IDS]),
                    "strength": _finite_or_none(row.get(lrp_store.FINDING_STRENGTH)),
                    "share": _finite_or_none(row.get(lrp_store.FINDING_SHARE)),
                    "rest_share": _finite_or_none(row.get(lrp_store.REST_SHARE)),
                    "q_value": _finite_or_none(row.get(lrp_store.Q_VALUE)),
                }
            )
            last[finding_id] = (epoch, row)
    findings = []
    exact = True
    for finding_id, (epoch, row) in last.items():
        members = [int(i) for i in row[lrp_store.MEMBER_IDS]]
        exact = exact and all(abs(i) < _SAFE_INTEGER for i in members)
        category = row[lrp_store.CATEGORY]
        findings.append(
            {
                "finding_id": finding_id,
                "category": category,
                "category_name": category_names.get(category, category),
                "kind": row[lrp_store.FINDING_KIND],
                "region": row[lrp_store.FINDING_REGION],
                "region_detail": row.get(lrp_store.FINDING_REGION_DETAIL),
                "first_epoch": int(row[lrp_store.FIRST_EPOCH]),
                "last_epoch": epoch,
                "epochs_seen": [int(e) for e in row[lrp_store.EPOCHS_SEEN]],
                "n_members": len(members),
                "member_ids": members,
                "strength": _finite_or_none(row.get(lrp_store.FINDING_STRENGTH)),
                "share": _finite_or_none(row.get(lrp_store.FINDING_SHARE)),
                "rest_share": _finite_or_none(row.get(lrp_store.REST_SHARE)),
                "input_spread": _finite_or_none(row.get(lrp_store.INPUT_SPREAD)),
                "p_value": _finite_or_none(row.get(lrp_store.P_VALUE)),
                "q_value": _finite_or_none(row.get(lrp_store.Q_VALUE)),
                "clusters": list(row.get(lrp_store.FINDING_CLUSTERS) or []),
                "reason": row[lrp_store.FINDING_REASON],
                "history": history[finding_id],
            }
        )
    findings.sort(
        key=lambda f: (-f["last_epoch"], f["q_value"] if f["q_value"] is not None else 1.0, -(f["strength"] or 0.0))
    )
    return {
        "run": run,
        "epochs": [epoch for epoch, _ in per_epoch],
        "without_findings": list(without_findings),
        "ids_exact": exact,
        "findings": findings,
    }


def revisions_json(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``/findings`` answer's ``revisions``: what the ``ClArCCallback`` did (the manifest's records).

    Each: ``finding_id``, ``method``, ``status``, ``found_epoch``, ``start_epoch`` (the first revised
    epoch: the epoch axis's mark), ``cav_auc`` (held-out separation of the artifact direction) and
    ``epochs``: per measured epoch ``{epoch, strength, finding_share, rest_share,
    artifact_sensitivity, clean_accuracy}`` with ``strength = finding_share - rest_share`` (the same
    samples every epoch, also after the finding stopped being found). Member ids are left out.
    """
    out = []
    for record in records:
        epochs = []
        for entry in record.get(lrp_store.REVISION_EPOCHS) or []:
            share = _finite_or_none(entry.get("finding_share"))
            rest = _finite_or_none(entry.get("rest_share"))
            epochs.append(
                {
                    "epoch": int(entry["epoch"]),
                    "strength": None if share is None or rest is None else share - rest,
                    "finding_share": share,
                    "rest_share": rest,
                    "artifact_sensitivity": _finite_or_none(entry.get("artifact_sensitivity")),
                    "clean_accuracy": _finite_or_none(entry.get("clean_accuracy")),
                }
            )
        start = record.get(lrp_store.REVISION_START_EPOCH)
        found = record.get(lrp_store.REVISION_FOUND_EPOCH)
        out.append(
            {
                "finding_id": record.get(lrp_store.REVISION_FINDING_ID),
                "method": record.get(lrp_store.REVISION_METHOD),
                "status": record.get(lrp_store.REVISION_STATUS),
                "found_epoch": None if found is None else int(found),
                "start_epoch": None if start is None else int(start),
                "cav_auc": _finite_or_none((record.get(lrp_store.REVISION_CAV) or {}).get("heldout_auc")),
                "epochs": epochs,
            }
        )
    return out
