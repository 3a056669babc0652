"""Guards for long unattended runs: stop at the first NaN loss, write checkpoints
atomically, never start a job in a finished run's folder (a sweep run again in its own
folder continues it), keep secrets out of the saved config."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from alexnet_lab.errors import TrainingDivergedError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)


class StopOnNonFiniteLoss(Callback):
    """Stop at the first NaN/inf training loss, before a checkpoint can store the
    broken weights (Lightning runs ModelCheckpoint after the other callbacks).

    EarlyStopping(check_finite=True) looks only at a validation metric, so a run
    could save an epoch of NaN weights first. Reading the loss syncs the GPU once a
    step, as the progress bar already does. All ranks decide together, or one rank
    would stop while the others wait for it forever.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        value = f"{loss.item()}" if not finite else "non-finite on another rank"
        saved = [c.last_model_path or c.best_model_path for c in trainer.checkpoint_callbacks]
        kept = sorted((p for p in saved if p and os.path.isfile(p)), key=os.path.getmtime)[-1:]
        advice = f"Lower optimizer.lr (it was {trainer.optimizers[0].param_groups[0]['lr']:g})"
        if kept:
            where = f"The last good checkpoint is kept: {kept[0]}. "
            advice += f" or check the data, then start again or resume with ckpt_path={kept[0]}."
        else:
            where = "No checkpoint had been written yet. "
            advice += " or check the data, then start again."
        # global_step counts the optimizer steps taken, this one included.
        raise TrainingDivergedError(
            f"The training loss became {value} at step {trainer.global_step - 1} (epoch "
            f"{trainer.current_epoch}, batch {batch_idx}; all counted from 0): training "
            f"diverged and was stopped. {where}{advice}"
        )


class LastCheckpoint(ModelCheckpoint):
    """checkpoints/last.ckpt: the state at the end of every epoch, overwritten each time.

    ModelCheckpoint(save_last=True) in Lightning 2.6 rewrites its last.ckpt only on steps
    where it also saves a top-k checkpoint: after an epoch that did not improve the
    monitored metric, "last" held an older state. Monitoring nothing, with one file kept,
    saves at every epoch end instead.

    It also carries the epoch's metrics (`final_metrics`), saved at the train epoch's end
    when the validation and training means of that epoch are both known: a job killed
    after training but before its metrics.json, run again, trains nothing and records
    these instead of nulls.
    """

    FILENAME = "last"

    def __init__(self, dirpath: str | Path, **kwargs: Any):
        super().__init__(
            dirpath=dirpath,
            filename=self.FILENAME,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
            save_on_train_epoch_end=True,
            **kwargs,
        )
        self.final_metrics: dict[str, Any] = {}

    @property
    def path(self) -> str | None:
        return self.best_model_path or None  # with no monitor, the one file it keeps

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before the save, so the file holds the metrics of the weights it holds.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.final_metrics = {"global_step": trainer.global_step, "metrics": metrics}
        super().on_train_epoch_end(trainer, pl_module)

    def metrics_at(self, global_step: int) -> dict[str, float] | None:
        """The metrics saved with the state at `global_step`, if that is the state saved."""
        if self.final_metrics.get("global_step") != global_step:
            return None
        return self.final_metrics["metrics"]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "final_metrics": self.final_metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.final_metrics = state_dict.pop("final_metrics", {})
        super().load_state_dict(state_dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, flushed to disk, then
    renamed over it: a kill at any moment leaves the old file or the new one, never
    part of one (Lightning's own save writes into the target file). Loading refuses
    pickled code: weights_only=True, which every checkpoint of this project passes.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # object stores: their own write semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None):
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)
