"""One job's folder as the code reads it: is it finished, what overrides made it, where Hydra
writes its config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def finished_job(job_dir: Path) -> dict[str, Any] | None:
    """The saved result (metrics.json) of a run that completed in `job_dir`, else None."""
    try:
        metrics = json.loads((Path(job_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "completed" else None


def hydra_subdir(output_dir: str, mode: Any, resume: Any) -> str | None:
    """hydra.output_subdir, where Hydra saves a job's config: `.hydra` in a new folder;
    `.hydra-resume` when a run continues in its own folder (resume=RUN_DIR, a sweep job
    run again or requeued), keeping the config the run started with; nothing at all for
    a sweep job that completed before, which is skipped with its folder untouched."""
    if resume not in (None, ""):
        return ".hydra-resume"
    if str(mode).rsplit(".", 1)[-1] != RunMode.MULTIRUN.name:
        return ".hydra"
    if finished_job(Path(output_dir)) is not None:
        return None
    return ".hydra-resume" if (Path(output_dir) / ".hydra" / "config.yaml").is_file() else ".hydra"


def override_list(node: Any) -> list[str]:
    """Override strings as written (a sweep's `seed=${job.seed}` is not resolved)."""
    if node is None:
        return []
    return [str(o) for o in OmegaConf.to_container(node, resolve=False)]


def finished_run(run_dir: Path) -> bool:
    return finished_job(run_dir) is not None


def saved_overrides(path: Path) -> list[str] | None:
    """The override list Hydra saved (.hydra/overrides.yaml, multirun.yaml's sweep)."""
    try:
        node = OmegaConf.load(path)
    except OSError:
        return None
    if path.name == "multirun.yaml":
        node = OmegaConf.select(node, "hydra.overrides.task")
    return None if node is None else override_list(node)


def plain(cfg: DictConfig | None) -> Any:
    """A resolved config as plain dicts/lists (what checkpoints and loggers store)."""
    if cfg is None:
        return None
    return OmegaConf.to_container(cfg, resolve=True)


def job_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
