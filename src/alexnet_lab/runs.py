"""One Hydra job's life around its task: callbacks from the config, a `metrics.json` at
the end whatever happens, W&B closed, user errors as one paragraph, and how to continue."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.errors import ConfigError, UserError
from alexnet_lab.files import write_json_atomic
from alexnet_lab.jobs.commands import continue_command
from alexnet_lab.jobs.folder import finished_job, in_multirun, job_overrides
from alexnet_lab.jobs.resume import CHECKPOINT_DIR, RunComplete, resume_command
from alexnet_lab.redaction import redact_secrets
from alexnet_lab.sweeps.fingerprint import write_fingerprint
from alexnet_lab.sweeps.summary import write_summary
from alexnet_lab.tracking.loggers import finish_wandb
from alexnet_lab.tracking.wandb_run import DatasetArtifact
from alexnet_lab.training.ddp import reset_after_job
from alexnet_lab.training.signals import InterruptCheckpoint, stop_signals

log = logging.getLogger(__name__)

LAST_ATTEMPT = "last_attempt.json"  # a failed or stopped resume of a completed run


def folder_data_for_given_root(argv: list[str]) -> list[str]:
    """`python src/train.py data.root=DIR` with no data= choice means "my folder": add
    data=folder, so DIR gets the folder defaults (ImageNet statistics, workers) rather than
    the built-in slice's config. An experiment= preset brings its own data choice; with one
    that keeps the built-in data, the built-in config refuses a foreign root by name.

    data=folder goes right after the data.root= word: Hydra's argparse takes the overrides
    as one unbroken run of words, so a word after `-m` or before `--cfg job` would be
    refused, but next to an override it is always in that run (flag values such as `job`
    have no `=`, and a `--flag=value` word is not an override)."""
    keys = [
        arg.split("=", 1)[0].lstrip("+~") if "=" in arg and not arg.startswith("-") else None
        for arg in argv
    ]
    keys[0] = None  # the program
    if "data.root" in keys and not set(keys) & {"data", "experiment", "resume"}:
        at = keys.index("data.root") + 1
        return [*argv[:at], "data=folder", *argv[at:]]
    return argv


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if any(lg.get("log_dataset") for lg in (cfg.get("logger") or {}).values()):
        callbacks.append(DatasetArtifact())  # logger.wandb.log_dataset=true
    if not cfg.get("logger"):  # logger=none: LearningRateMonitor refuses a logger-less Trainer
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if (cfg.get("trainer") or {}).get(
        "enable_progress_bar"
    ) is False:  # else the Trainer refuses a bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # Not a config entry: Ctrl-C/SIGTERM/preemption must leave a checkpoint with any callbacks.
    callbacks.append(InterruptCheckpoint(Path(cfg.paths.output_dir) / CHECKPOINT_DIR))
    return callbacks


# What to say about a required value that was not given.
REQUIRED_HINTS = {
    "data.root": "a folder holding train/<class>/ and val/<class>/ images (ImageNet layout)",
    "ckpt_path": "a .ckpt file from a run's checkpoints/ folder",
}


def require_complete(cfg: DictConfig) -> None:
    """Name every `???` value still unset, before anything is built."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        hints = "; ".join(f"{k}=... ({REQUIRED_HINTS.get(k, 'required')})" for k in missing)
        raise ConfigError(f"{', '.join(missing)} must be set: pass {hints} on the command line.")


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> dict:
    """Run a task; whatever happens write metrics.json and close W&B.

    A UserError (bad config, bad data) becomes one logged paragraph: in a single
    run the process exits with status 1; in a sweep the job is marked failed and
    the other jobs go on. Ctrl-C, SIGTERM and preemption stop the run with a checkpoint
    and their own status (training/signals.py); the process then exits with the signal's
    status (130, 143) and a sweep stops after recording the job. A sweep run again in
    its folder skips the jobs that completed, leaving their folders as they are.
    """
    output_dir = Path(cfg.paths.output_dir)
    if in_multirun() and (done := finished_job(output_dir)) is not None:
        return done
    if rank_zero_only.rank == 0:
        write_fingerprint(output_dir, cfg)  # what this job runs; a sweep rerun compares it
    with stop_signals.installed():
        return _run_task(task, cfg, output_dir)


