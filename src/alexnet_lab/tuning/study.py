"""Hyper-parameter search with Optuna: every trial is an ordinary training job.

`python src/tune.py [train.py overrides] tune.dir=DIR` opens (or creates) the Optuna
study stored in DIR, and for each trial samples `tune.space`, composes the training
config exactly as `src/train.py` would with the sampled values as overrides, and runs it
with `run_task(train, ...)` in DIR/trials/<number>. A callback reports the objective every
epoch so the pruner can stop a bad trial early. After every trial DIR gets trials.csv,
best.yaml and two figures (tuning/report.py).

The study lives in DIR/journal.log (Optuna's journal file storage) or in the database
`tune.storage` names, so a second run with the same DIR adds trials to the same study and
any number of workers can share it. A trial whose worker was killed is failed and run again
(tuning/lost.py). In a multirun each job (arm) has its own study:
DIR/<the job's overrides>.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.errors import ConfigError
from alexnet_lab.files import write_json_atomic
from alexnet_lab.jobs.folder import in_multirun, job_overrides
from alexnet_lab.jobs.naming import NAME_SKIP
from alexnet_lab.tuning.lost import fail_lost_trials, study_storage
from alexnet_lab.tuning.report import require_figures, summarize, write_outputs
from alexnet_lab.tuning.space import hydra_value, search_space, suggest
from alexnet_lab.tuning.trial import (
    Objective,
    TrialFailed,
    TrialReporter,
    compose_trial,
    run_result,
    run_training,
    trial_name,
)

log = logging.getLogger(__name__)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def base_overrides(space: dict[str, Any]) -> list[str]:
    """The tune job's overrides a trial inherits: all but tune.* ones."""
    given = [o for o in job_overrides() if not override_key(o).startswith("tune.")]
    clash = [o for o in given if override_key(o) in space]
    if clash:
        raise ConfigError(
            f"{', '.join(clash)} set a value that tune.space tunes: drop it from the command "
            f"line, or drop the parameter from the space ('~tune.space.{override_key(clash[0])}')."
        )
    return given


def check_names(cfg: DictConfig, space: dict[str, Any]) -> None:
    """Every tuned key must exist in the training config (the tune config holds it all)."""
    missing = object()
    unknown = [name for name in space if OmegaConf.select(cfg, name, default=missing) is missing]
    if unknown:
        raise ConfigError(
            f"tune.space tunes {', '.join(unknown)}, which the training config does not have. "
            f"Check the names against `python src/train.py --cfg job`."
        )


def check_single_device(cfg: DictConfig) -> None:
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    one = devices in (1, "1") or (isinstance(devices, (list, tuple)) and len(devices) == 1)
    if not one or nodes != 1:
        raise ConfigError(
            f"tune runs each trial in its own process on one device, but trainer.devices="
            f"{devices} trainer.num_nodes={nodes}. Pass trainer=gpu (or trainer.devices=1) and "
            f"run several workers on one study instead: -m tune.worker=0,1,2,3."
        )


