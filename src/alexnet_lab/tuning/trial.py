"""One trial: the objective it is scored on, the callback that reports it every epoch,
and its training config, composed as `src/train.py` composes it."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from lightning.pytorch import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_lab.errors import ConfigError, TrainingDivergedError
from alexnet_lab.redaction import redact_secrets
from alexnet_lab.runs import run_task
from alexnet_lab.tasks import train

log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """A trial that cannot give a value (failed run, NaN loss, metric missing): FAIL."""


class Objective:
    """What a trial is scored on: a metric's last value, or (`reach`) the epochs the metric
    takes to reach that value (fewer is better; training stops there)."""

    def __init__(self, tune: DictConfig) -> None:
        self.metric = str(tune.metric)
        if tune.direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"tune.direction={tune.direction}: use maximize or minimize "
                f"(whether a higher or a lower {self.metric} is better)."
            )
        self.higher_is_better = tune.direction == "maximize"
        self.reach = None if tune.get("reach") is None else float(tune.reach)
        self.study_direction = "minimize" if self.reach is not None else str(tune.direction)

    def describe(self) -> str:
        if self.reach is None:
            return f"{self.metric} ({self.study_direction})"
        sign = ">=" if self.higher_is_better else "<="
        return f"epochs until {self.metric} {sign} {self.reach:g} (minimize)"

    def reached(self, value: float) -> bool:
        return value >= self.reach if self.higher_is_better else value <= self.reach

    def intermediate(self, value: float) -> float:
        """What the pruner compares at each epoch: the metric, or its distance to `reach`."""
        if self.reach is None:
            return value
        return max(0.0, self.reach - value if self.higher_is_better else value - self.reach)


class TrialReporter(Callback):
    """Reports the objective to the Optuna trial at the end of every training epoch (train
    and validation metrics are final then, and runs without validation report too) and
    stops training, cleanly, when the pruner says so or the target is reached.

    optuna-integration's PyTorchLightningPruningCallback reports at validation end, where
    this epoch's train/* metrics are not yet computed (claim 1 tunes on training error),
    and raises TrialPruned through Lightning; stopping cleanly lets the run finish as any
    job does (metrics.json, checkpoints, W&B closed normally) with the trial marked pruned.
    """

    def __init__(self, trial: optuna.Trial, objective: Objective, max_epochs: int) -> None:
        self.trial, self.objective, self.max_epochs = trial, objective, max_epochs
        self.values: list[float] = []
        self.pruned_at: int | None = None
        self.reached_at: int | None = None
        self.missing: str | None = None  # the metric is not logged: every trial would fail

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        metrics = trainer.callback_metrics
        if self.objective.metric not in metrics:
            self.missing = (
                f"tune.metric={self.objective.metric} is not logged by this training run "
                f"(it logs {', '.join(sorted(metrics)) or 'nothing'} at the end of an epoch). "
                f"Choose one of those."
            )
            trainer.should_stop = True
            return
        value = float(metrics[self.objective.metric])
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"{self.objective.metric} became {value} at epoch {epoch}: training diverged "
                f"and was stopped."
            )
        self.values.append(value)
        self.trial.report(self.objective.intermediate(value), step=epoch)
        if self.objective.reach is not None and self.objective.reached(value):
            self.reached_at = epoch
            trainer.should_stop = True
        elif epoch + 1 < self.max_epochs and self.trial.should_prune():
            # (After the last epoch the trial is complete: pruning it would save nothing
            # and lose its value.)
            self.pruned_at = epoch
            trainer.should_stop = True
            mark_pruned_in_wandb(trainer, epoch)

    def value(self) -> float:
        if self.objective.reach is None:
            return self.values[-1]
        # Epochs counted from 1; not reached within the budget scores one epoch more.
        return float(self.reached_at + 1 if self.reached_at is not None else self.max_epochs + 1)


def mark_pruned_in_wandb(trainer, epoch: int) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            run.tags = (*(run.tags or ()), "pruned")
            run.summary.update({"tune/state": "PRUNED", "tune/pruned_at_epoch": epoch})


_active_reporter: TrialReporter | None = None


def active_trial_reporter() -> TrialReporter:
    """The callback of the trial being run (instantiated from the trial's config)."""
    if _active_reporter is None:
        raise ConfigError(
            "callbacks.tune_trial is added by src/tune.py to its trials only; remove it."
        )
    return _active_reporter


@contextmanager
def trial_hydra_config(cfg: DictConfig) -> Iterator[None]:
    """The trial's Hydra runtime (output folder, overrides) while it runs, as a train.py
    job would have it; the tune job's own afterwards."""
    instance = HydraConfig.instance()
    saved = instance.cfg
    instance.set_config(cfg)
    try:
        yield
    finally:
        instance.cfg = saved


@contextmanager
def trial_log_file(path: Path) -> Iterator[None]:
    """The trial's log lines also in its own folder (train.log, as a train run has)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def compose_trial(overrides: list[str], trial_dir: Path, number: int) -> DictConfig:
    try:
        cfg = hydra.compose("train", overrides=overrides, return_hydra_config=True)
    except HydraException as err:  # e.g. a categorical choice naming a missing config
        raise TrialFailed(f"the trial's config does not compose: {err}") from None
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(trial_dir)
        # A single run (a sweep job would also be skipped when its folder holds a finished
        # one, and a stop would write a sweep summary); not "train": after a stop there is
        # no `train.py resume=` to suggest, the tune command is run again instead.
        cfg.hydra.job.name = "tune_trial"
        cfg.hydra.job.num = number
        cfg.hydra.mode = RunMode.RUN
    # What Hydra saves for a train run, so `resume=` and the study tools read trials too.
    saved = trial_dir / ".hydra"
    saved.mkdir(parents=True)
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(redact_secrets(OmegaConf.to_container(job_cfg)), saved / "config.yaml")
    OmegaConf.save(redact_secrets(overrides), saved / "overrides.yaml")
    return cfg


def trial_name(number: int, params: dict[str, Any]) -> str:
    shown = ",".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    return f"trial {number}: {shown}"


def run_training(cfg: DictConfig, reporter: TrialReporter, group: str, name: str) -> dict:
    """run_task(train, cfg) with the trial's callback added, in the trial's Hydra runtime,
    and, with W&B, as its own run grouped by the study and named by the trial."""
    global _active_reporter
    run_dir = Path(cfg.hydra.runtime.output_dir)
    with open_dict(cfg):
        if cfg.get("callbacks") is None:
            cfg.callbacks = {}
        cfg.callbacks.tune_trial = {"_target_": f"{__name__}.active_trial_reporter"}
        wandb = (cfg.get("logger") or {}).get("wandb")
        if wandb is not None:  # a name or group set in the config wins
            wandb.group = wandb.group or group
            wandb.name = wandb.name or name
            wandb.job_type = "tune"
    _active_reporter = reporter
    try:
        with trial_hydra_config(cfg), trial_log_file(run_dir / "train.log"):
            # A single run raises what went wrong after writing metrics.json: a failure
            # comes back as that result, so the search goes on; a stop (SIGTERM, Ctrl-C,
            # preemption) is raised on.
            try:
                return run_task(train, cfg)
            except Exception:
                log.exception("Trial failed")  # the traceback, in the trial's train.log too
                return run_result(run_dir)
            except SystemExit:
                result = run_result(run_dir)  # a UserError: run_task logged it, then exited
                if result["status"] == "failed":
                    return result
                raise
    finally:
        _active_reporter = None


def run_result(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {"status": "failed", "error": "the run ended without writing metrics.json"}
