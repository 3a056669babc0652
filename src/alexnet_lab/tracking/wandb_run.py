"""A W&B run: who it is (name, group, tags, job type, id; the names from jobs/naming.py)
and what it records.

Every sweep job is its own run, named after its overrides and grouped by its sweep, so
the dashboard compares the jobs of one sweep at a glance. The identity is stored in the
run folder (wandb_run.json) on first use: a resumed or requeued run reads it back and
continues the same W&B run instead of starting a new one.

What a run records beyond Lightning's defaults (LabWandbLogger, conf/logger/wandb.yaml):
epoch-level metrics against `epoch`, best and final values in the summary, only the
monitored checkpoint as a model artifact, and (opt-in) the data's identity as an artifact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from alexnet_lab.files import atomic_write
from alexnet_lab.jobs.naming import (
    IDENTITY_FILE,
    ablation_tags,
    arm_name,
    new_run_id,
    run_group,
    run_name,
)
from alexnet_lab.training.checkpoints import LastCheckpoint
from alexnet_lab.training.lightning_private import WandbCheckpointUpload


def wandb_identity(cfg: DictConfig, logger_cfg: DictConfig, overrides: list[str]) -> dict:
    """WandbLogger kwargs: id/name/group from the run folder if a run started there
    before, else from the config (null: derived) and then stored."""
    output_dir = Path(cfg.paths.output_dir)
    path = output_dir / IDENTITY_FILE
    if path.is_file():
        identity = json.loads(path.read_text())
    else:
        identity = {
            "id": logger_cfg.get("id") or new_run_id(),
            "name": logger_cfg.get("name") or run_name(cfg, overrides),
            "group": logger_cfg.get("group") or run_group(cfg),
            "arm": arm_name(overrides),
        }
        if rank_zero_only.rank == 0:
            output_dir.mkdir(parents=True, exist_ok=True)
            # Atomically: a half-written file would be read back as the run's identity.
            with atomic_write(path) as f:
                f.write(json.dumps(identity, indent=2) + "\n")
    kwargs: dict[str, Any] = {
        **{key: identity[key] for key in ("id", "name", "group")},
        "tags": list(logger_cfg.get("tags") or ablation_tags(cfg)),
        "job_type": logger_cfg.get("job_type") or str(cfg.get("task_name", "train")),
        # Same id again (resume, requeue): continue that run.
        "resume": "allow",
    }
    if str(logger_cfg.get("_target_")).endswith(".LabWandbLogger"):
        # The dashboard groups a sweep's runs by it (a run from before it existed: its name).
        kwargs["arm"] = identity.get("arm", identity["name"])
    return kwargs


# ------------------------------------------------------------ what a run records

# Summarised as their best over epochs (W&B's define_metric), and kept as plain numbers
# under best/<key> and final/<key> for tables, bar charts and parallel coordinates.
BEST_OF = {"val/acc_top1": "max", "val/acc_top5": "max", "val/loss": "min"}


def is_last_checkpoint(checkpoint_callback: Any) -> bool:
    return isinstance(checkpoint_callback, LastCheckpoint)


@dataclass
class LatestOnly:
    """What WandbLogger reads of a checkpoint callback, for a file that is only `latest`."""

    last_model_path: str
    current_score: None = None
    best_model_path: str = ""


class LabWandbLogger(WandbCheckpointUpload):
    """Lightning's WandbLogger with summaries that answer "which arm did better":

    - epoch-level metrics (every key but `*_step`) are plotted against `epoch`;
      step-level ones keep Lightning's x-axis, `trainer/global_step`;
    - `val/acc_top1` and `val/acc_top5` summarise as their maximum, `val/loss` as its
      minimum; `best/<key>` and `final/<key>` hold the best and the last value;
    - log_model uploads the monitored checkpoint (aliases `best` and `latest`), not the
      rolling step checkpoints kept for crash recovery (unless they are the only ones);
    - log_dataset: true logs the data's identity as a `dataset` artifact the run uses
      (DatasetArtifact, added by alexnet_lab.runs.build_callbacks).
    """

    def __init__(
        self, *args: Any, log_dataset: bool = False, arm: str | None = None, **kwargs: Any
    ) -> None:
        if arm is not None:  # W&B config `arm`: the dashboard's grouping key
            kwargs["config"] = {**kwargs.get("config", {}), "arm": arm}
        if kwargs.get("offline") and kwargs.get("log_model"):
            # Lightning refuses this pair, but an offline W&B run keeps its artifacts and
            # `wandb sync` uploads them with the rest.
            kwargs.update(offline=False, mode="offline")
        super().__init__(*args, **kwargs)
        self.log_dataset = log_dataset
        self._defined: set[str] = set()
        self._best: dict[str, float] = {}
        self._monitored_checkpoint_seen = False
        self._unmonitored_checkpoints: dict[int, ModelCheckpoint] = {}

    def _define(self, run: Any, keys: set[str]) -> None:
        if not self._defined:
            run.define_metric("epoch")
        for key in sorted(k for k in keys if not k.endswith("_step")):
            run.define_metric(key, step_metric="epoch", step_sync=True, summary=BEST_OF.get(key))
        self._defined |= keys

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        run = self.experiment
        new = set(metrics) - self._defined - {"epoch", "trainer/global_step"}
        if new:
            self._define(run, new)
        super().log_metrics(metrics, step)
        summary = {}
        for key, goal in BEST_OF.items():
            if key not in metrics or math.isnan(value := float(metrics[key])):
                continue
            best = self._best.get(key, run.summary.get(f"best/{key}"))  # resumed: its best so far
            if best is None or (value > best if goal == "max" else value < best):
                best = value
            self._best[key] = best
            summary |= {f"best/{key}": best, f"final/{key}": value}
        if summary:
            run.summary.update(summary)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if is_last_checkpoint(checkpoint_callback):
            super().after_save_checkpoint(checkpoint_callback)  # uploaded as `latest` only
            return
        # An unmonitored checkpoint's "best" is merely its newest file: at the end it would
        # take the `best` alias from the checkpoint that tracks val/acc_top1.
        if getattr(checkpoint_callback, "monitor", None) is None:
            self._unmonitored_checkpoints[id(checkpoint_callback)] = checkpoint_callback
            return
        self._monitored_checkpoint_seen = True
        super().after_save_checkpoint(checkpoint_callback)

    def checkpoint_to_scan(self, checkpoint_callback: ModelCheckpoint) -> Any:
        if is_last_checkpoint(checkpoint_callback):
            # Its one file is the final state, not the best: shown to Lightning as a "last"
            # file, it gets the `latest` alias and never `best`.
            return LatestOnly(checkpoint_callback.path or "")
        return checkpoint_callback

    def checkpoints_at_finalize(self) -> dict[int, ModelCheckpoint]:
        # No monitored checkpoint at all: then the rolling ones are the only files to keep.
        return {} if self._monitored_checkpoint_seen else self._unmonitored_checkpoints

    @rank_zero_only
    def use_dataset(self, identity: dict[str, Any]) -> None:
        """The data's identity as a `dataset` artifact this run uses (runs on other data use
        another artifact or version) and, for the runs table, in the config as `dataset`.
        W&B refuses use_artifact offline: an offline run logs the artifact as its own, and
        `wandb sync` uploads it."""
        import wandb

        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(identity["root"])).name).strip("-.")
        artifact = wandb.Artifact(
            f"dataset-{slug or 'data'}",
            type="dataset",
            description=f"{identity['file_count']} files, {len(identity['classes'])} classes",
            metadata=identity,
        )
        with artifact.new_file("identity.json") as f:
            json.dump(identity, f, indent=2)
        run = self.experiment
        shown = {k: identity[k] for k in ("root", "file_count", "file_list_sha256")}
        run.config.update({"dataset": shown}, allow_val_change=True)
        if run.settings.mode in ("offline", "dryrun"):
            run.log_artifact(artifact)
        else:
            run.use_artifact(artifact)


def dataset_identity(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """Root, class list, file count and a hash of the file list (split, path relative to
    the root, class index) of what the run trains and validates on. A split without a file
    list (data=synthetic's generated images) stands in as its size and dataset type."""
    root = getattr(datamodule, "root", None)
    listing, file_count = [], 0
    for split in ("train", "val", "holdout"):
        dataset = getattr(datamodule, f"{split}_set", None)
        if dataset is None:
            continue
        samples = getattr(dataset, "samples", None)
        if samples is None:
            listing.append(f"{split}\t{len(dataset)} items of {type(dataset).__name__}")
            continue
        file_count += len(samples)
        listing += [f"{split}\t{os.path.relpath(path, root)}\t{label}" for path, label in samples]
    return {
        "root": str(root) if root is not None else type(datamodule).__name__,
        "classes": list(datamodule.classes),
        "file_count": file_count,
        "file_list_sha256": hashlib.sha256("\n".join(listing).encode()).hexdigest(),
    }


class DatasetArtifact(Callback):
    """Once training data is set up: the dataset identity to every W&B logger that asks."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if getattr(lg, "log_dataset", False)]
        if loggers and trainer.is_global_zero:
            identity = dataset_identity(trainer.datamodule)
            for logger in loggers:
                logger.use_dataset(identity)
