"""The paper's top-1/top-5 are micro averages (correct images / all images); torchmetrics'
default is macro (mean of per-class recalls). They differ on imbalanced labels."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lab.training.module import accuracy


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