def _run_task(task: Callable[[DictConfig], dict], cfg: DictConfig, output_dir: Path) -> dict:
    start = time.monotonic()
    result: dict[str, Any] = {"status": "failed"}
    try:
        require_complete(cfg)
        try:
            result = {**task(cfg), "status": "completed"}
        except InstantiationException as err:  # a value a constructor refused: a user error
            raise user_error_from(err) from None
    except RunComplete as complete:  # resume= on a finished run: say so, change nothing
        log.info("%s", complete)
        reset_after_job()
        return complete.metrics
    except UserError as err:
        result["error"] = str(err)
        # A guard that ends a run on purpose names its own status ("stalled").
        result["status"] = getattr(err, "run_status", "failed")
        log.error("%s", err)
        if not in_multirun():
            record_job(result, output_dir, start)
            raise SystemExit(1) from None
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        if not in_multirun():
            if rank_zero_only.rank:  # a DDP child: put the cause in its own log file
                log.exception("Rank %d failed", rank_zero_only.rank)
            record_job(result, output_dir, start)
            raise
        # One broken job must not end a long sweep: record it, go on to the next.
        log.exception("Job failed; the sweep goes on")
    except BaseException as err:
        stop = stop_signals.stop_for(err)
        if stop is None:
            result["error"] = f"{type(err).__name__}: {err}"
            record_job(result, output_dir, start)
            raise
        result.update(status=stop.status, signal=stop.signal_name, **stop_signals.reached)
        record_job(result, output_dir, start)
        raise stop from None
    record_job(result, output_dir, start)
    return result


def record_job(result: dict[str, Any], output_dir: Path, start: float) -> None:
    """metrics.json (the only place a job's status is written, with its metrics), then no
    DDP ranks, process group or W&B run left for the next job."""
    result["wall_s"] = round(time.monotonic() - start, 2)
    result["overrides"] = job_overrides()
    result["output_dir"] = str(output_dir)
    # A rank that died is named: rank 0 itself only sees its collective fail.
    dead_ranks = reset_after_job(completed=result["status"] == "completed")
    if dead_ranks and result["status"] == "failed":
        result["error"] = "; ".join([*dead_ranks, result.get("error", "")])
    # A completed run's result is replaced only by another completed one: a resume of it
    # that fails or is stopped records its attempt beside it, not over it.
    kept = finished_job(output_dir) if result["status"] != "completed" else None
    if rank_zero_only.rank == 0:
        written = output_dir / ("metrics.json" if kept is None else LAST_ATTEMPT)
        write_json_atomic(written, redact_secrets(result))
        if kept is not None:
            log.warning(
                "%s keeps the completed run's metrics; this attempt (%s) is in %s.",
                output_dir / "metrics.json",
                result["status"],
                written.name,
            )
    finish_wandb(output_dir, result["status"])
    if rank_zero_only.rank == 0 and "signal" in result:
        say_how_to_continue(result)


def user_error_from(err: InstantiationException) -> UserError:
    """The project's own error inside Hydra's wrapper, or the wrapper's message (the target
    and the config key it was built for) as one paragraph."""
    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, UserError):
            return cause
        cause = cause.__cause__
    message = str(err).replace("set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
    return ConfigError(
        f"{' '.join(message.split())} Check that entry of the config: its _target_ and "
        f"arguments (python {Path(sys.argv[0]).name} --cfg job shows the config)."
    )


def say_how_to_continue(result: dict[str, Any]) -> None:
    """After a stop: what happened, where the checkpoint is, and the one command that
    continues (resume=RUN_DIR; in a sweep, the same command in the same sweep folder)."""
    what = f"{result['status'].capitalize()} by {result['signal']}"
    if "global_step" in result:
        what += f" at epoch {result['epoch']}, step {result['global_step']}"
    if result.get("checkpoint"):
        what += f"; checkpoint saved: {result['checkpoint']}"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        write_summary(sweep_dir)  # the sweep stops before its callbacks run again
        if result["status"] == "preempted":
            log.warning("%s. submitit requeues the job, which continues from there.", what)
            return
        log.warning(
            "%s. The sweep stops here (summary: %s). Continue it (completed jobs are skipped, "
            "this one resumes, the rest start) with:\n  %s",
            what,
            sweep_dir / "summary.md",
            continue_command(sweep_dir),
        )
        return
    command = resume_command(Path(result["output_dir"]))
    log.warning("%s.%s", what, f" Continue with:\n  {command}" if command else "")
