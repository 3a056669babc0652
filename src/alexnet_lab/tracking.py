"""Who a W&B run is: name, group, tags, job type and id.

Every sweep job is its own run, named after its overrides and grouped by its sweep, so
the dashboard compares the jobs of one sweep at a glance. The identity is stored in the
run folder (wandb_run.json) on first use: a resumed or requeued run reads it back and
continues the same W&B run instead of starting a new one.
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

IDENTITY_FILE = "wandb_run.json"
# Overrides that say where or how, not what: left out of run names.
NAME_SKIP = ("resume", "hydra.", "paths.", "data.root", "logger", "trainer.devices")


def run_name(cfg: DictConfig, overrides: list[str]) -> str:
    """`model.activation=tanh,data.augment=false`, or the experiment's name without overrides."""
    shown = [o.lstrip("+~") for o in overrides]
    shown = [o for o in shown if not o.startswith(NAME_SKIP)]
    return ",".join(shown) or str(cfg.get("experiment_name") or cfg.get("task_name"))


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


def wandb_identity(cfg: DictConfig, logger_cfg: DictConfig, overrides: list[str]) -> dict:
    """WandbLogger kwargs: id/name/group from the run folder if a run started there
    before, else from the config (null: derived) and then stored."""
    output_dir = Path(cfg.paths.output_dir)
    path = output_dir / IDENTITY_FILE
    if path.is_file():
        identity = json.loads(path.read_text())
    else:
        identity = {
            "id": logger_cfg.get("id") or new_run_id(),
            "name": logger_cfg.get("name") or run_name(cfg, overrides),
            "group": logger_cfg.get("group") or run_group(cfg),
        }
        if rank_zero_only.rank == 0:
            output_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(identity, indent=2) + "\n")
    kwargs: dict[str, Any] = {
        **identity,
        "tags": list(logger_cfg.get("tags") or ablation_tags(cfg)),
        "job_type": logger_cfg.get("job_type") or str(cfg.get("task_name", "train")),
        # Same id again (resume, requeue): continue that run.
        "resume": "allow",
    }
    return kwargs
