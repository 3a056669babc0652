"""Lightning callbacks the configs switch on (conf/callbacks/)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid


class LossProgressBar(TQDMProgressBar):
    """Lightning's bar, with the last logged step loss (`train/loss_step`, logged every
    trainer.log_every_n_steps) read when the bar refreshes.

    A value logged with prog_bar=True is read to the host after every batch (a GPU sync
    per step); this bar reads the loss every `refresh_rate` steps instead.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train/loss_step")
        if loss is not None:
            metrics["loss"] = float(loss)
        return metrics


class ImagesPerSecond(Callback):
    """Training throughput, all ranks together, once per epoch: `train/images_per_sec`.

    Lightning's ThroughputMonitor reports only once a window of batches is full and
    changes its key with the world size; one comparable number per epoch is what a
    dashboard of ablations needs. Time runs from the first to the last training batch
    of the epoch (validation excluded).
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._last = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._images = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        self._images += len(batch[0])
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is None or self._last <= self._start:
            return
        rate = self._images * trainer.world_size / (self._last - self._start)
        pl_module.log("train/images_per_sec", rate, on_epoch=True, rank_zero_only=True)


class ValidationPredictions(Callback):
    """W&B and TensorBoard: validation images captioned `pred / true`, and the validation
    confusion matrix when there are at most `max_classes` classes. W&B gets captioned
    images and its confusion-matrix chart; TensorBoard the same names: an image grid with
    its captions as text, and the matrix as a row-normalised heat map with its counts as
    a text table.

    Reads the scores validation_step returns, so nothing is computed twice. The
    confusion matrix is a torchmetrics metric: under DDP it sums every rank's part.
    """

    def __init__(self, num_images: int = 16, max_classes: int = 100, every_n_epochs: int = 1):
        self.num_images = num_images
        self.max_classes = max_classes
        self.every_n_epochs = every_n_epochs
        self.confmat: MulticlassConfusionMatrix | None = None
        self._samples: list[tuple[torch.Tensor, int, int]] = []

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            not trainer.sanity_checking
            and any(isinstance(lg, (WandbLogger, TensorBoardLogger)) for lg in trainer.loggers)
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def _class_names(self, pl_module: L.LightningModule) -> list[str]:
        names = pl_module.hparams.get("class_names")
        return list(names) if names else []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._samples = []
        num_classes = len(self._class_names(pl_module))
        if self._active(trainer) and 2 <= num_classes <= self.max_classes:
            self.confmat = MulticlassConfusionMatrix(num_classes).to(pl_module.device)
        else:
            self.confmat = None

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._active(trainer) or not isinstance(outputs, torch.Tensor):
            return
        images, targets = batch
        preds = outputs.argmax(-1)
        if self.confmat is not None:
            self.confmat.update(preds, targets)
        if trainer.is_global_zero and len(self._samples) < self.num_images:
            if images.dim() == 5:  # ten-crop views: show the first (a corner crop)
                images = images[:, 0]
            for image, pred, target in zip(images, preds.tolist(), targets.tolist(), strict=True):
                if len(self._samples) >= self.num_images:
                    break
                self._samples.append((image.detach().float().cpu(), pred, target))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return
        # compute() gathers from every rank, so every rank must call it.
        matrix = self.confmat.compute().cpu() if self.confmat is not None else None
        if not trainer.is_global_zero:
            return
        names = self._class_names(pl_module)
        captions = [f"pred {names[p]} / true {names[t]}" for _, p, t in self._samples]
        images = [_to_uint8(image) for image, _, _ in self._samples]
        step = trainer.global_step  # the x-axis of Lightning's scalars in both
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                _log_wandb(logger, images, captions, matrix, names, step)
            elif isinstance(logger, TensorBoardLogger):
                _log_tensorboard(logger.experiment, images, captions, matrix, names, step)


def _log_wandb(logger: WandbLogger, images, captions, matrix, names, step: int) -> None:
    import wandb

    logged: dict[str, Any] = {}
    if images:
        logged["val/predictions"] = [
            wandb.Image(image, caption=caption)
            for image, caption in zip(images, captions, strict=True)
        ]
    if matrix is not None:
        logged["val/confusion_matrix"] = _confusion_matrix_plot(wandb, matrix, names)
    if logged:
        logger.log_metrics(logged, step=step)


def _log_tensorboard(writer: Any, images, captions, matrix, names, step: int) -> None:
    if images:
        chw = torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image in images])
        grid = make_grid(chw.float() / 255, nrow=math.ceil(math.sqrt(len(images))))
        writer.add_image("val/predictions", grid, step)
        writer.add_text(
            "val/predictions", "\n".join(f"{i}. {c}" for i, c in enumerate(captions)), step
        )
    if matrix is not None:
        rows = matrix.float() / matrix.sum(1, keepdim=True).clamp_min(1)
        cell = max(1, 256 // len(names))  # a few hundred pixels across, whatever the classes
        heat = rows.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
        writer.add_image("val/confusion_matrix", heat.unsqueeze(0), step)  # rows: true class
        header = "| true \\ predicted | " + " | ".join(names) + " |"
        lines = [header, "|---" * (len(names) + 1) + "|"]
        lines += [
            f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |"
            for name, row in zip(names, matrix, strict=True)
        ]
        writer.add_text("val/confusion_matrix", "\n".join(lines), step)


def _to_uint8(image: torch.Tensor) -> Any:
    """A normalised CHW image as HWC uint8, stretched to the full range for viewing."""
    lo, hi = image.min(), image.max()
    image = (image - lo) / (hi - lo).clamp_min(1e-8)
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def _confusion_matrix_plot(wandb: Any, matrix: torch.Tensor, names: list[str]) -> Any:
    """W&B's confusion-matrix panel from counts (wandb.plot.confusion_matrix wants
    per-sample predictions; the counts are what DDP gathers)."""
    data = [
        [names[i], names[j], int(matrix[i, j])]
        for i in range(len(names))
        for j in range(len(names))
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return wandb.plot_table(
        "wandb/confusion_matrix/v1", table, fields, {"title": "Validation confusion matrix"}
    )
