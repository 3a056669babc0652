"""OmegaConf resolvers the configs use; registered when the package is imported
(the entry points import it before Hydra composes anything)."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from omegaconf import OmegaConf


def _or(value: Any, default: Any) -> Any:
    """`value` unless it is null/empty: `resume=RUN_DIR` picks the run folder."""
    return default if value in (None, "") else value


def _if_set(value: Any, then: Any, otherwise: Any) -> Any:
    return otherwise if value in (None, "") else then


def _gpus_per_node(accelerator: Any, devices: Any) -> int:
    """SLURM GPUs per node for a trainer: one per device on GPU trainers, none on CPU."""
    if str(accelerator) not in ("gpu", "cuda", "auto"):
        return 0
    return int(devices) if str(devices).lstrip("-").isdigit() and int(devices) > 0 else 1


def _launch_id() -> str:
    """A name every rank of one torchrun/srun launch agrees on (each rank runs Hydra and
    would otherwise pick its own timestamped folder); "" for ordinary launches."""
    env = os.environ
    day = time.strftime("%Y-%m-%d")
    if env.get("TORCHELASTIC_RUN_ID") and int(env.get("WORLD_SIZE", "1")) > 1:
        return f"{day}_torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if env.get("SLURM_STEP_ID") and int(env.get("SLURM_NTASKS", "1")) > 1:
        return f"{day}_slurm-{env.get('SLURM_JOB_ID')}.{env['SLURM_STEP_ID']}"
    return ""


def register() -> None:
    resolvers = (
        ("or", _or),
        ("if_set", _if_set),
        ("gpus_per_node", _gpus_per_node),
        ("launch_id", _launch_id),
    )
    for name, fn in resolvers:
        OmegaConf.register_new_resolver(f"alexnet_lab.{name}", fn, replace=True)


register()

# conf/hydra/launcher/submitit_slurm.yaml extends the plugin's structured config of the
# same name; Hydra validates it against that schema (wanted) but warns on every run.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema")
