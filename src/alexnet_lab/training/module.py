"""The LightningModule: AlexNet, the paper's SGD recipe, micro top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lab.checks import check_inputs_fit
from alexnet_lab.errors import ConfigError
from alexnet_lab.models import count_parameters


def accuracy(num_classes: int, top_k: int) -> MulticlassAccuracy:
    # torchmetrics defaults to macro averaging; the paper's top-1/top-5 are micro.
    return MulticlassAccuracy(num_classes, top_k=min(top_k, num_classes), average="micro")


class MeanOverImages(MeanMetric):
    """A batch's mean loss, averaged over images, with no host read per update.

    MeanMetric's NaN check reads two values from the device at every update (a GPU sync
    per step); nan_strategy="disable" skips it, and a NaN batch then stays in the mean
    instead of being dropped. Under "disable" torchmetrics replaces `weight` by ones
    (Lightning-AI/torchmetrics#3434), so the batch mean is given once per image instead.
    """

    def __init__(self) -> None:
        super().__init__(nan_strategy="disable")

    def update(self, batch_mean: torch.Tensor, images: int) -> None:
        super().update(batch_mean.detach().expand(images))


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
        # The held-out training slice (data.holdout_per_class), scored as a second val loader.
        self.holdout_top1 = accuracy(num_classes, 1)
        self.holdout_top5 = accuracy(num_classes, 5)
        # Mean loss per image, weighted by batch size. Like the accuracies it is summed over
        # ranks once at epoch end: exact under DDP, where ranks may run different numbers
        # of validation batches (no image is repeated to even them out).
        self.val_loss = MeanOverImages()
        self.holdout_loss = MeanOverImages()
        # The same for the training loss: `train/loss_epoch` (metrics.json's train/loss) is
        # the mean over every rank's images, not rank 0's share. `train/loss_step` stays
        # this rank's batch: no extra collective per step.
        self.train_loss = MeanOverImages()

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.net)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every checkpoint fit() restores (resume=RUN_DIR, a requeued job, ckpt_path): its
        # classes and input preprocessing must be this run's (resume may override them).
        try:
            source = f"The checkpoint {self.trainer.ckpt_path}"
        except RuntimeError:  # no trainer: load_from_checkpoint builds from the same hparams
            source = "The checkpoint"
        check_inputs_fit(checkpoint.get("hyper_parameters") or {}, self.hparams, source)

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
        # update, not forward: no per-batch value is computed (a state copy each).
        self.train_top1.update(logits, targets)
        self.train_loss.update(loss, len(targets))
        # self.log costs Lightning a device move of the value's state at every call (0.8 ms
        # on a CPU, under cProfile): the step loss is logged only on the steps the Trainer
        # writes to its loggers, the epoch's Metric objects once per epoch. Not prog_bar:
        # Lightning would read it to the host after every batch; LossProgressBar shows it.
        if self.writes_logs_this_step():
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def writes_logs_this_step(self) -> bool:
        """Whether the Trainer writes step metrics to its loggers after this batch (its
        rule: every log_every_n_steps optimizer steps, when stopping, and in fast_dev_run)."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        due = every > 0 and (trainer.global_step + 1) % every == 0
        return due or trainer.should_stop or bool(trainer.fast_dev_run)

    def on_train_epoch_end(self) -> None:
        # Before the checkpoint callbacks' epoch end (Lightning runs them after the
        # module's), so last.ckpt holds this epoch's figures.
        if self.train_loss.update_called:
            self.log("train/loss_epoch", self.train_loss)
            self.log("train/acc_top1", self.train_top1)

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
        top1, top5, mean_loss = (
            (self.holdout_top1, self.holdout_top5, self.holdout_loss)
            if prefix == "holdout"
            else (self.val_top1, self.val_top5, self.val_loss)
        )
        top1(scores, targets)
        top5(scores, targets)
        mean_loss(loss, len(targets))
        # The prefix names the loader: no '/dataloader_idx_N' suffix when there are two.
        self.log(f"{prefix}/loss", mean_loss, prog_bar=True, add_dataloader_idx=False)
        self.log(f"{prefix}/acc_top1", top1, prog_bar=True, add_dataloader_idx=False)
        self.log(f"{prefix}/acc_top5", top5, add_dataloader_idx=False)
        # Callbacks (confusion matrix, prediction grid) read these scores.
        return scores.detach()

    def validation_step(
        self, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor | None:
        if dataloader_idx == 0:
            return self._eval_step(batch, "val")
        # Loader 1 is the held-out training slice (data.holdout_per_class). Nothing is
        # returned, so the val callbacks (confusion matrix, prediction grid) never see it.
        self._eval_step(batch, "holdout")
        return None

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "eval")

    def configure_optimizers(self):
        optimizer_cfg = dict(self.hparams.optimizer)
        decay_biases = optimizer_cfg.pop("decay_biases", True)
        if not isinstance(decay_biases, bool):
            raise ConfigError(f"optimizer.decay_biases={decay_biases!r}: use true or false.")
        params = self.parameters() if decay_biases else self.weight_and_bias_groups()
        # Partial, then called: instantiate would turn the param-group dicts into DictConfigs.
        optimizer = hydra.utils.instantiate(optimizer_cfg, _partial_=True)(params)
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        lightning_keys = scheduler_cfg.pop("lightning", None) or {}
        scheduler = hydra.utils.instantiate(scheduler_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}

    def weight_and_bias_groups(self) -> list[dict[str, Any]]:
        """cuda-convnet's weight decay (its `wc`): on the weights only. Biases, and any
        other 1-D parameter, get none, so the paper's bias-1 terms are not pulled to 0."""
        weights = [p for p in self.parameters() if p.dim() > 1]
        biases = [p for p in self.parameters() if p.dim() <= 1]
        groups = [{"params": weights}, {"params": biases, "weight_decay": 0.0}]
        return [group for group in groups if group["params"]]
