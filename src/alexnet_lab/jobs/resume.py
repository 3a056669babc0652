"""Continue a run where it stopped.

`python src/train.py resume=RUN_DIR` restores RUN_DIR's saved config (.hydra/config.yaml,
plus any key=value overrides given with it) and continues from the newest intact
checkpoint in RUN_DIR/checkpoints, in RUN_DIR (conf/hydra/default.yaml points the run
there) and in the same W&B run (tracking/wandb_run.py reads RUN_DIR/wandb_run.json).

The same rule makes a requeued SLURM job continue: it runs again in its own folder, finds
its checkpoints there and picks the newest. A fresh run's folder is new and empty, so
nothing is picked up by accident.
"""

from __future__ import annotations

import logging
import pickle
import shlex
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_lab.errors import ConfigError
from alexnet_lab.jobs.folder import finished_job

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


def intact_checkpoint(path: Path) -> dict[str, Any] | None:
    """(epoch, global_step) of a Lightning checkpoint that loads, else None (cut short
    by a kill, truncated copy, not a checkpoint). mmap: nothing big is read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ):  # noqa: E501
        return None
    if not isinstance(checkpoint, dict) or not {"state_dict", "epoch", "global_step"} <= set(
        checkpoint
    ):
        return None
    return {"epoch": int(checkpoint["epoch"]), "global_step": int(checkpoint["global_step"])}


def newest_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The intact checkpoint with the most optimizer steps (newest file on a tie)."""
    best: tuple[int, float] | None = None
    found = None
    for path in folder.glob("*.ckpt") if folder.is_dir() else ():
        info = intact_checkpoint(path)
        if info is None:
            log.warning("Skipping %s: not an intact checkpoint.", path)
            continue
        key = (info["global_step"], path.stat().st_mtime)
        if best is None or key > best:
            best, found = key, {"checkpoint": str(path), **info}
    return found


def remove_cut_writes(folder: Path) -> None:
    """Delete the temporary files of checkpoint writes a kill cut short (files.atomic_write
    names them .<name>.<random>.tmp); the checkpoints themselves are whole, old or new."""
    for path in folder.glob(".*.ckpt.*.tmp") if folder.is_dir() else ():
        log.info("Removing %s: a checkpoint write that a kill cut short.", path.name)
        path.unlink(missing_ok=True)


class RunComplete(Exception):
    """resume=RUN_DIR on a run that completed and has nothing left to train: its files are
    left exactly as they are (run_task writes nothing) and the message says how to train
    it further."""

    def __init__(self, message: str, metrics: dict[str, Any]):
        super().__init__(message)
        self.metrics = metrics


def check_not_complete(
    cfg: DictConfig, done: dict[str, Any] | None, found: dict | None, given: list[str] = ()
) -> None:
    """Raise RunComplete when the run in cfg.resume completed (`done`, its metrics.json)
    and its newest checkpoint is its final state at the limit it is resumed with; a
    ConfigError instead when overrides were `given` with it: with nothing to train they
    cannot apply, and a switch that cannot apply is refused, never dropped."""
    if done is None or found is None or found["global_step"] != done.get("global_step"):
        return
    max_epochs = cfg.trainer.get("max_epochs")
    max_steps = cfg.trainer.get("max_steps") or -1
    at_step_limit = 0 < max_steps <= found["global_step"]
    at_epoch_limit = max_epochs is not None and max_epochs >= 0 and done["epochs"] >= max_epochs
    if not (at_step_limit or at_epoch_limit):
        return  # a higher limit: it trains on
    score = done.get("val/acc_top1")
    shown = f", val/acc_top1 {score:.4g}" if isinstance(score, float) else ""
    limit = f"trainer.max_steps={max_steps}" if at_step_limit else f"max_epochs={max_epochs}"
    complete = (
        f"{cfg.resume} is complete: it trained {_count(done['epochs'], 'epoch')} "
        f"({_count(done['global_step'], 'step')}) of {limit}{shown}."
    )
    command = [f"resume={cfg.resume}", *given, f"trainer.max_epochs={done['epochs'] + 10}"]
    further = (
        f"To train it further, raise the limit: python {sys.argv[0]} {' '.join(command)} "
        f"(or a higher trainer.max_steps)."
    )
    if given:
        raise ConfigError(
            f"{complete} With nothing to train, {' '.join(given)} cannot apply; nothing was "
            f"changed. {further}"
        )
    raise RunComplete(
        f"{complete} Nothing to train; its files are left as they are. {further}", done
    )


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def restore_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """RUN_DIR's saved config with the plain key=value `overrides` applied on top."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise ConfigError(
            f"resume={run_dir}: no saved config at {saved}. Pass the folder of a train run "
            f"(outputs/train/runs/<time> or a sweep job's outputs/train/multiruns/<time>/<n>)."
        )
    cfg = OmegaConf.load(saved)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete() or override.is_sweep_override() or override.package:
            raise ConfigError(f"resume: cannot apply {override.input_line!r}; use key=value.")
        if isinstance(OmegaConf.select(cfg, key), DictConfig) or "/" in key:
            raise ConfigError(
                f"resume restores the run's own config, so config groups cannot be switched "
                f"({override.input_line!r}). Change single values (e.g. trainer.max_epochs=20) "
                f"or start a new run."
            )
        add = override.is_add() or override.is_force_add()
        OmegaConf.update(cfg, key, override.value(), merge=True, force_add=add)
    return cfg


def prepare_resume(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict | None]:
    """The config to train with and the checkpoint to continue from (None: from the start).

    With resume=RUN_DIR the config is RUN_DIR's own. In any run, the newest intact
    checkpoint in the run's own folder wins over ckpt_path (that is a requeued job
    continuing); ckpt_path is used when the folder has none.
    """
    rest: list[str] = []
    if cfg.get("resume"):
        run_dir = Path(cfg.resume).expanduser()
        rest = [o for o in overrides if not o.lstrip("+").startswith("resume=")]
        restored = restore_config(run_dir, rest)
        with open_dict(restored):
            restored.resume = str(run_dir)
        cfg = restored
    output_dir = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:  # the only writer; the others may start later than it
        remove_cut_writes(output_dir / CHECKPOINT_DIR)
    found = newest_checkpoint(output_dir / CHECKPOINT_DIR)
    if cfg.get("resume"):
        check_not_complete(cfg, finished_job(output_dir), found, given=rest)
    if found is not None:
        log.info("Continuing from %s (epoch %d, step %d)", *found.values())
    elif cfg.get("resume"):
        log.warning("resume=%s: no intact checkpoint there; training from the start.", cfg.resume)
    return cfg, found


def resume_command(run_dir: Path) -> str | None:
    """`python src/train.py resume=RUN_DIR` (the script as it was called) for a train run
    that saved its config; None for anything else (eval, tuning jobs)."""
    job_name = HydraConfig.get().job.name if HydraConfig.initialized() else None
    if job_name != "train" or not (run_dir / ".hydra" / "config.yaml").is_file():
        return None
    return shlex.join(["python", sys.argv[0], f"resume={run_dir}"])