class Study:
    """One study (one arm): its storage, its folder, and the objective it runs."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.tune = cfg.tune
        self.space = search_space(self.tune.space)
        check_names(cfg, self.space)
        self.objective = Objective(self.tune)
        self.overrides = base_overrides(self.space)
        check_single_device(cfg)
        if self.tune.figures:
            require_figures()
        self.dir = study_dir(cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = self.tune.study_name or default_study_name(self.dir, cfg)
        self.study = self.open()

    def open(self) -> optuna.Study:
        storage = study_storage(self.tune.storage, self.dir, self.tune.lost)
        pruners = self.tune.pruners or {}
        if self.tune.pruner not in pruners:
            raise ConfigError(
                f"tune.pruner={self.tune.pruner}: use one of {', '.join(pruners)} "
                f"(or add yours under tune.pruners)."
            )
        study = optuna.create_study(
            storage=storage,
            study_name=self.name,
            direction=self.objective.study_direction,
            pruner=hydra.utils.instantiate(pruners[self.tune.pruner]),
            load_if_exists=True,
        )
        described = {"objective": self.objective.describe()}
        if not study.user_attrs:
            for key, value in described.items():
                study.set_user_attr(key, value)
        elif study.user_attrs.get("objective") != described["objective"]:
            raise ConfigError(
                f"The study in {self.dir} optimises {study.user_attrs.get('objective')}, not "
                f"{described['objective']}. Use another tune.dir for another objective."
            )
        fail_lost_trials(study)  # trials left RUNNING by a killed worker; retries enqueued
        # Seeded: reproducible for a fresh study; offset by the trials already there and by
        # the worker, so a rerun or a second worker does not repeat the same samples.
        self.trials_before = len(study.trials)
        seed = self.tune.seed
        if seed is not None:
            seed = int(seed) + self.trials_before + 100_003 * int(self.tune.worker)
        study.sampler = hydra.utils.instantiate(self.tune.sampler, seed=seed)
        for params in self.tune.get("enqueue") or []:
            params = OmegaConf.to_container(params)
            unknown = set(params) - set(self.space)
            if unknown:
                raise ConfigError(
                    f"tune.enqueue names {', '.join(sorted(unknown))}, which tune.space does not "
                    f"tune (it tunes {', '.join(self.space)}). Enqueue values of those."
                )
            study.enqueue_trial(params, skip_if_exists=True)
        return study

    def run_trial(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.space)
        trial_dir = self.dir / "trials" / str(trial.number)
        trial.set_user_attr("run_dir", str(trial_dir))
        if trial_dir.exists():
            raise ConfigError(
                f"{trial_dir} already exists, but this study's trial {trial.number} is new: the "
                f"folder belongs to another study (was {self.dir / 'journal.log'} removed?). "
                f"Use an empty tune.dir."
            )
        overrides = [*self.overrides, *(f"{k}={hydra_value(v)}" for k, v in params.items())]
        trial.set_user_attr("overrides", overrides)
        try:
            cfg = compose_trial(overrides, trial_dir, trial.number)
        except TrialFailed as err:
            self.record(trial, trial_dir, "FAIL", reason=str(err))
            raise
        max_epochs = int(cfg.trainer.max_epochs)
        trial.set_user_attr("max_epochs", max_epochs)
        reporter = TrialReporter(trial, self.objective, max_epochs)
        log.info("Trial %d: %s", trial.number, " ".join(overrides))
        try:
            result = run_training(cfg, reporter, self.name, trial_name(trial.number, params))
        except SystemExit:
            # A stop: Optuna would leave the trial RUNNING for ever. Record it as failed,
            # then let the stop end the search.
            stopped = run_result(trial_dir)
            reason = f"{stopped['status']} by {stopped.get('signal', 'a signal')}"
            self.record(trial, trial_dir, "FAIL", reason=reason)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.after_trial(self.study, trial)
            log.warning(
                "Trial %d %s: recorded as failed. Run the same command again to add trials "
                "to the study.",
                trial.number,
                reason,
            )
            raise
        return self.outcome(trial, trial_dir, result, reporter)

    def outcome(self, trial, trial_dir: Path, result: dict, reporter: TrialReporter) -> float:
        if reporter.missing:
            self.record(trial, trial_dir, "FAIL", reason=reporter.missing)
            raise ConfigError(reporter.missing)  # ends the search: every trial would fail
        if result.get("status") != "completed":
            reason = " ".join(str(result.get("error") or "the run failed").split())
            self.record(trial, trial_dir, "FAIL", reason=reason)
            raise TrialFailed(reason)
        if reporter.pruned_at is not None:
            self.record(trial, trial_dir, "PRUNED", epoch=reporter.pruned_at)
            ran = reporter.pruned_at + 1
            raise optuna.TrialPruned(f"pruned after {ran} of {reporter.max_epochs} epochs")
        losses = {k: result.get(k) for k in ("train/loss", "val/loss")}
        bad = {k: v for k, v in losses.items() if v is not None and not math.isfinite(v)}
        if not reporter.values or bad:
            reason = (
                f"the loss became non-finite ({bad})"
                if bad
                else "no epoch finished, so there is no value"
            )
            self.record(trial, trial_dir, "FAIL", reason=reason)
            raise TrialFailed(reason)
        value = reporter.value()
        self.record(trial, trial_dir, "COMPLETE", value=value)
        return value

    def record(self, trial, trial_dir: Path, state: str, **info: Any) -> None:
        """The outcome in the trial (trials.csv reads it) and in the run's metrics.json."""
        if "reason" in info:
            info["reason"] = " ".join(info["reason"].split())
            trial.set_user_attr("fail_reason", info["reason"][:1000])
        if "epoch" in info:
            trial.set_user_attr("pruned_at_epoch", info["epoch"])
        path = trial_dir / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            metrics["tune"] = {"study": self.name, "trial": trial.number, "state": state, **info}
            if state == "PRUNED":
                metrics["status"] = "pruned"
            write_json_atomic(path, metrics)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            write_outputs(study, self.dir, self.space, bool(self.tune.figures))
        except Exception:  # the outputs must never stop the search; the next trial retries
            log.exception("Could not write the tuning outputs in %s", self.dir)

    def optimize(self) -> dict[str, Any]:
        log.info(
            "Study %s in %s: %d trials (%d there before), objective %s",
            self.name,
            self.dir,
            self.tune.n_trials,
            self.trials_before,
            self.objective.describe(),
        )
        self.study.optimize(
            self.run_trial,
            n_trials=int(self.tune.n_trials),
            catch=(TrialFailed,),
            callbacks=[self.after_trial],
        )
        write_outputs(self.study, self.dir, self.space, bool(self.tune.figures))
        return summarize(self.study, self.dir, self.objective.describe())


