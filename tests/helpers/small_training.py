"""A small AlexNetClassifier and a Trainer that only trains it: for the tests of what the
module logs and shows per step."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from alexnet_lab.training.module import AlexNetClassifier


def small_classifier(lr: float = 0.01) -> AlexNetClassifier:
    """alexnet_small over 10 classes, plain SGD, no scheduler."""
    return AlexNetClassifier(
        {"_target_": "alexnet_lab.models.AlexNet", "arch": "alexnet_small"},
        {"_target_": "torch.optim.SGD", "lr": lr},
        scheduler=None,
        class_names=[str(i) for i in range(10)],
    )


def train_only(
    model: L.LightningModule, images: int, batch_size: int, **trainer_kwargs: Any
) -> L.Trainer:
    """Fit `model` on `images` random 32x32 images (alexnet_small's input), in batches of
    `batch_size`, with no logger, checkpoint, progress bar, summary or validation unless
    `trainer_kwargs` say otherwise."""
    trainer = L.Trainer(
        **{
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            **trainer_kwargs,
        }
    )
    data = TensorDataset(torch.randn(images, 3, 32, 32), torch.arange(images) % 10)
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=batch_size))
    return trainer
