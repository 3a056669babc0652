"""The loggers a job's config asks for, whether W&B can go online, and W&B closed after every
job."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path

import hydra
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from alexnet_lab.jobs.folder import job_overrides
from alexnet_lab.redaction import redact_secrets
from alexnet_lab.tracking.wandb_run import wandb_identity
from alexnet_lab.training.lightning_private import KeptCSVLogger  # conf/logger/csv.yaml
from alexnet_lab.training.signals import STOP_EXIT_CODES

log = logging.getLogger(__name__)


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


__all__ = ["KeptCSVLogger", "build_loggers", "finish_wandb", "wandb_credentials_available"]
