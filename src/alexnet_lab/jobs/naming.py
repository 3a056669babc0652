"""What a job is called: its run name, arm, group and tags (from its overrides), and a new run
id."""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

IDENTITY_FILE = "wandb_run.json"


# Overrides that say where or how, not what: left out of run names.
NAME_SKIP = ("resume", "hydra.", "paths.", "data.root", "logger", "trainer.devices")


# An arm of a sweep: what its jobs share but the seed. Another data.root is another arm.
ARM_SKIP = (*(p for p in NAME_SKIP if p != "data.root"), "seed=")


def run_name(cfg: DictConfig, overrides: list[str]) -> str:
    """`model.activation=tanh,data.augment=false`, or the experiment's name without overrides."""
    shown = [o.lstrip("+~") for o in overrides]
    shown = [o for o in shown if not o.startswith(NAME_SKIP)]
    return ",".join(shown) or str(cfg.get("experiment_name") or cfg.get("task_name"))


def arm_overrides(overrides: list[str]) -> list[str]:
    """The overrides that say what ran, the seed left out."""
    return [o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(ARM_SKIP)]


def arm_name(overrides: list[str]) -> str:
    """`ablation=tanh`: the W&B config `arm` of a run and the row of its sweep's seed
    aggregate; `defaults` when no override says what ran."""
    return ",".join(arm_overrides(overrides)) or "defaults"


def run_group(cfg: DictConfig) -> str:
    """The sweep (experiment name + sweep folder) in a multirun, else the experiment."""
    experiment = str(cfg.get("experiment_name") or cfg.get("task_name"))
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return f"{experiment}/{Path(hydra_cfg.sweep.dir).name}"
    return experiment


def ablation_tags(cfg: DictConfig) -> list[str]:
    """The settings the paper's ablations switch, as tags (W&B filters by tag)."""
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    tags = [f"ablation:{cfg.ablation_name}"] if cfg.get("ablation_name") else []
    tags.append(f"arch:{model.get('arch')}")
    tags.append(f"activation:{model.get('activation')}")
    tags.append("lrn" if model.get("lrn") else "no_lrn")
    tags.append(f"dropout:{model.get('dropout')}")
    tags.append("overlap_pool" if model.get("overlap_pool", True) else "no_overlap_pool")
    tags.append("two_towers" if model.get("groups") == 2 else "one_tower")
    tags.append("augment" if data.get("augment", True) else "no_augment")
    return tags


def new_run_id() -> str:
    """W&B's id form (8 of [a-z0-9]). `secrets`, not `random`: runs seeded alike must
    still get different ids."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
