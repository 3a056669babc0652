"""Checkpoints a long unattended run can trust: stop at the first non-finite loss before a
checkpoint stores it, write checkpoints atomically, and a `last.ckpt` that carries the
final metrics (a job cut before its metrics.json is completed from it)."""

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

from alexnet_lab.errors import ConfigError, TrainingDivergedError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)


class StopOnNonFiniteLoss(Callback):
    """Stop at the first NaN/inf training loss, before a checkpoint can store the
    broken weights.

    EarlyStopping(check_finite=True) looks only at a validation metric, so a run
    could save an epoch of NaN weights first. The losses are kept as they are (on the
    device) and read together every `every_n_steps` optimizer steps, before any checkpoint
    is saved (`on_save_checkpoint`), before validation and at the end of an epoch: one
    device sync per check instead of one per step (make bench's loop table). The error
    names the first non-finite step. All ranks decide together at the same points, or one
    rank would stop while the others wait for it forever.
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        whole = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if not whole or every_n_steps < 1:
            raise ConfigError(
                f"callbacks.stop_on_nonfinite_loss.every_n_steps={every_n_steps}: use a whole "
                f"number of optimizer steps >= 1."
            )
        self.every_n_steps = every_n_steps
        self._losses: list[torch.Tensor] = []  # since the last check, on the device
        self._where: list[tuple[int, int, int]] = []  # (step, epoch, batch) of each

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach())
            # global_step counts the optimizer steps taken, this one included.
            self._where.append((trainer.global_step - 1, trainer.current_epoch, batch_idx))
        if trainer.global_step % self.every_n_steps == 0:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        self.check(trainer)  # raising here leaves the file on disk as it was

    def check(self, trainer: L.Trainer) -> None:
        """Raise TrainingDivergedError if a loss kept since the last check is not finite."""
        losses, where = self._losses, self._where
        self._losses, self._where = [], []
        finite = torch.ones(0, dtype=torch.bool)
        if losses:  # one row per step: a loss may hold more than one number
            finite = torch.isfinite(torch.stack(losses).reshape(len(losses), -1)).all(1)
        ok = bool(finite.all())  # the one device sync
        if trainer.strategy.reduce_boolean_decision(ok, all=True):
            return
        if ok:
            value = "non-finite on another rank"
            step, epoch, batch_idx = (
                where[-1] if where else (trainer.global_step - 1, trainer.current_epoch, "?")
            )
        else:
            first = int((~finite).nonzero()[0])
            value, (step, epoch, batch_idx) = f"{losses[first].item()}", where[first]
        saved = [c.last_model_path or c.best_model_path for c in trainer.checkpoint_callbacks]
        kept = sorted((p for p in saved if p and os.path.isfile(p)), key=os.path.getmtime)[-1:]
        advice = f"Lower optimizer.lr (it was {trainer.optimizers[0].param_groups[0]['lr']:g})"
        if kept:
            where_kept = f"The last good checkpoint is kept: {kept[0]}. "
            advice += f" or check the data, then start again or resume with ckpt_path={kept[0]}."
        else:
            where_kept = "No checkpoint had been written yet. "
            advice += " or check the data, then start again."
        raise TrainingDivergedError(
            f"The training loss became {value} at step {step} (epoch {epoch}, batch "
            f"{batch_idx}; all counted from 0): training diverged and was stopped. "
            f"{where_kept}{advice}"
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
