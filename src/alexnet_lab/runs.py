"""What every job does around its task: loggers and callbacks from the config,
a `metrics.json` at the end whatever happens, W&B closed, user errors as one paragraph."""

from __future__ import annotations

import json
import logging
import netrc
import os
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
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.checks import redact_secrets
from alexnet_lab.distributed import reset_after_job
from alexnet_lab.errors import ConfigError, UserError
from alexnet_lab.files import atomic_write
from alexnet_lab.interrupts import (
    STOP_EXIT_CODES,
    InterruptCheckpoint,
    say_how_to_continue,
    stop_signals,
)
from alexnet_lab.resume import CHECKPOINT_DIR, RunComplete, finished_job
from alexnet_lab.sweep_guard import write_fingerprint
from alexnet_lab.tracking import DatasetArtifact, wandb_identity

log = logging.getLogger(__name__)


def plain(cfg: DictConfig | None) -> Any:
    """A resolved config as plain dicts/lists (what checkpoints and loggers store)."""
    if cfg is None:
        return None
    return OmegaConf.to_container(cfg, resolve=True)


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def job_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


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


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wandb_credentials_available() -> bool:
    """True when W&B could log in without asking: an API key in the env or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        hosts = netrc.netrc(os.environ.get("NETRC")).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        kwargs = {}
        if "WandbLogger" in logger_cfg.get("_target_", ""):
            # Name, group, tags, job type; the same id when a run folder is resumed.
            kwargs.update(wandb_identity(cfg, logger_cfg, redact_secrets(job_overrides())))
            if logger_cfg.get("offline") is None:
                # An explicit WANDB_MODE wins; otherwise never let wandb.init prompt for a login.
                kwargs["offline"] = (
                    os.environ["WANDB_MODE"] == "offline"
                    if "WANDB_MODE" in os.environ
                    else not wandb_credentials_available()
                )
        log.info("Logger %s", name)
        loggers.append(hydra.utils.instantiate(logger_cfg, **kwargs))
    return loggers


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if any(lg.get("log_dataset") for lg in (cfg.get("logger") or {}).values()):
        callbacks.append(DatasetArtifact())  # logger.wandb.log_dataset=true
    if not cfg.get("logger"):  # logger=none: LearningRateMonitor refuses a logger-less Trainer
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # Not a config entry: Ctrl-C/SIGTERM/preemption must leave a checkpoint with any callbacks.
    callbacks.append(InterruptCheckpoint(Path(cfg.paths.output_dir) / CHECKPOINT_DIR))
    return callbacks


def finish_wandb(output_dir: Path, status: str = "completed") -> None:
    """End the active W&B run so the next job of a sweep gets its own, and say how to sync.
    The run gets the job's status (summary `status`) and a matching exit code: only a
    completed job shows as finished; a stop by a scheduler is marked preempting."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    offline = wandb.run.settings.mode in ("offline", "dryrun")  # wandb >= 0.2x says dryrun
    run_dir = Path(wandb.run.dir).parent
    wandb.run.summary["status"] = status
    if status in ("terminated", "preempted"):
        wandb.run.mark_preempting()
    wandb.finish(exit_code=0 if status == "completed" else STOP_EXIT_CODES.get(status, 1))
    if offline:
        log.info("W&B ran offline. Upload this run with:  wandb sync %s", run_dir)


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
    and their own status (interrupts.py); the process then exits with the signal's
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
    if rank_zero_only.rank == 0:
        write_json_atomic(output_dir / "metrics.json", redact_secrets(result))
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
