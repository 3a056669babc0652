"""Watching the first steps of a run: per-layer diagnostics (`callbacks=diagnostics`) and a
guard against runs whose loss never leaves chance (on by default).

Both are about the costliest failure a long run can have: a training loss that sits at
ln C (chance for C classes) for days. docs/paper-recipe.md shows what they found.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from torch import nn

from alexnet_lab.errors import ConfigError, UserError

log = logging.getLogger(__name__)


class TrainingStalledError(UserError):
    """The loss never left chance and the stall guard stopped the run."""

    run_status = "stalled"  # what run_task writes as metrics.json's status


def weighted_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The conv and fc layers in forward order, numbered as the paper numbers AlexNet's
    layers: conv1..conv5, fc6..fc8."""
    layers: dict[str, nn.Module] = {}
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            kind = "conv" if isinstance(module, nn.Conv2d) else "fc"
            layers[f"{kind}{len(layers) + 1}"] = module
    return layers


def _network(pl_module: L.LightningModule) -> nn.Module:
    return getattr(pl_module, "net", pl_module)


def num_classes(pl_module: L.LightningModule) -> int:
    names = getattr(pl_module, "hparams", {}).get("class_names")
    if names:
        return len(names)
    last = list(weighted_layers(_network(pl_module)).values())[-1]
    return int(last.out_features)


def head_sharpness(features: torch.Tensor, logits: torch.Tensor, iterations: int = 20) -> float:
    """The largest eigenvalue of the mean cross-entropy loss's Hessian with respect to the
    last layer's weights, for this batch (inputs `features`, outputs `logits`).

    That Hessian is mean_b (diag(p_b) - p_b p_b^T) (x) h_b h_b^T: power iteration needs
    only matrix products. Times the learning rate, it is the curvature SGD sees along the
    last layer; above 2 (1 + momentum) a step overshoots and the logits grow each step.
    """
    h = features.detach().float().flatten(1)
    p = logits.detach().float().softmax(-1)
    generator = torch.Generator(device=h.device).manual_seed(0)
    v = torch.randn(p.shape[1], h.shape[1], generator=generator, device=h.device)
    eigenvalue = 0.0
    for _ in range(iterations):
        u = h @ v.T  # (B, C): how v moves each example's logits
        s = p * u - p * (p * u).sum(1, keepdim=True)
        hv = s.T @ h / h.shape[0]
        norm = hv.norm()
        if norm == 0:
            return 0.0
        eigenvalue = float(norm / v.norm())
        v = hv / norm
    return eigenvalue


