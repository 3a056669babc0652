"""The paper's top-1/top-5 are micro averages (correct images / all images); torchmetrics'
default is macro (mean of per-class recalls). They differ on imbalanced labels. The
training loss is a mean over images too, with NaN batches kept in it."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers.small_training import small_classifier, train_only
from lightning.pytorch.loggers import Logger
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lab.training.module import AlexNetClassifier, accuracy


def test_top1_is_micro_on_imbalanced_labels():
    # 8 images of class 0, all right; 2 of class 1, both wrong; 3 classes.
    targets = torch.tensor([0] * 8 + [1] * 2)
    logits = torch.zeros(10, 3)
    logits[:, 0] = 1.0  # always predicts class 0
    top1 = accuracy(3, 1)
    top1.update(logits, targets)
    assert float(top1.compute()) == pytest.approx(0.8)  # 8 of 10 images
    macro = MulticlassAccuracy(3, average="macro")
    macro.update(logits, targets)
    assert float(macro.compute()) < 0.6  # per-class recalls 1 and 0: the default would say so


def test_top5_caps_at_the_number_of_classes_and_counts_images():
    targets = torch.tensor([0, 1, 2, 2, 2, 2])
    logits = torch.tensor([[0.0, 1.0, 2.0]] * 6)  # ranking: 2, 1, 0
    top2 = accuracy(3, 2)
    top2.update(logits, targets)
    assert float(top2.compute()) == pytest.approx(5 / 6)  # class 0 is third: one miss in six images
    assert accuracy(3, 5).top_k == 3


# --- the training loss: a mean over images, read from the device only when shown -------


class FixedBatchLoss(torch.nn.Module):
    """A criterion whose value is chosen per epoch and batch size (kept in the graph)."""

    def __init__(self, by_epoch: list[dict[int, float]]):
        super().__init__()
        self.by_epoch, self.epoch = by_epoch, 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0 + self.by_epoch[self.epoch][len(targets)]


class EpochLosses(L.Callback):
    """train/loss_epoch of each epoch, read once its epoch is over."""

    def __init__(self, criterion: FixedBatchLoss):
        self.criterion, self.losses = criterion, []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self.losses.append(float(trainer.callback_metrics["train/loss_epoch"]))
        self.criterion.epoch = trainer.current_epoch

    def on_train_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss_epoch"]))


def epoch_train_losses(*by_epoch: dict[int, float]) -> list[float]:
    """train/loss_epoch of each epoch over 5 images in batches of 4 and 1."""
    model = small_classifier(lr=0.0)
    model.criterion = FixedBatchLoss(list(by_epoch))
    record = EpochLosses(model.criterion)
    train_only(model, images=5, batch_size=4, max_epochs=len(by_epoch), callbacks=[record])
    return record.losses


def epoch_train_loss(by_batch_size: dict[int, float]) -> float:
    (loss,) = epoch_train_losses(by_batch_size)
    return loss


def test_the_epoch_training_loss_weighs_each_batch_by_its_images():
    """(4 x 1.0 + 1 x 6.0) / 5 = 2.0; a mean of batch means would say 3.5. Guards the
    NaN-check-free MeanMetric: torchmetrics' nan_strategy="disable" drops `weight`
    (Lightning-AI/torchmetrics#3434)."""
    assert epoch_train_loss({4: 1.0, 1: 6.0}) == pytest.approx(2.0)


def test_a_nan_batch_loss_makes_the_epoch_training_loss_nan_not_dropped():
    """A NaN batch is not left out of the mean (torchmetrics' default removes it with a
    warning): a diverged epoch reads as NaN wherever it is logged."""
    assert math.isnan(epoch_train_loss({4: 1.0, 1: math.nan}))


def test_each_epoch_s_training_loss_is_its_own_images_mean():
    """Epoch 1's mean (3.0) is not pooled with epoch 0's (2.0): the metric is reset."""
    assert epoch_train_losses({4: 1.0, 1: 6.0}, {4: 3.0, 1: 3.0}) == pytest.approx([2.0, 3.0])


def test_no_metric_object_is_logged_per_training_step(monkeypatch):
    """Lightning moves a logged value's state to the device at every self.log call (~0.7 ms
    each on a CPU for a Metric object, ~0.8 ms for a tensor's, measured with cProfile):
    the module logs the step loss only on the steps the Trainer writes to its loggers,
    and the epoch's Metric objects once, at the epoch's end."""
    calls: list[tuple[str, str, bool]] = []
    log = AlexNetClassifier.log

    def recording_log(self, name, value, *args, **kwargs):
        calls.append((self._current_fx_name, name, isinstance(value, Metric)))
        return log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(AlexNetClassifier, "log", recording_log)
    assert epoch_train_loss({4: 1.0, 1: 6.0}) == pytest.approx(2.0)  # 2 steps, none logged
    assert not [call for call in calls if call[0] == "training_step"]
    at_epoch_end = {name for fx, name, is_metric in calls if fx == "on_train_epoch_end"}
    assert {"train/loss_epoch", "train/acc_top1"} <= at_epoch_end


class Written(Logger):
    """What a logger is given, step by step."""

    name, version = "written", 0

    def __init__(self):
        super().__init__()
        self.rows: dict[int, dict[str, float]] = {}

    @property
    def experiment(self):
        return None

    def log_metrics(self, metrics, step=None):
        self.rows.setdefault(step, {}).update(metrics)

    def log_hyperparams(self, *args, **kwargs):
        pass


class StepLosses(L.Callback):
    def __init__(self):
        self.by_step: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.by_step[trainer.global_step - 1] = float(outputs["loss"])


def test_the_step_loss_reaches_the_loggers_at_their_steps_as_that_batch_s_loss():
    written, losses = Written(), StepLosses()
    train_only(
        small_classifier(),
        images=14,
        batch_size=2,
        max_epochs=2,  # 7 batches an epoch: logging steps fall mid-epoch and across epochs
        log_every_n_steps=5,
        logger=written,
        callbacks=[losses],
    )
    logged = {
        step: row["train/loss_step"]
        for step, row in written.rows.items()
        if "train/loss_step" in row
    }
    assert sorted(logged) == [4, 9]
    assert logged == pytest.approx({step: losses.by_step[step] for step in logged})
