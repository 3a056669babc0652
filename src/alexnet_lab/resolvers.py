"""OmegaConf resolvers the configs use; registered when the package is imported
(the entry points import it before Hydra composes anything)."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from omegaconf import ListConfig, OmegaConf

from alexnet_lab.jobs.folder import hydra_subdir


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


# The paper's "(centered) raw RGB values" (section 2): pixels on the 0-255 scale, mean
# subtracted. Dividing [0, 1] pixels by 1/255 after subtracting the mean gives exactly that.
PAPER_STD = 1 / 255
INPUT_SCALES = ("unit", "paper")


def _input_std(input_scale: Any, pixel_std: Any) -> ListConfig:
    """data.std for an input scale: the dataset's per-channel std (unit variance, the modern
    habit) or 1/255 per channel (the paper's scale, where its LRN constants and N(0, 0.01)
    init act as designed; at unit scale LRN is nearly a constant multiply)."""
    # A ListConfig, not a list: OmegaConf.resolve (--cfg job --resolve) cannot store a list.
    # Any other value is named by checks.check_train_config: an error raised here would
    # surface as an unreadable interpolation traceback.
    if input_scale == "paper":
        return OmegaConf.create([PAPER_STD] * len(pixel_std))
    return OmegaConf.create(list(pixel_std))


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
        ("input_std", _input_std),
        ("hydra_subdir", hydra_subdir),  # conf/hydra/default.yaml: hydra.output_subdir
    )
    for name, fn in resolvers:
        OmegaConf.register_new_resolver(f"alexnet_lab.{name}", fn, replace=True)


register()

# conf/hydra/launcher/submitit_slurm.yaml extends the plugin's structured config of the
# same name; Hydra validates it against that schema (wanted) but warns on every run.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema")
