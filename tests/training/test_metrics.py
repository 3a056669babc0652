"""The paper's top-1/top-5 are micro averages (correct images / all images); torchmetrics'
default is macro (mean of per-class recalls). They differ on imbalanced labels. The
training loss is a mean over images too, with NaN batches kept in it."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
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
    """A criterion whose value is chosen per batch size (kept in the graph for backward)."""

    def __init__(self, by_batch_size: dict[int, float]):
        super().__init__()
        self.by_batch_size = by_batch_size

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0 + self.by_batch_size[len(targets)]


def epoch_train_loss(by_batch_size: dict[int, float]) -> float:
    """train/loss_epoch of one epoch over 5 images in batches of 4 and 1."""
    model = AlexNetClassifier(
        {"_target_": "alexnet_lab.models.AlexNet", "arch": "alexnet_small"},
        {"_target_": "torch.optim.SGD", "lr": 0.0},
        scheduler=None,
        class_names=[str(i) for i in range(10)],
    )
    model.criterion = FixedBatchLoss(by_batch_size)
    data = TensorDataset(torch.randn(5, 3, 32, 32), torch.arange(5))  # alexnet_small's input
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=4))
    return float(trainer.callback_metrics["train/loss_epoch"])


def test_the_epoch_training_loss_weighs_each_batch_by_its_images():
    """(4 x 1.0 + 1 x 6.0) / 5 = 2.0; a mean of batch means would say 3.5. Guards the
    NaN-check-free MeanMetric: torchmetrics' nan_strategy="disable" drops `weight`
    (Lightning-AI/torchmetrics#3434)."""
    assert epoch_train_loss({4: 1.0, 1: 6.0}) == pytest.approx(2.0)


def test_a_nan_batch_loss_makes_the_epoch_training_loss_nan_not_dropped():
    """A NaN batch is not left out of the mean (torchmetrics' default removes it with a
    warning): a diverged epoch reads as NaN wherever it is logged."""
    assert math.isnan(epoch_train_loss({4: 1.0, 1: math.nan}))
