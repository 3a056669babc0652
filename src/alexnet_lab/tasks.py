"""The jobs the entry points run: train a model, evaluate a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from alexnet_lab.checks import (
    check_ablation_changes_something,
    check_checkpoint_fits,
    check_train_config,
)
from alexnet_lab.data import AlexNetDataModule
from alexnet_lab.errors import DataError
from alexnet_lab.jobs.folder import in_multirun, job_overrides, plain
from alexnet_lab.jobs.resume import prepare_resume
from alexnet_lab.redaction import redact_secrets, redacted_argv
from alexnet_lab.runs import build_callbacks
from alexnet_lab.tracking.loggers import build_loggers
from alexnet_lab.training.checkpoints import LastCheckpoint
from alexnet_lab.training.ddp import sweep_safe_strategy
from alexnet_lab.training.module import AlexNetClassifier
from alexnet_lab.training.ranks import SeedPerRank, batch_split
from alexnet_lab.training.restore import load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    # resume=RUN_DIR: that run's own config. Any run: the newest checkpoint in its own
    # folder (a resumed or requeued run) wins over ckpt_path.
    cfg, resumed_from = prepare_resume(cfg, job_overrides())
    check_train_config(cfg)  # out-of-range values: one clear error before anything is built
    if not resumed_from:
        check_ablation_changes_something(cfg)
    # The same seed on every rank (identical model init); SeedPerRank gives each rank its
    # own stream for dropout and PCA noise once the ranks exist.
    seed = L.seed_everything(cfg.seed, workers=True)

    datamodule: AlexNetDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()  # the class list (and so the model's width) needs the files
    model = AlexNetClassifier(
        net=plain(cfg.model),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")) or None,
        class_names=datamodule.classes,
        data=plain(cfg.data),
    )
    log.info(
        "%s: %s parameters, %d classes",
        cfg.model.arch,
        f"{model.num_parameters:,}",
        datamodule.num_classes,
    )
    if cfg.get("ckpt_path"):  # a clear error now rather than a state_dict mismatch in fit
        check_checkpoint_fits(load_checkpoint(cfg.ckpt_path), cfg.ckpt_path, model)

    loggers = build_loggers(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[*build_callbacks(cfg), SeedPerRank(seed)],
        **sweep_safe_strategy(cfg.trainer, in_sweep=in_multirun()),
    )
    batch = batch_split(datamodule, trainer)  # data.global_batch_size over the devices
    with redacted_argv():  # W&B records the command line when its run starts, here
        for logger in loggers:
            logger.log_hyperparams(redact_secrets(plain(cfg)))

    ckpt_path = resumed_from["checkpoint"] if resumed_from else cfg.get("ckpt_path")
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if resumed_from and trainer.global_step == resumed_from["global_step"]:
        # Nothing trained now (cut after training, before metrics.json): the final state's
        # own metrics, never nulls.
        metrics = final_metrics(trainer, model, datamodule)
    summary = {**summarize_fit(trainer, model, metrics), **batch}
    if resumed_from:
        summary["resumed_from"] = resumed_from
    return summary


def final_metrics(
    trainer: L.Trainer, model: AlexNetClassifier, datamodule: AlexNetDataModule
) -> dict[str, float]:
    """The metrics of the state a fit restored and did not train further: those last.ckpt
    saved with it, else (a checkpoint without them) the validation metrics measured now."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint):
            saved = callback.metrics_at(trainer.global_step)
            if saved is not None:
                return saved
    log.info("No metrics saved with the final state: validating it to record them.")
    (validated,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    return validated


def summarize_fit(
    trainer: L.Trainer, model: AlexNetClassifier, metrics: dict[str, float]
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "val/acc_top1": metrics.get("val/acc_top1"),
        "val/acc_top5": metrics.get("val/acc_top5"),
        "val/loss": metrics.get("val/loss"),
        "train/loss": metrics.get("train/loss_epoch"),
        "train/acc_top1": metrics.get("train/acc_top1"),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "params": model.num_parameters,
    }
    # The image counts a run actually used (subsets, held-out slice), for the study records.
    # A streaming dataset's len() is this rank's share: its manifest has the split's size.
    images_in = getattr(trainer.datamodule, "images_in", None)
    for name in ("train", "val", "holdout"):
        dataset = getattr(trainer.datamodule, f"{name}_set", None)
        if dataset is not None:
            summary[f"data/{name}_images"] = images_in(name) if images_in else len(dataset)
    if hasattr(trainer.datamodule, "skipped_files"):
        skipped = trainer.datamodule.skipped_files()  # every rank calls it: a collective
        summary["data/skipped_files"] = len(skipped)
        if skipped and trainer.is_global_zero:
            listing = Path(trainer.default_root_dir) / "skipped_files.txt"
            listing.write_text("".join(f"{path}\n" for path in skipped))
            summary["data/skipped_list"] = str(listing)
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, ModelCheckpoint):
        summary["best_checkpoint"] = checkpoint.best_model_path or None
        last = [c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)]
        summary["last_checkpoint"] = last[0].path if last else checkpoint.last_model_path or None
        if checkpoint.best_model_score is not None:
            summary[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    return summary


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Centre-crop and 10-crop top-1/top-5 of a checkpoint on a val/ split."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    model = model_from_checkpoint(checkpoint)
    hparams = checkpoint["hyper_parameters"]
    data_cfg = {**hparams["data"], **{k: v for k, v in plain(cfg.data).items() if v is not None}}
    if cfg.data.get("batch_size") is not None:  # a batch given here replaces a trained global one
        data_cfg["global_batch_size"] = None

    results: dict[str, Any] = {"ckpt_path": str(cfg.ckpt_path), "params": model.num_parameters}
    for ten_crop, suffix in ((False, ""), (True, "_10crop")):
        datamodule = hydra.utils.instantiate(data_cfg, ten_crop=ten_crop)
        datamodule.prepare_data()
        if datamodule.classes != hparams["class_names"]:
            raise DataError(
                f"The classes under {data_cfg.get('root')} do not match the checkpoint's "
                f"{len(hparams['class_names'])} classes (same names, same order). Evaluate on "
                f"data with the class folders the model was trained on."
            )
        trainer: L.Trainer = hydra.utils.instantiate(
            cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False
        )
        (scores,) = trainer.test(model, datamodule=datamodule, verbose=False)
        results.update({f"{k}{suffix}": float(v) for k, v in scores.items()})
        results["data/skipped_files"] = len(datamodule.skipped_files())
    for key in sorted(k for k in results if k.startswith("eval/")):
        log.info("%-24s %.4f", key, results[key])
    return results
