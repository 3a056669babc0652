"""The LightningModule: AlexNet, the paper's SGD recipe, micro top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lab.models import count_parameters


def accuracy(num_classes: int, top_k: int) -> MulticlassAccuracy:
    # torchmetrics defaults to macro averaging; the paper's top-1/top-5 are micro.
    return MulticlassAccuracy(num_classes, top_k=min(top_k, num_classes), average="micro")


class AlexNetClassifier(L.LightningModule):
    """Everything is stored as plain dicts/lists in the checkpoint's hyper_parameters,
    so `torch.load(weights_only=True)` reads it and the net can be rebuilt from it.

    net: the network's config (`_target_` + kwargs, from conf/model); `compile`
        there compiles the network only (compiling the whole module fails).
    optimizer / scheduler: `_target_` configs instantiated in configure_optimizers;
        the scheduler's Lightning keys (monitor, interval) sit under its `lightning` key.
    class_names: folder names in class-index order, so predictions map back.
    data: the data config the net was trained with (preprocessing for eval/predict).
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        net_kwargs = {k: v for k, v in net.items() if k != "compile"}
        num_classes = len(class_names) if class_names else net_kwargs.get("num_classes", 1000)
        net_kwargs["num_classes"] = num_classes
        self.net: nn.Module = hydra.utils.instantiate(net_kwargs)
        self.compile_net = bool(net.get("compile", False))
        self.criterion = nn.CrossEntropyLoss()
        self.train_top1 = accuracy(num_classes, 1)
        self.val_top1 = accuracy(num_classes, 1)
        self.val_top5 = accuracy(num_classes, 5)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.net)

    def configure_model(self) -> None:
        # nn.Module.compile compiles in place: unlike `self.net = torch.compile(self.net)`
        # the state_dict keys stay `net.*`, so checkpoints load into an uncompiled model.
        if self.compile_net and getattr(self.net, "_compiled_call_impl", None) is None:
            self.net.compile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets)
        self.train_top1(logits, targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc_top1", self.train_top1, on_step=False, on_epoch=True)
        return loss

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities; a (B, V, C, H, W) batch of views is softmax-averaged (10-crop)."""
        if images.dim() == 5:
            b, v = images.shape[:2]
            return self(images.flatten(0, 1)).softmax(-1).view(b, v, -1).mean(1)
        return self(images).softmax(-1)

    def _eval_step(self, batch, prefix: str) -> torch.Tensor:
        images, targets = batch
        if images.dim() == 5:
            probs = self.predict_proba(images)
            loss = nn.functional.nll_loss(probs.clamp_min(1e-12).log(), targets)
            scores = probs
        else:
            scores = self(images)
            loss = self.criterion(scores, targets)
        self.val_top1(scores, targets)
        self.val_top5(scores, targets)
        self.log(f"{prefix}/loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{prefix}/acc_top1", self.val_top1, prog_bar=True)
        self.log(f"{prefix}/acc_top5", self.val_top5)
        # Callbacks (confusion matrix, prediction grid) read these scores.
        return scores.detach()

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "eval")

    def configure_optimizers(self):
        optimizer = hydra.utils.instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        lightning_keys = scheduler_cfg.pop("lightning", None) or {}
        scheduler = hydra.utils.instantiate(scheduler_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