def swept_keys() -> set[str] | None:
    """The keys this multirun sweeps, read from the sweep folder's multirun.yaml (Hydra's
    sweeper writes it, with the command line's overrides, before any job starts; a job
    itself only knows its own values). None when it is not there."""
    path = Path(str(HydraConfig.get().sweep.dir)) / "multirun.yaml"
    if not path.is_file():
        return None
    saved = OmegaConf.load(path)
    given = OverridesParser.create().parse_overrides(list(saved.hydra.overrides.task))
    keys = {o.key_or_group for o in given if o.is_sweep_override()}
    return keys | set(OmegaConf.select(saved, "hydra.sweeper.params") or {})


def study_dir(cfg: DictConfig) -> Path:
    """tune.dir; in a multirun, tune.dir/<the job's values of the swept keys> (one study
    per arm), e.g. DIR/ablation=tanh. tune.* keys are left out, so -m tune.worker=0,1,2,3
    starts four workers on one study, DIR."""
    base = Path(str(cfg.tune.dir)).expanduser()
    if not in_multirun():
        return base
    swept = swept_keys()
    if swept is None:  # every override but where/how ones names the arm
        log.warning(
            "No multirun.yaml in the sweep folder: the study folder is named after "
            "all of this job's overrides."
        )
    shown = sorted(
        o.lstrip("+~").replace("/", "_")
        for o in job_overrides()
        if not override_key(o).startswith(("tune.", *NAME_SKIP))
        and (swept is None or override_key(o) in swept)
    )
    return base / ",".join(shown) if shown else base


def default_study_name(folder: Path, cfg: DictConfig) -> str:
    """The study folder's path (relative to the project root when inside it): unique per
    folder, so studies of many folders can share one database."""
    folder = folder.resolve()
    root = Path(str(cfg.paths.root_dir)).resolve()
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def tune(cfg: DictConfig) -> dict[str, Any]:
    """The task src/tune.py runs (through run_task, like any job)."""
    optuna.logging.disable_default_handler()  # Optuna's messages through the job's logging
    optuna.logging.enable_propagation()
    study = Study(cfg)
    summary = study.optimize()
    log.info(
        "Study %s: %d trials, %d complete, %d pruned (%d epochs, ~%.0f s saved), %d failed.",
        summary["study"],
        summary["tune/trials"],
        summary["tune/complete"],
        summary["tune/pruned"],
        summary["tune/pruned_epochs_saved"],
        summary["tune/pruned_s_saved"],
        summary["tune/fail"],
    )
    if "best_command" in summary:
        print(
            f"Best: trial {summary['tune/best_trial']}, {study.objective.describe()} = "
            f"{summary['tune/best_value']:.6g} ({summary['best_run_dir']}). Train with it:\n"
            f"  {summary['best_command']}\n"
            f"or: python src/train.py $(sed -n 's/^- //p' {study.dir / 'best.yaml'})",
            flush=True,
        )
    else:
        log.warning("No trial of %s completed yet: no best.yaml.", summary["study"])
    return summary