class TrainingDiagnostics(Callback):
    """Per-layer numbers for the first `first_steps` optimizer steps, then every
    `every_n_steps`, sent to every logger of the run (W&B, TensorBoard, CSV); the step is
    the 0-based index of the optimizer step. Layers are named conv1..conv5, fc6..fc8:

    - `diag/act_rms/<layer>`: RMS of the layer's output (before its activation);
    - `diag/dead_frac/<layer>`: fraction of its units (channels, features) never positive
      on the batch, i.e. dead ReLUs (not for the last layer, which has no ReLU);
    - `diag/grad_norm/<layer>`: L2 norm of the weight gradient;
    - `diag/update_ratio/<layer>`: ||W_after - W_before|| / ||W_before|| for this step
      (momentum and weight decay included); healthy SGD runs sit near 1e-3;
    - `diag/head_sharpness`: lr x the largest curvature of the loss along the last layer's
      weights (see `head_sharpness`); above `diag/head_sharpness_limit` = 2 (1 + momentum)
      the last layer's step overshoots and the logits blow up;
    - `diag/logit_std`, `diag/loss`.

    Costs one copy of the weights and a few reductions on a diagnosed step, nothing on the
    others. Hooks see the eager modules: with model.compile=true they may not fire, and the
    activation numbers are then left out (a warning says so).
    """

    def __init__(self, first_steps: int = 50, every_n_steps: int = 100):
        for key, value in (("first_steps", first_steps), ("every_n_steps", every_n_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"callbacks.diagnostics.{key}={value}: use a whole number of steps >= 1."
                )
        self.first_steps = first_steps
        self.every_n_steps = every_n_steps
        self.last_metrics: dict[str, float] = {}  # the newest logged values (tests, notebooks)
        self._layers: dict[str, nn.Module] = {}
        self._handles: list[Any] = []
        self._active = False
        self._acts: dict[str, dict[str, float]] = {}
        self._head: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grads: dict[str, float] = {}
        self._before: dict[str, torch.Tensor] | None = None
        self._warned_no_hooks = False

    def due(self, step: int) -> bool:
        return step < self.first_steps or step % self.every_n_steps == 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._layers = weighted_layers(_network(pl_module))
        last = list(self._layers)[-1]
        for name, layer in self._layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name, name == last)))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str, last: bool):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not self._active:
                return
            out = output.detach().float()
            stats = {"act_rms": float(out.square().mean().sqrt())}
            if last:
                self._head = (inputs[0].detach(), output.detach())
            else:  # a unit is dead when it is not positive for any example or position
                positive = (out > 0).flatten(2).any(-1) if out.dim() > 2 else out > 0
                stats["dead_frac"] = float(1 - positive.any(0).float().mean())
            self._acts[name] = stats

        return record

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._active = self.due(trainer.global_step)
        if self._active:
            self._acts, self._head, self._grads, self._before = {}, None, {}, None

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._active:
            return
        for name, layer in self._layers.items():
            if layer.weight.grad is not None:
                self._grads[name] = float(layer.weight.grad.float().norm())
        self._before = {name: layer.weight.detach().clone() for name, layer in self._layers.items()}
        group = optimizer.param_groups[0]
        self._lr, self._momentum = float(group["lr"]), float(group.get("momentum", 0.0))

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        if not self._active or self._before is None:  # no optimizer step in this batch yet
            return
        self._active = False
        metrics: dict[str, float] = {}
        for name, layer in self._layers.items():
            before = self._before[name]
            size = before.float().norm()
            if size > 0:  # a zero-initialised layer has no ratio on its first step
                change = (layer.weight.detach() - before).float().norm()
                metrics[f"diag/update_ratio/{name}"] = float(change / size)
            if name in self._grads:
                metrics[f"diag/grad_norm/{name}"] = self._grads[name]
            for key, value in self._acts.get(name, {}).items():
                metrics[f"diag/{key}/{name}"] = value
        if self._head is not None:
            features, logits = self._head
            metrics["diag/head_sharpness"] = self._lr * head_sharpness(features, logits)
            metrics["diag/head_sharpness_limit"] = 2 * (1 + self._momentum)
            metrics["diag/logit_std"] = float(logits.float().std())
        elif not self._warned_no_hooks:
            self._warned_no_hooks = True
            log.warning(
                "callbacks=diagnostics: the layer hooks did not run (a compiled network?), "
                "so activation and head numbers are left out; set model.compile=false for them."
            )
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            metrics["diag/loss"] = float(loss.detach())
        self._before = None
        self.last_metrics = metrics
        if trainer.is_global_zero:
            # Straight to the loggers: self.log would keep only every log_every_n_steps-th step.
            step = trainer.global_step - 1
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)


# Per-step ||W_after - W_before|| / ||W_before|| below this: the weights barely move (healthy
# SGD sits near 1e-3), and a stall is the learning rate's being too small, not too large.
TINY_UPDATE_RATIO = 1e-5


def stall_advice(update_ratio: float | None, lr: float, init: str | None) -> str:
    """What to try for a loss stuck at chance, by how much the weights moved meanwhile
    (`update_ratio`: per step, None when unknown): tiny updates need a higher learning
    rate; otherwise the usual suspects are the init and a learning rate that overshoots."""
    if update_ratio is not None and update_ratio < TINY_UPDATE_RATIO:
        return (
            f"The weights barely move (||dW||/||W|| about {update_ratio:.1e} per step; healthy "
            f"SGD sits near 1e-3): try a higher optimizer.lr (now {lr:g}), and "
            f"callbacks=diagnostics to see the first steps layer by layer."
        )
    if init == "paper":
        try_init = "model.init=caffe (the paper's bias 1 can make the first steps overshoot)"
    else:
        try_init = f"another model.init (now {init})" if init else "another init"
    moved = (
        f"The weights move (||dW||/||W|| about {update_ratio:.1e} per step). "
        if update_ratio is not None
        else ""
    )
    return (
        f"{moved}Try {try_init}, a lower optimizer.lr (now {lr:g}), and callbacks=diagnostics "
        f"to see the first steps layer by layer (docs/paper-recipe.md)."
    )


