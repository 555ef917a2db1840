"""ClArCCallback: reveal an artifact in epoch k with the SpRAy findings, revise the model from epoch k + 1."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from lrp_lightning import store as S
from lrp_lightning._validation import argument_error, check_bool, check_callable, check_float, check_int
from lrp_lightning.revise import (
    CAV,
    CAV_METHODS,
    RR_TARGETS,
    AClArC,
    ArtifactPaste,
    PClArC,
    RRClArC,
    accuracy,
    artifact_sensitivity,
    find_layer,
    fit_cav,
    layer_activations,
    region_share,
)
from lrp_lightning.revise.methods import check_method

from ._batches import default_unpack_batch
from ._training_state import untouched_training_state
from .lrp_callback import LRPCallback

log = logging.getLogger(__name__)

OWNER = "ClArCCallback"


class ClArCCallback(Callback):
    """Unlearn a Clever-Hans artifact while the model trains: the Reveal to Revise loop (Pahde et al. 2023).

    It works with an :class:`LRPCallback` that analyses every epoch (``analyze=...``), placed before it
    in ``callbacks``. At the end of each validation epoch, until it has a finding, it waits for that
    epoch's analysis and takes the finding named by ``finding`` (an id such as
    ``"class_3/top-left-corner@0"``), or the first artifact finding of the epoch whose strength (its
    samples' relevance share in its region minus the rest of its class's) is at least
    ``min_strength``, from epoch ``from_epoch`` on. It then

    1. fits the artifact's direction (a CAV, :func:`lrp_lightning.revise.fit_cav`) in ``layer`` on the
       probe samples: the finding's samples against the rest of its class (its quality, the held-out
       separation, is recorded);
    2. applies ``method`` from the next epoch on: ``"pclarc"`` projects the direction out (a forward
       hook, training and evaluation; it stays attached after ``fit``, see :attr:`pclarc`),
       ``"aclarc"`` adds the artifact in the layer to the training samples of other classes,
       ``"rrclarc"`` adds the gradient penalty along the direction to the loss; ``None`` revises
       nothing and only measures (the unrevised reference run);
    3. measures every epoch from the finding's epoch on, logs as ``lrp/revise_<name>``
       (:data:`lrp_lightning.store.REVISION_SCALARS`) and records in the manifest
       (:meth:`lrp_lightning.store.RunStore.revisions`): the finding's samples' and the rest of its
       class's relevance share in its region (the *same* samples every epoch, from the stored
       heatmaps), the artifact sensitivity (the share of probe samples of other classes that flip to
       the class when the artifact is pasted in) and the accuracy on the probe samples without the
       artifact (all probe samples but the finding's).

    Until it revises, the callback leaves training exactly as it would be without it (the measures
    run in eval mode and restore every RNG stream); a run where no finding matches records
    ``"nothing to revise"``. One finding is revised.

    Under DDP, rank 0 reads the analysis (it is the rank that runs it), fits the CAV, measures and
    writes the manifest and the scalars; it broadcasts the record and the CAV, so every rank revises
    along the identical direction (P-ClArC's and A-ClArC's hooks and RR-ClArC's penalty act on every
    rank's share of the batch; the penalty is added to the loss before its one backward pass, as DDP
    needs). RR-ClArC's mean penalty is averaged over the ranks.

    A run resumed from a checkpoint (``Trainer.fit(ckpt_path=...)``) goes on revising: the callback's
    state (:meth:`state_dict`, plain Python values) holds the record, the CAV, the artifact paste and
    RR-ClArC's random generator, and the hooks are put back on at the start of training.

    Parameters
    ----------
    method : {"rrclarc", "pclarc", "aclarc"} or None, default "rrclarc"
        The Class Artifact Compensation method (:mod:`lrp_lightning.revise.methods`); None measures only.
    layer : str
        The layer (a name of ``model.named_modules()``) whose outputs the CAV lives in; the papers use
        a late convolutional layer.
    finding : str, optional
        A finding id to revise. Default: the first finding that matches ``min_strength`` and ``from_epoch``.
    min_strength : float in [0, 1], default 0.2
        Least strength of a finding chosen by rule.
    from_epoch : int, default 0
        First epoch whose findings are considered.
    artifact : callable, optional
        ``inputs -> inputs with the artifact``, for the artifact sensitivity. Default: the finding's
        samples' mean input in its region pasted in (:meth:`lrp_lightning.revise.ArtifactPaste.from_finding`).
    cav_method : {"pattern", "linear"}, default "pattern"
        The CAV estimator; "pattern" as Dreyer et al. recommend.
    cav_holdout : float, default 0.3
        Share of the samples held out to measure the CAV's separation.
    strength : float, default 1.0
        RR-ClArC: the penalty's weight ``lambda``.
    rr_target : {"all", "artifact", "label", "random"}, default "all"
        RR-ClArC: whose output gradient is penalised.
    aclarc_classes : {"others", "all"}, default "others"
        A-ClArC: which training samples get the artifact.
    refit_cav : bool, default False
        Fit the CAV again on the current model after each explained epoch of the revision (the layers
        below ``layer`` keep training, so the artifact's direction in it drifts away from the first
        fit): each epoch is revised along the direction of the model at its start (P-ClArC's projection
        that stays after ``fit`` is the one fitted at the start of the last epoch). The manifest
        records the last fit in use; the fit after the last epoch waits in the callback's state, for a
        run resumed from the checkpoint.
    seed : int, default 0
        Seed of the CAV's held-out split and of ``rr_target="random"``.
    verbose : bool, default False
        Log what it does at INFO level (the demo prints it).
    """

    def __init__(
        self,
        method: str | None = "rrclarc",
        layer: str = "",
        finding: str | None = None,
        *,
        min_strength: float = 0.2,
        from_epoch: int = 0,
        artifact: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cav_method: str = "pattern",
        cav_holdout: float = 0.3,
        strength: float = 1.0,
        rr_target: str = "all",
        aclarc_classes: str = "others",
        refit_cav: bool = False,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.method = None if method is None else check_method(method, OWNER)
        if not isinstance(layer, str) or not layer:
            raise argument_error(OWNER, "layer", "the name of a layer of the model (e.g. 'features.6')", layer)
        self.layer = layer
        if finding is not None and not isinstance(finding, str):
            raise argument_error(
                OWNER, "finding", "a finding id (str, e.g. 'class_3/top-left-corner@0') or None", finding
            )
        self.finding = finding
        self.min_strength = check_float(min_strength, "min_strength", OWNER, 0.0, 1.0)
        self.from_epoch = check_int(from_epoch, "from_epoch", OWNER, 0)
        self.artifact = check_callable(artifact, "artifact", OWNER, "a callable inputs -> inputs", allow_none=True)
        if cav_method not in CAV_METHODS:
            raise argument_error(OWNER, "cav_method", f"one of {CAV_METHODS}", cav_method)
        self.cav_method = cav_method
        self.cav_holdout = check_float(cav_holdout, "cav_holdout", OWNER, 0.0, 0.9)
        self.strength = check_float(strength, "strength", OWNER, 0.0, None, note="e.g. 1.0")
        if rr_target not in RR_TARGETS:
            raise argument_error(OWNER, "rr_target", f"one of {RR_TARGETS}", rr_target)
        self.rr_target = rr_target
        if aclarc_classes not in ("others", "all"):
            raise argument_error(OWNER, "aclarc_classes", "'others' or 'all'", aclarc_classes)
        self.aclarc_classes = aclarc_classes
        self.refit_cav = check_bool(refit_cav, "refit_cav", OWNER)
        self.seed = check_int(seed, "seed", OWNER, 0)
        self.verbose = check_bool(verbose, "verbose", OWNER)
        self.record: dict[str, Any] | None = None
        self.cav = None
        self.pclarc: PClArC | None = None
        self._hook: Any = None
        self._output_handle: Any = None
        self._output: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._penalties: list[float] = []
        self._paste: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._probe: tuple[np.ndarray, torch.Tensor, torch.Tensor] | None = None
        self._lrp: LRPCallback | None = None
        self._random_state: list[int] | None = None  # RR-ClArC's generator, restored from a checkpoint
        self._pending_cav: CAV | None = None  # refit_cav: the fit after the last epoch, for a resumed run

    @property
    def state_key(self) -> str:
        return self._generate_state_key(method=self.method, layer=self.layer, finding=self.finding)

    # ------------------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        find_layer(pl_module, self.layer, OWNER)
        lrp = [c for c in trainer.callbacks if isinstance(c, LRPCallback)]
        mine = trainer.callbacks.index(self)
        if not lrp or trainer.callbacks.index(lrp[0]) > mine or not lrp[0].analyze:
            raise ValueError(
                f"{OWNER} revises what the analysis finds: put an LRPCallback(analyze=...) before it in "
                "Trainer(callbacks=[LRPCallback(..., analyze=True), ClArCCallback(...)])"
            )
        self._lrp = lrp[0]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed from a checkpoint (or a second fit) goes on revising from where the record says
        record = self.record
        if (
            self.method is None
            or record is None
            or record[S.REVISION_STATUS] != S.REVISION_STATUS_ACTIVE
            or trainer.current_epoch < record[S.REVISION_START_EPOCH]
        ):
            return
        if self._pending_cav is not None:
            self._adopt(self._pending_cav)
            self._pending_cav = None
        if self._hook is None:
            self._attach(pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The revision as plain Python values: the record, the CAV, the artifact paste, RR-ClArC's generator."""
        if self.record is None:
            return {}
        random_state = self._random_state
        if isinstance(self._hook, RRClArC):
            random_state = [int(v) for v in self._hook._generator.get_state().tolist()]
        paste = self._paste.state() if self.artifact is None and isinstance(self._paste, ArtifactPaste) else None
        return {
            "record": copy.deepcopy(self.record),
            "cav": None if self.cav is None else self.cav.state(),
            "pending_cav": None if self._pending_cav is None else self._pending_cav.state(),
            "paste": paste,
            "penalties": [float(p) for p in self._penalties],
            "random_state": random_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self.record = copy.deepcopy(state_dict["record"])
        self.cav = None if state_dict.get("cav") is None else CAV.from_state(state_dict["cav"])
        pending = state_dict.get("pending_cav")
        self._pending_cav = None if pending is None else CAV.from_state(pending)
        paste = state_dict.get("paste")
        self._paste = self.artifact or (None if paste is None else ArtifactPaste.from_state(paste))
        self._penalties = [float(p) for p in state_dict.get("penalties", [])]
        self._random_state = state_dict.get("random_state")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self._hook is None or self.method == "pclarc":
            return
        unpack = self._lrp.unpack_batch or default_unpack_batch
        labels = unpack(batch)[1]
        self._labels = labels if isinstance(labels, torch.Tensor) else None
        if isinstance(self._hook, AClArC):
            self._hook.set_labels(self._labels)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if not isinstance(self._hook, RRClArC) or not pl_module.training:
            return
        output = self._output
        if output is None:
            raise RuntimeError(
                f"{OWNER}: RR-ClArC needs the model's output of the training step; training_step must call the "
                "LightningModule itself (self(x)), whose forward returns the class scores"
            )
        penalty = self._hook.penalty(output, self._labels) / trainer.accumulate_grad_batches
        scaler = getattr(trainer.precision_plugin, "scaler", None)  # mixed precision: the loss here is scaled
        # into the loss, in place, so that its one backward pass carries the penalty's gradient too (a second
        # backward pass would mark DDP's parameters ready twice); Lightning logs the loss before this
        loss.add_(penalty if scaler is None else scaler.scale(penalty))
        self._penalties.append(float(penalty.detach()))
        self._output = None
        self._hook.activation = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self._lrp is None:
            return
        epoch = trainer.current_epoch
        penalty = self._epoch_penalty(trainer, pl_module)  # an all-reduce under DDP: called on every rank
        action, error = None, None
        if trainer.is_global_zero:  # the rank that runs the analysis and writes the store
            try:
                action = self._reveal_and_measure(trainer, pl_module, epoch, penalty)
            except Exception as exc:
                error = exc
        if trainer.world_size > 1:
            shared = trainer.strategy.broadcast(
                {
                    "failed": error is not None,
                    "record": self.record,
                    "cav": None if self.cav is None else self.cav.state(),
                    "action": action,
                },
                src=0,
            )
            if error is None and shared["failed"]:
                raise RuntimeError(f"{OWNER}: rank 0 failed at the end of epoch {epoch}; see its error message")
            if not trainer.is_global_zero:
                self.record = shared["record"]
                self.cav = None if shared["cav"] is None else CAV.from_state(shared["cav"])
                action = shared["action"]
        if error is not None:
            raise error
        if action == "attach":
            self._attach(pl_module)
        elif action == "refit":  # the hooks read their CAV at each call: the next epoch revises along the new one
            self._hook.cav = self.cav

    def _epoch_penalty(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        """RR-ClArC's mean penalty of the epoch's training steps, over every rank; None without any."""
        values, self._penalties = self._penalties, []
        if trainer.world_size > 1 and isinstance(self._hook, RRClArC):  # the same on every rank: attached together
            total = trainer.strategy.reduce(
                torch.tensor([sum(values), len(values)], dtype=torch.float64, device=pl_module.device),
                reduce_op="sum",
            )
            total_sum, count = float(total[0]), float(total[1])
            return total_sum / count if count else None
        return float(np.mean(values)) if values else None

    def _reveal_and_measure(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int, penalty: float | None
    ) -> str | None:
        """Rank 0's share of an epoch's end: choose a finding, measure, record; what every rank does next."""
        lrp_store = self._lrp.run_store
        if lrp_store is None:
            return None
        explained = epoch in {info.epoch for info in lrp_store.epochs()}  # (LRPCallback's every_n_epochs)
        if self.record is None and epoch >= self.from_epoch and explained:
            self._choose(trainer, pl_module, lrp_store, epoch)
        if self.record is None or self.record[S.REVISION_STATUS] != S.REVISION_STATUS_ACTIVE:
            return None
        values = self._measure(trainer, pl_module, lrp_store, epoch, penalty)
        self._log(trainer, values)
        self.record[S.REVISION_EPOCHS].append({"epoch": epoch, **values})
        lrp_store.record_revisions([self.record])
        if self.method is None:
            return None
        if epoch + 1 == self.record[S.REVISION_START_EPOCH]:
            return "attach"
        if self.refit_cav and explained:
            cav = self._refit(pl_module, epoch)
            last = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= epoch + 1
            if not last:
                self._adopt(cav)
                return "refit"
            # the fit's last epoch: the direction of the next epoch waits in the state for a resumed run, and the
            # projection that P-ClArC leaves on the model stays the one this epoch was revised with
            self._pending_cav = cav
        return None

    def _detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = self.pclarc = None
        if self._output_handle is not None:
            self._output_handle.remove()
            self._output_handle = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # the training-time hooks go; P-ClArC's projection stays (remove it with callback.pclarc.remove())
        if self._hook is not None and not isinstance(self._hook, PClArC):
            if isinstance(self._hook, RRClArC):  # kept for state_dict and a later fit
                self._random_state = [int(v) for v in self._hook._generator.get_state().tolist()]
            self._hook.remove()
            self._hook = None
        if self._output_handle is not None:
            self._output_handle.remove()
            self._output_handle = None
        self._output = self._labels = None

    # ------------------------------------------------------------------------------ reveal

    def _choose(self, trainer: pl.Trainer, pl_module: pl.LightningModule, store: S.RunStore, epoch: int) -> None:
        from lrp_lightning.analysis.findings import findings_from_table
        from lrp_lightning.analysis.pipeline import current_analysis_key

        self._lrp.finish_analysis(trainer)  # the epoch's analysis, finished
        key = current_analysis_key(store, epoch)
        if key is None:
            log.warning(
                "%s: epoch %d has no analysis (skipped by the background analysis); not revising yet", OWNER, epoch
            )
            return
        table = store.read_analysis_table(epoch, S.FINDINGS_TABLE, config_hash=key)
        grid = [int(v) for v in json.loads(table.schema.metadata[S.META_GRID_SHAPE])]
        findings = findings_from_table(table)
        if self.finding is not None:
            chosen = [f for f in findings if f.finding_id == self.finding]
        else:
            chosen = [f for f in findings if f.kind == S.FINDING_KIND_ARTIFACT and f.strength >= self.min_strength]
        if not chosen:
            self._nothing(store, final=epoch + 1 >= (trainer.max_epochs or 0))
            return
        finding = max(chosen, key=lambda f: f.strength)
        if not finding.category.startswith("class_"):
            raise ValueError(f"{OWNER}: finding {finding.finding_id} is not of one class; revise a class's finding")
        artifact_class = int(finding.category.split("_", 1)[1])
        ids, inputs, labels = self._probe_inputs(trainer, pl_module)
        members = np.isin(ids, finding.member_ids)
        self.cav = self._fit_cav(pl_module, finding.member_ids, artifact_class)
        self._paste = self.artifact or ArtifactPaste.from_finding(
            inputs[torch.from_numpy(members)].cpu(), finding.region_cells, grid
        )
        settings = {
            "layer": self.layer,
            "cav_method": self.cav_method,
            "cav_holdout": self.cav_holdout,
            "refit_cav": self.refit_cav,
        }
        settings.update(
            {
                "rrclarc": {"strength": self.strength, "rr_target": self.rr_target},
                "aclarc": {"aclarc_classes": self.aclarc_classes},
            }.get(self.method or "", {})
        )
        self.record = {
            S.REVISION_FINDING_ID: finding.finding_id,
            S.REVISION_CATEGORY: finding.category,
            S.REVISION_REGION: finding.region,
            S.REVISION_REGION_CELLS: [int(c) for c in finding.region_cells],
            S.REVISION_GRID: grid,
            S.REVISION_ARTIFACT_CLASS: artifact_class,
            S.REVISION_MEMBER_IDS: [int(i) for i in finding.member_ids],
            S.REVISION_METHOD: self.method,
            S.REVISION_SETTINGS: settings,
            S.REVISION_CAV: self.cav.summary(),
            S.REVISION_FOUND_EPOCH: epoch,
            S.REVISION_START_EPOCH: epoch + 1,
            S.REVISION_EPOCHS: [],
            S.REVISION_STATUS: S.REVISION_STATUS_ACTIVE,
        }
        self._say(
            f"{OWNER}: epoch {epoch}: revising finding {finding.finding_id} ({finding.summary()}) with "
            f"{self.method or 'nothing (measuring only)'} from epoch {epoch + 1}; "
            f"CAV ({self.cav_method}) in {self.layer}: "
            f"held-out AUC {self.cav.auc:.2f}, accuracy {self.cav.accuracy:.2f}"
        )

    def _fit_cav(self, pl_module: pl.LightningModule, member_ids: Any, artifact_class: int) -> Any:
        """The CAV of the finding's samples against the rest of their class, on the current model."""
        ids, inputs, labels = self._probe
        members = np.isin(ids, member_ids)
        in_class = labels.cpu().numpy() == artifact_class
        with untouched_training_state(pl_module):
            acts = layer_activations(pl_module, self.layer, inputs[torch.from_numpy(in_class)])
        return fit_cav(
            acts, members[in_class], layer=self.layer, method=self.cav_method, holdout=self.cav_holdout, seed=self.seed
        )

    def _refit(self, pl_module: pl.LightningModule, epoch: int) -> CAV:
        """``refit_cav``: the CAV of the model as it is now, in the layer's outputs without P-ClArC's projection.

        (A-ClArC's hook acts in training mode only and RR-ClArC's records with gradients only, so in the
        evaluation-mode, gradient-free fit they leave the outputs as they are.)
        """
        record = self.record
        projection = self._hook if isinstance(self._hook, PClArC) else None
        if projection is not None:
            projection.remove()
        try:
            cav = self._fit_cav(pl_module, record[S.REVISION_MEMBER_IDS], record[S.REVISION_ARTIFACT_CLASS])
        finally:
            if projection is not None:
                projection.attach(pl_module)
        self._say(
            f"{OWNER}: epoch {epoch}: CAV fitted again in {self.layer}: held-out AUC {cav.auc:.2f}, "
            f"accuracy {cav.accuracy:.2f}"
        )
        return cav

    def _adopt(self, cav: CAV) -> None:
        """Revise along ``cav`` from now on (the attached hooks included) and record it."""
        self.cav = cav
        self.record[S.REVISION_CAV] = cav.summary()
        if self._hook is not None:
            self._hook.cav = cav

    def _nothing(self, store: S.RunStore, final: bool = True) -> None:
        record = dict.fromkeys(S.REVISION_RECORD_KEYS)
        record[S.REVISION_METHOD] = self.method
        record[S.REVISION_EPOCHS] = []
        record[S.REVISION_STATUS] = S.REVISION_STATUS_NONE
        store.record_revisions([record])
        if final:
            self._say(f"{OWNER}: no finding matches (min_strength {self.min_strength}): nothing to revise")

    def _probe_inputs(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        if self._probe is None:
            self._probe = self._lrp.probe_tensors(trainer)
        return self._probe

    # ------------------------------------------------------------------------------ revise

    def _attach(self, pl_module: pl.LightningModule) -> None:
        c = self.record[S.REVISION_ARTIFACT_CLASS]
        if self.method == "pclarc":
            self._hook = self.pclarc = PClArC(self.cav).attach(pl_module)
        elif self.method == "aclarc":
            self._hook = AClArC(self.cav, c, self.aclarc_classes).attach(pl_module)
        else:
            hook = RRClArC(self.cav, c, self.strength, self.rr_target, self.seed)
            if self._random_state is not None:  # resumed: the random targets go on where the checkpoint left them
                hook._generator.set_state(torch.tensor(self._random_state, dtype=torch.uint8))
                self._random_state = None
            self._hook = hook.attach(pl_module)
            self._output_handle = pl_module.register_forward_hook(self._keep_output)

    def _keep_output(self, module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        # class scores only: under DDP, Lightning runs training_step through the module's own __call__ (its
        # forward redirection), so this hook also sees the step's loss (a scalar), after the scores
        if module.training and torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.dim() == 2:
            self._output = output

    # ------------------------------------------------------------------------------ measure

    def _measure(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, store: S.RunStore, epoch: int, penalty: float | None
    ) -> dict[str, float | None]:
        record = self.record
        c = record[S.REVISION_ARTIFACT_CLASS]
        ids, inputs, labels = self._probe_inputs(trainer, pl_module)  # (a resumed run fetches them again)
        members = np.isin(ids, record[S.REVISION_MEMBER_IDS])
        in_class = labels.cpu().numpy() == c
        if epoch in {info.epoch for info in store.epochs()}:  # explained this epoch (every_n_epochs)
            stored_ids, maps = store.heatmaps(epoch, ids[in_class])
            shares = region_share(maps, record[S.REVISION_REGION_CELLS], record[S.REVISION_GRID])
            member_rows = np.isin(stored_ids, record[S.REVISION_MEMBER_IDS])
        else:
            shares, member_rows = np.full(1, np.nan), np.zeros(1, dtype=bool)
        others = torch.from_numpy(~in_class)
        clean = torch.from_numpy(~members)
        with untouched_training_state(pl_module):
            sensitivity = artifact_sensitivity(pl_module, inputs[others], c, self._paste)
            clean_accuracy = accuracy(pl_module, inputs[clean], labels[clean])
        values = {
            "artifact_sensitivity": sensitivity,
            "finding_share": float(shares[member_rows].mean()) if member_rows.any() else None,
            "rest_share": float(shares[~member_rows].mean()) if (~member_rows).any() else None,
            "clean_accuracy": clean_accuracy,
            "revising": float(self.method is not None and epoch >= record[S.REVISION_START_EPOCH]),
            "penalty": penalty,
        }
        self._say(
            f"{OWNER}: epoch {epoch}: artifact sensitivity {sensitivity:.1%}, relevance in the region "
            f"{values['finding_share'] or float('nan'):.1%} (finding) vs {values['rest_share'] or float('nan'):.1%} "
            "(rest of the class), "
            f"clean accuracy {clean_accuracy:.3f}"
        )
        return values

    def _log(self, trainer: pl.Trainer, values: dict[str, float | None]) -> None:
        metrics = {S.revision_tag(k): float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def _say(self, message: str) -> None:
        (log.info if self.verbose else log.debug)(message)
        if self.verbose:
            print(message)