class StallGuard(Callback):
    """Warn when the training loss is still near chance after K optimizer steps; with
    `stop=True` end the run there, with status "stalled" in metrics.json.

    K = min(after_steps, max(min_steps, run_fraction x the run's steps)): a few hundred
    steps on ImageNet-sized runs, a fraction of a short one; runs shorter than min_steps
    are not judged. The loss judged is the mean over the `window` steps before K, all
    ranks together; "near chance" is above (1 - tolerance) x ln C. The check runs once.
    The advice follows how far the weights moved over the window (`stall_advice`): one
    copy of the parameters, held from the window's start to K.
    """

    def __init__(
        self,
        after_steps: int = 300,
        run_fraction: float = 0.25,
        min_steps: int = 20,
        window: int = 20,
        tolerance: float = 0.05,
        stop: bool = False,
    ):
        problems = [
            f"callbacks.stall_guard.{key}={value}: use a whole number of steps >= 1."
            for key, value in (
                ("after_steps", after_steps),
                ("min_steps", min_steps),
                ("window", window),
            )
            if isinstance(value, bool) or not isinstance(value, int) or value < 1
        ]
        if not (isinstance(run_fraction, (int, float)) and 0 < run_fraction <= 1):
            problems.append(
                f"callbacks.stall_guard.run_fraction={run_fraction}: use a fraction in (0, 1]."
            )
        if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
            problems.append(
                f"callbacks.stall_guard.tolerance={tolerance}: use a fraction of ln C in (0, 1), "
                f"e.g. 0.05."
            )
        if problems:
            raise ConfigError(" ".join(problems))
        self.after_steps = after_steps
        self.run_fraction = float(run_fraction)
        self.min_steps = min_steps
        self.window = window
        self.tolerance = float(tolerance)
        self.stop = bool(stop)
        self.check_step: int | None = None
        self.verdict: dict[str, float] | None = None  # set once judged (tests, notebooks)
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._start: tuple[int, list[torch.Tensor]] | None = None  # (step, weights)

    def judged_step(self, total_steps: float) -> int | None:
        """K for a run of `total_steps` optimizer steps (inf: no limit), None if too short."""
        if math.isinf(total_steps):
            return self.after_steps
        if total_steps < self.min_steps:
            return None
        scaled = math.ceil(self.run_fraction * total_steps)
        return min(self.after_steps, max(self.min_steps, scaled))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_step = self.judged_step(float(trainer.estimated_stepping_batches))
        if self.check_step is not None and trainer.global_step >= self.check_step:
            self.check_step = None  # resumed past K: judged (or not) by the first part
        self._sum, self._count, self.verdict, self._start = None, 0, None, None

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        if self.check_step is None or self._start is not None:
            return
        if trainer.global_step >= self.check_step - min(self.window, self.check_step):
            weights = [p.detach().clone() for p in pl_module.parameters()]
            self._start = (trainer.global_step, weights)

    @torch.no_grad()
    def _update_ratio(self, pl_module, step: int) -> float | None:
        """||W_now - W_start|| / ||W_start|| over all parameters, per step since the start."""
        if self._start is None or step <= self._start[0]:
            return None
        start_step, before = self._start
        self._start = None
        now = list(pl_module.parameters())
        size = torch.stack([w.float().norm() for w in before]).norm()
        change = torch.stack([(p - w).float().norm() for p, w in zip(now, before, strict=True)])
        if not size > 0:
            return None
        return float(change.norm() / size) / (step - start_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        if self.check_step is None:
            return
        step = trainer.global_step  # optimizer steps taken, this one included
        window = min(self.window, self.check_step)
        if step > self.check_step - window:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                loss = loss.detach().float()
                self._sum = loss if self._sum is None else self._sum + loss
                self._count += 1
        if step >= self.check_step:
            self._judge(trainer, pl_module, step, window)

    def _judge(self, trainer, pl_module, step: int, window: int) -> None:
        self.check_step = None
        if self._sum is None:
            self._start = None
            return
        mean = float(trainer.strategy.reduce(self._sum / self._count, reduce_op="mean"))
        classes = num_classes(pl_module)
        chance = math.log(classes)
        update_ratio = self._update_ratio(pl_module, step)  # the same weights on every rank
        self.verdict = {"step": step, "loss": mean, "chance": chance, "update_ratio": update_ratio}
        if not mean >= (1 - self.tolerance) * chance:  # NaN: StopOnNonFiniteLoss's case
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        init = (getattr(pl_module, "hparams", {}).get("net") or {}).get("init")
        message = (
            f"Training looks stalled: after {step} optimizer steps the mean training loss "
            f"(steps {step - window}-{step - 1}) is {mean:.3f}, within "
            f"{self.tolerance:.0%} of chance (ln {classes} = {chance:.3f}) or above it. "
            f"{stall_advice(update_ratio, lr, init)} If the run is only slow to start, "
            f"judge it later: callbacks.stall_guard.after_steps."
        )
        if self.stop:
            raise TrainingStalledError(
                f"{message} The run was stopped (callbacks.stall_guard.stop=true); "
                f"metrics.json records status: stalled."
            )
        log.warning(
            "%s Set callbacks.stall_guard.stop=true to end such runs at this point.", message
        )
